#include "kernels/gemm.h"
#include <dnnl.h>
#include <dnnl.hpp>
#include <vector>
#include "kernels/linear.h"
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


bool gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  if (M == 0 || N == 0) return true;
  if (beta != 0.0f && beta != 1.0f) return false;
  using dt = dnnl::memory::data_type;
  // the stored regions of A and B, rounded to bf16 with the same leading dimensions
  thread_local std::vector<uint16_t> a16, b16;
  const int64_t a_rows = transA ? K : M, a_cols = transA ? M : K;
  const int64_t b_rows = transB ? N : K, b_cols = transB ? K : N;
  const int64_t a_len = (a_rows - 1) * lda + a_cols, b_len = (b_rows - 1) * ldb + b_cols;
  if ((int64_t)a16.size() < a_len) a16.resize(a_len);
  if ((int64_t)b16.size() < b_len) b16.resize(b_len);
  const OpsTable& K_ = ops();
  if (lda == a_cols) K_.f32_to_bf16(a16.data(), A, a_len);
  else for (int64_t r = 0; r < a_rows; r++) K_.f32_to_bf16(a16.data() + r * lda, A + r * lda, a_cols);
  if (ldb == b_cols) K_.f32_to_bf16(b16.data(), B, b_len);
  else for (int64_t r = 0; r < b_rows; r++) K_.f32_to_bf16(b16.data() + r * ldb, B + r * ldb, b_cols);
  try {
    dnnl::engine& eng = onednn_engine();
    // logical A (M, K) and B (K, N) described by strides over the stored layouts
    dnnl::memory::desc da({M, K}, dt::bf16, transA ? dnnl::memory::dims{1, lda} : dnnl::memory::dims{lda, 1});
    dnnl::memory::desc db({K, N}, dt::bf16, transB ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
    dnnl::memory::desc dc({M, N}, dt::f32, dnnl::memory::dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta == 1.0f) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(da, db, dc), attr, eng);
    dnnl::matmul prim(pd);
    dnnl::stream s(eng);
    dnnl::memory ma(da, eng, a16.data()), mb(db, eng, b16.data()), mc(dc, eng, C);
    prim.execute(s, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    s.wait();
  } catch (const dnnl::error&) {
    return false;
  }
  return true;
}

}  // namespace er
