// GEMMs through oneDNN's sgemm (row-major). Never hand-rolled for large shapes.
#pragma once
#include <cstdint>

namespace er {

// C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major, op = transpose when trans is true.
// Returns false (and leaves C unspecified) when oneDNN reports an error.
bool gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

// The same product with bfloat16 inputs (A and B are rounded to bf16 on the way in)
// and fp32 accumulation and output, through oneDNN's matmul primitive. beta must be 0 or 1.
bool gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

}  // namespace er
