#include "kernels/gemm.h"
#include <dnnl.h>
#include "kernels/ops.h"

namespace er {

bool gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  if (M == 0 || N == 0) return true;
  dnnl_status_t st = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda,
                                B, ldb, beta, C, ldc);
  return st == dnnl_success;
}

bool matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t N, int64_t C, int64_t OC) {
  if (!gemm_f32(false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC)) return false;
  if (bias) ops().bias_add(out, bias, N, OC);
  return true;
}

}  // namespace er
