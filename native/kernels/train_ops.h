// Training-only kernels that are not per-ISA (they are memory-bound one-pass loops the
// compiler vectorizes as they are): dropout, ReLU, cross-entropy, AdamW, embedding
// gradients. Same conventions as ops.h: outputs first; parameter gradients +=.
#pragma once
#include <cstdint>

namespace er {

// Dropout with a counter-based generator: element i of stream `stream` is kept iff
// hash(seed, stream, i) >= p * 2^32, so masks do not depend on threads or order.
// out (n) = keep ? inp / (1 - p) : 0; mask (n) = keep. out may alias inp.
void dropout_forward(float* out, uint8_t* mask, const float* inp, int64_t n, float p,
                     uint64_t seed, uint64_t stream);
// dinp (n) = mask ? dout / (1 - p) : 0; dinp may alias dout.
void dropout_backward(float* dinp, const uint8_t* mask, const float* dout, int64_t n, float p);

void relu_forward(float* out, const float* inp, int64_t n);
void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n);

// Softmax cross-entropy over rows of logits (N, L) with targets (N); a target < 0 is
// ignored. weights (L) may be null. Returns the weighted mean loss
// sum_i w[y_i] nll_i / sum_i w[y_i] (0 when every target is ignored) and writes
// dlogits (N, L) = scale * w[y_i] (softmax_i - onehot_i) / sum_i w[y_i] when non-null.
// mask (N, L) may be null; where it is 0 the logit is excluded (as if -infinity).
double cross_entropy_forward_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      const float* weights, const uint8_t* mask, int64_t N,
                                      int64_t L, float scale);

// One AdamW step on n values, PyTorch's formula: p *= 1 - lr * wd; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// grad_scale multiplies g first (global-norm clipping).
void adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t t,
                  float grad_scale);

// Sum of squares of n values (in double), for the global gradient norm.
double sum_squares(const float* x, int64_t n);

// dtable (rows, C) += dout (N, C) scattered by index (N); serial, so deterministic.
void embedding_backward(float* dtable, const float* dout, const int32_t* index, int64_t N,
                        int64_t C);

}  // namespace er
