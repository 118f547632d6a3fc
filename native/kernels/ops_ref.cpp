// Plain reference kernels: readable loops, double accumulation, libm erf/exp.
// The fast kernels (ops_simd.cpp) are tested against these.
#include <cmath>
#include <cstring>
#include "kernels/ops.h"

namespace er {
namespace ref {

static void bias_add(float* x, const float* bias, int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++) x[i * C + c] += bias[c];
}

static void gelu_forward(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double x = inp[i];
    out[i] = (float)(0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))));
  }
}

static void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                              const float* residual, const float* weight, const float* bias,
                              int64_t N, int64_t C, float eps) {
  for (int64_t i = 0; i < N; i++) {
    const float* x = inp + i * C;
    const float* r = residual ? residual + i * C : nullptr;
    double m = 0;
    for (int64_t c = 0; c < C; c++) m += (double)x[c] + (r ? r[c] : 0.0);
    m /= (double)C;
    double v = 0;
    for (int64_t c = 0; c < C; c++) {
      double d = (double)x[c] + (r ? r[c] : 0.0) - m;
      v += d * d;
    }
    v /= (double)C;
    double s = 1.0 / std::sqrt(v + (double)eps);
    float* o = out + i * C;
    for (int64_t c = 0; c < C; c++) {
      double d = (double)x[c] + (r ? r[c] : 0.0) - m;
      o[c] = (float)(d * s * weight[c] + bias[c]);
    }
    if (mean) mean[i] = (float)m;
    if (rstd) rstd[i] = (float)s;
  }
}

static void softmax_masked_forward(float* scores, const int32_t* key_mask, float scale,
                                   int64_t rows, int64_t T) {
  for (int64_t r = 0; r < rows; r++) {
    float* s = scores + r * T;
    double mx = -INFINITY;
    for (int64_t t = 0; t < T; t++)
      if (key_mask[t]) mx = std::fmax(mx, (double)s[t] * scale);
    if (mx == -INFINITY) {
      for (int64_t t = 0; t < T; t++) s[t] = 0.f;
      continue;
    }
    double sum = 0;
    for (int64_t t = 0; t < T; t++) {
      double e = key_mask[t] ? std::exp((double)s[t] * scale - mx) : 0.0;
      s[t] = (float)e;
      sum += e;
    }
    for (int64_t t = 0; t < T; t++) s[t] = (float)(s[t] / sum);
  }
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp((float)man, -24);  // zero or subnormal
    return sign ? -f : f;
  }
  // a NaN comes out quiet, its payload kept, as the F16C / AVX-512 conversion gives it
  uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0))
                            : (sign | ((exp + 112) << 23) | (man << 13));
  std::memcpy(&f, &bits, 4);
  return f;
}

static uint16_t float_to_half(float f) {
  // round to nearest even, with overflow to infinity and gradual underflow
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to >= 65520 -> inf
  if (ax < 0x38800000u) {                                    // below the smallest normal half
    float a;
    std::memcpy(&a, &ax, 4);
    float scaled = a * 16777216.0f;  // in units of 2^-24
    return (uint16_t)(sign | (uint16_t)std::nearbyint(scaled));
  }
  uint32_t mant_odd = (ax >> 13) & 1;
  ax += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round
  return (uint16_t)(sign | (ax >> 13));
}

static void f16_to_f32(float* out, const uint16_t* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = half_to_float(inp[i]);
}
static void f32_to_f16(uint16_t* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = float_to_half(inp[i]);
}
static void bf16_to_f32(float* out, const uint16_t* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits = (uint32_t)inp[i] << 16;
    std::memcpy(&out[i], &bits, 4);
  }
}

static void f32_to_bf16(uint16_t* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits;
    std::memcpy(&bits, &inp[i], 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
      out[i] = (uint16_t)((bits >> 16) | 0x40);  // quiet NaN
    } else {
      out[i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
  }
}

static void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, const float* mean,
                               const float* rstd, int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; i++) {
    const float* x = inp + i * C;
    const float* dy = dout + i * C;
    double m = mean[i], s = rstd[i];
    double mean_dxhat = 0, mean_dxhat_xhat = 0;
    for (int64_t c = 0; c < C; c++) {
      double xhat = (x[c] - m) * s;
      double dxhat = (double)dy[c] * weight[c];
      mean_dxhat += dxhat;
      mean_dxhat_xhat += dxhat * xhat;
      if (dweight) dweight[c] += (float)(dy[c] * xhat);
      if (dbias) dbias[c] += dy[c];
    }
    mean_dxhat /= (double)C;
    mean_dxhat_xhat /= (double)C;
    for (int64_t c = 0; c < C; c++) {
      double xhat = (x[c] - m) * s;
      double dxhat = (double)dy[c] * weight[c];
      dinp[i * C + c] = (float)(s * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
    }
  }
}

static void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double x = inp[i];
    double cdf = 0.5 * (1.0 + std::erf(x / std::sqrt(2.0)));
    double pdf = std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    dinp[i] = (float)(dout[i] * (cdf + x * pdf));
  }
}

static void softmax_backward(float* ds, const float* p, const float* dp, int64_t rows, int64_t T) {
  for (int64_t r = 0; r < rows; r++) {
    double dot = 0;
    for (int64_t t = 0; t < T; t++) dot += (double)p[r * T + t] * dp[r * T + t];
    for (int64_t t = 0; t < T; t++) ds[r * T + t] = (float)(p[r * T + t] * (dp[r * T + t] - dot));
  }
}

static void bias_backward(float* dbias, const float* dout, int64_t N, int64_t C) {
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++) dbias[c] += dout[i * C + c];
}

}  // namespace ref

const OpsTable& ops_reference() {
  static const OpsTable table = {"reference",          ref::bias_add,   ref::gelu_forward,
                                 ref::layernorm_forward, ref::softmax_masked_forward,
                                 ref::f16_to_f32,        ref::f32_to_f16, ref::bf16_to_f32,
                                 ref::f32_to_bf16,       ref::layernorm_backward,
                                 ref::gelu_backward,     ref::softmax_backward,
                                 ref::bias_backward};
  return table;
}

}  // namespace er
