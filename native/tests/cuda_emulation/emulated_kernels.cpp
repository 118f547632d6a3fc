// The emulated GPU backend's kernels and GEMMs: kernels/cuda/cuda_ops.h and blas.h as their
// headers specify them, computed on the CPU by the CPU engine's own kernels. Built with
// the stand-in CUDA runtime of this directory into er_emulated_cuda_backend.so together with
// the real backend's host code (model/cuda_backend.cpp, cuda_encoder.cpp, cuda_trainer.cpp),
// so tests on machines without a GPU run everything the GPU path does except the CUDA
// kernels themselves (those are checked against the same CPU kernels on a GPU:
// native/tests/cuda_kernels_test.cpp). Never shipped.
#include <cmath>
#include <string>
#include <vector>
#include "kernels/cuda/blas.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"

namespace er {
namespace cuda {

std::string error_text(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return "";
  return std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

std::string check_stream(cudaStream_t, const char*) { return ""; }

std::string f32_to_f16(uint16_t* out, const float* inp, int64_t n, cudaStream_t) {
  ops_reference().f32_to_f16(out, inp, n);
  return "";
}
std::string f16_to_f32(float* out, const uint16_t* inp, int64_t n, cudaStream_t) {
  ops_reference().f16_to_f32(out, inp, n);
  return "";
}
std::string f32_to_bf16(uint16_t* out, const float* inp, int64_t n, cudaStream_t) {
  ops_reference().f32_to_bf16(out, inp, n);
  return "";
}
std::string bf16_to_f32(float* out, const uint16_t* inp, int64_t n, cudaStream_t) {
  ops_reference().bf16_to_f32(out, inp, n);
  return "";
}

std::string bias_gelu_forward(float* out, const float* inp, const float* bias, int64_t N, int64_t C, cudaStream_t) {
  for (int64_t i = 0; i < N * C; i++) out[i] = inp[i] + (bias ? bias[i % C] : 0.0f);
  ops().gelu_forward(out, out, N * C);
  return "";
}

std::string relu_forward(float* out, const float* inp, int64_t n, cudaStream_t) {
  er::relu_forward(out, inp, n);
  return "";
}

std::string add_into(float* out, const float* inp, int64_t n, cudaStream_t) {
  for (int64_t i = 0; i < n; i++) out[i] += inp[i];
  return "";
}

std::string layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* residual,
                              const float* weight, const float* bias, int64_t N, int64_t C, float eps, cudaStream_t) {
  ops().layernorm_forward(out, mean, rstd, inp, residual, weight, bias, N, C, eps);
  return "";
}

std::string softmax_masked_forward(float* scores, const int32_t* key_mask, float scale, int64_t rows, int64_t T,
                                   cudaStream_t) {
  ops().softmax_masked_forward(scores, key_mask, scale, rows, T);
  return "";
}

std::string softmax_masked_batched(float* scores, const int32_t* mask, float scale, int64_t B, int64_t rows_per_row,
                                   int64_t T, cudaStream_t) {
  for (int64_t b = 0; b < B; b++) ops().softmax_masked_forward(scores + b * rows_per_row * T, mask + b * T, scale, rows_per_row, T);
  return "";
}

std::string add_relative_bias(float* scores, const float* bias, int64_t B, int64_t heads, int64_t T, cudaStream_t) {
  const int64_t W = 2 * T - 1;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) scores[((b * heads + h) * T + i) * T + j] += bias[h * W + j - i + T - 1];
  return "";
}

std::string embedding_sum(float* out, const float* word, const float* position, const float* type, const int32_t* ids,
                          const int32_t* positions, const int32_t* types, int64_t N, int64_t C, cudaStream_t) {
  for (int64_t r = 0; r < N; r++)
    for (int64_t c = 0; c < C; c++) {
      float v = word[(int64_t)ids[r] * C + c];
      if (position) v += position[(int64_t)positions[r] * C + c];
      if (type) v += type[(int64_t)(types ? types[r] : 0) * C + c];
      out[r * C + c] = v;
    }
  return "";
}

std::string gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t) {
  ops().gelu_backward(dinp, inp, dout, n);
  return "";
}

std::string layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                               cudaStream_t) {
  ops().layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  return "";
}

