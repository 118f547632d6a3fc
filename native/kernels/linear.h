// Linear layers through oneDNN's matmul primitive: out (N, OC) = act(inp (N, C) @ W^T + b).
// The weight (OC, C), as Hugging Face stores it, is reordered once into the blocked
// layout the primitive prefers ("prepacked"), in fp32 or bf16; the bias and GELU are
// fused into the GEMM as post-operations. Primitives are cached per row count N.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace er {

enum class LinearAct : int32_t { None = 0, Gelu = 1 };

class Linear {
 public:
  // weight (OC, C) fp32 and bias (OC) fp32 (may be null) must outlive the Linear.
  // bf16: the GEMM takes bfloat16 inputs and weights, accumulates and writes fp32.
  Linear(const float* weight, const float* bias, int64_t C, int64_t OC, bool bf16);
  ~Linear();
  Linear(const Linear&) = delete;
  Linear& operator=(const Linear&) = delete;
  // out (N, OC) fp32. inp is fp32 (N, C), or bf16 (N, C) when the Linear is bf16.
  // Returns an empty string or oneDNN's error message.
  std::string forward(float* out, const void* inp, int64_t N, LinearAct act);
  int64_t in() const { return C_; }
  int64_t out() const { return OC_; }
  bool bf16() const { return bf16_; }
  uint64_t packed_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t C_, OC_;
  bool bf16_;
};

}  // namespace er

namespace dnnl { struct engine; }

namespace er {

// The process's oneDNN CPU engine, shared by every primitive of the kernels.
dnnl::engine& onednn_engine();

// The oneDNN implementation a linear layer gets on this CPU (e.g. "brg:avx512_core_bf16").
std::string linear_impl_info(bool bf16);

}  // namespace er
