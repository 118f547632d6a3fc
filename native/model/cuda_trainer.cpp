#include "model/cuda_trainer.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/nvtx.h"
#include "kernels/rng.h"
#include "model/cuda_encoder.h"

namespace er {
namespace cuda {

CudaTrainer::~CudaTrainer() {
  if (stream_) cudaStreamSynchronize(stream_);
  blas_.reset();
  for (void* p : buffers_) cudaFree(p);
  for (void* p : allocations_) cudaFree(p);
  if (rel_dev_) cudaFree(rel_dev_);
  if (drel_dev_) cudaFree(drel_dev_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaTrainer::malloc_dev(void** p, size_t bytes, const char* what, bool weight) {
  *p = nullptr;
  if (bytes == 0) return "";
  cudaError_t e = cudaMalloc(p, bytes);
  if (e != cudaSuccess)
    return alloc_error(e, bytes, what, "use a smaller batch or sequence length, train fewer layers (a larger k), or --device cpu");
  (weight ? allocations_ : buffers_).push_back(*p);
  (weight ? weight_bytes_ : buffer_bytes_) += bytes;
  return "";
}

// copies ordered on the trainer's stream, waited for (the host arrays may change right after)
static std::string copy_sync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s,
                             const char* what) {
  if (bytes == 0) return "";
  std::string err = error_text(cudaMemcpyAsync(dst, src, bytes, kind, s), what);
  return err.empty() ? check_stream(s, what) : err;
}

std::string CudaTrainer::place(W* out, const float* src, size_t n, const char* what) {
  *out = W{};
  if (!src) return std::string(what) + " was not given";
  for (Run& r : runs_) {
    const float* end = r.host + r.n;
    if (src >= r.host && src + n <= end) {
      const int64_t off = src - r.host;
      out->w = r.w + off;
      out->g = r.g + off;
      for (size_t i = r.first; i < r.first + r.count; i++)  // the tensors it covers are trained
        if (params_[i].host.data < src + n && src < params_[i].host.data + params_[i].host.n) params_[i].used = true;
      return "";
    }
    if (src < end && r.host < src + n)
      return std::string(what) + " lies partly inside the task model's trainable tensors (an internal layout error)";
  }
  void* p = nullptr;
  std::string err = malloc_dev(&p, n * 4, what, true);
  if (err.empty()) err = copy_sync(p, src, n * 4, cudaMemcpyHostToDevice, stream_, what);
  out->w = (float*)p;
  return err;
}

std::string CudaTrainer::matrix(W* out, const float* src, size_t n, const char* what) {
  std::string err = place(out, src, n, what);
  if (!err.empty() || !bf16_) return err;
  err = malloc_dev((void**)&out->w16, n * 2, what, true);
  if (err.empty()) err = f32_to_bf16(out->w16, out->w, (int64_t)n, stream_);
  if (err.empty() && out->g) shadows_.push_back({out->w, out->w16, n});
  return err;
}

std::string CudaTrainer::refresh_bf16() {
  std::string err;
  for (const Shadow& sh : shadows_)
    if (err.empty()) err = f32_to_bf16(sh.w16, sh.w, (int64_t)sh.n, stream_);
  return err;
}

std::string CudaTrainer::create(const HostEncoder& h, const HostTrain& train, int device,
                                std::unique_ptr<CudaTrainer>* out) {
  std::string bad = check_host(h, device, "GPU trainer");
  if (!bad.empty()) return bad;
  const EncoderConfig& c = h.cfg;
  const HostTask& task = h.task;
  if (task.head < 0) return "the GPU trainer needs a task head";
  if (train.first < 0 || train.first > c.layers)
    return "the first trained layer " + std::to_string(train.first) + " is out of range 0.." + std::to_string(c.layers);
  for (const HostParam& p : train.params)
    if (!p.data || p.n <= 0) return "a trainable tensor of the task model is empty";
  if (train.precision != (int32_t)BackendPrecision::F32 && train.precision != (int32_t)BackendPrecision::BF16)
    return "the GPU trainer runs in fp32 or bf16";
  std::unique_ptr<CudaTrainer> t(new CudaTrainer);
  t->cfg_ = c;
  t->spec_ = train;
  t->bf16_ = train.precision == (int32_t)BackendPrecision::BF16;
  t->device_ = device;
  std::string err = error_text(cudaSetDevice(device), "cudaSetDevice");
  if (err.empty()) err = error_text(cudaStreamCreateWithFlags(&t->stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  if (err.empty()) err = Blas::create(t->stream_, &t->blas_);
  if (!err.empty()) return err;
  // the trainable tensors, in runs of adjacent host memory (a layer's Q, K and V are three
  // tensors of one stacked array): one GPU allocation per run, of values, zeroed gradients
  // and moments, each tensor a view into it
  std::vector<HostParam> sorted = train.params;
  std::sort(sorted.begin(), sorted.end(), [](const HostParam& a, const HostParam& b) { return a.data < b.data; });
  for (size_t i = 0; i < sorted.size(); i++)
    if (i > 0 && sorted[i].data < sorted[i - 1].data + sorted[i - 1].n) return "two trainable tensors of the task model overlap";
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j].data == sorted[j - 1].data + sorted[j - 1].n) j++;
    Run r;
    r.host = sorted[i].data;
    r.n = sorted[j - 1].data + sorted[j - 1].n - r.host;
    r.first = i;
    r.count = j - i;
    const size_t bytes = (size_t)r.n * 4;
    err = t->malloc_dev((void**)&r.w, bytes, "the trainable tensors", true);
    if (err.empty()) err = t->malloc_dev((void**)&r.g, bytes, "their gradients", true);
    if (err.empty()) err = t->malloc_dev((void**)&r.m, bytes, "AdamW's first moments", true);
    if (err.empty()) err = t->malloc_dev((void**)&r.v, bytes, "AdamW's second moments", true);
    if (err.empty()) err = copy_sync(r.w, r.host, bytes, cudaMemcpyHostToDevice, t->stream_, "uploading the trainable tensors");
    for (float* z : {r.g, r.m, r.v})
      if (err.empty()) err = error_text(cudaMemsetAsync(z, 0, bytes, t->stream_), "zeroing a gradient");
    if (!err.empty()) return err;
    for (size_t k = i; k < j; k++) {
      Dev d;
      d.host = sorted[k];
      const int64_t off = sorted[k].data - r.host;
      d.w = r.w + off;
      d.g = r.g + off;
      d.m = r.m + off;
      d.v = r.v + off;
      t->params_.push_back(d);
    }
    t->runs_.push_back(r);
    i = j;
  }
  const int64_t H = c.hidden, I = c.intermediate;
  err = t->place(&t->word_, h.emb.word, (size_t)(c.vocab * H), "the word embeddings");
  if (err.empty() && h.emb.position)
    err = t->place(&t->position_, h.emb.position, (size_t)(c.max_positions * H), "the position embeddings");
  if (err.empty() && h.emb.token_type && c.type_vocab > 0)
    err = t->place(&t->type_, h.emb.token_type, (size_t)(c.type_vocab * H), "the token-type embeddings");
  if (err.empty()) err = t->place(&t->emb_ln_w_, h.emb.ln_w, (size_t)H, "the embedding LayerNorm");
  if (err.empty()) err = t->place(&t->emb_ln_b_, h.emb.ln_b, (size_t)H, "the embedding LayerNorm");
  if (!err.empty()) return err;
  t->train_embeddings_ = t->word_.g != nullptr;
  if (t->train_embeddings_ && (train.first != 0 || train.recycled))
    return "the embeddings train only when every layer is in the graph (mode full)";
  auto trainable = [&](const float* p) {
    for (const Run& r : t->runs_)
      if (p >= r.host && p < r.host + r.n) return true;
    return false;
  };
  std::vector<float> stacked_w((size_t)(3 * H * H)), stacked_b((size_t)(3 * H));
  for (size_t l = 0; err.empty() && l < h.layer.size(); l++) {
    const LayerWeights& w = h.layer[l];
    Layer L;
    if (trainable(w.q_w)) {  // a trained layer holds Q, K, V stacked in one tensor
      if (w.k_w != w.q_w + H * H || w.v_w != w.q_w + 2 * H * H || w.k_b != w.q_b + H || w.v_b != w.q_b + 2 * H)
        return "layer " + std::to_string(l + 1) + "'s trainable Q, K, V are not stacked in one tensor";
      err = t->matrix(&L.qkv_w, w.q_w, (size_t)(3 * H * H), "a layer's Q, K, V");
      if (err.empty()) err = t->place(&L.qkv_b, w.q_b, (size_t)(3 * H), "a layer's Q, K, V bias");
    } else {
      const float* qw[3] = {w.q_w, w.k_w, w.v_w};
      const float* qb[3] = {w.q_b, w.k_b, w.v_b};
      for (int j = 0; j < 3; j++) {
        std::memcpy(stacked_w.data() + j * H * H, qw[j], H * H * sizeof(float));
        std::memcpy(stacked_b.data() + j * H, qb[j], H * sizeof(float));
      }
      err = t->matrix(&L.qkv_w, stacked_w.data(), stacked_w.size(), "a layer's Q, K, V");
      if (err.empty()) err = t->place(&L.qkv_b, stacked_b.data(), stacked_b.size(), "a layer's Q, K, V bias");
    }
    if (err.empty()) err = t->matrix(&L.o_w, w.o_w, (size_t)(H * H), "a layer's attention output");
    if (err.empty()) err = t->place(&L.o_b, w.o_b, (size_t)H, "a layer's attention output bias");
    if (err.empty()) err = t->place(&L.ln1_w, w.ln1_w, (size_t)H, "a layer's LayerNorm");
    if (err.empty()) err = t->place(&L.ln1_b, w.ln1_b, (size_t)H, "a layer's LayerNorm");
    if (err.empty()) err = t->matrix(&L.f1_w, w.ffn_in_w, (size_t)(I * H), "a layer's FFN");
    if (err.empty()) err = t->place(&L.f1_b, w.ffn_in_b, (size_t)I, "a layer's FFN bias");
    if (err.empty()) err = t->matrix(&L.f2_w, w.ffn_out_w, (size_t)(H * I), "a layer's FFN");
    if (err.empty()) err = t->place(&L.f2_b, w.ffn_out_b, (size_t)H, "a layer's FFN bias");
    if (err.empty()) err = t->place(&L.ln2_w, w.ln2_w, (size_t)H, "a layer's LayerNorm");
    if (err.empty()) err = t->place(&L.ln2_b, w.ln2_b, (size_t)H, "a layer's LayerNorm");
    const int64_t b = task.adapter_size;
    for (int site = 0; err.empty() && b > 0 && site < 2; site++) {
      const HostAdapter& a = task.adapters[2 * l + site];
      if (!a.dw) continue;
      if ((int64_t)l < train.first) return "an adapter below the first trained layer cannot run on the GPU trainer";
      err = t->matrix(&L.ad[site][0], a.dw, (size_t)(b * H), "an adapter");
      if (err.empty()) err = t->place(&L.ad[site][1], a.db, (size_t)b, "an adapter's bias");
      if (err.empty()) err = t->matrix(&L.ad[site][2], a.uw, (size_t)(H * b), "an adapter");
      if (err.empty()) err = t->place(&L.ad[site][3], a.ub, (size_t)H, "an adapter's bias");
    }
    t->layers_.push_back(L);
  }
  t->head_ = task.head;
  t->labels_ = task.labels;
  t->adapter_size_ = task.adapter_size;
  t->adapter_act_ = task.adapter_act;
  if (err.empty()) err = t->matrix(&t->head_w_, task.head_w, (size_t)(task.labels * H), "the task head");
  if (err.empty()) err = t->place(&t->head_b_, task.head_b, (size_t)task.labels, "the task head's bias");
  if (err.empty() && c.rel_buckets > 0) {
    const size_t n = (size_t)(c.rel_buckets * c.heads);
    err = t->place(&t->rel_, h.rel_bias, n, "MPNet's relative position bias");
    t->rel_table_.assign(h.rel_bias, h.rel_bias + n);
    t->rel_grad_host_.assign(n, 0.0f);
  }
  size_t unused = 0;
  for (const Dev& d : t->params_) unused += !d.used;
  if (err.empty() && unused > 0)
    err = std::to_string(unused) + " of the task model's trainable tensors are not weights the GPU trainer runs; use device 'cpu'";
  if (err.empty()) err = t->malloc_dev((void**)&t->norm_, sizeof(double), "the gradient norm", true);
  if (err.empty())
    err = t->malloc_dev((void**)&t->norm_parts_, kSumSquaresParts * sizeof(double), "the gradient norm", true);
  if (err.empty()) err = check_stream(t->stream_, "uploading the task model to the GPU");
  t->saved_layers_.resize((size_t)(c.layers - train.first));
  if (err.empty()) *out = std::move(t);
  return err;
}

std::string CudaTrainer::reserve(int64_t B, int64_t T) {
  const int64_t N = B * T, H = cfg_.hidden, I = cfg_.intermediate, S = B * cfg_.heads * T * T;
  if (N <= cap_tokens_ && S <= cap_scores_) return "";
  cudaStreamSynchronize(stream_);  // the old buffers may still be in use
  for (void* p : buffers_) cudaFree(p);
  buffers_.clear();
  buffer_bytes_ = 0;
  cap_tokens_ = cap_scores_ = 0;
  saved_ = false;
  const std::string what_s = "a training batch of " + std::to_string(B) + " x " + std::to_string(T) + " tokens";
  const char* what = what_s.c_str();
  const bool att_drop = spec_.attention_dropout > 0, hid_drop = spec_.hidden_dropout > 0;
  std::string err;
  auto f = [&](float** p, int64_t n) {
    if (err.empty()) err = malloc_dev((void**)p, (size_t)n * 4, what, false);
  };
  auto u8 = [&](uint8_t** p, int64_t n) {
    if (err.empty()) err = malloc_dev((void**)p, (size_t)n, what, false);
  };
  auto saved = [&](Saved& s, int64_t l) {
    f(&s.x, N * H);
    f(&s.qkv, 3 * N * H);
    f(&s.probs, S);
    if (att_drop) f(&s.pdrop, S), u8(&s.mask_p, S);
    f(&s.ctx, N * H);
    f(&s.a, N * H);
    f(&s.s1, N * H);
    f(&s.mean1, N);
    f(&s.rstd1, N);
    f(&s.y1, N * H);
    f(&s.ffpre, N * I);
    f(&s.ffact, N * I);
    f(&s.f, N * H);
    f(&s.s2, N * H);
    f(&s.mean2, N);
    f(&s.rstd2, N);
    if (hid_drop) u8(&s.mask_a, N * H), u8(&s.mask_f, N * H);
    for (int site = 0; site < 2; site++)
      if (l >= 0 && layers_[(size_t)l].ad[site][0].w) f(&s.ad_pre[site], N * adapter_size_), f(&s.ad_act[site], N * adapter_size_);
  };
  for (size_t i = 0; i < saved_layers_.size(); i++) saved(saved_layers_[i], spec_.first + (int64_t)i);
  if (spec_.first > 0) saved(scratch_, -1);  // the prefix (from token ids): no adapters there
  f(&top_, N * H);
  if (spec_.first == 0) {
    f(&emb_s_, N * H);
    f(&emb_mean_, N);
    f(&emb_rstd_, N);
    if (hid_drop) u8(&emb_mask_, N * H);
  }
  f(&head_in_, N * H);
  if (spec_.head_dropout > 0) u8(&head_mask_, N * H);
  f(&logits_, N * labels_);
  f(&dlogits_, N * labels_);
  f(&dhead_in_, N * H);
  f(&dA_, N * H);
  f(&dB_, N * H);
  f(&dC_, N * H);
  f(&dff_, N * I);
  f(&dqkv_, 3 * N * H);
  f(&dP_, S);
  f(&tmp_, N * H);
  if (adapter_size_ > 0) f(&dad_, N * adapter_size_);
  if (bf16_ && err.empty()) {  // the widest GEMM input: (N, 3H), (N, I), (N, adapter) or the logits' (N, labels)
    const int64_t wide = std::max(std::max(3 * H, I), std::max(adapter_size_, labels_));
    err = malloc_dev((void**)&x16_, (size_t)(N * wide) * 2, what, false);
    if (err.empty()) err = malloc_dev((void**)&d16_, (size_t)(N * wide) * 2, what, false);
  }
  if (spec_.recycled && err.empty()) err = malloc_dev((void**)&h16_, (size_t)(N * H) * 2, what, false);
  for (int32_t** p : {&ids_, &pos_, &types_, &mask_})
    if (err.empty()) err = malloc_dev((void**)p, (size_t)N * 4, what, false);
  if (!err.empty()) return err;
  cap_tokens_ = N;
  cap_scores_ = S;
  return "";
}

std::string CudaTrainer::relative_bias_for(int64_t T) {
  if (T == rel_T_) return "";
  const size_t n = (size_t)(cfg_.heads * (2 * T - 1));
  cudaStreamSynchronize(stream_);  // the old bias may still be read
  if (rel_dev_) cudaFree(rel_dev_);
  if (drel_dev_) cudaFree(drel_dev_);
  rel_dev_ = drel_dev_ = nullptr;
  rel_T_ = 0;
  cudaError_t e = cudaMalloc(&rel_dev_, n * 4);
  if (e == cudaSuccess) e = cudaMalloc(&drel_dev_, n * 4);
  if (e != cudaSuccess) return alloc_error(e, n * 8, "MPNet's relative position bias");
  relative_bias(cfg_, rel_table_.data(), T, rel_host_);
  std::string err = copy_sync(rel_dev_, rel_host_.data(), n * 4, cudaMemcpyHostToDevice, stream_,
                              "copying MPNet's relative position bias");
  rel_T_ = err.empty() ? T : 0;
  return err;
}

std::string CudaTrainer::linear(float* out, const float* x, const W& w, const W& b, int64_t N, int64_t C,
                                int64_t OC) {
  // the frozen prefix runs in fp32, as the CPU trainer runs it through the (fp32) encoder
  if (!bf16_ || prefix_) return blas_->gemm(false, true, N, OC, C, 1.0f, x, C, w.w, C, 0.0f, out, OC, b.w, DType::F32);
  std::string err = f32_to_bf16(x16_, x, N * C, stream_);
  if (err.empty()) err = blas_->gemm(false, true, N, OC, C, 1.0f, x16_, C, w.w16, C, 0.0f, out, OC, b.w, DType::BF16);
  return err;
}

std::string CudaTrainer::linear_backward(float* dx, const float* dy, const float* x, const W& w, const W& b,
                                         int64_t N, int64_t C, int64_t OC, bool accumulate) {
  std::string err;
  const float beta = accumulate ? 1.0f : 0.0f;
  if (!bf16_) {
    if (w.g) err = blas_->gemm(true, false, OC, C, N, 1.0f, dy, OC, x, C, 1.0f, w.g, C, nullptr, DType::F32);
    if (err.empty() && b.g) err = bias_backward(b.g, dy, N, OC, stream_);
    if (err.empty() && dx) err = blas_->gemm(false, false, N, C, OC, 1.0f, dy, OC, w.w, C, beta, dx, C, nullptr, DType::F32);
    return err;
  }
  // bf16: dy, x and the weight rounded to bf16 on the way in, fp32 accumulation
  if (w.g || dx) err = f32_to_bf16(d16_, dy, N * OC, stream_);
  if (err.empty() && w.g) err = f32_to_bf16(x16_, x, N * C, stream_);
  if (err.empty() && w.g) err = blas_->gemm(true, false, OC, C, N, 1.0f, d16_, OC, x16_, C, 1.0f, w.g, C, nullptr, DType::BF16);
  if (err.empty() && b.g) err = bias_backward(b.g, dy, N, OC, stream_);
  if (err.empty() && dx) err = blas_->gemm(false, false, N, C, OC, 1.0f, d16_, OC, w.w16, C, beta, dx, C, nullptr, DType::BF16);
  return err;
}

std::string CudaTrainer::dropout(float* x, uint8_t* mask, int64_t n, float p, uint64_t site) {
  if (p <= 0) return "";
  return dropout_forward(x, mask, x, n, p, spec_.seed, dropout_stream(step_, site, 0), stream_);
}

std::string CudaTrainer::layer_forward(const Layer& L, Saved& s, float* out, int64_t l) {
  const int64_t B = B_, T = T_, N = B * T, H = cfg_.hidden, I = cfg_.intermediate, heads = cfg_.heads;
  const int64_t d = H / heads, TT = T * T, b = adapter_size_;
  const float scale = 1.0f / std::sqrt((float)d);
  const bool in_graph = l >= spec_.first;  // the prefix runs without dropout
  const float p_att = in_graph ? p_att_ : 0.0f, p_hid = in_graph ? p_hid_ : 0.0f;
  const uint64_t site = dropout_layer_site(l);
  NvtxRange range("layer " + std::to_string(l + 1) + " forward (training)");
  std::string err = linear(s.qkv, s.x, L.qkv_w, L.qkv_b, N, H, 3 * H);
  for (int64_t r = 0; err.empty() && r < B; r++) {
    const float* q = s.qkv + r * T * 3 * H;
    err = blas_->gemm_batched(false, true, T, T, d, scale, q, 3 * H, d, q + H, 3 * H, d, 0.0f,
                              s.probs + r * heads * TT, T, TT, heads);
  }
  if (err.empty() && rel_.w) err = add_relative_bias(s.probs, rel_dev_, B, heads, T, stream_);
  if (err.empty()) err = softmax_masked_batched(s.probs, mask_, 1.0f, B, heads * T, T, stream_);
  const float* P = s.probs;
  if (err.empty() && p_att > 0) {
    err = dropout_forward(s.pdrop, s.mask_p, s.probs, B * heads * TT, p_att, spec_.seed, dropout_stream(step_, site, 0), stream_);
    P = s.pdrop;
  }
  for (int64_t r = 0; err.empty() && r < B; r++) {
    const float* v = s.qkv + r * T * 3 * H + 2 * H;
    err = blas_->gemm_batched(false, false, T, d, T, 1.0f, P + r * heads * TT, T, TT, v, 3 * H, d, 0.0f,
                              s.ctx + r * T * H, H, d, heads);
  }
  // a sublayer's output o, then s = o + adapter(o) + residual, then y = LN(s)
  auto sublayer_end = [&](float* o, uint8_t* mask, uint64_t drop_site, int ad, float* sum, const float* residual,
                          float* mean, float* rstd, const W& ln_w, const W& ln_b, float* y) {
    std::string e = p_hid > 0 ? dropout_forward(o, mask, o, N * H, p_hid, spec_.seed, dropout_stream(step_, drop_site, 0), stream_)
                              : std::string();
    if (e.empty())
      e = error_text(cudaMemcpyAsync(sum, o, (size_t)(N * H) * 4, cudaMemcpyDeviceToDevice, stream_), "a residual");
    if (e.empty() && L.ad[ad][0].w) {
      e = linear(s.ad_pre[ad], o, L.ad[ad][0], L.ad[ad][1], N, H, b);
      if (e.empty())
        e = adapter_act_ == 1 ? relu_forward(s.ad_act[ad], s.ad_pre[ad], N * b, stream_)
                              : bias_gelu_forward(s.ad_act[ad], s.ad_pre[ad], nullptr, N, b, stream_);
      if (e.empty()) e = linear(tmp_, s.ad_act[ad], L.ad[ad][2], L.ad[ad][3], N, b, H);
      if (e.empty()) e = add_into(sum, tmp_, N * H, stream_);
      if (!e.empty()) e += " (adapter)";
    }
    if (e.empty()) e = add_into(sum, residual, N * H, stream_);
    if (e.empty()) e = layernorm_forward(y, mean, rstd, sum, nullptr, ln_w.w, ln_b.w, N, H, cfg_.eps, stream_);
    return e;
  };
  if (err.empty()) err = linear(s.a, s.ctx, L.o_w, L.o_b, N, H, H);
  if (err.empty()) err = sublayer_end(s.a, s.mask_a, site + 1, 0, s.s1, s.x, s.mean1, s.rstd1, L.ln1_w, L.ln1_b, s.y1);
  if (err.empty()) err = linear(s.ffpre, s.y1, L.f1_w, L.f1_b, N, H, I);
  if (err.empty()) err = bias_gelu_forward(s.ffact, s.ffpre, nullptr, N, I, stream_);
  if (err.empty()) err = linear(s.f, s.ffact, L.f2_w, L.f2_b, N, I, H);
  if (err.empty()) err = sublayer_end(s.f, s.mask_f, site + 2, 1, s.s2, s.y1, s.mean2, s.rstd2, L.ln2_w, L.ln2_b, out);
  return err.empty() ? err : err + " in layer " + std::to_string(l + 1);
}

std::string CudaTrainer::layer_backward(const Layer& L, const Saved& s, float* d, bool need_dx, int64_t l) {
  const int64_t B = B_, T = T_, N = B * T, H = cfg_.hidden, I = cfg_.intermediate, heads = cfg_.heads;
  const int64_t dh = H / heads, TT = T * T, b = adapter_size_;
  const float scale = 1.0f / std::sqrt((float)dh);
  NvtxRange range("layer " + std::to_string(l + 1) + " backward");
  // in place on dout (N, H): dL/d(adapter output) -> dL/d(adapter input); o is its input
  auto adapter_back = [&](float* dout, const float* o, int ad) {
    if (!L.ad[ad][0].w) return std::string();
    std::string e = linear_backward(dad_, dout, s.ad_act[ad], L.ad[ad][2], L.ad[ad][3], N, b, H, false);
    if (e.empty())
      e = adapter_act_ == 1 ? relu_backward(dad_, s.ad_pre[ad], dad_, N * b, stream_)
                            : gelu_backward(dad_, s.ad_pre[ad], dad_, N * b, stream_);
    if (e.empty()) e = linear_backward(dout, dad_, o, L.ad[ad][0], L.ad[ad][1], N, H, b, true);
    return e.empty() ? e : e + " (adapter backward)";
  };
  const size_t NH = (size_t)(N * H) * 4;
  // LN2, the residual to y1, the FFN output's adapter and dropout
  std::string err = layernorm_backward(dB_, L.ln2_w.g, L.ln2_b.g, d, s.s2, L.ln2_w.w, s.mean2, s.rstd2, N, H, stream_);
  if (err.empty()) err = error_text(cudaMemcpyAsync(dC_, dB_, NH, cudaMemcpyDeviceToDevice, stream_), "a residual");
  if (err.empty()) err = adapter_back(dB_, s.f, 1);
  if (err.empty() && p_hid_ > 0) err = dropout_backward(dB_, s.mask_f, dB_, N * H, p_hid_, stream_);
  // the FFN
  if (err.empty()) err = linear_backward(dff_, dB_, s.ffact, L.f2_w, L.f2_b, N, I, H, false);
  if (err.empty()) err = gelu_backward(dff_, s.ffpre, dff_, N * I, stream_);
  if (err.empty()) err = linear_backward(dC_, dff_, s.y1, L.f1_w, L.f1_b, N, H, I, true);
  // LN1, the residual to x, the attention output's adapter and dropout
  if (err.empty()) err = layernorm_backward(dB_, L.ln1_w.g, L.ln1_b.g, dC_, s.s1, L.ln1_w.w, s.mean1, s.rstd1, N, H, stream_);
  if (err.empty() && need_dx) err = error_text(cudaMemcpyAsync(d, dB_, NH, cudaMemcpyDeviceToDevice, stream_), "a residual");
  if (err.empty()) err = adapter_back(dB_, s.a, 0);
  if (err.empty() && p_hid_ > 0) err = dropout_backward(dB_, s.mask_a, dB_, N * H, p_hid_, stream_);
  if (err.empty()) err = linear_backward(dC_, dB_, s.ctx, L.o_w, L.o_b, N, H, H, false);
  // attention: ctx = drop(P) v, P = softmax(scale q k^T + rel)
  const float* P = p_att_ > 0 ? s.pdrop : s.probs;
  for (int64_t r = 0; err.empty() && r < B; r++) {
    const float* v = s.qkv + r * T * 3 * H + 2 * H;
    err = blas_->gemm_batched(false, true, T, T, dh, 1.0f, dC_ + r * T * H, H, dh, v, 3 * H, dh, 0.0f,
                              dP_ + r * heads * TT, T, TT, heads);
    if (err.empty())
      err = blas_->gemm_batched(true, false, T, dh, T, 1.0f, P + r * heads * TT, T, TT, dC_ + r * T * H, H, dh, 0.0f,
                                dqkv_ + r * T * 3 * H + 2 * H, 3 * H, dh, heads);
  }
  if (err.empty() && p_att_ > 0) err = dropout_backward(dP_, s.mask_p, dP_, B * heads * TT, p_att_, stream_);
  if (err.empty()) err = softmax_backward(dP_, s.probs, dP_, B * heads * T, T, stream_);
  if (err.empty() && rel_.g) err = relative_bias_backward(drel_dev_, dP_, B, heads, T, stream_);
  for (int64_t r = 0; err.empty() && r < B; r++) {
    const float* q = s.qkv + r * T * 3 * H;
    err = blas_->gemm_batched(false, false, T, dh, T, scale, dP_ + r * heads * TT, T, TT, q + H, 3 * H, dh, 0.0f,
                              dqkv_ + r * T * 3 * H, 3 * H, dh, heads);
    if (err.empty())
      err = blas_->gemm_batched(true, false, T, dh, T, scale, dP_ + r * heads * TT, T, TT, q, 3 * H, dh, 0.0f,
                                dqkv_ + r * T * 3 * H + H, 3 * H, dh, heads);
  }
  if (err.empty()) err = linear_backward(need_dx ? d : nullptr, dqkv_, s.x, L.qkv_w, L.qkv_b, N, H, 3 * H, true);
  return err.empty() ? err : err + " in layer " + std::to_string(l + 1);
}

std::string CudaTrainer::forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                                 const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B,
                                 int64_t T, bool drop, uint64_t step) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  if (hidden && hidden16) return "give the hidden states in fp32 or in fp16, not both";
  const bool states = hidden || hidden16;
  // a recycled mode takes layer `first`'s states, or token ids (its prefix then runs here)
  if (!states && !ids) return "a training step needs token ids or hidden states";
  if (states && !spec_.recycled) return "this mode takes token ids as input";
  const int64_t N = B * T, H = cfg_.hidden;
  if (!states) {
    if (position_.w && !positions) return "this model needs position ids";
    for (int64_t i = 0; i < N; i++) {  // the kernels index tables with these: check them here
      if (ids[i] < 0 || ids[i] >= cfg_.vocab) return "token id out of range at " + std::to_string(i);
      if (position_.w && (positions[i] < 0 || positions[i] >= cfg_.max_positions))
        return "position id out of range at " + std::to_string(i);
      if (types && type_.w && (types[i] < 0 || types[i] >= cfg_.type_vocab))
        return "token type id out of range at " + std::to_string(i);
    }
  }
  NvtxRange range("training step " + std::to_string(B) + " x " + std::to_string(T));
  std::string err = reserve(B, T);
  if (err.empty() && rel_.w) err = relative_bias_for(T);
  if (!err.empty()) return err;
  saved_ = false;
  B_ = B;
  T_ = T;
  step_ = step;
  p_hid_ = drop ? spec_.hidden_dropout : 0.0f;
  p_att_ = drop ? spec_.attention_dropout : 0.0f;
  p_head_ = drop ? spec_.head_dropout : 0.0f;
  have_types_ = types != nullptr;
  const size_t n4 = (size_t)N * 4;
  float* x0 = saved_layers_.empty() ? top_ : saved_layers_[0].x;
  err = upload_batch({mask_, ids_, pos_, types_, x0, h16_}, hidden, hidden16, ids, positions, types, mask, N, H, stream_);
  if (err.empty() && !states) {
    // the embeddings, into layer `first`'s input or into the prefix's scratch
    float* e = spec_.first == 0 ? x0 : scratch_.x;
    const int32_t* ty = types ? types_ : nullptr;
    if (train_embeddings_) {
      err = embedding_sum(emb_s_, word_.w, position_.w, type_.w, ids_, positions ? pos_ : nullptr, ty, N, H, stream_);
      if (err.empty())
        err = layernorm_forward(e, emb_mean_, emb_rstd_, emb_s_, nullptr, emb_ln_w_.w, emb_ln_b_.w, N, H, cfg_.eps, stream_);
    } else {
      err = embedding_sum(e, word_.w, position_.w, type_.w, ids_, positions ? pos_ : nullptr, ty, N, H, stream_);
      if (err.empty()) err = layernorm_forward(e, nullptr, nullptr, e, nullptr, emb_ln_w_.w, emb_ln_b_.w, N, H, cfg_.eps, stream_);
    }
    if (err.empty() && spec_.first == 0) err = dropout(e, emb_mask_, N * H, p_hid_, kDropoutEmbeddings);
    prefix_ = true;
    for (int64_t l = 0; err.empty() && l < spec_.first; l++)  // the frozen prefix, forward only
      err = layer_forward(layers_[(size_t)l], scratch_, l + 1 == spec_.first ? x0 : scratch_.x, l);
    prefix_ = false;
  }
  for (size_t i = 0; err.empty() && i < saved_layers_.size(); i++) {
    float* out = i + 1 < saved_layers_.size() ? saved_layers_[i + 1].x : top_;
    err = layer_forward(layers_[(size_t)spec_.first + i], saved_layers_[i], out, spec_.first + (int64_t)i);
  }
  // the head on each row's first token (sequence) or every token
  const int64_t R = head_ == 0 ? B : N;
  if (err.empty())
    err = head_ == 0 ? error_text(cudaMemcpy2DAsync(head_in_, H * 4, top_, T * H * 4, H * 4, B, cudaMemcpyDeviceToDevice, stream_),
                                  "gathering the first tokens")
                     : error_text(cudaMemcpyAsync(head_in_, top_, n4 * H, cudaMemcpyDeviceToDevice, stream_), "the head's input");
  if (err.empty()) err = dropout(head_in_, head_mask_, R * H, p_head_, kDropoutHead);
  if (err.empty()) err = linear(logits_, head_in_, head_w_, head_b_, R, H, labels_);
  if (err.empty())
    err = error_text(cudaMemcpyAsync(logits, logits_, (size_t)(R * labels_) * 4, cudaMemcpyDeviceToHost, stream_),
                     "copying the logits back");
  if (err.empty()) err = check_stream(stream_, "the GPU training forward pass");
  saved_ = err.empty();
  return err;
}

