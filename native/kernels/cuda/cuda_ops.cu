// CUDA kernels of kernels/cuda/cuda_ops.h. Row kernels run one block (LayerNorm) or one
// warp (softmax, cross-entropy) per row; elementwise kernels a grid-stride loop. Every
// reduction has a fixed order for a given launch shape, so results do not change from run
// to run.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/rng.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <algorithm>
#include <cmath>

namespace er {
namespace cuda {

namespace {

constexpr int kBlock = 256;      // threads of elementwise and LayerNorm blocks
constexpr int kWarpsPerBlock = 4;  // rows of a warp-per-row kernel's block
constexpr int64_t kMaxGrid = 2147483647;

int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (int)(b < 65535 * 16 ? b : 65535 * 16);  // grid-stride loops cover the rest
}

std::string launched(const char* kernel) { return error_text(cudaGetLastError(), kernel); }

std::string too_many_rows(const char* kernel, int64_t rows) {
  return std::string(kernel) + ": " + std::to_string(rows) + " rows exceed one launch's grid; split the batch";
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// the sum of v over a block of kBlock threads; sh holds 32 floats; every thread gets it
__device__ float block_sum(float v, float* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float r = lane < kBlock / 32 ? sh[lane] : 0.0f;
    r = warp_sum(r);
    if (lane == 0) sh[0] = r;
  }
  __syncthreads();
  const float r = sh[0];
  __syncthreads();  // sh may be reused at once
  return r;
}

// ---- conversions

// out[i] = Convert()(inp[i]) over n values
template <class Out, class In, class Convert>
__global__ void convert_k(Out* out, const In* inp, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = Convert()(inp[i]);
}
struct ToF16 {
  __device__ uint16_t operator()(float x) const { return __half_as_ushort(__float2half_rn(x)); }
};
struct FromF16 {
  __device__ float operator()(uint16_t h) const { return __half2float(__ushort_as_half(h)); }
};
struct ToBF16 {
  __device__ uint16_t operator()(float x) const { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
};
struct FromBF16 {
  __device__ float operator()(uint16_t h) const { return __bfloat162float(__ushort_as_bfloat16(h)); }
};

// ---- elementwise

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

__global__ void bias_gelu_k(float* out, const float* inp, const float* bias, int64_t N, int64_t C) {
  const int64_t n = N * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = gelu(inp[i] + (bias ? bias[i % C] : 0.0f));
}

__global__ void relu_k(float* out, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

__global__ void add_into_k(float* out, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] += inp[i];
}

__global__ void gelu_backward_k(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float x = inp[i];
    const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    const float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;
    dinp[i] = dout[i] * (cdf + x * pdf);
  }
}

__global__ void relu_backward_k(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
}

// partial[b] = the sum of squares of block b's grid-stride share of x, in double
__global__ void sum_squares_k(double* partial, const float* x, int64_t n) {
  __shared__ double sh[kBlock];
  double s = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += (double)x[i] * (double)x[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = kBlock / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

// out[0] += the sum of partial (parts), serially (a fixed order)
__global__ void sum_parts_k(double* out, const double* partial, int parts) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double s = 0.0;
  for (int i = 0; i < parts; i++) s += partial[i];
  out[0] += s;
}

// dtable (rows, C) += dout (N, C) scattered by index (N): one thread per column walks the
// rows in order, so repeated indices add up in the CPU's order (deterministic)
__global__ void embedding_backward_k(float* dtable, const float* dout, const int32_t* index, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int64_t i = 0; i < N; i++) dtable[(int64_t)(index ? index[i] : 0) * C + c] += dout[i * C + c];
}

// dbias (heads, 2T - 1) += the sum over rows b and queries i of ds[b][h][i][j] with j - i + T - 1 = w
__global__ void relative_bias_backward_k(float* dbias, const float* ds, int64_t B, int64_t heads, int64_t T) {
  const int64_t W = 2 * T - 1, e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (e >= heads * W) return;
  const int64_t h = e / W, w = e % W;
  float s = 0.0f;
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) {
      const int64_t j = w - (T - 1) + i;
      if (j >= 0 && j < T) s += ds[((b * heads + h) * T + i) * T + j];
    }
  dbias[e] += s;
}

__global__ void embedding_sum_k(float* out, const float* word, const float* position, const float* type,
                                const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N,
                                int64_t C) {
  const int64_t n = N * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / C, c = i % C;
    float v = word[(int64_t)ids[r] * C + c];
    if (position) v += position[(int64_t)positions[r] * C + c];
    if (type) v += type[(int64_t)(types ? types[r] : 0) * C + c];
    out[i] = v;
  }
}

