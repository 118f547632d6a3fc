// Fast kernels, compiled once per SIMD level (CMakeLists.txt builds this file with
// ER_ISA_NS = isa_generic / isa_avx2 / isa_avx512 and the matching -m flags).
// The loops are written for the auto-vectorizer: no libm calls in inner loops
// (exp and erf are evaluated with polynomials below), float accumulation in
// fixed-width blocks, rows split across threads with OpenMP.
#include <cmath>
#include <cstring>
#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "kernels/ops.h"

#ifndef ER_ISA_NS
#error "ER_ISA_NS must name the SIMD level"
#endif

namespace er {
namespace ER_ISA_NS {

// exp(x) for x <= 0 (inputs below -87 give 0): x = n ln2 + r, |r| <= ln2/2,
// e^r by a degree-6 Taylor polynomial (relative error < 2e-7), 2^n by exponent bits.
static inline float exp_neg(float x) {
  x = x < -87.0f ? -87.0f : x;
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7).
static inline float erf_fast(float x) {
  float ax = std::fabs(x);
  float t = 1.0f / (1.0f + 0.3275911f * ax);
  float poly = t * (0.254829592f +
                    t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  float y = 1.0f - poly * exp_neg(-ax * ax);
  return x < 0 ? -y : y;
}

#if defined(__AVX512F__)
// 16 lanes of exp_neg / erf_fast: the same polynomials as the scalar versions above.
static inline __m512 exp_neg16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}
static inline __m512 gelu16(__m512 x) {
  __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
  __m512 az = _mm512_abs_ps(z);
  __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(az, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
  __m512 q = _mm512_set1_ps(1.061405429f);
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.453152027f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.421413741f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-0.284496736f));
  q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0.254829592f));
  q = _mm512_mul_ps(q, t);
  __m512 e = exp_neg16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), az), az));
  __m512 y = _mm512_fnmadd_ps(q, e, _mm512_set1_ps(1.0f));                // erf(|z|)
  __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  y = _mm512_mask_sub_ps(y, neg, _mm512_setzero_ps(), y);                // erf(z)
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), y));
}
#elif defined(__AVX2__) && defined(__FMA__)
static inline __m256 exp_neg8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
static inline __m256 gelu8(__m256 x) {
  __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
  __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
  __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(az, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
  __m256 q = _mm256_set1_ps(1.061405429f);
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-1.453152027f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.421413741f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.284496736f));
  q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.254829592f));
  q = _mm256_mul_ps(q, t);
  __m256 e = exp_neg8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az));
  __m256 y = _mm256_fnmadd_ps(q, e, _mm256_set1_ps(1.0f));
  y = _mm256_or_ps(y, _mm256_and_ps(z, _mm256_set1_ps(-0.0f)));  // copy the sign of z
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), y));
}
#endif

static void bias_add(float* x, const float* bias, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > 65536)
  for (int64_t i = 0; i < N; i++) {
    float* row = x + i * C;
    for (int64_t c = 0; c < C; c++) row[c] += bias[c];
  }
}

static void gelu_forward(float* out, const float* inp, int64_t n) {
  const int64_t block = 4096;
  int64_t nblocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < nblocks; b++) {
    int64_t end = (b + 1) * block < n ? (b + 1) * block : n;
    int64_t i = b * block;
#if defined(__AVX512F__)
    for (; i + 16 <= end; i += 16) _mm512_storeu_ps(out + i, gelu16(_mm512_loadu_ps(inp + i)));
#elif defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= end; i += 8) _mm256_storeu_ps(out + i, gelu8(_mm256_loadu_ps(inp + i)));
#endif
    for (; i < end; i++) {
      float x = inp[i];
      out[i] = 0.5f * x * (1.0f + erf_fast(x * 0.70710678118654752f));
    }
  }
}

