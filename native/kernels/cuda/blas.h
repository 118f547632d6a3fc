// GEMMs on the GPU through cuBLASLt (linear layers, with the bias fused in its epilogue)
// and cuBLAS (attention's strided-batched products), in the row-major conventions of
// kernels/gemm.h: C (M, N) = alpha op(A) op(B) + beta C, leading dimensions in elements.
//
// Inputs are fp32, bf16 or fp16; accumulation and C are fp32 (CUBLAS_COMPUTE_32F: no TF32,
// so fp32 results are full fp32 products). cuBLASLt's GELU epilogues compute the tanh
// approximation, not BERT's erf GELU, so GELU stays an own kernel (cuda_ops.h).
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace er {
namespace cuda {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2 };

const char* blas_status_text(cublasStatus_t s);

class Blas {
 public:
  // a handle pair, a workspace and a stream to run on; returns "" or the error
  static std::string create(cudaStream_t stream, std::unique_ptr<Blas>* out);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // C (M, N) = alpha op(A) op(B) + beta C [+ bias (N) on every row]; A and B of type `in`,
  // C and bias fp32. The plan of each shape and operand alignment is chosen once (cuBLASLt's
  // heuristic, told how the pointers are aligned) and kept.
  std::string gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                   int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias,
                   DType in);

  // batch of fp32 products C_i = alpha op(A_i) op(B_i) + beta C_i with A_i = A + i strideA, ...
  std::string gemm_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta,
                           float* C, int64_t ldc, int64_t strideC, int64_t batch);

 private:
  Blas() = default;
  struct Plan;
  // the shape, the bias, the input type, beta != 0 and the operands' alignment
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int32_t, bool, uint32_t>;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  float* bias_copy_ = nullptr;  // an aligned copy of a bias that is not 16-byte aligned
  int64_t bias_cap_ = 0;
};

}  // namespace cuda
}  // namespace er
