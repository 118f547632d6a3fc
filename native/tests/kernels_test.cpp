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
#include "kernels/train_ops.h"
#include "kernels/crc32c.h"

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
      // bit for bit, NaNs included: the store decodes a record in blocks when it checks the
      // CRC and row by row when it does not, so an element may go through the SIMD body in
      // one and the scalar tail in the other; both must give the same bits
      bool same = std::memcmp(f1.data(), f2.data(), sizeof(float) * 65536) == 0;
      check(same, level, "f16_to_f32 (all 65536 codes, bit for bit)", 0);
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

  // ---- backward kernels: fast levels against the reference, and the reference against
  // central finite differences of its own forward (in double where it matters)
  for (const char* level : {"generic", "avx2", "avx512"}) {
    const er::OpsTable* K = er::ops_for_level(level);
    if (!K) continue;
    int64_t N = 23, C = 77;
    std::vector<float> x = randv(N * C), w = randv(C), b = randv(C), dy = randv(N * C);
    std::vector<float> y(N * C), mean(N), rstd(N);
    R.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), nullptr, w.data(), b.data(), N, C, 1e-5f);
    std::vector<float> dx1(N * C), dx2(N * C), dw1(C, 0.f), dw2(C, 0.f), db1(C, 0.f), db2(C, 0.f);
    R.layernorm_backward(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    K->layernorm_backward(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    double e = std::fmax(max_abs_diff(dx1, dx2), std::fmax(max_abs_diff(dw1, dw2), max_abs_diff(db1, db2)));
    check(e < 1e-3, level, "layernorm_backward vs reference", e);
    std::vector<float> g1(x.size()), g2(x.size());
    R.gelu_backward(g1.data(), x.data(), dy.data(), (int64_t)x.size());
    K->gelu_backward(g2.data(), x.data(), dy.data(), (int64_t)x.size());
    e = max_abs_diff(g1, g2);
    check(e < 1e-5, level, "gelu_backward vs reference", e);
    int64_t rows = 7, T = 13;
    std::vector<float> p = randv(rows * T), dp = randv(rows * T);
    std::vector<int32_t> all(T, 1);
    R.softmax_masked_forward(p.data(), all.data(), 1.f, rows, T);
    std::vector<float> s1(rows * T), s2(rows * T);
    R.softmax_backward(s1.data(), p.data(), dp.data(), rows, T);
    K->softmax_backward(s2.data(), p.data(), dp.data(), rows, T);
    e = max_abs_diff(s1, s2);
    check(e < 1e-6, level, "softmax_backward vs reference", e);
    std::vector<float> bb1(C, 0.f), bb2(C, 0.f);
    R.bias_backward(bb1.data(), dy.data(), N, C);
    K->bias_backward(bb2.data(), dy.data(), N, C);
    e = max_abs_diff(bb1, bb2);
    check(e < 1e-4, level, "bias_backward vs reference", e);
  }
  {
    // finite differences: L = sum(dy * f(x)); dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h
    std::normal_distribution<double> nd1(0.0, 1.0);
    int64_t N = 3, C = 9;
    std::vector<float> x = randv(N * C), w = randv(C), b = randv(C), dy = randv(N * C);
    auto ln_loss = [&](const std::vector<float>& xx, const std::vector<float>& ww, const std::vector<float>& bb) {
      std::vector<float> y(N * C);
      R.layernorm_forward(y.data(), nullptr, nullptr, xx.data(), nullptr, ww.data(), bb.data(), N, C, 1e-5f);
      double L = 0;
      for (int64_t i = 0; i < N * C; i++) L += (double)dy[i] * y[i];
      return L;
    };
    std::vector<float> mean(N), rstd(N), y(N * C), dx(N * C), dw(C, 0.f), db(C, 0.f);
    R.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), nullptr, w.data(), b.data(), N, C, 1e-5f);
    R.layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    double worst = 0;
    const float h = 1e-2f;
    for (int64_t i = 0; i < N * C; i++) {
      std::vector<float> xp = x, xm = x;
      xp[i] += h; xm[i] -= h;
      double fd = (ln_loss(xp, w, b) - ln_loss(xm, w, b)) / (2 * h);
      worst = std::fmax(worst, std::fabs(fd - dx[i]) / std::fmax(1.0, std::fabs(fd)));
    }
    for (int64_t c = 0; c < C; c++) {
      std::vector<float> wp = w, wm = w, bp = b, bm = b;
      wp[c] += h; wm[c] -= h; bp[c] += h; bm[c] -= h;
      worst = std::fmax(worst, std::fabs((ln_loss(x, wp, b) - ln_loss(x, wm, b)) / (2 * h) - dw[c]) / 1.0);
      worst = std::fmax(worst, std::fabs((ln_loss(x, w, bp) - ln_loss(x, w, bm)) / (2 * h) - db[c]) / 1.0);
    }
    check(worst < 2e-2, "reference", "layernorm_backward vs finite differences", worst);

    std::vector<float> g(N * C);
    R.gelu_backward(g.data(), x.data(), dy.data(), N * C);
    worst = 0;
    for (int64_t i = 0; i < N * C; i++) {
      float a[2] = {x[i] + h, x[i] - h}, o[2];
      R.gelu_forward(o, a, 2);
      double fd = dy[i] * ((double)o[0] - o[1]) / (2 * h);
      worst = std::fmax(worst, std::fabs(fd - g[i]) / std::fmax(1.0, std::fabs(fd)));
    }
    check(worst < 1e-2, "reference", "gelu_backward vs finite differences", worst);

    int64_t T = 6;
    std::vector<float> s = randv(T), ds = randv(T);
    std::vector<int32_t> all(T, 1);
    auto sm_loss = [&](std::vector<float> v) {
      R.softmax_masked_forward(v.data(), all.data(), 1.f, 1, T);
      double L = 0;
      for (int64_t t = 0; t < T; t++) L += (double)ds[t] * v[t];
      return L;
    };
    std::vector<float> p = s, dsc(T);
    R.softmax_masked_forward(p.data(), all.data(), 1.f, 1, T);
    R.softmax_backward(dsc.data(), p.data(), ds.data(), 1, T);
    worst = 0;
    for (int64_t t = 0; t < T; t++) {
      std::vector<float> sp = s, sm = s;
      sp[t] += h; sm[t] -= h;
      worst = std::fmax(worst, std::fabs((sm_loss(sp) - sm_loss(sm)) / (2 * h) - dsc[t]));
    }
    check(worst < 1e-2, "reference", "softmax_backward vs finite differences", worst);
  }

  {
    // cross-entropy with class weights, an ignored target and a mask, against finite differences
    int64_t N = 4, L = 5;
    std::vector<float> z = randv(N * L), dz(N * L);
    std::vector<int32_t> y = {1, -1, 4, 0};
    std::vector<float> cw = {0.5f, 1.0f, 2.0f, 1.5f, 0.7f};
    std::vector<uint8_t> mk(N * L, 1);
    mk[2 * L + 1] = 0;
    er::cross_entropy_forward_backward(dz.data(), z.data(), y.data(), cw.data(), mk.data(), N, L, 1.0f);
    double worst = 0;
    const float h = 1e-2f;
    for (int64_t i = 0; i < N * L; i++) {
      if (!mk[i]) continue;
      std::vector<float> zp = z, zm = z;
      zp[i] += h; zm[i] -= h;
      double fd = (er::cross_entropy_forward_backward(nullptr, zp.data(), y.data(), cw.data(), mk.data(), N, L, 1.0f) -
                   er::cross_entropy_forward_backward(nullptr, zm.data(), y.data(), cw.data(), mk.data(), N, L, 1.0f)) / (2 * h);
      worst = std::fmax(worst, std::fabs(fd - dz[i]));
    }
    check(worst < 1e-3 && dz[1 * L + 2] == 0.f && dz[2 * L + 1] == 0.f, "reference", "cross_entropy vs finite differences", worst);

    // AdamW: one step of 3 values against the formula written out
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0.1f, 0.0f, -0.2f}, v[3] = {0.01f, 0.0f, 0.04f}, g[3] = {0.3f, -0.4f, 0.0f};
    float want[3];
    for (int i = 0; i < 3; i++) {
      double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1, t = 3, gs = 0.5 * g[i];
      double mi = b1 * m[i] + (1 - b1) * gs, vi = b2 * v[i] + (1 - b2) * gs * gs;
      double pi = p[i] * (1 - lr * wd);
      want[i] = (float)(pi - lr / (1 - std::pow(b1, t)) * mi / (std::sqrt(vi) / std::sqrt(1 - std::pow(b2, t)) + eps));
    }
    er::adamw_update(p, m, v, g, 3, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 3, 0.5f);
    double e = 0;
    for (int i = 0; i < 3; i++) e = std::fmax(e, std::fabs(p[i] - want[i]));
    check(e < 1e-6, "reference", "adamw_update vs the formula", e);

    // dropout: the kept fraction is near 1 - p, and masks repeat for the same seed and stream
    std::vector<float> ones(100000, 1.0f), o1(100000), o2(100000);
    std::vector<uint8_t> m1(100000), m2(100000);
    er::dropout_forward(o1.data(), m1.data(), ones.data(), 100000, 0.1f, 7, 3);
    er::dropout_forward(o2.data(), m2.data(), ones.data(), 100000, 0.1f, 7, 3);
    int kept = 0;
    for (uint8_t k : m1) kept += k;
    bool same = m1 == m2;
    er::dropout_forward(o2.data(), m2.data(), ones.data(), 100000, 0.1f, 7, 4);
    bool differs = m1 != m2;
    check(same && differs && std::abs(kept - 90000) < 600 && std::fabs(o1[0] - (m1[0] ? 1.0f / 0.9f : 0.f)) < 1e-6,
          "reference", "dropout masks: rate, repeatability, independence", kept);
  }

  {
    // CRC32C: the standard check value, and the fast path against the table reference
    // at lengths around the three-lane chunk size, split and unsplit
    const char* nine = "123456789";
    check(er::crc32c(0, nine, 9) == 0xE3069283u && er::crc32c_reference(0, nine, 9) == 0xE3069283u,
          "crc32c", "check value of \"123456789\"", er::crc32c(0, nine, 9));
    std::vector<uint8_t> buf(3 * 4096 * 3 + 123);
    for (size_t i = 0; i < buf.size(); i++) buf[i] = (uint8_t)(rng() & 0xff);
    int bad = 0;
    for (size_t n : {0ul, 7ul, 8ul, 4096ul * 3 - 1, 4096ul * 3, 4096ul * 3 + 9, 4096ul * 9 + 100, buf.size()}) {
      if (er::crc32c(0, buf.data(), n) != er::crc32c_reference(0, buf.data(), n)) bad++;
      size_t half = n / 3;
      if (er::crc32c(er::crc32c(0, buf.data(), half), buf.data() + half, n - half) != er::crc32c_reference(0, buf.data(), n)) bad++;
    }
    check(bad == 0, "crc32c", "fast path equals the reference", bad);
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
