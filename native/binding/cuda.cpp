// Opens the GPU backend with dlopen (never linked: see model/cuda_backend.h) and exports
// cudaInfo() to JavaScript.
#include "binding/cuda.h"
#include <dlfcn.h>
#include <napi.h>
#include <cstdlib>
#include <sys/stat.h>

namespace er_binding {

namespace {

constexpr size_t kErrBytes = 2048;

std::string addon_dir() {
  Dl_info info;
  if (dladdr((void*)&addon_dir, &info) == 0 || !info.dli_fname) return ".";
  std::string f = info.dli_fname;
  size_t slash = f.rfind('/');
  return slash == std::string::npos ? "." : f.substr(0, slash);
}

struct Opened {
  const ErCudaBackend* api = nullptr;
  std::string why;
};

Opened open_backend() {
  Opened o;
  const std::string path = cuda_backend_path();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    o.why = "this installation has no GPU backend (" + path +
            " is absent: the addon was built without the CUDA toolkit, or the -cuda platform package is not "
            "installed); install the CUDA toolkit and rebuild (npm rebuild embedding-recycler --build-from-source), "
            "or use device 'cpu'";
    return o;
  }
  dlerror();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    o.why = "the GPU backend " + path + " could not be loaded: " + (e ? e : "unknown dlopen error") +
            " (cuBLAS 13 comes with the CUDA toolkit or from pip install nvidia-cublas); use device 'cpu'";
    return o;
  }
  auto entry = (ErCudaBackendEntry)dlsym(lib, "er_cuda_backend");
  const ErCudaBackend* api = entry ? entry() : nullptr;
  if (!api) {
    o.why = "the GPU backend " + path + " has no er_cuda_backend entry; reinstall it";
    return o;  // the library stays open: unloading CUDA's runtime is not worth the risk
  }
  if (api->abi != ER_CUDA_BACKEND_ABI || api->host_encoder_bytes != sizeof(er::cuda::HostEncoder)) {
    o.why = "the GPU backend " + path + " is from another build (interface " + std::to_string(api->abi) +
            ", this addon's " + std::to_string(ER_CUDA_BACKEND_ABI) + "); rebuild or reinstall both together";
    return o;
  }
  o.api = api;
  return o;
}

}  // namespace

std::string cuda_backend_path() {
  const char* env = std::getenv("ER_CUDA_BACKEND");
  if (env && *env) return env;
  return addon_dir() + "/embedding_recycler_cuda.so";
}

const ErCudaBackend* cuda_backend(std::string* why) {
  static std::once_flag once;
  static Opened opened;
  std::call_once(once, [] { opened = open_backend(); });
  if (!opened.api && why) *why = opened.why;
  return opened.api;
}

int32_t backend_precision(const std::string& precision) {
  using P = er::cuda::BackendPrecision;
  return (int32_t)(precision == "fp16" ? P::F16 : precision == "bf16" ? P::BF16 : P::F32);
}

std::string GpuEncoder::create(const er::cuda::HostEncoder& host, int32_t precision, int32_t device,
                               std::shared_ptr<GpuEncoder>* out) {
  std::string why;
  const ErCudaBackend* api = cuda_backend(&why);
  if (!api) return why;
  char err[kErrBytes] = {0};
  void* h = nullptr;
  if (api->create(&host, precision, device, &h, err, sizeof err) != 0) return err[0] ? err : "the GPU encoder failed to load";
  std::shared_ptr<GpuEncoder> g(new GpuEncoder);
  g->api_ = api;
  g->handle_ = h;
  g->device_ = device;
  *out = std::move(g);
  return "";
}

GpuEncoder::~GpuEncoder() {
  if (api_ && handle_) api_->destroy(handle_);
}

std::string GpuEncoder::forward(float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
                                const int32_t* mask, int64_t B, int64_t T, int64_t to_layer) {
  std::lock_guard<std::mutex> lock(mu_);
  char err[kErrBytes] = {0};
  if (api_->forward(handle_, out, ids, positions, types, mask, B, T, to_layer, err, sizeof err) != 0)
    return err[0] ? err : "the GPU forward pass failed";
  return "";
}

std::string GpuEncoder::forward_from(float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                                     int64_t from_layer, int64_t to_layer) {
  std::lock_guard<std::mutex> lock(mu_);
  char err[kErrBytes] = {0};
  if (api_->forward_from(handle_, out, hidden, mask, B, T, from_layer, to_layer, err, sizeof err) != 0)
    return err[0] ? err : "the GPU forward pass failed";
  return "";
}

