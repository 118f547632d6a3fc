// The GPU encoder (native/model/cuda_encoder.h) on weights and inputs that
// bench/gpu/encoder_check.py wrote, without Node:
//
//   er_gpu_encoder DIR PRECISION LAYERS REPS
//
// DIR/manifest.txt: "config <vocab> <hidden> <layers> <heads> <intermediate> <max_positions>
// <type_vocab> <eps> [<rel_buckets>]" (MPNet: the buckets of its relative position bias), then "tensor <slot> <offset> <count>" lines into DIR/weights.bin
// (fp32). DIR/parity.bin and DIR/timing.bin: int32 B, T, then ids, positions, types and
// mask, (B, T) each. PRECISION: fp32, bf16 or fp16. LAYERS: comma-separated layers whose
// hidden states on the parity batch go to DIR/out-PRECISION-LAYER.bin. Then, on the timing
// batch with its inputs on the GPU, REPS timed runs (after warm-up) of the whole forward
// and of the recycled part (layers N/2 + 1 .. N), measured with CUDA events; prints one
// JSON line with the medians in milliseconds. Then the recycled path from fp16 host records
// through the pinned ring and copy stream (forward_from_f16_batches) over 16 batches, against
// the same batches one per call (nothing overlaps) and against the plain host-to-host forward.
//
// A manifest line "task <labels> <adapter_size> <k>" with tensors head.weight, head.bias and
// layer.L.adapter.{attn,ffn}.{down,up}.{weight,bias} for layers k..N-1 adds a task check
// (through the backend): a sequence head's logits on the parity batch from the token ids and
// from layer k's states, to DIR/out-PRECISION-task-ids.bin and -task-k.bin.
//
// Manifest lines "train <mode> <k>" (mode: full, frozen-prefix, reduced, reduced-adapters,
// full-adapters; labels in DIR/labels.bin, B int32) add a training check through the
// backend's train_* table, fp32 runs only: one forward without dropout on the parity batch
// (reduced modes from layer k's states), the mean cross-entropy of a sequence head and its
// gradient computed here, the backward on the GPU; then every trainable tensor's gradient
// goes to DIR/out-train-MODE.bin, in the order of DIR/out-train-MODE.txt ("loss <x>", then
// "<name> <count>" lines; a layer's Q, K, V as one stacked "layer.L.attn.qkv.weight" / ".bias").
//
// A manifest line "train-time <k>" times whole training steps (forward with dropout, the
// loss gradient, backward, AdamW) of full, reduced and reduced-adapters at k on the timing
// batch, through the table, in fp32 (and full and reduced with bf16 GEMM inputs), fp32 runs
// only; the JSON line gains trainFullMs, trainReducedMs, trainReducedAdaptersMs,
// trainFullBf16Ms and trainReducedBf16Ms.
//
// With ER_CUDA_BACKEND naming embedding_recycler_cuda.so, the parity outputs come through that
// library's C table (model/cuda_backend.h), opened with dlopen exactly as the addon opens it:
// the GPU path Node users run, checked without Node. The timing then uses the encoder directly.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>
#include "kernels/cuda/cuda_ops.h"
#include "model/cuda_encoder.h"

namespace cu = er::cuda;

namespace {

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "er_gpu_encoder: %s\n", msg.c_str());
  std::exit(1);
}

