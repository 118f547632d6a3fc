// A stand-in for embedding_recycler_cuda.so that computes nothing on a GPU: it fills each
// output with values made from its inputs, so tests on a machine without a GPU can drive the
// addon's whole GPU path (dlopen, the interface checks, arguments, padding, errors, lifetime)
// with ER_CUDA_BACKEND pointing here. Never shipped.
//
//   forward:      out[i][j] = 1000 * to_layer + ids[i] + positions[i] / 1000 + (types ? types[i] : 0) / 10
//                             + j / 1e6 (at every position, padding included: the addon zeroes those)
//   forward_from: out = hidden + (to_layer - from_layer)
//   B == 7 fails (an error message that must reach JavaScript); precision 2 (fp16) is accepted.
// ER_FAKE_BACKEND_ABI overrides the interface version it reports; ER_FAKE_BACKEND_NO_GPU makes
// devices() report none.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include "model/cuda_backend.h"

namespace {

struct Fake {
  int64_t hidden = 0, layers = 0, vocab = 0;
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

void memory(void* h, uint64_t* weights, uint64_t* buffers) {
  const Fake* f = static_cast<const Fake*>(h);
  *weights = (uint64_t)(f->vocab * f->hidden * 4);
  *buffers = 4096;
}

void destroy(void* h) { delete static_cast<Fake*>(h); }

ErCudaBackend table = {ER_CUDA_BACKEND_ABI, (uint32_t)sizeof(er::cuda::HostEncoder), devices, runtime_version,
                       create, forward, forward_from, memory, destroy};

}  // namespace

extern "C" __attribute__((visibility("default"))) const ErCudaBackend* er_cuda_backend() {
  if (const char* abi = std::getenv("ER_FAKE_BACKEND_ABI")) table.abi = (uint32_t)std::atoi(abi);
  return &table;
}
