// GEMMs through oneDNN's sgemm (row-major). Never hand-rolled for large shapes.
#pragma once
#include <cstdint>

namespace er {

// C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major, op = transpose when trans is true.
// Returns false (and leaves C unspecified) when oneDNN reports an error.
bool gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

// out (N, OC) = inp (N, C) @ weight^T + bias, weight (OC, C) as Hugging Face stores Linear.
// bias may be null.
bool matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t N, int64_t C, int64_t OC);

// out (N, OC) = inp (N, C) @ weight^T + bias with bfloat16 inputs and weights and
// fp32 accumulation and output (oneDNN matmul; AVX512-BF16 / AMX where present).
bool matmul_forward_bf16(float* out, const uint16_t* inp, const uint16_t* weight,
                         const float* bias, int64_t N, int64_t C, int64_t OC);

// The oneDNN implementation the bf16 matmul uses on this CPU (e.g. "brg:avx512_core_bf16").
const char* bf16_matmul_impl();

}  // namespace er