static void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                              const float* residual, const float* weight, const float* bias,
                              int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
  for (int64_t i = 0; i < N; i++) {
    const float* x = inp + i * C;
    float* o = out + i * C;
    const float* r = residual ? residual + i * C : nullptr;
    // pass 1: o = x + residual, and its sum; pass 2: centred sum of squares; pass 3: scale
    float sum = 0, var = 0;
    int64_t c = 0;
#if defined(__AVX512F__)
    __m512 vsum = _mm512_setzero_ps();
    for (; c + 16 <= C; c += 16) {
      __m512 v = _mm512_loadu_ps(x + c);
      if (r) v = _mm512_add_ps(v, _mm512_loadu_ps(r + c));
      _mm512_storeu_ps(o + c, v);
      vsum = _mm512_add_ps(vsum, v);
    }
    sum = _mm512_reduce_add_ps(vsum);
#endif
    for (; c < C; c++) {
      float v = x[c] + (r ? r[c] : 0.0f);
      o[c] = v;
      sum += v;
    }
    const float m = sum / (float)C;
    c = 0;
#if defined(__AVX512F__)
    __m512 vvar = _mm512_setzero_ps();
    const __m512 vm = _mm512_set1_ps(m);
    for (; c + 16 <= C; c += 16) {
      __m512 d = _mm512_sub_ps(_mm512_loadu_ps(o + c), vm);
      vvar = _mm512_fmadd_ps(d, d, vvar);
    }
    var = _mm512_reduce_add_ps(vvar);
#endif
    for (; c < C; c++) {
      float d = o[c] - m;
      var += d * d;
    }
    const float s = 1.0f / std::sqrt(var / (float)C + eps);
    c = 0;
#if defined(__AVX512F__)
    const __m512 vs = _mm512_set1_ps(s);
    for (; c + 16 <= C; c += 16) {
      __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(o + c), vm), vs);
      _mm512_storeu_ps(o + c, _mm512_fmadd_ps(d, _mm512_loadu_ps(weight + c), _mm512_loadu_ps(bias + c)));
    }
#endif
    for (; c < C; c++) o[c] = (o[c] - m) * s * weight[c] + bias[c];
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = s;
  }
}

static void softmax_masked_forward(float* scores, const int32_t* key_mask, float scale,
                                   int64_t rows, int64_t T) {
  // called from inside per-(batch, head) parallel loops: no threading here
  for (int64_t r = 0; r < rows; r++) {
    float* s = scores + r * T;
    float mx = -INFINITY;
    int64_t t0 = 0;
#if defined(__AVX512F__)
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    for (; t0 + 16 <= T; t0 += 16) {
      __mmask16 keep = _mm512_test_epi32_mask(_mm512_loadu_si512(key_mask + t0), _mm512_set1_epi32(-1));
      vmx = _mm512_mask_max_ps(vmx, keep, vmx, _mm512_loadu_ps(s + t0));
    }
    mx = _mm512_reduce_max_ps(vmx) * scale;
    if (scale < 0) mx = -INFINITY, t0 = 0;  // max of s*scale is not scale*max(s) then
#endif
    for (int64_t t = t0; t < T; t++) {
      float v = key_mask[t] ? s[t] * scale : -INFINITY;
      mx = v > mx ? v : mx;
    }
    if (mx == -INFINITY) {
      for (int64_t t = 0; t < T; t++) s[t] = 0.f;
      continue;
    }
    float sum = 0;
    int64_t t = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(mx);
    for (; t + 16 <= T; t += 16) {
      __mmask16 keep = _mm512_test_epi32_mask(_mm512_loadu_si512(key_mask + t), _mm512_set1_epi32(-1));
      __m512 e = _mm512_maskz_mov_ps(keep, exp_neg16(_mm512_fmsub_ps(_mm512_loadu_ps(s + t), vs, vm)));
      _mm512_storeu_ps(s + t, e);
      acc = _mm512_add_ps(acc, e);
    }
    sum = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 acc = _mm256_setzero_ps();
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(mx);
    for (; t + 8 <= T; t += 8) {
      __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
          _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i*)(key_mask + t)), _mm256_setzero_si256()), _mm256_set1_epi32(1)),
          _mm256_setzero_si256()));
      __m256 e = _mm256_and_ps(keep, exp_neg8(_mm256_fmsub_ps(_mm256_loadu_ps(s + t), vs, vm)));
      _mm256_storeu_ps(s + t, e);
      acc = _mm256_add_ps(acc, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (float l : lanes) sum += l;
#endif
    for (; t < T; t++) {
      float e = key_mask[t] ? exp_neg(s[t] * scale - mx) : 0.0f;
      s[t] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
    for (int64_t t = 0; t < T; t++) s[t] *= inv;
  }
}

static void f16_to_f32(float* out, const uint16_t* inp, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(inp + i))));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(inp + i))));
#endif
  if (i < n) ops_reference().f16_to_f32(out + i, inp + i, n - i);
}

static void f32_to_f16(uint16_t* out, const float* inp, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i*)(out + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(inp + i), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(inp + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  if (i < n) ops_reference().f32_to_f16(out + i, inp + i, n - i);
}

static void bf16_to_f32(float* out, const uint16_t* inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits = (uint32_t)inp[i] << 16;
    std::memcpy(&out[i], &bits, 4);
  }
}

