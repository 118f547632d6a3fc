// Native kernel tests: every SIMD level against the plain reference, plus the
// GEMM wrapper against a naive product. Exit code 0 on success; prints
// "N passed, M failed" as its last line.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "kernels/gemm.h"
#include "kernels/ops.h"

static int passed = 0, failed = 0;

static void check(bool ok, const char* level, const char* what, double err) {
  if (ok) {
    passed++;
  } else {
    failed++;
    std::printf("FAIL %s %s: max error %g\n", level, what, err);
  }
}

static double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) m = std::fmax(m, std::fabs((double)a[i] - b[i]));
  return m;
}

int main() {
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.f, 2.f);
  auto randv = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
  };
  const er::OpsTable& R = er::ops_reference();
  for (const char* level : {"generic", "avx2", "avx512"}) {
    const er::OpsTable* K = er::ops_for_level(level);
    if (!K) {
      std::printf("skip %s (not supported by this CPU)\n", level);
      continue;
    }
    // gelu over a wide range, including tails and zero
    std::vector<float> x = randv(100003);
    x[0] = 0.f; x[1] = -12.f; x[2] = 12.f; x[3] = -5.5f;
    std::vector<float> a(x.size()), b(x.size());
    R.gelu_forward(a.data(), x.data(), (int64_t)x.size());
    K->gelu_forward(b.data(), x.data(), (int64_t)x.size());
    double e = max_abs_diff(a, b);
    check(e < 2e-6, level, "gelu_forward", e);

    // layernorm with and without residual, odd channel count
    for (int with_res = 0; with_res < 2; with_res++) {
      int64_t N = 37, C = 129;
      std::vector<float> in = randv(N * C), res = randv(N * C), w = randv(C), bias = randv(C);
      std::vector<float> o1(N * C), o2(N * C), m1(N), m2(N), r1(N), r2(N);
      const float* rp = with_res ? res.data() : nullptr;
      R.layernorm_forward(o1.data(), m1.data(), r1.data(), in.data(), rp, w.data(), bias.data(), N, C, 1e-12f);
      K->layernorm_forward(o2.data(), m2.data(), r2.data(), in.data(), rp, w.data(), bias.data(), N, C, 1e-12f);
      double e2 = std::fmax(max_abs_diff(o1, o2), std::fmax(max_abs_diff(m1, m2), max_abs_diff(r1, r2)));
      check(e2 < 1e-4, level, with_res ? "layernorm_forward(residual)" : "layernorm_forward", e2);
    }

    // masked softmax, one row with every key masked
    {
      int64_t rows = 5, T = 19;
      std::vector<float> s = randv(rows * T), s2 = s;
      std::vector<int32_t> mask(T, 1);
      for (int t = 13; t < T; t++) mask[t] = 0;
      R.softmax_masked_forward(s.data(), mask.data(), 0.37f, rows, T);
      K->softmax_masked_forward(s2.data(), mask.data(), 0.37f, rows, T);
      double e3 = max_abs_diff(s, s2);
      check(e3 < 1e-6, level, "softmax_masked_forward", e3);
      std::vector<int32_t> none(T, 0);
      std::vector<float> z = randv(T);
      K->softmax_masked_forward(z.data(), none.data(), 1.f, 1, T);
      bool zeros = true;
      for (float v : z) zeros = zeros && v == 0.f;
      check(zeros, level, "softmax_masked_forward(all masked)", 0);
    }

    // half conversions: every finite half round-trips, f32->f16 matches the reference
    {
      std::vector<uint16_t> all(65536);
      for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
      std::vector<float> f1(65536), f2(65536);
      R.f16_to_f32(f1.data(), all.data(), 65536);
      K->f16_to_f32(f2.data(), all.data(), 65536);
      bool same = std::memcmp(f1.data(), f2.data(), sizeof(float) * 65536) == 0;
      if (!same) {  // NaN payloads may differ; compare as values
        same = true;
        for (int i = 0; i < 65536; i++)
          same = same && ((std::isnan(f1[i]) && std::isnan(f2[i])) || f1[i] == f2[i]);
      }
      check(same, level, "f16_to_f32 (all 65536 codes)", 0);
      std::vector<float> src = randv(10007);
      src[0] = 1e-7f; src[1] = -6.1e-5f; src[2] = 70000.f; src[3] = 65504.f; src[4] = 5.96e-8f;
      std::vector<uint16_t> h1(src.size()), h2(src.size());
      R.f32_to_f16(h1.data(), src.data(), (int64_t)src.size());
      K->f32_to_f16(h2.data(), src.data(), (int64_t)src.size());
      int diff = 0;
      for (size_t i = 0; i < src.size(); i++) diff += h1[i] != h2[i];
      check(diff == 0, level, "f32_to_f16", diff);
    }
  }

  // bf16 rounding: every level equals the reference bit for bit
  for (const char* level : {"generic", "avx2", "avx512"}) {
    const er::OpsTable* K = er::ops_for_level(level);
    if (!K) continue;
    std::vector<float> src = randv(50001);
    src[0] = NAN; src[1] = INFINITY; src[2] = -0.f; src[3] = 3.3895314e38f;
    std::vector<uint16_t> h1(src.size()), h2(src.size());
    R.f32_to_bf16(h1.data(), src.data(), (int64_t)src.size());
    K->f32_to_bf16(h2.data(), src.data(), (int64_t)src.size());
    int diff = 0;
    for (size_t i = 0; i < src.size(); i++) diff += h1[i] != h2[i];
    check(diff == 0, level, "f32_to_bf16", diff);
    std::vector<float> back(src.size());
    K->bf16_to_f32(back.data(), h2.data(), (int64_t)src.size());
    double rel = 0;
    for (size_t i = 4; i < src.size(); i++) rel = std::fmax(rel, std::fabs(back[i] - src[i]) / std::fabs(src[i]));
    check(rel <= 1.0 / 256, level, "bf16 round trip relative error <= 2^-8", rel);
  }

  // GEMM wrapper against a naive product, with leading dimensions larger than the shape
  {
    int64_t M = 33, N = 17, K = 65, lda = 70, ldb = 70, ldc = 20;
    std::vector<float> A = randv(M * lda), B = randv(N * ldb), C(M * ldc, 0.f), ref(M * ldc, 0.f);
    bool ok = er::gemm_f32(false, true, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.f, C.data(), ldc);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += (double)A[i * lda + k] * B[j * ldb + k];
        ref[i * ldc + j] = (float)(0.5 * s);
      }
    double e = max_abs_diff(C, ref);
    check(ok && e < 1e-3, "onednn", "gemm_f32(N,T)", e);
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
