// The addon's side of the GPU backend (model/cuda_backend.h): finding and opening
// embedding_recycler_cuda.so on first use, and a GPU encoder's lifetime.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include "model/cuda_backend.h"

namespace er_binding {

// The backend, opened once per process; null with the reason in *why when it cannot be used
// (not built, a library missing, another build's ABI).
const ErCudaBackend* cuda_backend(std::string* why);
// Where the backend library is looked for: $ER_CUDA_BACKEND, else beside the addon.
std::string cuda_backend_path();

// The backend's precision (a BackendPrecision) of 'fp32', 'bf16' or 'fp16' (the caller checked it)
int32_t backend_precision(const std::string& precision);

// An encoder's weights on one GPU. The compute queue runs one job at a time, and the mutex
// keeps it so for any other caller.
class GpuEncoder {
 public:
  static std::string create(const er::cuda::HostEncoder& host, int32_t precision, int32_t device,
                            std::shared_ptr<GpuEncoder>* out);
  ~GpuEncoder();
  std::string forward(float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
                      const int32_t* mask, int64_t B, int64_t T, int64_t to_layer);
  std::string forward_from(float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                           int64_t from_layer, int64_t to_layer);
  // a task model's logits (created from a HostEncoder with a head): from layer from_layer's
  // hidden states (fp32 hidden or fp16 hidden16), or (both null) from the ids
  std::string task_forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                           const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                           int64_t from_layer);
  void memory(uint64_t* weight_bytes, uint64_t* buffer_bytes);
  int32_t device() const { return device_; }

 private:
  GpuEncoder() = default;
  const ErCudaBackend* api_ = nullptr;
  void* handle_ = nullptr;
  int32_t device_ = 0;
  std::mutex mu_;
};

// A task model's trainable copy on one GPU (the backend's train_* functions); the task
// model's mutex orders its calls.
class GpuTrainer {
 public:
  static std::string create(const er::cuda::HostEncoder& host, const er::cuda::HostTrain& train, int32_t device,
                            std::shared_ptr<GpuTrainer>* out);
  ~GpuTrainer();
  std::string forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                      const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                      bool dropout, uint64_t step);
  std::string backward(const float* dlogits);
  std::string zero_grad();
  std::string adamw(const er::cuda::HostAdamW& o, int64_t t, double* norm);
  // 0: values to the host arrays, 1: gradients to theirs, 2: values from the host arrays
  std::string sync(int32_t what);
  void memory(uint64_t* weight_bytes, uint64_t* buffer_bytes);

 private:
  GpuTrainer() = default;
  const ErCudaBackend* api_ = nullptr;
  void* handle_ = nullptr;
};

}  // namespace er_binding
