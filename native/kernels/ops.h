// Elementwise and row-wise kernels of the encoder (everything that is not a GEMM).
//
// Conventions (llm.c style): outputs first, then saved state, then inputs and
// weights, then sizes. Shapes in comments: N = rows (B*T), C = channels.
// Forward kernels write (=) their outputs. Activation gradients are written
// (=), parameter gradients accumulate (+=) once backward kernels are added.
//
// Every kernel has a plain reference in namespace er::ref (ops_ref.cpp) and a
// fast version compiled once per SIMD level (ops_simd.cpp); the table of the
// level this CPU supports is chosen at load time (cpu.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace er {

struct OpsTable {
  const char* name;
  // x (N, C) += bias (C)
  void (*bias_add)(float* x, const float* bias, int64_t N, int64_t C);
  // out (n) = gelu(inp (n)), exact erf form: 0.5 x (1 + erf(x / sqrt 2)); out may alias inp
  void (*gelu_forward)(float* out, const float* inp, int64_t n);
  // out (N, C) = LayerNorm(inp + residual) * weight + bias; residual may be null;
  // mean, rstd (N) are written when non-null (saved for backward); out may alias inp
  void (*layernorm_forward)(float* out, float* mean, float* rstd, const float* inp,
                            const float* residual, const float* weight, const float* bias,
                            int64_t N, int64_t C, float eps);
  // In place on rows of scores (rows, T): p = softmax(scale * s) over the keys whose
  // key_mask is non-zero; masked keys get p = 0; a row with no key left becomes all 0.
  void (*softmax_masked_forward)(float* scores, const int32_t* key_mask, float scale,
                                 int64_t rows, int64_t T);
  // half <-> float conversions (IEEE binary16 and bfloat16), n values
  void (*f16_to_f32)(float* out, const uint16_t* inp, int64_t n);
  void (*f32_to_f16)(uint16_t* out, const float* inp, int64_t n);
  void (*bf16_to_f32)(float* out, const uint16_t* inp, int64_t n);
  // float -> bfloat16, round to nearest even (NaN stays NaN)
  void (*f32_to_bf16)(uint16_t* out, const float* inp, int64_t n);

  // ---- backward kernels (training) ----
  // dinp (N, C) = dLayerNorm/dinp . dout; dweight, dbias (C) += (may be null: frozen).
  // inp (N, C) is the LayerNorm's input (x + residual); mean, rstd (N) from forward.
  // dinp may alias dout.
  void (*layernorm_backward)(float* dinp, float* dweight, float* dbias, const float* dout,
                             const float* inp, const float* weight, const float* mean,
                             const float* rstd, int64_t N, int64_t C);
  // dinp (n) = dout * gelu'(inp) (exact erf GELU); dinp may alias dout
  void (*gelu_backward)(float* dinp, const float* inp, const float* dout, int64_t n);
  // rows of a softmax output p (rows, T): ds = p * (dp - sum_t p dp); ds may alias dp
  void (*softmax_backward)(float* ds, const float* p, const float* dp, int64_t rows, int64_t T);
  // dbias (C) += column sums of dout (N, C)
  void (*bias_backward)(float* dbias, const float* dout, int64_t N, int64_t C);
};

// The table for this CPU (highest supported level, or ER_CPU_LEVEL=generic|avx2|avx512).
const OpsTable& ops();
// The table of a named level, or nullptr when the CPU lacks it or the name is unknown.
const OpsTable* ops_for_level(const char* level);
// The plain reference implementations.
const OpsTable& ops_reference();

// x (n) rounded to IEEE half precision and back, in place: the value an fp16 store hands
// back for x (its writer converts with f32_to_f16).
void round_to_f16(float* x, int64_t n);

}  // namespace er
