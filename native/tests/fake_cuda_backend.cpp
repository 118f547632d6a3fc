// A stand-in for embedding_recycler_cuda.so that computes nothing on a GPU: it fills each
// output with values made from its inputs, so tests on a machine without a GPU can drive the
// addon's whole GPU path (dlopen, the interface checks, arguments, padding, errors, lifetime)
// with ER_CUDA_BACKEND pointing here. Never shipped.
//
//   forward:      out[i][j] = 1000 * to_layer + ids[i] + positions[i] / 1000 + (types ? types[i] : 0) / 10
//                             + j / 1e6 (at every position, padding included: the addon zeroes those)
//   forward_from: out = hidden + (to_layer - from_layer)
//   task_forward: logits[r][j] = head_b[j] + head_w[j][0] * v_r + 100 * (hidden ? from_layer : -1)
//                 + 0.5 * (the number of adapters given), v_r = the first value of row r's input
//                 (hidden: its first token's first element for the sequence head, its own
//                 first element for the others, fp16 codes decoded; ids: its first token's
//                 id, or its own id);
//                 the head is copied at create, as the real backend uploads it
//   train_*:      a trainable copy of the same task_forward formula (+ 0.25 when dropout is on),
//                 with its exact gradient (head_b[j] += sum_r dlogits[r][j], head_w[j][0] +=
//                 sum_r dlogits[r][j] v_r; every other tensor's gradient stays 0) and AdamW as
//                 model/trainer.h applies it, on copies of the HostParams; train_sync copies
//                 them to and from the host arrays
//   B == 7 fails (an error message that must reach JavaScript); precision 2 (fp16) is accepted.
// ER_FAKE_BACKEND_ABI overrides the interface version it reports; ER_FAKE_BACKEND_NO_GPU makes
// devices() report none.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <vector>
#include "model/cuda_backend.h"

