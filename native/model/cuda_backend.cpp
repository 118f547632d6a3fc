// embedding_recycler_cuda.so: the GPU encoder behind the C table of model/cuda_backend.h.
// Every entry catches what it calls (no C++ exception crosses into the addon) and selects
// its GPU first, since the addon calls from its compute thread, not the loading thread.
#include "model/cuda_backend.h"
#include <cuda_runtime.h>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include "kernels/cuda/cuda_ops.h"
#include "model/cuda_encoder.h"
#include "model/cuda_trainer.h"

namespace {

using er::cuda::CudaEncoder;
using er::cuda::CudaTrainer;
using er::cuda::BackendPrecision;
using er::cuda::DType;
// the table's precision numbers are the GEMMs' input types
static_assert((int)BackendPrecision::F32 == (int)DType::F32 && (int)BackendPrecision::BF16 == (int)DType::BF16 &&
                  (int)BackendPrecision::F16 == (int)DType::F16,
              "BackendPrecision and DType must agree");

struct Handle {
  std::unique_ptr<CudaEncoder> enc;
  int device = 0;
};

struct TrainHandle {
  std::unique_ptr<CudaTrainer> t;
  int device = 0;
};

int report(const std::string& message, char* err, size_t err_bytes) {
  if (message.empty()) return 0;
  if (err && err_bytes > 0) std::snprintf(err, err_bytes, "%s", message.c_str());
  return -1;
}

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

// what to do about a failed cudaGetDeviceCount, by its cause
std::string no_device_text(cudaError_t e) {
  std::string why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (e == cudaErrorInsufficientDriver && driver == 0)
    return "no NVIDIA driver was found (libcuda.so.1 could not be loaded: " + why +
           "); install the NVIDIA driver, or use device 'cpu'";
  if (e == cudaErrorInsufficientDriver)
    return "the NVIDIA driver is older than this build's CUDA runtime " + version_text(runtime) +
           (driver > 0 ? " (the driver supports CUDA " + version_text(driver) + ")" : "") + " (" + why +
           "); update the driver, or use device 'cpu'";
  if (e == cudaErrorNoDevice) return "no CUDA GPU was found (" + why + "); use device 'cpu'";
  return "no usable CUDA GPU (" + why + "); check the NVIDIA driver (nvidia-smi), or use device 'cpu'";
}

int devices(char* out, size_t out_bytes) {
  try {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return report(no_device_text(e), out, out_bytes);
    if (count == 0) return report("no CUDA GPU was found; use device 'cpu'", out, out_bytes);
    int driver = 0;
    cudaDriverGetVersion(&driver);
    std::string lines;
    for (int i = 0; i < count; i++) {
      cudaDeviceProp p;
      e = cudaGetDeviceProperties(&p, i);
      if (e != cudaSuccess) return report(er::cuda::error_text(e, "cudaGetDeviceProperties"), out, out_bytes);
      char line[512];
      std::snprintf(line, sizeof line, "%d: %s, compute %d.%d, %.1f GiB, driver %s\n", i, p.name, p.major, p.minor,
                    (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), version_text(driver).c_str());
      lines += line;
    }
    if (out && out_bytes > 0) std::snprintf(out, out_bytes, "%s", lines.c_str());
    return count;
  } catch (const std::exception& ex) {
    return report(std::string("listing the GPUs failed: ") + ex.what(), out, out_bytes);
  }
}

const char* runtime_version() {
  static const std::string v = version_text(CUDART_VERSION);
  return v.c_str();
}

int create(const er::cuda::HostEncoder* host, int32_t precision, int32_t device, void** handle, char* err,
           size_t err_bytes) {
  try {
    if (!host || !handle) return report("create: null argument", err, err_bytes);
    if (precision < 0 || precision > 2) return report("create: unknown precision", err, err_bytes);
    std::unique_ptr<Handle> h(new Handle);
    h->device = device;
    std::string e = CudaEncoder::create(*host, (DType)precision, device, &h->enc);
    if (!e.empty()) return report(e, err, err_bytes);
    *handle = h.release();
    return 0;
  } catch (const std::bad_alloc&) {
    return report("out of host memory while uploading the encoder to the GPU", err, err_bytes);
  } catch (const std::exception& ex) {
    return report(std::string("uploading the encoder to the GPU failed: ") + ex.what(), err, err_bytes);
  }
}

int forward(void* handle, float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
            const int32_t* mask, int64_t B, int64_t T, int64_t to_layer, char* err, size_t err_bytes) {
  try {
    Handle* h = static_cast<Handle*>(handle);
    std::string e = er::cuda::error_text(cudaSetDevice(h->device), "cudaSetDevice");
    if (e.empty()) e = h->enc->forward(out, ids, positions, types, mask, B, T, to_layer);
    return report(e, err, err_bytes);
  } catch (const std::exception& ex) {
    return report(std::string("the GPU forward pass failed: ") + ex.what(), err, err_bytes);
  }
}

int forward_from(void* handle, float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                 int64_t from_layer, int64_t to_layer, char* err, size_t err_bytes) {
  try {
    Handle* h = static_cast<Handle*>(handle);
    std::string e = er::cuda::error_text(cudaSetDevice(h->device), "cudaSetDevice");
    if (e.empty()) e = h->enc->forward_from(out, hidden, mask, B, T, from_layer, to_layer);
    return report(e, err, err_bytes);
  } catch (const std::exception& ex) {
    return report(std::string("the GPU forward pass failed: ") + ex.what(), err, err_bytes);
  }
}

int task_forward(void* handle, float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                 const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                 int64_t from_layer, char* err, size_t err_bytes) {
  try {
    Handle* h = static_cast<Handle*>(handle);
    std::string e = er::cuda::error_text(cudaSetDevice(h->device), "cudaSetDevice");
    if (e.empty()) e = h->enc->task_forward(logits, hidden, hidden16, ids, positions, types, mask, B, T, from_layer);
    return report(e, err, err_bytes);
  } catch (const std::exception& ex) {
    return report(std::string("the GPU task forward pass failed: ") + ex.what(), err, err_bytes);
  }
}

void memory(void* handle, uint64_t* weight_bytes, uint64_t* buffer_bytes) {
  const Handle* h = static_cast<const Handle*>(handle);
  if (weight_bytes) *weight_bytes = h->enc->weight_bytes();
  if (buffer_bytes) *buffer_bytes = h->enc->buffer_bytes();
}

void destroy(void* handle) {
  Handle* h = static_cast<Handle*>(handle);
  if (!h) return;
  cudaSetDevice(h->device);
  delete h;
}

int train_create(const er::cuda::HostEncoder* host, const er::cuda::HostTrain* train, int32_t device, void** handle,
                 char* err, size_t err_bytes) {
  try {
    if (!host || !train || !handle) return report("train_create: null argument", err, err_bytes);
    std::unique_ptr<TrainHandle> h(new TrainHandle);
    h->device = device;
    std::string e = CudaTrainer::create(*host, *train, device, &h->t);
    if (!e.empty()) return report(e, err, err_bytes);
    *handle = h.release();
    return 0;
  } catch (const std::bad_alloc&) {
    return report("out of host memory while uploading the task model to the GPU", err, err_bytes);
  } catch (const std::exception& ex) {
    return report(std::string("uploading the task model to the GPU failed: ") + ex.what(), err, err_bytes);
  }
}

// runs f on the trainer with its GPU selected; exceptions become the message `what: ...`
template <class F>
int on_trainer(void* handle, const char* what, char* err, size_t err_bytes, F f) {
  try {
    TrainHandle* h = static_cast<TrainHandle*>(handle);
    std::string e = er::cuda::error_text(cudaSetDevice(h->device), "cudaSetDevice");
    if (e.empty()) e = f(*h->t);
    return report(e, err, err_bytes);
  } catch (const std::exception& ex) {
    return report(std::string(what) + " failed: " + ex.what(), err, err_bytes);
  }
}

int train_forward(void* handle, float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                  const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                  int32_t dropout, uint64_t step, char* err, size_t err_bytes) {
  return on_trainer(handle, "the GPU training forward pass", err, err_bytes, [&](CudaTrainer& t) {
    return t.forward(logits, hidden, hidden16, ids, positions, types, mask, B, T, dropout != 0, step);
  });
}

int train_backward(void* handle, const float* dlogits, char* err, size_t err_bytes) {
  return on_trainer(handle, "the GPU backward pass", err, err_bytes, [&](CudaTrainer& t) { return t.backward(dlogits); });
}

int train_zero_grad(void* handle, char* err, size_t err_bytes) {
  return on_trainer(handle, "zeroing the GPU gradients", err, err_bytes, [&](CudaTrainer& t) { return t.zero_grad(); });
}

int train_adamw(void* handle, const er::cuda::HostAdamW* o, int64_t t, double* norm, char* err, size_t err_bytes) {
  if (!o) return report("train_adamw: null options", err, err_bytes);
  return on_trainer(handle, "the GPU AdamW step", err, err_bytes, [&](CudaTrainer& tr) { return tr.adamw(*o, t, norm); });
}

int train_sync(void* handle, int32_t what, char* err, size_t err_bytes) {
  if (what < 0 || what > 2) return report("train_sync: unknown direction", err, err_bytes);
  return on_trainer(handle, "copying the task model between host and GPU", err, err_bytes,
                    [&](CudaTrainer& t) { return t.sync(what); });
}

void train_memory(void* handle, uint64_t* weight_bytes, uint64_t* buffer_bytes) {
  const TrainHandle* h = static_cast<const TrainHandle*>(handle);
  if (weight_bytes) *weight_bytes = h->t->weight_bytes();
  if (buffer_bytes) *buffer_bytes = h->t->buffer_bytes();
}

void train_destroy(void* handle) {
  TrainHandle* h = static_cast<TrainHandle*>(handle);
  if (!h) return;
  cudaSetDevice(h->device);
  delete h;
}

const ErCudaBackend kBackend = {
    ER_CUDA_BACKEND_ABI, (uint32_t)sizeof(er::cuda::HostEncoder), devices, runtime_version, create, forward,
    forward_from,        task_forward,                            memory,          destroy,
    train_create,        train_forward,                           train_backward,  train_zero_grad,
    train_adamw,         train_sync,                              train_memory,    train_destroy,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const ErCudaBackend* er_cuda_backend() { return &kBackend; }
