#include "kernels/gemm.h"
#include <dnnl.h>
#include <dnnl.hpp>
#include <string>
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

static dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

static dnnl::matmul::primitive_desc bf16_pd(int64_t N, int64_t C, int64_t OC) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::memory::desc a({N, C}, dt::bf16, tag::ab);
  dnnl::memory::desc b({C, OC}, dt::bf16, tag::ba);  // weight stored (OC, C) row-major
  dnnl::memory::desc c({N, OC}, dt::f32, tag::ab);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), cpu_engine());
}

bool matmul_forward_bf16(float* out, const uint16_t* inp, const uint16_t* weight,
                         const float* bias, int64_t N, int64_t C, int64_t OC) {
  if (N == 0 || OC == 0) return true;
  try {
    // oneDNN's primitive cache makes repeated shapes cheap to re-create
    auto pd = bf16_pd(N, C, OC);
    dnnl::matmul prim(pd);
    dnnl::engine& eng = cpu_engine();
    dnnl::stream s(eng);
    dnnl::memory ma(pd.src_desc(), eng, const_cast<uint16_t*>(inp));
    dnnl::memory mb(pd.weights_desc(), eng, const_cast<uint16_t*>(weight));
    dnnl::memory mc(pd.dst_desc(), eng, out);
    prim.execute(s, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    s.wait();
  } catch (const dnnl::error&) {
    return false;
  }
  if (bias) ops().bias_add(out, bias, N, OC);
  return true;
}

const char* bf16_matmul_impl() {
  static std::string impl = [] {
    try {
      return std::string(bf16_pd(256, 256, 256).impl_info_str());
    } catch (const dnnl::error& e) {
      return std::string("unavailable: ") + e.what();
    }
  }();
  return impl.c_str();
}

}  // namespace er