void check(const std::string& err, const char* what) {
  if (!err.empty()) fail(std::string(what) + ": " + err);
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

struct Batch {
  int32_t B = 0, T = 0;
  std::vector<int32_t> ids, pos, types, mask;
};

Batch read_batch(const std::string& path) {
  std::vector<char> raw = read_file(path);
  if (raw.size() < 8) fail(path + " is too short");
  Batch b;
  std::memcpy(&b.B, raw.data(), 4);
  std::memcpy(&b.T, raw.data() + 4, 4);
  const size_t n = (size_t)b.B * b.T;
  if (raw.size() != 8 + 16 * n) fail(path + " does not hold 4 arrays of B x T int32");
  for (int k = 0; k < 4; k++) {
    std::vector<int32_t>& v = k == 0 ? b.ids : k == 1 ? b.pos : k == 2 ? b.types : b.mask;
    v.resize(n);
    std::memcpy(v.data(), raw.data() + 8 + 4 * n * k, 4 * n);
  }
  return b;
}

template <class T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  check(cu::error_text(cudaMalloc(&p, v.size() * sizeof(T)), "cudaMalloc"), "inputs");
  check(cu::error_text(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "upload"), "inputs");
  return p;
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// A trainable tensor of the training check: its own copy of the values, and its gradient
struct Owned {
  std::string name;
  std::vector<float> w, g;
  bool decay = true;
};

// A task model for the training checks: mode, k; h the plain encoder's host view; get() the
// manifest's tensors. It owns copies of its trainable tensors and their gradients.
struct TrainSetup {
  std::deque<Owned> own;
  cu::HostEncoder t;
  cu::HostTrain spec;
  bool recycled = false;
};

template <class Get>
void make_train(TrainSetup& S, const cu::HostEncoder& h, Get get, const std::string& mode, int64_t k, int64_t labels_n,
                int64_t adapter_size) {
  const er::EncoderConfig& c = h.cfg;
  const int64_t H = c.hidden, L = c.layers;
  S.recycled = mode == "reduced" || mode == "reduced-adapters";
  const bool adapters = mode == "reduced-adapters" || mode == "full-adapters";
  const bool full = mode == "full";
  const int64_t first = mode == "full" || mode == "full-adapters" ? 0 : k;
  auto take = [&](const std::string& name, const float* src, size_t n, bool decay) -> float* {
    S.own.push_back({name, std::vector<float>(src, src + n), std::vector<float>(n, 0.0f), decay});
    return S.own.back().w.data();
  };
  cu::HostEncoder& t = S.t;
  t = h;
  if (full) {
    t.emb.word = take("embeddings.word", h.emb.word, (size_t)(c.vocab * H), true);
    t.emb.position = take("embeddings.position", h.emb.position, (size_t)(c.max_positions * H), true);
    if (h.emb.token_type) t.emb.token_type = take("embeddings.token_type", h.emb.token_type, (size_t)(c.type_vocab * H), true);
    t.emb.ln_w = take("embeddings.ln.weight", h.emb.ln_w, (size_t)H, false);
    t.emb.ln_b = take("embeddings.ln.bias", h.emb.ln_b, (size_t)H, false);
    if (h.rel_bias) t.rel_bias = take("encoder.rel_bias", h.rel_bias, (size_t)(c.rel_buckets * c.heads), false);
  }
  if (!adapters) {
    for (int64_t l = first; l < L; l++) {
      const er::LayerWeights& w = h.layer[(size_t)l];
      er::LayerWeights& o = t.layer[(size_t)l];
      const std::string p = "layer." + std::to_string(l) + ".";
      std::vector<float> qkv_w, qkv_b;
      for (const float* x : {w.q_w, w.k_w, w.v_w}) qkv_w.insert(qkv_w.end(), x, x + H * H);
      for (const float* x : {w.q_b, w.k_b, w.v_b}) qkv_b.insert(qkv_b.end(), x, x + H);
      o.q_w = take(p + "attn.qkv.weight", qkv_w.data(), qkv_w.size(), true);
      o.k_w = o.q_w + H * H;
      o.v_w = o.q_w + 2 * H * H;
      o.q_b = take(p + "attn.qkv.bias", qkv_b.data(), qkv_b.size(), false);
      o.k_b = o.q_b + H;
      o.v_b = o.q_b + 2 * H;
      o.o_w = take(p + "attn.out.weight", w.o_w, (size_t)(H * H), true);
      o.o_b = take(p + "attn.out.bias", w.o_b, (size_t)H, false);
      o.ln1_w = take(p + "attn.ln.weight", w.ln1_w, (size_t)H, false);
      o.ln1_b = take(p + "attn.ln.bias", w.ln1_b, (size_t)H, false);
      o.ffn_in_w = take(p + "ffn.in.weight", w.ffn_in_w, (size_t)(c.intermediate * H), true);
      o.ffn_in_b = take(p + "ffn.in.bias", w.ffn_in_b, (size_t)c.intermediate, false);
      o.ffn_out_w = take(p + "ffn.out.weight", w.ffn_out_w, (size_t)(H * c.intermediate), true);
      o.ffn_out_b = take(p + "ffn.out.bias", w.ffn_out_b, (size_t)H, false);
      o.ln2_w = take(p + "ffn.ln.weight", w.ln2_w, (size_t)H, false);
      o.ln2_b = take(p + "ffn.ln.bias", w.ln2_b, (size_t)H, false);
    }
  }
  t.task = cu::HostTask{};
  t.task.head = 0;
  t.task.labels = labels_n;
  t.task.adapter_act = 0;
  t.task.head_w = take("head.weight", get("head.weight"), (size_t)(labels_n * H), true);
  t.task.head_b = take("head.bias", get("head.bias"), (size_t)labels_n, false);
  if (adapters) {
    t.task.adapter_size = adapter_size;
    t.task.adapters.assign((size_t)(2 * L), cu::HostAdapter{});
    for (int64_t l = first; l < L; l++)
      for (int site = 0; site < 2; site++) {
        const std::string p = "layer." + std::to_string(l) + ".adapter." + (site ? "ffn" : "attn") + ".";
        cu::HostAdapter& a = t.task.adapters[(size_t)(2 * l + site)];
        a.dw = take(p + "down.weight", get(p + "down.weight"), (size_t)(adapter_size * H), true);
        a.db = take(p + "down.bias", get(p + "down.bias"), (size_t)adapter_size, false);
        a.uw = take(p + "up.weight", get(p + "up.weight"), (size_t)(H * adapter_size), true);
        a.ub = take(p + "up.bias", get(p + "up.bias"), (size_t)H, false);
      }
  }
  S.spec = cu::HostTrain{};
  S.spec.first = first;
  S.spec.recycled = S.recycled;
  for (Owned& o : S.own) S.spec.params.push_back({o.w.data(), o.g.data(), (int64_t)o.w.size(), o.decay ? 1 : 0});
}

// The mean cross-entropy of a sequence head's logits (B, L) and its gradient
double mean_cross_entropy(const std::vector<float>& logits, std::vector<float>& dlogits, const std::vector<int32_t>& labels,
                          int64_t B, int64_t L) {
  double loss = 0;
  dlogits.resize(logits.size());
  for (int64_t b = 0; b < B; b++) {
    const float* z = logits.data() + b * L;
    double mx = z[0], sum = 0;
    for (int64_t j = 1; j < L; j++) mx = std::max(mx, (double)z[j]);
    for (int64_t j = 0; j < L; j++) sum += std::exp(z[j] - mx);
    loss += (std::log(sum) + mx - z[labels[(size_t)b]]) / B;
    for (int64_t j = 0; j < L; j++)
      dlogits[(size_t)(b * L + j)] = (float)((std::exp(z[j] - mx) / sum - (j == labels[(size_t)b])) / B);
  }
  return loss;
}

// One training check (see the header)
template <class Get>
void train_check(const ErCudaBackend* api, void* plain, const cu::HostEncoder& h, Get get, const Batch& pb,
                 const std::vector<int32_t>& labels, const std::string& mode, int64_t k, int64_t labels_n,
                 int64_t adapter_size, const std::string& dir) {
  TrainSetup S;
  make_train(S, h, get, mode, k, labels_n, adapter_size);
  char err[2048] = {0};
  void* th = nullptr;
  if (api->train_create(&S.t, &S.spec, 0, &th, err, sizeof err) != 0) fail("train_create (" + mode + "): " + err);
  const int32_t* types_or_null = h.emb.token_type ? pb.types.data() : nullptr;
  std::vector<float> hidden;
  if (S.recycled) {
    hidden.resize((size_t)pb.B * pb.T * h.cfg.hidden);
    if (api->forward(plain, hidden.data(), pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B, pb.T, k,
                     err, sizeof err) != 0)
      fail(std::string("forward to layer k: ") + err);
  }
  std::vector<float> logits((size_t)(pb.B * labels_n)), dlogits;
  if (api->train_zero_grad(th, err, sizeof err) != 0 ||
      api->train_forward(th, logits.data(), S.recycled ? hidden.data() : nullptr, nullptr, pb.ids.data(), pb.pos.data(),
                         types_or_null, pb.mask.data(), pb.B, pb.T, 0, 1, err, sizeof err) != 0)
    fail("train_forward (" + mode + "): " + err);
  const double loss = mean_cross_entropy(logits, dlogits, labels, pb.B, labels_n);
  if (api->train_backward(th, dlogits.data(), err, sizeof err) != 0 || api->train_sync(th, 1, err, sizeof err) != 0)
    fail("train_backward (" + mode + "): " + err);
  std::ofstream bin(dir + "/out-train-" + mode + ".bin", std::ios::binary);
  std::ofstream txt(dir + "/out-train-" + mode + ".txt");
  char line[64];
  std::snprintf(line, sizeof line, "loss %.9g\n", loss);
  txt << line;
  for (const Owned& o : S.own) {
    bin.write((const char*)o.g.data(), o.g.size() * 4);
    txt << o.name << " " << o.g.size() << "\n";
  }
  uint64_t wb = 0, bb = 0;
  api->train_memory(th, &wb, &bb);
  std::fprintf(stderr, "train %s (k = %lld): loss %.6f, %zu trainable tensors, %.1f MiB of weights, %.1f MiB of buffers\n",
               mode.c_str(), (long long)k, loss, S.own.size(), wb / 1048576.0, bb / 1048576.0);
  api->train_destroy(th);
}

// Median ms of a whole training step (forward with dropout 0.1, the host's loss gradient,
// backward, AdamW) through the backend's table on batch tb, after warm-up; the step calls
// wait for the GPU, so a wall clock times them
template <class Get>
double train_time(const ErCudaBackend* api, void* plain, const cu::HostEncoder& h, Get get, const Batch& tb,
                  const std::string& mode, int64_t k, int64_t labels_n, int64_t adapter_size, int reps, bool bf16) {
  TrainSetup S;
  make_train(S, h, get, mode, k, labels_n, adapter_size);
  S.spec.hidden_dropout = S.spec.attention_dropout = S.spec.head_dropout = 0.1f;
  S.spec.precision = (int32_t)(bf16 ? cu::BackendPrecision::BF16 : cu::BackendPrecision::F32);
  char err[2048] = {0};
  void* th = nullptr;
  if (api->train_create(&S.t, &S.spec, 0, &th, err, sizeof err) != 0) fail("train_create (" + mode + "): " + err);
  const int32_t* types_or_null = h.emb.token_type ? tb.types.data() : nullptr;
  std::vector<float> hidden;
  if (S.recycled) {  // layer k's states, as a store holds them
    hidden.resize((size_t)tb.B * tb.T * h.cfg.hidden);
    if (api->forward(plain, hidden.data(), tb.ids.data(), tb.pos.data(), types_or_null, tb.mask.data(), tb.B, tb.T, k,
                     err, sizeof err) != 0)
      fail(std::string("forward to layer k: ") + err);
  }
  std::vector<int32_t> labels((size_t)tb.B);
  for (int32_t b = 0; b < tb.B; b++) labels[(size_t)b] = b % labels_n;
  std::vector<float> logits((size_t)(tb.B * labels_n)), dlogits;
  cu::HostAdamW o;
  o.lr = 1e-5f;
  std::vector<float> ms;
  for (int r = 0; r < reps + 3; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    double norm = 0;
    if (api->train_zero_grad(th, err, sizeof err) != 0 ||
        api->train_forward(th, logits.data(), S.recycled ? hidden.data() : nullptr, nullptr, tb.ids.data(), tb.pos.data(),
                           types_or_null, tb.mask.data(), tb.B, tb.T, 1, (uint64_t)r, err, sizeof err) != 0)
      fail("timed train_forward (" + mode + "): " + err);
    mean_cross_entropy(logits, dlogits, labels, tb.B, labels_n);
    if (api->train_backward(th, dlogits.data(), err, sizeof err) != 0 ||
        api->train_adamw(th, &o, r + 1, &norm, err, sizeof err) != 0)
      fail("timed train step (" + mode + "): " + err);
    if (r >= 3) ms.push_back((float)std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  api->train_destroy(th);
  return median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) fail("usage: er_gpu_encoder DIR fp32|bf16|fp16 LAYERS REPS");
  const std::string dir = argv[1], prec = argv[2];
  const cu::DType in = prec == "bf16" ? cu::DType::BF16 : prec == "fp16" ? cu::DType::F16 : cu::DType::F32;
  if (prec != "fp32" && prec != "bf16" && prec != "fp16") fail("precision must be fp32, bf16 or fp16");
  const int reps = std::atoi(argv[4]);

  // weights
  std::vector<char> raw = read_file(dir + "/weights.bin");
  const float* W = (const float*)raw.data();
  const size_t total = raw.size() / 4;
  cu::HostEncoder h;
  int64_t task_k = -1, task_labels = 0, task_size = 0;
  std::vector<std::pair<std::string, int64_t>> train_lines;
  int64_t train_time_k = -1;  // "train-time <k>": time training steps of full, reduced and reduced-adapters
  std::map<std::string, const float*> slots;
  std::ifstream mf(dir + "/manifest.txt");
  if (!mf) fail("cannot read " + dir + "/manifest.txt");
  std::string line;
  while (std::getline(mf, line)) {
    std::istringstream s(line);
    std::string kind;
    s >> kind;
    if (kind == "config") {
      er::EncoderConfig& c = h.cfg;
      s >> c.vocab >> c.hidden >> c.layers >> c.heads >> c.intermediate >> c.max_positions >> c.type_vocab >> c.eps;
      if (!(s >> c.rel_buckets)) c.rel_buckets = 0;  // MPNet: the buckets of its relative position bias
    } else if (kind == "task") {
      s >> task_labels >> task_size >> task_k;
    } else if (kind == "train") {
      std::string mode;
      int64_t k = 0;
      s >> mode >> k;
      train_lines.push_back({mode, k});
    } else if (kind == "train-time") {
      s >> train_time_k;
    } else if (kind == "tensor") {
      std::string slot;
      size_t off = 0, count = 0;
      s >> slot >> off >> count;
      if (off + count > total) fail("tensor " + slot + " runs past weights.bin");
      slots[slot] = W + off;
    }
  }
  auto get = [&](const std::string& slot) -> const float* {
    auto it = slots.find(slot);
    if (it == slots.end()) fail("manifest has no tensor " + slot);
    return it->second;
  };
  const er::EncoderConfig& c = h.cfg;
  h.emb.word = get("embeddings.word");
  h.emb.position = get("embeddings.position");
  h.emb.token_type = c.type_vocab > 0 ? get("embeddings.token_type") : nullptr;
  h.emb.ln_w = get("embeddings.ln.weight");
  h.emb.ln_b = get("embeddings.ln.bias");
  h.rel_bias = c.rel_buckets > 0 ? get("encoder.rel_bias") : nullptr;
  for (int64_t l = 0; l < c.layers; l++) {
    const std::string p = "layer." + std::to_string(l) + ".";
    er::LayerWeights L{};
    L.q_w = get(p + "attn.q.weight"); L.q_b = get(p + "attn.q.bias");
    L.k_w = get(p + "attn.k.weight"); L.k_b = get(p + "attn.k.bias");
    L.v_w = get(p + "attn.v.weight"); L.v_b = get(p + "attn.v.bias");
    L.o_w = get(p + "attn.out.weight"); L.o_b = get(p + "attn.out.bias");
    L.ln1_w = get(p + "attn.ln.weight"); L.ln1_b = get(p + "attn.ln.bias");
    L.ffn_in_w = get(p + "ffn.in.weight"); L.ffn_in_b = get(p + "ffn.in.bias");
    L.ffn_out_w = get(p + "ffn.out.weight"); L.ffn_out_b = get(p + "ffn.out.bias");
    L.ln2_w = get(p + "ffn.ln.weight"); L.ln2_b = get(p + "ffn.ln.bias");
    h.layer.push_back(L);
  }
  // parity: the requested layers of the parity batch, through the host API (the backend's
  // table when ER_CUDA_BACKEND names it)
  Batch pb = read_batch(dir + "/parity.bin");
  std::vector<float> out((size_t)pb.B * pb.T * c.hidden);
  const char* backend_path = std::getenv("ER_CUDA_BACKEND");
  const ErCudaBackend* api = nullptr;
  void* handle = nullptr;
  char err[2048] = {0};
  if (backend_path && *backend_path) {
    void* lib = dlopen(backend_path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) fail(std::string("dlopen ") + backend_path + ": " + dlerror());
    auto entry = (ErCudaBackendEntry)dlsym(lib, "er_cuda_backend");
    api = entry ? entry() : nullptr;
    if (!api || api->abi != ER_CUDA_BACKEND_ABI || api->host_encoder_bytes != sizeof(cu::HostEncoder))
      fail(std::string(backend_path) + ": not a backend of this build");
    char devs[4096] = {0};
    if (api->devices(devs, sizeof devs) <= 0) fail(std::string("backend devices(): ") + devs);
    std::fprintf(stderr, "parity through %s (CUDA %s runtime): %s", backend_path, api->runtime_version(), devs);
    if (api->create(&h, (int32_t)in, 0, &handle, err, sizeof err) != 0) fail(std::string("backend create: ") + err);
  }
  std::unique_ptr<cu::CudaEncoder> enc;
  double train_full_ms = 0, train_reduced_ms = 0, train_ra_ms = 0, train_full_bf16_ms = 0, train_reduced_bf16_ms = 0;
  if (!api) check(cu::CudaEncoder::create(h, in, 0, &enc), "loading the encoder");
  std::stringstream layers(argv[3]);
  std::string item;
  while (std::getline(layers, item, ',')) {
    const int64_t l = std::stoll(item);
    const int32_t* types_or_null = h.emb.token_type ? pb.types.data() : nullptr;
    if (api) {
      if (api->forward(handle, out.data(), pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B, pb.T, l, err,
                       sizeof err) != 0)
        fail(std::string("backend forward: ") + err);
    } else {
      check(enc->forward(out.data(), pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B, pb.T, l),
            "parity forward");
    }
    std::ofstream f(dir + "/out-" + prec + "-" + item + ".bin", std::ios::binary);
    f.write((const char*)out.data(), out.size() * 4);
  }
  if (api) {
    // forward from the middle layer through the table equals the whole forward
    const int64_t k = c.layers / 2;
    std::vector<float> mid(out.size()), whole(out.size()), rest(out.size());
    const int32_t* types_or_null = h.emb.token_type ? pb.types.data() : nullptr;
    if (api->forward(handle, mid.data(), pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B, pb.T, k, err,
                     sizeof err) != 0 ||
        api->forward(handle, whole.data(), pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B, pb.T,
                     c.layers, err, sizeof err) != 0 ||
        api->forward_from(handle, rest.data(), mid.data(), pb.mask.data(), pb.B, pb.T, k, c.layers, err, sizeof err) != 0)
      fail(std::string("backend forward_from: ") + err);
    double worst = 0;
    for (size_t i = 0; i < whole.size(); i++)
      if (pb.mask[i / c.hidden]) worst = std::max(worst, (double)std::fabs(whole[i] - rest[i]));
    std::fprintf(stderr, "backend forward_from(layer %lld) vs forward: max abs difference %.3g\n", (long long)k, worst);
    if (worst > 1e-5) fail("forward_from through the backend differs from forward");
    if (task_k >= 0) {
      // the same encoder with adapters above layer k and a sequence head, through the table
      cu::HostEncoder t = h;
      t.task.head = 0;
      t.task.labels = task_labels;
      t.task.adapter_size = task_size;
      t.task.adapter_act = 0;
      t.task.head_w = get("head.weight");
      t.task.head_b = get("head.bias");
      t.task.adapters.assign((size_t)(2 * c.layers), cu::HostAdapter{});
      for (int64_t l = task_k; l < c.layers; l++)
        for (int site = 0; site < 2; site++) {
          const std::string p = "layer." + std::to_string(l) + ".adapter." + (site ? "ffn" : "attn") + ".";
          t.task.adapters[(size_t)(2 * l + site)] = {get(p + "down.weight"), get(p + "down.bias"), get(p + "up.weight"),
                                                     get(p + "up.bias")};
        }
      void* th = nullptr;
      if (api->create(&t, (int32_t)in, 0, &th, err, sizeof err) != 0) fail(std::string("backend create (task): ") + err);
      std::vector<float> logits((size_t)pb.B * t.task.labels), hk(out.size());
      if (api->task_forward(th, logits.data(), nullptr, nullptr, pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B,
                            pb.T, 0, err, sizeof err) != 0)
        fail(std::string("backend task_forward (ids): ") + err);
      std::ofstream(dir + "/out-" + prec + "-task-ids.bin", std::ios::binary)
          .write((const char*)logits.data(), logits.size() * 4);
      if (api->forward(th, hk.data(), pb.ids.data(), pb.pos.data(), types_or_null, pb.mask.data(), pb.B, pb.T, task_k, err,
                       sizeof err) != 0 ||
          api->task_forward(th, logits.data(), hk.data(), nullptr, nullptr, nullptr, nullptr, pb.mask.data(), pb.B, pb.T, task_k,
                            err, sizeof err) != 0)
        fail(std::string("backend task_forward (layer k): ") + err);
      std::ofstream(dir + "/out-" + prec + "-task-k.bin", std::ios::binary)
          .write((const char*)logits.data(), logits.size() * 4);
      api->destroy(th);
    }
    if (!train_lines.empty() && prec == "fp32") {
      std::vector<char> lb = read_file(dir + "/labels.bin");
      std::vector<int32_t> labels(lb.size() / 4);
      std::memcpy(labels.data(), lb.data(), labels.size() * 4);
      if ((int64_t)labels.size() != pb.B) fail("labels.bin does not hold one label per parity row");
      for (const auto& [mode, k] : train_lines)
        train_check(api, handle, h, get, pb, labels, mode, k, task_labels, task_size, dir);
    }
    if (train_time_k >= 0 && prec == "fp32") {
      Batch tb = read_batch(dir + "/timing.bin");
      const struct {
        const char* mode;
        bool bf16;
        double* ms;
      } modes[] = {{"full", false, &train_full_ms},          {"reduced", false, &train_reduced_ms},
                   {"reduced-adapters", false, &train_ra_ms}, {"full", true, &train_full_bf16_ms},
                   {"reduced", true, &train_reduced_bf16_ms}};
      for (const auto& m : modes) {
        *m.ms = train_time(api, handle, h, get, tb, m.mode, train_time_k, task_labels, task_size, std::max(reps / 5, 5), m.bf16);
        std::fprintf(stderr, "train step %s%s (k = %lld) on %d x %d: %.3f ms\n", m.mode, m.bf16 ? " bf16" : "",
                     (long long)train_time_k, tb.B, tb.T, *m.ms);
      }
    }
    api->destroy(handle);
    check(cu::CudaEncoder::create(h, in, 0, &enc), "loading the encoder for the timing");
  }

  // timing: inputs already on the GPU, as a serving loop holds them
  Batch tb = read_batch(dir + "/timing.bin");
  int32_t *ids = to_device(tb.ids), *pos = to_device(tb.pos), *types = to_device(tb.types), *mask = to_device(tb.mask);
  float *hid = nullptr, *mid = nullptr;
  const size_t bytes = (size_t)tb.B * tb.T * c.hidden * 4;
  check(cu::error_text(cudaMalloc(&hid, bytes), "cudaMalloc"), "timing buffers");
  check(cu::error_text(cudaMalloc(&mid, bytes), "cudaMalloc"), "timing buffers");
  const int64_t k = c.layers / 2;
  const int32_t* tt = h.emb.token_type ? types : nullptr;
  check(enc->forward_device(mid, ids, pos, tt, mask, tb.B, tb.T, k), "the layer-k states");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto time = [&](bool suffix) {
    std::vector<float> ms;
    for (int r = 0; r < reps + 10; r++) {
      cudaEventRecord(e0, enc->stream());
      check(suffix ? enc->forward_from_device(hid, mid, mask, tb.B, tb.T, k, c.layers)
                   : enc->forward_device(hid, ids, pos, tt, mask, tb.B, tb.T, c.layers),
            "timed forward");
      cudaEventRecord(e1, enc->stream());
      check(cu::check_stream(enc->stream(), "timed forward"), "timed forward");
      float t = 0;
      cudaEventElapsedTime(&t, e0, e1);
      if (r >= 10) ms.push_back(t);  // the first runs warm up (plans, clocks)
    }
    return median(ms);
  };
  const double full = time(false), suffix = time(true);

  // Recycled inference as users run it: layer k's states of 16 batches as fp16 host records
  // (as an fp16 store holds them), through the pinned ring and the copy stream, against the
  // plain encoder from token ids in host memory (copies in and out included, as forward()).
  const int nb = 16;
  const size_t elems = (size_t)tb.B * tb.T * c.hidden;
  std::vector<uint16_t> one(elems);
  {
    uint16_t* d16 = nullptr;
    check(cu::error_text(cudaMalloc(&d16, elems * 2), "cudaMalloc"), "fp16 records");
    check(cu::f32_to_f16(d16, mid, (int64_t)elems, enc->stream()), "fp16 records");
    check(cu::check_stream(enc->stream(), "fp16 records"), "fp16 records");
    check(cu::error_text(cudaMemcpy(one.data(), d16, elems * 2, cudaMemcpyDeviceToHost), "download"), "fp16 records");
    cudaFree(d16);
  }
  // batch i holds the timing batch's rows rotated by i (row r is row (r + i) % B), so each
  // batch's output is known and a slot mix-up shows; distinct buffers: no cache-hot copies
  const size_t row = (size_t)tb.T * c.hidden;
  std::vector<std::vector<uint16_t>> records(nb, std::vector<uint16_t>(elems));
  for (int i = 0; i < nb; i++)
    for (int r = 0; r < tb.B; r++)
      std::memcpy(records[i].data() + r * row, one.data() + ((r + i) % tb.B) * row, row * 2);
  std::vector<std::vector<float>> outs(nb, std::vector<float>(elems));
  std::vector<const uint16_t*> rec_ptrs;
  std::vector<const int32_t*> mask_ptrs;
  std::vector<float*> out_ptrs;
  for (int i = 0; i < nb; i++) {
    rec_ptrs.push_back(records[i].data());
    mask_ptrs.push_back(tb.mask.data());
    out_ptrs.push_back(outs[i].data());
  }
  cu::CudaEncoder::PipelineStats st;
  std::vector<float> piped, serial, serial_copy, copies, plain;
  for (int r = 0; r < 8; r++) {
    check(enc->forward_from_f16_batches(nb, rec_ptrs.data(), mask_ptrs.data(), tb.B, tb.T, k, c.layers, out_ptrs.data(), &st),
          "pipelined fp16 batches");
    if (r >= 2) piped.push_back((float)st.total_ms), copies.push_back((float)st.copy_ms);
    double s_total = 0, s_copy = 0;
    for (int i = 0; i < nb; i++) {  // one batch per call: nothing overlaps
      check(enc->forward_from_f16_batches(1, &rec_ptrs[i], &mask_ptrs[i], tb.B, tb.T, k, c.layers, &out_ptrs[i], &st),
            "serial fp16 batches");
      s_total += st.total_ms;
      s_copy += st.copy_ms;
    }
    if (r >= 2) serial.push_back((float)s_total), serial_copy.push_back((float)s_copy);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < nb; i++)
      check(enc->forward(out_ptrs[i], tb.ids.data(), tb.pos.data(), h.emb.token_type ? tb.types.data() : nullptr,
                         tb.mask.data(), tb.B, tb.T, c.layers),
            "plain forward");
    if (r >= 2) plain.push_back((float)std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  // the pipelined output equals layer N of a plain forward on real tokens (fp16 rounding of layer k aside)
  double worst = 0, scale = 0;
  std::vector<float> want(elems);
  check(enc->forward(want.data(), tb.ids.data(), tb.pos.data(), h.emb.token_type ? tb.types.data() : nullptr,
                     tb.mask.data(), tb.B, tb.T, c.layers), "reference forward");
  check(enc->forward_from_f16_batches(nb, rec_ptrs.data(), mask_ptrs.data(), tb.B, tb.T, k, c.layers, out_ptrs.data(), &st),
        "pipelined fp16 batches");
  for (int b = 0; b < nb; b++)
    for (int r = 0; r < tb.B; r++)
      for (size_t j = 0; j < row; j++) {
        const size_t src = ((r + b) % tb.B) * row + j;
        if (!tb.mask[src / c.hidden]) continue;
        worst = std::max(worst, (double)std::fabs(outs[b][r * row + j] - want[src]));
        scale = std::max(scale, (double)std::fabs(want[src]));
      }
  if (worst > 0.05 * scale) fail("the pipelined fp16 batches do not match the plain forward (a ring slot mixed up?)");
  const double p_ms = median(piped), s_ms = median(serial), sc_ms = median(serial_copy), c_ms = median(copies);
  // copy time the pipeline leaves exposed: its wall time beyond the serial run's non-copy work
  const double exposed = std::max(0.0, p_ms - (s_ms - sc_ms));
  std::printf("{\"precision\": \"%s\", \"B\": %d, \"T\": %d, \"k\": %lld, \"fullMs\": %.4f, \"suffixMs\": %.4f, "
              "\"weightBytes\": %llu, \"bufferBytes\": %llu, \"batches\": %d, \"plainHostMs\": %.4f, "
              "\"recycledF16Ms\": %.4f, \"serialF16Ms\": %.4f, \"copyMs\": %.4f, \"copyHidden\": %.4f, "
              "\"recycledRelErr\": %.3g, \"trainFullMs\": %.4f, \"trainReducedMs\": %.4f, "
              "\"trainReducedAdaptersMs\": %.4f, \"trainFullBf16Ms\": %.4f, \"trainReducedBf16Ms\": %.4f}\n",
              prec.c_str(), tb.B, tb.T, (long long)k, full, suffix, (unsigned long long)enc->weight_bytes(),
              (unsigned long long)enc->buffer_bytes(), nb, median(plain) / nb, p_ms / nb, s_ms / nb, c_ms / nb,
              c_ms > 0 ? 1.0 - exposed / c_ms : 0.0, worst / std::max(scale, 1e-30), train_full_ms, train_reduced_ms,
              train_ra_ms, train_full_bf16_ms, train_reduced_bf16_ms);
  return 0;
}