static void f32_to_bf16(uint16_t* out, const float* inp, int64_t n) {
  const int64_t block = 8192;
  const int64_t nblocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (n > 262144)
  for (int64_t b = 0; b < nblocks; b++) {
    int64_t i = b * block, end = (b + 1) * block < n ? (b + 1) * block : n;
#if defined(__AVX512F__)
    const __m512i round = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    for (; i + 16 <= end; i += 16) {
      __m512i bits = _mm512_castps_si512(_mm512_loadu_ps(inp + i));
      __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
      __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, round), lsb), 16);
      __m512i nan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
      __mmask16 is_nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
      __m512i res = _mm512_mask_mov_epi32(rounded, is_nan, nan);
      _mm256_storeu_si256((__m256i*)(out + i), _mm512_cvtepi32_epi16(res));
    }
#endif
    for (; i < end; i++) {
      uint32_t bits;
      std::memcpy(&bits, &inp[i], 4);
      uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
      uint32_t nan = (bits >> 16) | 0x40u;
      out[i] = (uint16_t)((bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
    }
  }
}

// Parameter gradients are reduced over rows column by column (threads split the
// columns), so their summation order, and the result, do not depend on threads.
static void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, const float* mean,
                               const float* rstd, int64_t N, int64_t C) {
  if (dweight || dbias) {
    const int64_t cblock = 64;
    const int64_t nb = (C + cblock - 1) / cblock;
#pragma omp parallel for schedule(static) if (N * C > 65536)
    for (int64_t jb = 0; jb < nb; jb++) {
      int64_t c0 = jb * cblock, c1 = c0 + cblock < C ? c0 + cblock : C;
      for (int64_t i = 0; i < N; i++) {
        const float* x = inp + i * C;
        const float* dy = dout + i * C;
        const float m = mean[i], s = rstd[i];
        for (int64_t c = c0; c < c1; c++) {
          if (dweight) dweight[c] += dy[c] * (x[c] - m) * s;
          if (dbias) dbias[c] += dy[c];
        }
      }
    }
  }
#pragma omp parallel for schedule(static) if (N * C > 32768)
  for (int64_t i = 0; i < N; i++) {
    const float* x = inp + i * C;
    const float* dy = dout + i * C;
    float* dx = dinp + i * C;
    const float m = mean[i], s = rstd[i];
    float sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (int64_t c = 0; c < C; c++) {
      float dxhat = dy[c] * weight[c];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * (x[c] - m) * s;
    }
    const float a = sum_dxhat / (float)C, b = sum_dxhat_xhat / (float)C;
    for (int64_t c = 0; c < C; c++) {
      float xhat = (x[c] - m) * s;
      dx[c] = s * (dy[c] * weight[c] - a - xhat * b);
    }
  }
}

static void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    float x = inp[i];
    float cdf = 0.5f * (1.0f + erf_fast(x * 0.70710678118654752f));
    float pdf = exp_neg(-0.5f * x * x) * 0.3989422804014327f;
    dinp[i] = dout[i] * (cdf + x * pdf);
  }
}

static void softmax_backward(float* ds, const float* p, const float* dp, int64_t rows, int64_t T) {
  for (int64_t r = 0; r < rows; r++) {
    float dot = 0;
    for (int64_t t = 0; t < T; t++) dot += p[r * T + t] * dp[r * T + t];
    for (int64_t t = 0; t < T; t++) ds[r * T + t] = p[r * T + t] * (dp[r * T + t] - dot);
  }
}

static void bias_backward(float* dbias, const float* dout, int64_t N, int64_t C) {
  const int64_t cblock = 64;
  const int64_t nb = (C + cblock - 1) / cblock;
#pragma omp parallel for schedule(static) if (N * C > 65536)
  for (int64_t jb = 0; jb < nb; jb++) {
    int64_t c0 = jb * cblock, c1 = c0 + cblock < C ? c0 + cblock : C;
    for (int64_t i = 0; i < N; i++)
      for (int64_t c = c0; c < c1; c++) dbias[c] += dout[i * C + c];
  }
}

const OpsTable& table() {
#define ER_STR2(x) #x
#define ER_STR(x) ER_STR2(x)
  static const OpsTable t = {ER_STR(ER_ISA_NS) + 4, bias_add,   gelu_forward,
                             layernorm_forward,     softmax_masked_forward,
                             f16_to_f32,            f32_to_f16, bf16_to_f32,
                             f32_to_bf16,           layernorm_backward,
                             gelu_backward,         softmax_backward,
                             bias_backward};
  return t;
}

}  // namespace ER_ISA_NS
}  // namespace er