// scores (B, heads, T, T) += bias[h][j - i + T - 1], bias (heads, 2T - 1)
__global__ void add_relative_bias_k(float* scores, const float* bias, int64_t B, int64_t heads, int64_t T) {
  const int64_t n = B * heads * T * T, W = 2 * T - 1;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e % T, i = (e / T) % T, h = (e / (T * T)) % heads;
    scores[e] += bias[h * W + j - i + T - 1];
  }
}

// ---- LayerNorm

__global__ void layernorm_forward_k(float* out, float* mean, float* rstd, const float* inp, const float* residual,
                                    const float* weight, const float* bias, int64_t C, float eps) {
  __shared__ float sh[32];
  const int64_t row = blockIdx.x;
  const float* x = inp + row * C;
  const float* r = residual ? residual + row * C : nullptr;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += kBlock) s += x[c] + (r ? r[c] : 0.0f);
  const float m = block_sum(s, sh) / (float)C;
  float v = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const float d = x[c] + (r ? r[c] : 0.0f) - m;
    v += d * d;
  }
  const float rs = 1.0f / sqrtf(block_sum(v, sh) / (float)C + eps);
  float* o = out + row * C;  // each thread writes only the columns it read: out may alias inp
  for (int64_t c = threadIdx.x; c < C; c += kBlock) o[c] = (x[c] + (r ? r[c] : 0.0f) - m) * rs * weight[c] + bias[c];
  if (threadIdx.x == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = rs;
  }
}

// dweight, dbias (C) += column sums over the N rows: one thread per column, rows in order
__global__ void layernorm_param_grad_k(float* dweight, float* dbias, const float* dout, const float* inp,
                                       const float* mean, const float* rstd, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  float gw = 0.0f, gb = 0.0f;
  for (int64_t i = 0; i < N; i++) {
    const float dy = dout[i * C + c];
    gw += dy * (inp[i * C + c] - mean[i]) * rstd[i];
    gb += dy;
  }
  if (dweight) dweight[c] += gw;
  if (dbias) dbias[c] += gb;
}

__global__ void layernorm_backward_k(float* dinp, const float* dout, const float* inp, const float* weight,
                                     const float* mean, const float* rstd, int64_t C) {
  __shared__ float sh[32];
  const int64_t row = blockIdx.x;
  const float* x = inp + row * C;
  const float* dy = dout + row * C;
  const float m = mean[row], s = rstd[row];
  float a = 0.0f, b = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const float dxhat = dy[c] * weight[c];
    a += dxhat;
    b += dxhat * (x[c] - m) * s;
  }
  const float mean_dxhat = block_sum(a, sh) / (float)C;
  const float mean_dxhat_xhat = block_sum(b, sh) / (float)C;
  float* dx = dinp + row * C;  // written column by column after every read of the row: may alias dout
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const float xhat = (x[c] - m) * s;
    dx[c] = s * (dy[c] * weight[c] - mean_dxhat - xhat * mean_dxhat_xhat);
  }
}

__global__ void column_sum_k(float* dbias, const float* dout, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int64_t i = 0; i < N; i++) s += dout[i * C + c];
  dbias[c] += s;
}

// ---- softmax (one warp per row)