std::string softmax_backward(float* ds, const float* p, const float* dp, int64_t rows, int64_t T, cudaStream_t) {
  ops().softmax_backward(ds, p, dp, rows, T);
  return "";
}

std::string relu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t) {
  er::relu_backward(dinp, inp, dout, n);
  return "";
}

std::string embedding_backward(float* dtable, const float* dout, const int32_t* index, int64_t N, int64_t C,
                               cudaStream_t) {
  std::vector<int32_t> zeros;
  if (!index) zeros.assign((size_t)N, 0), index = zeros.data();
  er::embedding_backward(dtable, dout, index, N, C);
  return "";
}

std::string relative_bias_backward(float* dbias, const float* ds, int64_t B, int64_t heads, int64_t T, cudaStream_t) {
  const int64_t W = 2 * T - 1;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) dbias[h * W + j - i + T - 1] += ds[((b * heads + h) * T + i) * T + j];
  return "";
}

std::string bias_backward(float* dbias, const float* dout, int64_t N, int64_t C, cudaStream_t) {
  ops().bias_backward(dbias, dout, N, C);
  return "";
}

std::string cross_entropy(float* dlogits, float* loss, const float* logits, const int32_t* targets, const float* weights,
                          const uint8_t* mask, int64_t N, int64_t L, float scale, float*, cudaStream_t) {
  std::vector<float> scratch;
  if (!dlogits) scratch.resize((size_t)(N * L)), dlogits = scratch.data();
  *loss = (float)cross_entropy_forward_backward(dlogits, logits, targets, weights, mask, N, L, scale);
  return "";
}

std::string adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int64_t t, float grad_scale, cudaStream_t) {
  er::adamw_update(param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, t, grad_scale);
  return "";
}

std::string sum_squares(double* out, double*, const float* x, int64_t n, cudaStream_t) {
  if (n > 0) out[0] += er::sum_squares(x, n);
  return "";
}

std::string dropout_forward(float* out, uint8_t* mask, const float* inp, int64_t n, float p, uint64_t seed,
                            uint64_t stream_id, cudaStream_t) {
  er::dropout_forward(out, mask, inp, n, p, seed, stream_id);
  return "";
}

std::string dropout_backward(float* dinp, const uint8_t* mask, const float* dout, int64_t n, float p, cudaStream_t) {
  er::dropout_backward(dinp, mask, dout, n, p);
  return "";
}

// ---- GEMMs

const char* blas_status_text(cublasStatus_t) { return "emulated cuBLAS error"; }

struct Blas::Plan {};

std::string Blas::create(cudaStream_t stream, std::unique_ptr<Blas>* out) {
  std::unique_ptr<Blas> b(new Blas);
  b->stream_ = stream;
  *out = std::move(b);
  return "";
}

Blas::~Blas() = default;

namespace {

// an operand of `in` (rows x cols at leading dimension ld) as fp32, rounded as the GPU reads it
const float* as_f32(const void* p, int64_t rows, int64_t cols, int64_t ld, DType in, std::vector<float>& buf) {
  if (in == DType::F32) return (const float*)p;
  const int64_t n = rows > 0 ? (rows - 1) * ld + cols : 0;
  buf.resize((size_t)n);
  if (in == DType::BF16) ops_reference().bf16_to_f32(buf.data(), (const uint16_t*)p, n);
  else ops_reference().f16_to_f32(buf.data(), (const uint16_t*)p, n);
  return buf.data();
}

}  // namespace

std::string Blas::gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                       int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias,
                       DType in) {
  if (M <= 0 || N <= 0) return "";
  std::vector<float> a32, b32;
  const float* a = as_f32(A, transA ? K : M, transA ? M : K, lda, in, a32);
  const float* b = as_f32(B, transB ? N : K, transB ? K : N, ldb, in, b32);
  if (!gemm_f32(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc)) return "emulated GEMM failed";
  if (bias)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] += bias[j];
  return "";
}

std::string Blas::gemm_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                               int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta,
                               float* C, int64_t ldc, int64_t strideC, int64_t batch) {
  for (int64_t i = 0; i < batch; i++)
    if (!gemm_f32(transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta, C + i * strideC, ldc))
      return "emulated batched GEMM failed";
  return "";
}

}  // namespace cuda
}  // namespace er