namespace {

struct Fake {
  int64_t hidden = 0, layers = 0, vocab = 0;
  int32_t head = -1;
  int64_t labels = 0, adapters = 0;
  std::vector<float> head_w, head_b;
};

int fail(const char* msg, char* err, size_t n) {
  std::snprintf(err, n, "%s", msg);
  return -1;
}

int devices(char* out, size_t n) {
  if (std::getenv("ER_FAKE_BACKEND_NO_GPU")) return fail("no CUDA GPU was found (fake backend); use device 'cpu'", out, n);
  std::snprintf(out, n, "0: Fake GPU, compute 9.0, 1.0 GiB, driver 13.0\n1: Fake GPU, compute 9.0, 1.0 GiB, driver 13.0\n");
  return 2;
}

const char* runtime_version() { return "13.0-fake"; }

int create(const er::cuda::HostEncoder* host, int32_t precision, int32_t device, void** handle, char* err, size_t n) {
  if (device != 0 && device != 1) return fail("fake backend: no such GPU", err, n);
  if (precision < 0 || precision > 2) return fail("fake backend: bad precision", err, n);
  if ((int64_t)host->layer.size() != host->cfg.layers || !host->emb.word) return fail("fake backend: bad host encoder", err, n);
  if (host->cfg.rel_buckets > 0 && !host->rel_bias) return fail("fake backend: MPNet without its relative bias table", err, n);
  Fake* f = new Fake;
  f->hidden = host->cfg.hidden;
  f->layers = host->cfg.layers;
  f->vocab = host->cfg.vocab;
  f->head = host->task.head;
  if (f->head >= 0) {
    f->labels = host->task.labels;
    f->head_w.assign(host->task.head_w, host->task.head_w + f->labels * f->hidden);
    f->head_b.assign(host->task.head_b, host->task.head_b + f->labels);
    for (const er::cuda::HostAdapter& a : host->task.adapters) f->adapters += a.dw != nullptr;
  }
  *handle = f;
  return 0;
}

int forward(void* h, float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
            const int32_t* mask, int64_t B, int64_t T, int64_t to_layer, char* err, size_t n) {
  const Fake* f = static_cast<const Fake*>(h);
  if (B == 7) return fail("fake backend: a kernel failed (cudaErrorLaunchFailure)", err, n);
  (void)mask;
  for (int64_t i = 0; i < B * T; i++)
    for (int64_t j = 0; j < f->hidden; j++)
      out[i * f->hidden + j] = 1000.0f * (float)to_layer + (float)ids[i] + (float)positions[i] / 1000.0f +
                               (types ? (float)types[i] / 10.0f : 0.0f) + (float)j / 1e6f;
  return 0;
}

int forward_from(void* h, float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                 int64_t from_layer, int64_t to_layer, char* err, size_t n) {
  const Fake* f = static_cast<const Fake*>(h);
  if (B == 7) return fail("fake backend: a kernel failed (cudaErrorLaunchFailure)", err, n);
  (void)mask;
  for (int64_t i = 0; i < B * T * f->hidden; i++) out[i] = hidden[i] + (float)(to_layer - from_layer);
  return 0;
}

// an IEEE binary16 code as a float (normal, subnormal, zero, inf and NaN)
float half_value(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, frac = h & 1023;
  float v = exp == 0 ? std::ldexp((float)frac, -24) : exp == 31 ? (frac ? NAN : INFINITY) : std::ldexp((float)(frac | 1024), exp - 25);
  return sign ? -v : v;
}

// v_r of the formulas above: the row's first input value
float first_value(const float* hidden, const uint16_t* hidden16, const int32_t* ids, int64_t tok, int64_t H) {
  return hidden ? hidden[tok * H] : hidden16 ? half_value(hidden16[tok * H]) : (float)ids[tok];
}

int task_forward(void* h, float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                 const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                 int64_t from_layer, char* err, size_t n) {
  const Fake* f = static_cast<const Fake*>(h);
  (void)positions, (void)types, (void)mask;
  if (f->head < 0) return fail("fake backend: no task head", err, n);
  if (B == 7) return fail("fake backend: a kernel failed (cudaErrorLaunchFailure)", err, n);
  const int64_t R = f->head == 0 ? B : B * T, H = f->hidden;
  for (int64_t r = 0; r < R; r++) {
    const int64_t tok = f->head == 0 ? r * T : r;
    const float v = first_value(hidden, hidden16, ids, tok, H);
    for (int64_t j = 0; j < f->labels; j++)
      logits[r * f->labels + j] = f->head_b[j] + f->head_w[j * H] * v +
                                  100.0f * (hidden || hidden16 ? (float)from_layer : -1.0f) + 0.5f * (float)f->adapters;
  }
  return 0;
}

void memory(void* h, uint64_t* weights, uint64_t* buffers) {
  const Fake* f = static_cast<const Fake*>(h);
  *weights = (uint64_t)(f->vocab * f->hidden * 4);
  *buffers = 4096;
}

void destroy(void* h) { delete static_cast<Fake*>(h); }

struct FakeTensor {
  er::cuda::HostParam host;
  std::vector<float> w, g, m, v;
};

struct FakeTrainer {
  Fake f;
  int64_t first = 0;
  std::vector<FakeTensor> t;
  int hw = -1, hb = -1;            // the tensors holding the head's weight and bias (-1: frozen)
  int64_t hw_off = 0, hb_off = 0;  // where in them
  std::vector<float> v;            // the last forward's v_r
  int64_t labels = 0;
  bool saved = false;
};

// the tensor holding host array p, and the offset there
int holder(const FakeTrainer& tr, const float* p, int64_t* off) {
  for (size_t i = 0; i < tr.t.size(); i++)
    if (p >= tr.t[i].host.data && p < tr.t[i].host.data + tr.t[i].host.n) {
      *off = p - tr.t[i].host.data;
      return (int)i;
    }
  return -1;
}

const float* head_value(const FakeTrainer& tr, int which, int64_t index) {
  const int i = which == 0 ? tr.hw : tr.hb;
  if (i >= 0) return &tr.t[(size_t)i].w[(size_t)((which == 0 ? tr.hw_off : tr.hb_off) + index)];
  return which == 0 ? &tr.f.head_w[(size_t)index] : &tr.f.head_b[(size_t)index];
}

int train_create(const er::cuda::HostEncoder* host, const er::cuda::HostTrain* train, int32_t device, void** handle,
                 char* err, size_t n) {
  void* enc = nullptr;
  if (create(host, 0, device, &enc, err, n) != 0) return -1;
  FakeTrainer* tr = new FakeTrainer;
  tr->f = *static_cast<Fake*>(enc);
  destroy(enc);
  if (tr->f.head < 0) {
    delete tr;
    return fail("fake backend: no task head", err, n);
  }
  tr->first = train->first;
  for (const er::cuda::HostParam& p : train->params) {
    FakeTensor x;
    x.host = p;
    x.w.assign(p.data, p.data + p.n);
    x.g.assign((size_t)p.n, 0.0f);
    x.m = x.g;
    x.v = x.g;
    tr->t.push_back(x);
  }
  tr->hw = holder(*tr, host->task.head_w, &tr->hw_off);
  tr->hb = holder(*tr, host->task.head_b, &tr->hb_off);
  tr->labels = tr->f.labels;
  *handle = tr;
  return 0;
}

int train_forward(void* h, float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                  const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                  int32_t dropout, uint64_t step, char* err, size_t n) {
  FakeTrainer* tr = static_cast<FakeTrainer*>(h);
  (void)positions, (void)types, (void)mask, (void)step;
  if (B == 7) return fail("fake backend: a kernel failed (cudaErrorLaunchFailure)", err, n);
  const int64_t R = tr->f.head == 0 ? B : B * T, H = tr->f.hidden;
  tr->v.assign((size_t)R, 0.0f);
  for (int64_t r = 0; r < R; r++) {
    const int64_t tok = tr->f.head == 0 ? r * T : r;
    const float v = first_value(hidden, hidden16, ids, tok, H);
    tr->v[(size_t)r] = v;
    for (int64_t j = 0; j < tr->labels; j++)
      logits[r * tr->labels + j] = *head_value(*tr, 1, j) + *head_value(*tr, 0, j * H) * v +
                                   100.0f * (hidden || hidden16 ? (float)tr->first : -1.0f) + 0.5f * (float)tr->f.adapters +
                                   (dropout ? 0.25f : 0.0f);
  }
  tr->saved = true;
  return 0;
}

int train_backward(void* h, const float* dlogits, char* err, size_t n) {
  FakeTrainer* tr = static_cast<FakeTrainer*>(h);
  if (!tr->saved) return fail("fake backend: backward without a forward", err, n);
  tr->saved = false;
  const int64_t H = tr->f.hidden;
  for (size_t r = 0; r < tr->v.size(); r++)
    for (int64_t j = 0; j < tr->labels; j++) {
      const float d = dlogits[(int64_t)r * tr->labels + j];
      if (tr->hb >= 0) tr->t[(size_t)tr->hb].g[(size_t)(tr->hb_off + j)] += d;
      if (tr->hw >= 0) tr->t[(size_t)tr->hw].g[(size_t)(tr->hw_off + j * H)] += d * tr->v[r];
    }
  return 0;
}

int train_zero_grad(void* h, char*, size_t) {
  for (FakeTensor& x : static_cast<FakeTrainer*>(h)->t) std::fill(x.g.begin(), x.g.end(), 0.0f);
  return 0;
}

int train_adamw(void* h, const er::cuda::HostAdamW* o, int64_t step, double* norm, char*, size_t) {
  FakeTrainer* tr = static_cast<FakeTrainer*>(h);
  double ss = 0;
  for (const FakeTensor& x : tr->t)
    for (float g : x.g) ss += (double)g * g;
  const double nrm = std::sqrt(ss);
  *norm = nrm;
  const float scale = o->clip > 0 && nrm > o->clip ? (float)(o->clip / (nrm + 1e-6)) : 1.0f;
  const float bc1 = 1.0f - std::pow(o->beta1, (float)step), bc2 = 1.0f - std::pow(o->beta2, (float)step);
  for (FakeTensor& x : tr->t)
    for (size_t i = 0; i < x.w.size(); i++) {
      const float g = x.g[i] * scale;
      if (x.host.decay) x.w[i] *= 1.0f - o->lr * o->weight_decay;
      x.m[i] = o->beta1 * x.m[i] + (1.0f - o->beta1) * g;
      x.v[i] = o->beta2 * x.v[i] + (1.0f - o->beta2) * g * g;
      x.w[i] -= o->lr / bc1 * x.m[i] / (std::sqrt(x.v[i]) / std::sqrt(bc2) + o->eps);
    }
  return 0;
}

int train_sync(void* h, int32_t what, char* err, size_t n) {
  for (FakeTensor& x : static_cast<FakeTrainer*>(h)->t) {
    if (what == 0) std::copy(x.w.begin(), x.w.end(), x.host.data);
    else if (what == 1 && x.host.grad) std::copy(x.g.begin(), x.g.end(), x.host.grad);
    else if (what == 2) x.w.assign(x.host.data, x.host.data + x.host.n);
    else if (what < 0 || what > 2) return fail("fake backend: bad sync direction", err, n);
  }
  return 0;
}

void train_memory(void* h, uint64_t* weights, uint64_t* buffers) {
  uint64_t b = 0;
  for (const FakeTensor& x : static_cast<FakeTrainer*>(h)->t) b += x.w.size() * 16;
  *weights = b;
  *buffers = 8192;
}

void train_destroy(void* h) { delete static_cast<FakeTrainer*>(h); }

ErCudaBackend table = {ER_CUDA_BACKEND_ABI, (uint32_t)sizeof(er::cuda::HostEncoder), devices, runtime_version,
                       create, forward, forward_from, task_forward, memory, destroy,
                       train_create, train_forward, train_backward, train_zero_grad, train_adamw, train_sync,
                       train_memory, train_destroy};

}  // namespace

extern "C" __attribute__((visibility("default"))) const ErCudaBackend* er_cuda_backend() {
  if (const char* abi = std::getenv("ER_FAKE_BACKEND_ABI")) table.abi = (uint32_t)std::atoi(abi);
  return &table;
}
