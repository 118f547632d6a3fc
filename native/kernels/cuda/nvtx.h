// NVTX v3 ranges (header-only, from the CUDA toolkit) in the "embedding-recycler" domain:
// Nsight Systems shows them on the CPU timeline beside the kernels they enqueue
// (nsys profile -t cuda,nvtx ...). Outside a profiler a range costs one call that finds no
// tool attached. Without the NVTX headers the ranges compile to nothing.
#pragma once
#if defined(__has_include)
#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define ER_HAVE_NVTX 1
#endif
#endif
#include <string>

namespace er {
namespace cuda {

#ifdef ER_HAVE_NVTX
struct NvtxDomainName {
  static constexpr const char* name = "embedding-recycler";
};

// One range, open for the lifetime of the object.
class NvtxRange {
 public:
  explicit NvtxRange(const std::string& message) {
    static nvtxDomainHandle_t domain = nvtxDomainCreateA(NvtxDomainName::name);
    domain_ = domain;
    nvtxEventAttributes_t a = {};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = message.c_str();
    nvtxDomainRangePushEx(domain_, &a);
  }
  ~NvtxRange() { nvtxDomainRangePop(domain_); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;

 private:
  nvtxDomainHandle_t domain_;
};
#else
class NvtxRange {
 public:
  explicit NvtxRange(const std::string&) {}
};
#endif

}  // namespace cuda
}  // namespace er
