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
//                 first element for the others; ids: its first token's id, or its own id);
//                 the head is copied at create, as the real backend uploads it
//   B == 7 fails (an error message that must reach JavaScript); precision 2 (fp16) is accepted.
// ER_FAKE_BACKEND_ABI overrides the interface version it reports; ER_FAKE_BACKEND_NO_GPU makes
// devices() report none.
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

int task_forward(void* h, float* logits, const float* hidden, const int32_t* ids, const int32_t* positions,
                 const int32_t* types, const int32_t* mask, int64_t B, int64_t T, int64_t from_layer, char* err, size_t n) {
  const Fake* f = static_cast<const Fake*>(h);
  (void)positions, (void)types, (void)mask;
  if (f->head < 0) return fail("fake backend: no task head", err, n);
  if (B == 7) return fail("fake backend: a kernel failed (cudaErrorLaunchFailure)", err, n);
  const int64_t R = f->head == 0 ? B : B * T, H = f->hidden;
  for (int64_t r = 0; r < R; r++) {
    const int64_t tok = f->head == 0 ? r * T : r;
    const float v = hidden ? hidden[tok * H] : (float)ids[tok];
    for (int64_t j = 0; j < f->labels; j++)
      logits[r * f->labels + j] = f->head_b[j] + f->head_w[j * H] * v + 100.0f * (hidden ? (float)from_layer : -1.0f) +
                                  0.5f * (float)f->adapters;
  }
  return 0;
}

void memory(void* h, uint64_t* weights, uint64_t* buffers) {
  const Fake* f = static_cast<const Fake*>(h);
  *weights = (uint64_t)(f->vocab * f->hidden * 4);
  *buffers = 4096;
}

void destroy(void* h) { delete static_cast<Fake*>(h); }

ErCudaBackend table = {ER_CUDA_BACKEND_ABI, (uint32_t)sizeof(er::cuda::HostEncoder), devices, runtime_version,
                       create, forward, forward_from, task_forward, memory, destroy};

}  // namespace

extern "C" __attribute__((visibility("default"))) const ErCudaBackend* er_cuda_backend() {
  if (const char* abi = std::getenv("ER_FAKE_BACKEND_ABI")) table.abi = (uint32_t)std::atoi(abi);
  return &table;
}