std::string CudaTrainer::backward(const float* dlogits) {
  if (!saved_) return "backward needs a forward pass first (one backward per forward)";
  saved_ = false;
  const int64_t B = B_, T = T_, N = B * T, H = cfg_.hidden;
  const int64_t R = head_ == 0 ? B : N;
  NvtxRange range("training backward " + std::to_string(B) + " x " + std::to_string(T));
  std::string err = error_text(cudaMemcpyAsync(dlogits_, dlogits, (size_t)(R * labels_) * 4, cudaMemcpyHostToDevice, stream_),
                               "copying the logits' gradient");
  if (err.empty()) err = linear_backward(dhead_in_, dlogits_, head_in_, head_w_, head_b_, R, H, labels_, false);
  if (err.empty() && p_head_ > 0) err = dropout_backward(dhead_in_, head_mask_, dhead_in_, R * H, p_head_, stream_);
  const size_t NH = (size_t)(N * H) * 4;
  if (err.empty()) {
    if (head_ == 0) {
      err = error_text(cudaMemsetAsync(dA_, 0, NH, stream_), "zeroing a gradient");
      if (err.empty())
        err = error_text(cudaMemcpy2DAsync(dA_, T * H * 4, dhead_in_, H * 4, H * 4, B, cudaMemcpyDeviceToDevice, stream_),
                         "scattering the first tokens' gradient");
    } else {
      err = error_text(cudaMemcpyAsync(dA_, dhead_in_, NH, cudaMemcpyDeviceToDevice, stream_), "the head's gradient");
    }
  }
  const int64_t W = 2 * T - 1, heads = cfg_.heads;
  if (err.empty() && rel_.g)
    err = error_text(cudaMemsetAsync(drel_dev_, 0, (size_t)(heads * W) * 4, stream_), "zeroing a gradient");
  for (int64_t i = (int64_t)saved_layers_.size() - 1; err.empty() && i >= 0; i--) {
    const bool need_dx = i > 0 || train_embeddings_;
    err = layer_backward(layers_[(size_t)(spec_.first + i)], saved_layers_[(size_t)i], dA_, need_dx, spec_.first + i);
    if (!need_dx) break;
  }
  if (err.empty() && rel_.g) {  // gathered by bucket on the host (a few thousand values)
    drel_host_.resize((size_t)(heads * W));
    err = copy_sync(drel_host_.data(), drel_dev_, drel_host_.size() * 4, cudaMemcpyDeviceToHost, stream_,
                    "copying the relative bias's gradient");
    if (err.empty()) {
      relative_bias_backward(cfg_, rel_grad_host_.data(), drel_host_.data(), T);
      err = copy_sync(rel_.g, rel_grad_host_.data(), rel_grad_host_.size() * 4, cudaMemcpyHostToDevice, stream_,
                      "copying the relative bias's gradient");
    }
  }
  if (err.empty() && train_embeddings_) {  // x0 = dropout(LN(word + position + type))
    if (p_hid_ > 0) err = dropout_backward(dA_, emb_mask_, dA_, N * H, p_hid_, stream_);
    if (err.empty())
      err = layernorm_backward(dB_, emb_ln_w_.g, emb_ln_b_.g, dA_, emb_s_, emb_ln_w_.w, emb_mean_, emb_rstd_, N, H, stream_);
    if (err.empty()) err = embedding_backward(word_.g, dB_, ids_, N, H, stream_);
    if (err.empty() && position_.g) err = embedding_backward(position_.g, dB_, pos_, N, H, stream_);
    if (err.empty() && type_.g) err = embedding_backward(type_.g, dB_, have_types_ ? types_ : nullptr, N, H, stream_);
  }
  if (err.empty()) err = check_stream(stream_, "the GPU backward pass");
  return err;
}

