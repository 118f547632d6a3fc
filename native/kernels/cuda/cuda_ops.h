// The GPU kernels of the encoder and the training engine that are not GEMMs: the CUDA
// mirror of kernels/ops.h and kernels/train_ops.h, with the same conventions (outputs
// first, then saved state, inputs, weights, sizes; forward outputs written, parameter
// gradients accumulated) and the same arithmetic, so each is tested against its CPU
// reference (native/tests/cuda_kernels_test.cpp).
//
// Every pointer is device memory. Each launcher enqueues its kernels on `stream` and
// returns "" or an error that names the kernel and carries the CUDA error text; none
// aborts, exits or synchronises (errors of the kernel's own execution surface at the
// caller's next synchronisation, see check_stream).
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <string>

namespace er {
namespace cuda {

// "" when a call succeeded, else "<what>: <CUDA error name>: <text>"
std::string error_text(cudaError_t e, const char* what);
// waits for the stream and reports an error a kernel hit while it ran
std::string check_stream(cudaStream_t stream, const char* what);
// A failed cudaMalloc of `bytes` for `what`: out of memory says how much and what to do
// (advice), anything else is error_text's
inline std::string alloc_error(cudaError_t e, size_t bytes, const char* what,
                               const char* advice = "use a smaller batch or sequence length, or --device cpu") {
  if (e != cudaErrorMemoryAllocation) return error_text(e, what);
  char size[64];
  if (bytes >= (size_t(1) << 20)) std::snprintf(size, sizeof size, "%.1f MiB", bytes / 1048576.0);
  else if (bytes >= 1024) std::snprintf(size, sizeof size, "%.0f KiB", bytes / 1024.0);
  else std::snprintf(size, sizeof size, "%zu bytes", bytes);
  return std::string("out of GPU memory allocating ") + size + " for " + what + "; " + advice;
}

// ---- conversions (IEEE binary16 and bfloat16, round to nearest even; NaN stays NaN) ----
std::string f32_to_f16(uint16_t* out, const float* inp, int64_t n, cudaStream_t stream);
std::string f16_to_f32(float* out, const uint16_t* inp, int64_t n, cudaStream_t stream);
std::string f32_to_bf16(uint16_t* out, const float* inp, int64_t n, cudaStream_t stream);
std::string bf16_to_f32(float* out, const uint16_t* inp, int64_t n, cudaStream_t stream);

// ---- forward ----
// out (N, C) = gelu(inp + bias), exact erf GELU; bias (C) may be null; out may alias inp
std::string bias_gelu_forward(float* out, const float* inp, const float* bias, int64_t N, int64_t C,
                              cudaStream_t stream);
// out (n) = max(inp, 0), as kernels/train_ops.h relu_forward; out may alias inp
std::string relu_forward(float* out, const float* inp, int64_t n, cudaStream_t stream);
// out (n) += inp (an adapter's residual)
std::string add_into(float* out, const float* inp, int64_t n, cudaStream_t stream);
// out (N, C) = LayerNorm(inp + residual) * weight + bias (two-pass mean and variance, one
// block per row); residual may be null; mean, rstd (N) written when non-null; out may alias inp
std::string layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* residual,
                              const float* weight, const float* bias, int64_t N, int64_t C, float eps,
                              cudaStream_t stream);
// in place on rows of scores (rows, T): p = softmax(scale * s) over the keys whose key_mask
// (T) is non-zero; masked keys get 0; a row with no key left becomes all 0
std::string softmax_masked_forward(float* scores, const int32_t* key_mask, float scale, int64_t rows, int64_t T,
                                   cudaStream_t stream);
// the same over a batch: scores (B, rows_per_row, T), row b's keys masked by mask (B, T)
// (attention: rows_per_row = heads x T)
std::string softmax_masked_batched(float* scores, const int32_t* mask, float scale, int64_t B, int64_t rows_per_row,
                                   int64_t T, cudaStream_t stream);
// MPNet's relative position bias: scores (B, heads, T, T) += bias[h][j - i + T - 1] for query i
// and key j, bias (heads, 2T - 1) as model/encoder.h's relative_bias builds it
std::string add_relative_bias(float* scores, const float* bias, int64_t B, int64_t heads, int64_t T,
                              cudaStream_t stream);
// out (N, C) = word[ids] + position[positions] + type[types]; position, type (and types) may
// be null (none added, type 0)
std::string embedding_sum(float* out, const float* word, const float* position, const float* type,
                          const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N,
                          int64_t C, cudaStream_t stream);

// ---- backward ----
// dinp (n) = dout * gelu'(inp); dinp may alias dout
std::string gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t stream);
// dinp (N, C) from dout; dweight, dbias (C) += (may be null); inp is the LayerNorm's input
// (x + residual), mean, rstd (N) from forward. The parameter gradients are column sums in a
// fixed order (deterministic). dinp may alias dout.
std::string layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                               cudaStream_t stream);
// ds (rows, T) = p * (dp - sum_t p dp); ds may alias dp
std::string softmax_backward(float* ds, const float* p, const float* dp, int64_t rows, int64_t T,
                             cudaStream_t stream);
// dinp (n) = dout where inp > 0, else 0; dinp may alias dout
std::string relu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t stream);
// dtable (rows, C) += dout (N, C) scattered by index (N; null: all row 0), in the CPU's
// order (kernels/train_ops.h embedding_backward)
std::string embedding_backward(float* dtable, const float* dout, const int32_t* index, int64_t N, int64_t C,
                               cudaStream_t stream);
// MPNet: dbias (heads, 2T - 1) += the gradient of add_relative_bias's bias from ds (B, heads,
// T, T), summed in a fixed order
std::string relative_bias_backward(float* dbias, const float* ds, int64_t B, int64_t heads, int64_t T,
                                   cudaStream_t stream);
// dbias (C) += column sums of dout (N, C), in a fixed order
std::string bias_backward(float* dbias, const float* dout, int64_t N, int64_t C, cudaStream_t stream);

// ---- training ----
// Softmax cross-entropy over logits (N, L) with targets (N) (< 0: ignored), class weights
// (L) and a logit mask (N, L; where 0 the logit is left out), both may be null: loss (1
// float) = sum_i w[y_i] nll_i / sum_i w[y_i] (0 when every target is ignored); dlogits
// (N, L) = scale w[y_i] (softmax_i - onehot_i) / sum_i w[y_i] (null: not computed).
// scratch: 2 N + 1 floats.
std::string cross_entropy(float* dlogits, float* loss, const float* logits, const int32_t* targets,
                          const float* weights, const uint8_t* mask, int64_t N, int64_t L, float scale,
                          float* scratch, cudaStream_t stream);
// One AdamW step, PyTorch's formula (as kernels/train_ops.h adamw_update)
std::string adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int64_t t, float grad_scale,
                         cudaStream_t stream);
// out[0] (double) += the sum of squares of x (n), in a fixed order; partial holds
// kSumSquaresParts doubles of scratch (the global gradient norm)
constexpr int kSumSquaresParts = 1024;
std::string sum_squares(double* out, double* partial, const float* x, int64_t n, cudaStream_t stream);
// Dropout with the CPU's counter-based generator: the same (seed, stream) keeps the same
// elements on either device. out may alias inp; dinp may alias dout.
std::string dropout_forward(float* out, uint8_t* mask, const float* inp, int64_t n, float p, uint64_t seed,
                            uint64_t stream_id, cudaStream_t stream);
std::string dropout_backward(float* dinp, const uint8_t* mask, const float* dout, int64_t n, float p,
                             cudaStream_t stream);

}  // namespace cuda
}  // namespace er