// rows_per_mask consecutive rows share one (T) row of key_mask
__global__ void softmax_masked_forward_k(float* scores, const int32_t* key_mask_rows, float scale, int64_t rows,
                                         int64_t T, int64_t rows_per_mask) {
  const int64_t row = blockIdx.x * (int64_t)kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  float* p = scores + row * T;
  const int32_t* key_mask = key_mask_rows + (row / rows_per_mask) * T;
  float mx = -INFINITY;
  for (int64_t t = lane; t < T; t += 32)
    if (key_mask[t]) mx = fmaxf(mx, p[t] * scale);
  mx = warp_max(mx);
  if (mx == -INFINITY) {
    for (int64_t t = lane; t < T; t += 32) p[t] = 0.0f;
    return;
  }
  float sum = 0.0f;
  for (int64_t t = lane; t < T; t += 32) {
    const float e = key_mask[t] ? expf(p[t] * scale - mx) : 0.0f;
    p[t] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  for (int64_t t = lane; t < T; t += 32) p[t] = p[t] / sum;
}

__global__ void softmax_backward_k(float* ds, const float* p, const float* dp, int64_t rows, int64_t T) {
  const int64_t row = blockIdx.x * (int64_t)kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  float dot = 0.0f;
  for (int64_t t = lane; t < T; t += 32) dot += p[row * T + t] * dp[row * T + t];
  dot = warp_sum(dot);
  for (int64_t t = lane; t < T; t += 32) ds[row * T + t] = p[row * T + t] * (dp[row * T + t] - dot);
}

// ---- cross-entropy

// per row: dlogits = w (softmax - onehot) (not yet divided by the weight sum), row_loss =
// w nll, row_w = w; an ignored row (target < 0) gets zeros
__global__ void cross_entropy_rows_k(float* dlogits, float* row_loss, float* row_w, const float* logits,
                                     const int32_t* targets, const float* weights, const uint8_t* mask, int64_t N,
                                     int64_t L) {
  const int64_t i = blockIdx.x * (int64_t)kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (i >= N) return;
  const float* z = logits + i * L;
  const uint8_t* mk = mask ? mask + i * L : nullptr;
  const int32_t y = targets[i];
  if (y < 0) {
    if (dlogits)
      for (int64_t j = lane; j < L; j += 32) dlogits[i * L + j] = 0.0f;
    if (lane == 0) row_loss[i] = row_w[i] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int64_t j = lane; j < L; j += 32)
    if (!mk || mk[j]) mx = fmaxf(mx, z[j]);
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int64_t j = lane; j < L; j += 32)
    if (!mk || mk[j]) sum += expf(z[j] - mx);
  sum = warp_sum(sum);
  const float w = weights ? weights[y] : 1.0f;
  if (dlogits)
    for (int64_t j = lane; j < L; j += 32) {
      const float p = (!mk || mk[j]) ? expf(z[j] - mx) / sum : 0.0f;
      dlogits[i * L + j] = w * (p - (j == y ? 1.0f : 0.0f));
    }
  if (lane == 0) {
    row_loss[i] = w * -((z[y] - mx) - logf(sum));
    row_w[i] = w;
  }
}

// one block: loss = sum row_loss / sum row_w (0 when the weights sum to 0); factor =
// scale / sum row_w (0 then), for the gradient
__global__ void cross_entropy_total_k(float* loss, float* factor, const float* row_loss, const float* row_w,
                                      int64_t N, float scale) {
  __shared__ float sh[32];
  float l = 0.0f, w = 0.0f;
  for (int64_t i = threadIdx.x; i < N; i += kBlock) {
    l += row_loss[i];
    w += row_w[i];
  }
  l = block_sum(l, sh);
  w = block_sum(w, sh);
  if (threadIdx.x == 0) {
    *loss = w > 0.0f ? l / w : 0.0f;
    *factor = w > 0.0f ? scale / w : 0.0f;
  }
}

__global__ void scale_by_k(float* x, const float* factor, int64_t n) {
  const float f = *factor;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] *= f;
}

// ---- AdamW, dropout

__global__ void adamw_k(float* param, float* m, float* v, const float* grad, int64_t n, float step, float beta1,
                        float beta2, float eps, float decay, float bc2_sqrt, float grad_scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step * mi / (sqrtf(vi) / bc2_sqrt + eps);
  }
}

__global__ void dropout_forward_k(float* out, uint8_t* mask, const float* inp, int64_t n, uint32_t threshold,
                                  float scale, uint64_t seed, uint64_t stream) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const uint8_t keep = counter_hash(seed, stream, (uint64_t)i) >= threshold;
    mask[i] = keep;
    out[i] = keep ? inp[i] * scale : 0.0f;
  }
}

__global__ void dropout_backward_k(float* dinp, const uint8_t* mask, const float* dout, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dinp[i] = mask[i] ? dout[i] * scale : 0.0f;
}

}  // namespace