std::string CudaTrainer::zero_grad() {
  std::string err;
  for (const Dev& d : params_)
    if (err.empty()) err = error_text(cudaMemsetAsync(d.g, 0, (size_t)d.host.n * 4, stream_), "zeroing the gradients");
  std::fill(rel_grad_host_.begin(), rel_grad_host_.end(), 0.0f);
  return err.empty() ? check_stream(stream_, "zeroing the gradients") : err;
}

std::string CudaTrainer::adamw(const HostAdamW& o, int64_t t, double* norm) {
  NvtxRange range("AdamW step " + std::to_string(t));
  std::string err = error_text(cudaMemsetAsync(norm_, 0, sizeof(double), stream_), "the gradient norm");
  for (const Dev& d : params_)
    if (err.empty()) err = sum_squares(norm_, norm_parts_, d.g, d.host.n, stream_);
  double ss = 0;
  if (err.empty()) err = copy_sync(&ss, norm_, sizeof(double), cudaMemcpyDeviceToHost, stream_, "the gradient norm");
  if (!err.empty()) return err;
  const double n = std::sqrt(ss);
  if (norm) *norm = n;
  float scale = 1.0f;
  if (o.clip > 0 && n > o.clip) scale = (float)(o.clip / (n + 1e-6));
  for (const Dev& d : params_)
    if (err.empty())
      err = adamw_update(d.w, d.m, d.v, d.g, d.host.n, o.lr, o.beta1, o.beta2, o.eps, d.host.decay ? o.weight_decay : 0.0f,
                         t, scale, stream_);
  if (err.empty()) err = refresh_bf16();
  if (err.empty() && rel_.g) {  // the bias of the next batch is gathered from the new table
    err = copy_sync(rel_table_.data(), rel_.w, rel_table_.size() * 4, cudaMemcpyDeviceToHost, stream_,
                    "copying MPNet's relative position bias");
    rel_T_ = 0;
  }
  return err.empty() ? check_stream(stream_, "the AdamW step") : err;
}

std::string CudaTrainer::sync(int what) {
  std::string err;
  for (const Dev& d : params_) {
    const size_t bytes = (size_t)d.host.n * 4;
    if (!err.empty()) break;
    if (what == 0) err = copy_sync(d.host.data, d.w, bytes, cudaMemcpyDeviceToHost, stream_, "copying the trained values back");
    else if (what == 1 && d.host.grad)
      err = copy_sync(d.host.grad, d.g, bytes, cudaMemcpyDeviceToHost, stream_, "copying the gradients back");
    else if (what == 2) err = copy_sync(d.w, d.host.data, bytes, cudaMemcpyHostToDevice, stream_, "uploading changed values");
  }
  if (err.empty() && what == 2) err = refresh_bf16();
  if (err.empty() && what == 2 && rel_.g) {
    err = copy_sync(rel_table_.data(), rel_.w, rel_table_.size() * 4, cudaMemcpyDeviceToHost, stream_,
                    "copying MPNet's relative position bias");
    rel_T_ = 0;
  }
  return err;
}

}  // namespace cuda
}  // namespace er