std::string GpuEncoder::task_forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                                     const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B,
                                     int64_t T, int64_t from_layer) {
  std::lock_guard<std::mutex> lock(mu_);
  char err[kErrBytes] = {0};
  if (api_->task_forward(handle_, logits, hidden, hidden16, ids, positions, types, mask, B, T, from_layer, err,
                         sizeof err) != 0)
    return err[0] ? err : "the GPU task forward pass failed";
  return "";
}

void GpuEncoder::memory(uint64_t* weight_bytes, uint64_t* buffer_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  api_->memory(handle_, weight_bytes, buffer_bytes);
}

std::string GpuTrainer::create(const er::cuda::HostEncoder& host, const er::cuda::HostTrain& train, int32_t device,
                               std::shared_ptr<GpuTrainer>* out) {
  std::string why;
  const ErCudaBackend* api = cuda_backend(&why);
  if (!api) return why;
  char err[kErrBytes] = {0};
  void* h = nullptr;
  if (api->train_create(&host, &train, device, &h, err, sizeof err) != 0)
    return err[0] ? err : "the task model failed to load on the GPU";
  std::shared_ptr<GpuTrainer> g(new GpuTrainer);
  g->api_ = api;
  g->handle_ = h;
  *out = std::move(g);
  return "";
}

GpuTrainer::~GpuTrainer() {
  if (api_ && handle_) api_->train_destroy(handle_);
}

std::string GpuTrainer::forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                                const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B,
                                int64_t T, bool dropout, uint64_t step) {
  char err[kErrBytes] = {0};
  if (api_->train_forward(handle_, logits, hidden, hidden16, ids, positions, types, mask, B, T, dropout ? 1 : 0, step,
                          err, sizeof err) != 0)
    return err[0] ? err : "the GPU training forward pass failed";
  return "";
}

std::string GpuTrainer::backward(const float* dlogits) {
  char err[kErrBytes] = {0};
  if (api_->train_backward(handle_, dlogits, err, sizeof err) != 0) return err[0] ? err : "the GPU backward pass failed";
  return "";
}

std::string GpuTrainer::zero_grad() {
  char err[kErrBytes] = {0};
  if (api_->train_zero_grad(handle_, err, sizeof err) != 0) return err[0] ? err : "zeroing the GPU gradients failed";
  return "";
}

std::string GpuTrainer::adamw(const er::cuda::HostAdamW& o, int64_t t, double* norm) {
  char err[kErrBytes] = {0};
  if (api_->train_adamw(handle_, &o, t, norm, err, sizeof err) != 0) return err[0] ? err : "the GPU AdamW step failed";
  return "";
}

std::string GpuTrainer::sync(int32_t what) {
  char err[kErrBytes] = {0};
  if (api_->train_sync(handle_, what, err, sizeof err) != 0)
    return err[0] ? err : "copying the task model between host and GPU failed";
  return "";
}

void GpuTrainer::memory(uint64_t* weight_bytes, uint64_t* buffer_bytes) {
  api_->train_memory(handle_, weight_bytes, buffer_bytes);
}

}  // namespace er_binding

// cudaInfo() -> { backend, available, reason?, runtime?, devices: string[] }: never throws;
// says whether the GPU backend is installed, loads, and which GPUs it sees.
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", er_binding::cuda_backend_path());
  Napi::Array list = Napi::Array::New(env);
  std::string why;
  const ErCudaBackend* api = er_binding::cuda_backend(&why);
  o.Set("loaded", api != nullptr);
  if (!api) {
    o.Set("available", false);
    o.Set("reason", why);
    o.Set("devices", list);
    return o;
  }
  o.Set("runtime", api->runtime_version());
  char text[8192] = {0};
  int n = api->devices(text, sizeof text);
  o.Set("available", n > 0);
  if (n <= 0) {
    o.Set("reason", text[0] ? text : "no CUDA GPU was found; use device 'cpu'");
  } else {
    std::string all = text;
    uint32_t i = 0;
    for (size_t start = 0; start < all.size();) {
      size_t end = all.find('\n', start);
      if (end == std::string::npos) end = all.size();
      if (end > start) list.Set(i++, all.substr(start, end - start));
      start = end + 1;
    }
  }
  o.Set("devices", list);
  return o;
}