std::string error_text(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return "";
  return std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

std::string check_stream(cudaStream_t stream, const char* what) {
  std::string err = error_text(cudaStreamSynchronize(stream), what);
  return err.empty() ? error_text(cudaGetLastError(), what) : err;
}

template <class Out, class In, class Convert>
std::string convert(Out* out, const In* inp, int64_t n, cudaStream_t stream, const char* name) {
  if (n <= 0) return "";
  convert_k<Out, In, Convert><<<blocks_for(n, kBlock), kBlock, 0, stream>>>(out, inp, n);
  return launched(name);
}

#define ER_ELEMENTWISE(kernel, n, ...)                                            \
  do {                                                                            \
    if ((n) <= 0) return "";                                                      \
    kernel<<<blocks_for((n), kBlock), kBlock, 0, stream>>>(__VA_ARGS__);          \
    return launched(#kernel);                                                     \
  } while (0)

std::string f32_to_f16(uint16_t* out, const float* inp, int64_t n, cudaStream_t stream) {
  return convert<uint16_t, float, ToF16>(out, inp, n, stream, "f32_to_f16");
}
std::string f16_to_f32(float* out, const uint16_t* inp, int64_t n, cudaStream_t stream) {
  return convert<float, uint16_t, FromF16>(out, inp, n, stream, "f16_to_f32");
}
std::string f32_to_bf16(uint16_t* out, const float* inp, int64_t n, cudaStream_t stream) {
  return convert<uint16_t, float, ToBF16>(out, inp, n, stream, "f32_to_bf16");
}
std::string bf16_to_f32(float* out, const uint16_t* inp, int64_t n, cudaStream_t stream) {
  return convert<float, uint16_t, FromBF16>(out, inp, n, stream, "bf16_to_f32");
}

std::string bias_gelu_forward(float* out, const float* inp, const float* bias, int64_t N, int64_t C,
                              cudaStream_t stream) {
  ER_ELEMENTWISE(bias_gelu_k, N * C, out, inp, bias, N, C);
}

std::string relu_forward(float* out, const float* inp, int64_t n, cudaStream_t stream) {
  ER_ELEMENTWISE(relu_k, n, out, inp, n);
}

std::string add_into(float* out, const float* inp, int64_t n, cudaStream_t stream) {
  ER_ELEMENTWISE(add_into_k, n, out, inp, n);
}

std::string gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t stream) {
  ER_ELEMENTWISE(gelu_backward_k, n, dinp, inp, dout, n);
}

std::string embedding_sum(float* out, const float* word, const float* position, const float* type,
                          const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N, int64_t C,
                          cudaStream_t stream) {
  ER_ELEMENTWISE(embedding_sum_k, N * C, out, word, position, type, ids, positions, types, N, C);
}

std::string layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* residual,
                              const float* weight, const float* bias, int64_t N, int64_t C, float eps,
                              cudaStream_t stream) {
  if (N <= 0 || C <= 0) return "";
  if (N > kMaxGrid) return too_many_rows("layernorm_forward", N);
  layernorm_forward_k<<<(unsigned)N, kBlock, 0, stream>>>(out, mean, rstd, inp, residual, weight, bias, C, eps);
  return launched("layernorm_forward");
}

std::string layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                               cudaStream_t stream) {
  if (N <= 0 || C <= 0) return "";
  if (N > kMaxGrid) return too_many_rows("layernorm_backward", N);
  // the parameter gradients first: dinp may overwrite dout
  if (dweight || dbias) {
    layernorm_param_grad_k<<<(unsigned)((C + kBlock - 1) / kBlock), kBlock, 0, stream>>>(dweight, dbias, dout, inp,
                                                                                         mean, rstd, N, C);
    std::string err = launched("layernorm_backward (parameter gradients)");
    if (!err.empty()) return err;
  }
  layernorm_backward_k<<<(unsigned)N, kBlock, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, C);
  return launched("layernorm_backward");
}

std::string relu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t stream) {
  ER_ELEMENTWISE(relu_backward_k, n, dinp, inp, dout, n);
}

std::string sum_squares(double* out, double* partial, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return "";
  const int parts = (int)std::min<int64_t>((n + kBlock - 1) / kBlock, kSumSquaresParts);
  sum_squares_k<<<parts, kBlock, 0, stream>>>(partial, x, n);
  std::string err = launched("sum_squares");
  if (!err.empty()) return err;
  sum_parts_k<<<1, 1, 0, stream>>>(out, partial, parts);
  return launched("sum_squares (parts)");
}

std::string embedding_backward(float* dtable, const float* dout, const int32_t* index, int64_t N, int64_t C,
                               cudaStream_t stream) {
  if (N <= 0 || C <= 0) return "";
  embedding_backward_k<<<(unsigned)((C + kBlock - 1) / kBlock), kBlock, 0, stream>>>(dtable, dout, index, N, C);
  return launched("embedding_backward");
}

std::string relative_bias_backward(float* dbias, const float* ds, int64_t B, int64_t heads, int64_t T,
                                   cudaStream_t stream) {
  const int64_t n = heads * (2 * T - 1);
  if (B <= 0 || n <= 0) return "";
  relative_bias_backward_k<<<(unsigned)((n + kBlock - 1) / kBlock), kBlock, 0, stream>>>(dbias, ds, B, heads, T);
  return launched("relative_bias_backward");
}

std::string bias_backward(float* dbias, const float* dout, int64_t N, int64_t C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return "";
  column_sum_k<<<(unsigned)((C + kBlock - 1) / kBlock), kBlock, 0, stream>>>(dbias, dout, N, C);
  return launched("bias_backward");
}

