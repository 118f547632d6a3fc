// The GPU backend as the addon sees it: a separate shared library (embedding_recycler_cuda.so,
// beside the addon) that the addon opens with dlopen only when a caller asks for a GPU. The
// addon itself never links CUDA, so a machine without the CUDA libraries loads and runs
// everything else exactly as a CPU-only build does, and a missing library or driver becomes
// an error message instead of a failed addon load.
//
// The boundary is a C table of functions (er_cuda_backend) with a version and the size of
// HostEncoder, which both sides check: a backend from another build is refused, not called.
// No C++ exception crosses it; every function reports failure as a message in `err`.
// This header needs no CUDA headers (the addon compiles without the toolkit).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>
#include "model/encoder.h"

namespace er {
namespace cuda {

// A Houlsby adapter's weights, h + up(act(down(h))): down (size, H), (size); up (H, size), (H)
struct HostAdapter {
  const float *dw = nullptr, *db = nullptr, *uw = nullptr, *ub = nullptr;  // dw null: no adapter
};

// What a task model adds to an encoder: adapters and a head (head < 0: a plain encoder)
struct HostTask {
  int32_t head = -1;  // HeadKind of model/trainer.h: 0 sequence (first token), 1 token, 2 QA
  int64_t labels = 0;
  const float *head_w = nullptr, *head_b = nullptr;  // (labels, H), (labels)
  int64_t adapter_size = 0;
  int32_t adapter_act = 0;            // AdapterAct: 0 GELU, 1 ReLU
  std::vector<HostAdapter> adapters;  // 2 per layer (after the attention output, after the FFN), or empty
};

// An encoder's weights in host memory, read through the CPU encoder's own views (or a task
// model's, whose trained layers replace the encoder's)
struct HostEncoder {
  EncoderConfig cfg;
  EmbeddingTables emb;
  std::vector<LayerWeights> layer;
  const float* rel_bias = nullptr;  // MPNet's (rel_buckets, heads) table when cfg.rel_buckets > 0
  HostTask task;
};

// A task model's trainable tensor in host memory (TaskModel::params()): its values and
// gradient (n floats each), and whether weight decay applies. The GPU trainer finds each
// weight of the HostEncoder that lies inside one of these (the same host address) and trains
// it; every other weight is frozen.
struct HostParam {
  float* data = nullptr;
  float* grad = nullptr;
  int64_t n = 0;
  int32_t decay = 0;
};

// What the GPU trainer runs besides the weights: the layers in the graph (first .. N - 1, the
// ones below run forward only), its input, dropout and its trainable tensors
struct HostTrain {
  int64_t first = 0;         // the lowest layer that runs saving what backward needs (0-based)
  int32_t recycled = 0;      // input: layer `first`'s hidden states (else token ids)
  float hidden_dropout = 0, attention_dropout = 0, head_dropout = 0;
  uint64_t seed = 0;
  // BackendPrecision of the linear layers' GEMMs: F32, or BF16 (their inputs and weights
  // rounded to bf16, fp32 accumulation; master weights, gradients, moments, attention and
  // every other op fp32, as the CPU trainer's bf16 mode)
  int32_t precision = 0;
  std::vector<HostParam> params;
};

// AdamW with global-norm clipping (model/trainer.h AdamWOptions; clip <= 0: none)
struct HostAdamW {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.01f, clip = 1.0f;
};

// Compute precision of the GPU encoder's linear layers (their inputs and weights)
enum class BackendPrecision : int32_t { F32 = 0, BF16 = 1, F16 = 2 };

}  // namespace cuda
}  // namespace er

// bumped whenever a signature below or HostEncoder changes
#define ER_CUDA_BACKEND_ABI 6u

extern "C" {

struct ErCudaBackend {
  uint32_t abi;                 // ER_CUDA_BACKEND_ABI of the backend's build
  uint32_t host_encoder_bytes;  // sizeof(er::cuda::HostEncoder) there
  // One line per usable GPU ("0: NVIDIA H200, compute 9.0, 139.8 GiB, driver 13.0") written
  // to `out`; returns the number of GPUs, or -1 with the reason in `out` (no driver, no
  // device, a driver older than the runtime).
  int (*devices)(char* out, size_t out_bytes);
  // The CUDA runtime version the backend was built with, as "13.0".
  const char* (*runtime_version)();
  // Uploads the weights to GPU `device` in `precision` (a BackendPrecision); *handle on success.
  int (*create)(const er::cuda::HostEncoder* host, int32_t precision, int32_t device, void** handle, char* err,
                size_t err_bytes);
  // Host arrays (B, T); types may be null. out (B, T, H) host receives layer to_layer.
  int (*forward)(void* handle, float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
                 const int32_t* mask, int64_t B, int64_t T, int64_t to_layer, char* err, size_t err_bytes);
  // hidden (B, T, H) host holds layer from_layer; out (B, T, H) host receives layer to_layer.
  int (*forward_from)(void* handle, float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                      int64_t from_layer, int64_t to_layer, char* err, size_t err_bytes);
  // A task model's logits (host.task.head >= 0): hidden (B, T, H) host holds layer
  // from_layer in fp32, or hidden16 in fp16 (as an fp16 store holds it; cast on the GPU), or
  // (both null) ids, positions, types (may be null) run from the embeddings.
  // logits (host) receive sequence (B, labels), token (B*T, labels), QA (B*T, 2).
  int (*task_forward)(void* handle, float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                      const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                      int64_t from_layer, char* err, size_t err_bytes);
  // device memory held: weights, and the buffers kept for the largest batch so far
  void (*memory)(void* handle, uint64_t* weight_bytes, uint64_t* buffer_bytes);
  void (*destroy)(void* handle);

  // ---- training (a separate handle: a task model's trainable copy on the GPU) ----
  // Uploads the weights in fp32 (host.task: the head and adapters; with train.precision
  // BF16 also bf16 copies of the linear layers' weights) and the trainable tensors with
  // their gradients, and zeroed Adam moments.
  int (*train_create)(const er::cuda::HostEncoder* host, const er::cuda::HostTrain* train, int32_t device,
                      void** handle, char* err, size_t err_bytes);
  // The forward, saving what backward needs: input as task_forward's (hidden or hidden16 at
  // layer train.first, or ids from the embeddings); dropout when `dropout`, its masks drawn for
  // `step`. logits (host) as task_forward's.
  int (*train_forward)(void* handle, float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                       const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                       int32_t dropout, uint64_t step, char* err, size_t err_bytes);
  // The backward of the last forward from dL/dlogits (host, the logits' shape); gradients
  // accumulate on the GPU
  int (*train_backward)(void* handle, const float* dlogits, char* err, size_t err_bytes);
  int (*train_zero_grad)(void* handle, char* err, size_t err_bytes);
  // one AdamW step (t: the step number, from 1) on every trainable tensor; *norm: the global
  // gradient norm before clipping
  int (*train_adamw)(void* handle, const er::cuda::HostAdamW* options, int64_t t, double* norm, char* err,
                     size_t err_bytes);
  // what 0: the trainable values to their host arrays, 1: the gradients to theirs, 2: the
  // values from the host arrays to the GPU (after the host changed them)
  int (*train_sync)(void* handle, int32_t what, char* err, size_t err_bytes);
  // device memory held: weights with gradients and moments, and the saved activations
  void (*train_memory)(void* handle, uint64_t* weight_bytes, uint64_t* buffer_bytes);
  void (*train_destroy)(void* handle);
};

// The one symbol the backend exports.
const ErCudaBackend* er_cuda_backend();
typedef const ErCudaBackend* (*ErCudaBackendEntry)();
}