std::string softmax_masked_forward(float* scores, const int32_t* key_mask, float scale, int64_t rows, int64_t T,
                                   cudaStream_t stream) {
  if (rows <= 0 || T <= 0) return "";
  const int64_t grid = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (grid > kMaxGrid) return too_many_rows("softmax_masked_forward", rows);
  softmax_masked_forward_k<<<(unsigned)grid, 32 * kWarpsPerBlock, 0, stream>>>(scores, key_mask, scale, rows, T, rows);
  return launched("softmax_masked_forward");
}

std::string softmax_masked_batched(float* scores, const int32_t* mask, float scale, int64_t B, int64_t rows_per_row,
                                   int64_t T, cudaStream_t stream) {
  const int64_t rows = B * rows_per_row;
  if (rows <= 0 || T <= 0) return "";
  const int64_t grid = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (grid > kMaxGrid) return too_many_rows("softmax_masked_batched", rows);
  softmax_masked_forward_k<<<(unsigned)grid, 32 * kWarpsPerBlock, 0, stream>>>(scores, mask, scale, rows, T,
                                                                               rows_per_row);
  return launched("softmax_masked_batched");
}

std::string add_relative_bias(float* scores, const float* bias, int64_t B, int64_t heads, int64_t T,
                              cudaStream_t stream) {
  const int64_t n = B * heads * T * T;
  if (n <= 0) return "";
  add_relative_bias_k<<<blocks_for(n, kBlock), kBlock, 0, stream>>>(scores, bias, B, heads, T);
  return launched("add_relative_bias");
}

std::string softmax_backward(float* ds, const float* p, const float* dp, int64_t rows, int64_t T,
                             cudaStream_t stream) {
  if (rows <= 0 || T <= 0) return "";
  const int64_t grid = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (grid > kMaxGrid) return too_many_rows("softmax_backward", rows);
  softmax_backward_k<<<(unsigned)grid, 32 * kWarpsPerBlock, 0, stream>>>(ds, p, dp, rows, T);
  return launched("softmax_backward");
}

std::string cross_entropy(float* dlogits, float* loss, const float* logits, const int32_t* targets,
                          const float* weights, const uint8_t* mask, int64_t N, int64_t L, float scale,
                          float* scratch, cudaStream_t stream) {
  if (N <= 0 || L <= 0) return error_text(cudaMemsetAsync(loss, 0, sizeof(float), stream), "cross_entropy");
  const int64_t grid = (N + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (grid > kMaxGrid) return too_many_rows("cross_entropy", N);
  float *row_loss = scratch, *row_w = scratch + N, *factor = scratch + 2 * N;
  cross_entropy_rows_k<<<(unsigned)grid, 32 * kWarpsPerBlock, 0, stream>>>(dlogits, row_loss, row_w, logits, targets,
                                                                           weights, mask, N, L);
  std::string err = launched("cross_entropy (rows)");
  if (!err.empty()) return err;
  cross_entropy_total_k<<<1, kBlock, 0, stream>>>(loss, factor, row_loss, row_w, N, scale);
  err = launched("cross_entropy (total)");
  if (!err.empty() || !dlogits) return err;
  scale_by_k<<<blocks_for(N * L, kBlock), kBlock, 0, stream>>>(dlogits, factor, N * L);
  return launched("cross_entropy (gradient)");
}

std::string adamw_update(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int64_t t, float grad_scale,
                         cudaStream_t stream) {
  // the bias corrections as the CPU computes them (in double, then float)
  const float bc1 = 1.0f - (float)std::pow((double)beta1, (double)t);
  const float bc2_sqrt = (float)std::sqrt(1.0 - std::pow((double)beta2, (double)t));
  ER_ELEMENTWISE(adamw_k, n, param, m, v, grad, n, lr / bc1, beta1, beta2, eps, 1.0f - lr * weight_decay, bc2_sqrt,
                 grad_scale);
}

std::string dropout_forward(float* out, uint8_t* mask, const float* inp, int64_t n, float p, uint64_t seed,
                            uint64_t stream_id, cudaStream_t stream) {
  const uint32_t threshold = (uint32_t)std::fmin(4294967295.0, (double)p * 4294967296.0);
  ER_ELEMENTWISE(dropout_forward_k, n, out, mask, inp, n, threshold, 1.0f / (1.0f - p), seed, stream_id);
}

std::string dropout_backward(float* dinp, const uint8_t* mask, const float* dout, int64_t n, float p,
                             cudaStream_t stream) {
  ER_ELEMENTWISE(dropout_backward_k, n, dinp, mask, dout, n, 1.0f / (1.0f - p));
}

}  // namespace cuda
}  // namespace er
