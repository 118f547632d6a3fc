// Every CUDA kernel of kernels/cuda/cuda_ops.h against its CPU reference (kernels/ops.h's
// reference table, kernels/train_ops.h) on fresh random inputs, at BERT-base sizes and at
// odd sizes that leave partial warps and blocks. Outputs are poisoned (all bits set, a NaN)
// before each run, so an element a kernel fails to write shows up as an error.
//
//   er_cuda_kernels_test            prints one line per check, then a table; exit 1 on a failure
// With no usable GPU it prints "SKIP: ..." and exits 0.
#include <cuda_runtime.h>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"
#include "model/encoder.h"

using er::ops_reference;
namespace cu = er::cuda;

namespace {

struct Row {
  std::string kernel, shape;
  double abs_err, rel_err, tol;
  bool ok;
  std::string note;
};
std::vector<Row> rows;
std::mt19937_64 rng(20261201);

std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// device buffer of n T, poisoned with 0xff bytes; errors are recorded, not thrown
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  std::string err;
  explicit Dev(size_t count) : n(count) {
    err = cu::error_text(cudaMalloc(&p, n * sizeof(T) + 1), "cudaMalloc");
    if (err.empty()) err = cu::error_text(cudaMemset(p, 0xff, n * sizeof(T)), "cudaMemset");
  }
  explicit Dev(const std::vector<T>& host) : Dev(host.size()) {
    if (err.empty()) err = cu::error_text(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() {
    std::vector<T> h(n);
    if (err.empty()) err = cu::error_text(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

// max |a - b| and max |a - b| / max(|b|, floor) over every element; a NaN where the
// reference has none (an unwritten, poisoned element) counts as infinite error
void compare(const std::string& kernel, const std::string& shape, const std::vector<float>& got,
             const std::vector<float>& want, double tol, const std::string& err, double floor = 1e-3) {
  double ae = 0, re = 0;
  size_t unwritten = 0;
  for (size_t i = 0; i < want.size(); i++) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;
    if (std::isnan(got[i])) {
      unwritten++;
      continue;
    }
    const double d = std::fabs((double)got[i] - want[i]);
    ae = std::max(ae, d);
    re = std::max(re, d / std::max(std::fabs((double)want[i]), floor));
  }
  std::string note = err;
  if (unwritten) note += (note.empty() ? "" : "; ") + std::to_string(unwritten) + " elements NaN (unwritten?)";
  const bool ok = err.empty() && !unwritten && re <= tol;
  rows.push_back({kernel, shape, ae, re, tol, ok, note});
  std::printf("%-4s %-26s %-22s max abs %.3g, max rel %.3g (tolerance %.0e)%s%s\n", ok ? "ok" : "FAIL", kernel.c_str(),
              shape.c_str(), ae, re, tol, note.empty() ? "" : ": ", note.c_str());
}

std::string sync() { return cu::check_stream(0, "kernel"); }
std::string dims(int64_t a, int64_t b) { return std::to_string(a) + " x " + std::to_string(b); }

void casts(int64_t n) {
  std::vector<float> x = randn(n, 3.0f);
  x[0] = NAN;
  x[1] = INFINITY;
  x[2] = 65504.0f * 2;  // overflows half
  x[3] = 1e-8f;         // subnormal in half
  const er::OpsTable& R = ops_reference();
  std::vector<uint16_t> h16(n), b16(n);
  R.f32_to_f16(h16.data(), x.data(), n);
  R.f32_to_bf16(b16.data(), x.data(), n);
  std::vector<float> back_h(n), back_b(n);
  R.f16_to_f32(back_h.data(), h16.data(), n);
  R.bf16_to_f32(back_b.data(), b16.data(), n);
  {
    Dev<float> dx(x);
    Dev<uint16_t> d16(n);
    Dev<float> dback(n);
    std::string err = cu::f32_to_f16(d16.p, dx.p, n, 0);
    if (err.empty()) err = cu::f16_to_f32(dback.p, d16.p, n, 0);
    if (err.empty()) err = sync();
    std::vector<uint16_t> g16 = d16.get();
    auto nan16 = [](uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; };
    size_t bits = 0;
    for (int64_t i = 0; i < n; i++) bits += g16[i] != h16[i] && !(nan16(g16[i]) && nan16(h16[i]));
    compare("f32 -> f16 -> f32", std::to_string(n), dback.get(), back_h, 0.0,
            err + (bits ? std::to_string(bits) + " fp16 codes differ" : ""));
  }
  {
    Dev<float> dx(x);
    Dev<uint16_t> d16(n);
    Dev<float> dback(n);
    std::string err = cu::f32_to_bf16(d16.p, dx.p, n, 0);
    if (err.empty()) err = cu::bf16_to_f32(dback.p, d16.p, n, 0);
    if (err.empty()) err = sync();
    std::vector<uint16_t> g16 = d16.get();
    auto nanb = [](uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0; };
    size_t bits = 0;
    for (int64_t i = 0; i < n; i++) bits += g16[i] != b16[i] && !(nanb(g16[i]) && nanb(b16[i]));
    compare("f32 -> bf16 -> f32", std::to_string(n), dback.get(), back_b, 0.0,
            err + (bits ? std::to_string(bits) + " bf16 codes differ" : ""));
  }
}

void bias_gelu(int64_t N, int64_t C) {
  std::vector<float> x = randn(N * C, 2.0f), b = randn(C, 0.5f), want(N * C);
  for (int64_t i = 0; i < N * C; i++) want[i] = x[i] + b[i % C];
  ops_reference().gelu_forward(want.data(), want.data(), N * C);
  Dev<float> dx(x), db(b), dout(N * C);
  std::string err = cu::bias_gelu_forward(dout.p, dx.p, db.p, N, C, 0);
  if (err.empty()) err = sync();
  compare("bias + GELU", dims(N, C), dout.get(), want, 1e-5, err);
}

void gelu_bwd(int64_t n) {
  std::vector<float> x = randn(n, 2.0f), dy = randn(n), want(n);
  ops_reference().gelu_backward(want.data(), x.data(), dy.data(), n);
  Dev<float> dx(x), ddy(dy), dout(n);
  std::string err = cu::gelu_backward(dout.p, dx.p, ddy.p, n, 0);
  if (err.empty()) err = sync();
  compare("GELU backward", std::to_string(n), dout.get(), want, 1e-5, err);
}

void relu(int64_t n) {
  std::vector<float> x = randn(n), want(n);
  er::relu_forward(want.data(), x.data(), n);
  Dev<float> dx(x), dout(n);
  std::string err = cu::relu_forward(dout.p, dx.p, n, 0);
  if (err.empty()) err = sync();
  compare("ReLU", std::to_string(n), dout.get(), want, 0.0, err);
}

void add(int64_t n) {
  std::vector<float> a = randn(n), b = randn(n), want(n);
  for (int64_t i = 0; i < n; i++) want[i] = a[i] + b[i];
  Dev<float> da(a), db(b);
  std::string err = cu::add_into(da.p, db.p, n, 0);
  if (err.empty()) err = sync();
  compare("add (adapter residual)", std::to_string(n), da.get(), want, 0.0, err);
}

void layernorm(int64_t N, int64_t C) {
  std::vector<float> x = randn(N * C, 2.0f), r = randn(N * C), w = randn(C, 0.2f), b = randn(C, 0.2f);
  for (float& v : w) v += 1.0f;
  for (int64_t i = 0; i < N * C; i++) x[i] += 0.5f;  // a non-zero mean
  std::vector<float> want(N * C), mean(N), rstd(N);
  ops_reference().layernorm_forward(want.data(), mean.data(), rstd.data(), x.data(), r.data(), w.data(), b.data(), N, C,
                                    1e-12f);
  Dev<float> dx(x), dr(r), dw(w), db(b), dout(N * C), dm(N), ds(N);
  std::string err = cu::layernorm_forward(dout.p, dm.p, ds.p, dx.p, dr.p, dw.p, db.p, N, C, 1e-12f, 0);
  if (err.empty()) err = sync();
  compare("LayerNorm (+ residual)", dims(N, C), dout.get(), want, 2e-5, err);
  compare("LayerNorm mean, rstd", dims(N, 2), [&] { auto a = dm.get(), s = ds.get(); a.insert(a.end(), s.begin(), s.end()); return a; }(),
          [&] { auto a = mean; a.insert(a.end(), rstd.begin(), rstd.end()); return a; }(), 2e-5, err);
  // backward, from the forward's saved mean and rstd, on the summed input
  std::vector<float> s(N * C), dy = randn(N * C);
  for (int64_t i = 0; i < N * C; i++) s[i] = x[i] + r[i];
  std::vector<float> dx_want(N * C), gw(C, 0.25f), gb(C, -0.5f);
  ops_reference().layernorm_backward(dx_want.data(), gw.data(), gb.data(), dy.data(), s.data(), w.data(), mean.data(),
                                     rstd.data(), N, C);
  Dev<float> dsum(s), ddy(dy), ddx(N * C), dgw(std::vector<float>(C, 0.25f)), dgb(std::vector<float>(C, -0.5f));
  err = cu::layernorm_backward(ddx.p, dgw.p, dgb.p, ddy.p, dsum.p, dw.p, dm.p, ds.p, N, C, 0);
  if (err.empty()) err = sync();
  compare("LayerNorm backward dx", dims(N, C), ddx.get(), dx_want, 1e-4, err);
  compare("LayerNorm backward dw", std::to_string(C), dgw.get(), gw, 1e-4, err, 1.0);
  compare("LayerNorm backward db", std::to_string(C), dgb.get(), gb, 1e-4, err, 1.0);
}

void softmax(int64_t rows_n, int64_t T) {
  std::vector<float> s = randn(rows_n * T, 3.0f);
  std::vector<int32_t> mask(T, 1);
  for (int64_t t = T - T / 4; t < T; t++) mask[t] = 0;  // padded keys
  std::vector<float> want = s;
  ops_reference().softmax_masked_forward(want.data(), mask.data(), 0.125f, rows_n, T);
  Dev<float> ds(s);
  Dev<int32_t> dm(mask);
  std::string err = cu::softmax_masked_forward(ds.p, dm.p, 0.125f, rows_n, T, 0);
  if (err.empty()) err = sync();
  std::vector<float> p = ds.get();
  compare("masked softmax", dims(rows_n, T), p, want, 1e-5, err, 1e-6);
  std::vector<float> dp = randn(rows_n * T), dwant(rows_n * T);
  ops_reference().softmax_backward(dwant.data(), want.data(), dp.data(), rows_n, T);
  Dev<float> dpw(want), ddp(dp), dds(rows_n * T);
  err = cu::softmax_backward(dds.p, dpw.p, ddp.p, rows_n, T, 0);
  if (err.empty()) err = sync();
  compare("softmax backward", dims(rows_n, T), dds.get(), dwant, 1e-4, err);
}

void bias_bwd(int64_t N, int64_t C) {
  std::vector<float> dy = randn(N * C), want(C, 1.0f);
  ops_reference().bias_backward(want.data(), dy.data(), N, C);
  Dev<float> ddy(dy), dg(std::vector<float>(C, 1.0f));
  std::string err = cu::bias_backward(dg.p, ddy.p, N, C, 0);
  if (err.empty()) err = sync();
  compare("bias backward", dims(N, C), dg.get(), want, 1e-4, err, 1.0);
}

void embeddings(int64_t N, int64_t C, int64_t vocab) {
  std::vector<float> word = randn(vocab * C), pos = randn(64 * C), type = randn(2 * C);
  std::vector<int32_t> ids(N), positions(N), types(N);
  std::uniform_int_distribution<int32_t> vid(0, (int32_t)vocab - 1), pid(0, 63), tid(0, 1);
  for (int64_t i = 0; i < N; i++) {
    ids[i] = vid(rng);
    positions[i] = pid(rng);
    types[i] = tid(rng);
  }
  std::vector<float> want(N * C);
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++) want[i * C + c] = word[ids[i] * C + c] + pos[positions[i] * C + c] + type[types[i] * C + c];
  Dev<float> dw(word), dp(pos), dt(type), dout(N * C);
  Dev<int32_t> di(ids), dpi(positions), dti(types);
  std::string err = cu::embedding_sum(dout.p, dw.p, dp.p, dt.p, di.p, dpi.p, dti.p, N, C, 0);
  if (err.empty()) err = sync();
  compare("embedding sum", dims(N, C), dout.get(), want, 1e-6, err);
}

// MPNet's bias: gathered on the host by the CPU encoder's own relative_bias (as the GPU
// encoder does), added on the GPU; checked against the CPU's addition
void relative_bias_add(int64_t B, int64_t heads, int64_t T, int64_t buckets) {
  er::EncoderConfig cfg;
  cfg.heads = heads;
  cfg.rel_buckets = buckets;
  std::vector<float> table = randn(buckets * heads), bias, scores = randn(B * heads * T * T);
  er::relative_bias(cfg, table.data(), T, bias);
  std::vector<float> want = scores;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) want[((b * heads + h) * T + i) * T + j] += bias[h * (2 * T - 1) + j - i + T - 1];
  Dev<float> ds(scores), dbias(bias);
  std::string err = cu::add_relative_bias(ds.p, dbias.p, B, heads, T, 0);
  if (err.empty()) err = sync();
  compare("relative bias (MPNet)", std::to_string(B) + " x " + std::to_string(heads) + " x " + dims(T, T), ds.get(), want,
          1e-6, err);
}

void cross_entropy(int64_t N, int64_t L, bool weighted) {
  std::vector<float> z = randn(N * L, 2.0f), w = {0.5f, 1.0f, 2.0f};
  w.resize(L, 1.5f);
  std::vector<int32_t> y(N);
  std::uniform_int_distribution<int32_t> cls(0, (int32_t)L - 1);
  for (int64_t i = 0; i < N; i++) y[i] = i % 7 == 3 ? -100 : cls(rng);  // some ignored
  std::vector<float> want(N * L);
  const double loss = er::cross_entropy_forward_backward(want.data(), z.data(), y.data(), weighted ? w.data() : nullptr,
                                                         nullptr, N, L, 1.0f);
  Dev<float> dz(z), dw(w), dg(N * L), dloss(1), scratch(2 * N + 1);
  Dev<int32_t> dy(y);
  std::string err = cu::cross_entropy(dg.p, dloss.p, dz.p, dy.p, weighted ? dw.p : nullptr, nullptr, N, L, 1.0f,
                                      scratch.p, 0);
  if (err.empty()) err = sync();
  const std::string name = weighted ? "cross-entropy (weighted)" : "cross-entropy";
  compare(name + " loss", "1", dloss.get(), {(float)loss}, 1e-5, err);
  compare(name + " grad", dims(N, L), dg.get(), want, 1e-4, err, 1e-4);
}

void adamw(int64_t n) {
  std::vector<float> p = randn(n), m = randn(n, 0.01f), v = randn(n, 0.01f), g = randn(n);
  for (float& x : v) x = std::fabs(x);
  std::vector<float> pw = p, mw = m, vw = v;
  er::adamw_update(pw.data(), mw.data(), vw.data(), g.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 7, 0.5f);
  Dev<float> dp(p), dm(m), dv(v), dg(g);
  std::string err = cu::adamw_update(dp.p, dm.p, dv.p, dg.p, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 7, 0.5f, 0);
  if (err.empty()) err = sync();
  compare("AdamW parameters", std::to_string(n), dp.get(), pw, 1e-5, err, 1.0);
  compare("AdamW moments", std::to_string(n), [&] { auto a = dm.get(), b = dv.get(); a.insert(a.end(), b.begin(), b.end()); return a; }(),
          [&] { auto a = mw; a.insert(a.end(), vw.begin(), vw.end()); return a; }(), 1e-5, err, 1e-3);
}

void dropout(int64_t n) {
  std::vector<float> x = randn(n), want(n);
  std::vector<uint8_t> mask(n);
  er::dropout_forward(want.data(), mask.data(), x.data(), n, 0.1f, 42, 1234);
  Dev<float> dx(x), dout(n);
  Dev<uint8_t> dm(n);
  std::string err = cu::dropout_forward(dout.p, dm.p, dx.p, n, 0.1f, 42, 1234, 0);
  if (err.empty()) err = sync();
  std::vector<uint8_t> gm = dm.get();
  size_t differ = 0;
  for (int64_t i = 0; i < n; i++) differ += gm[i] != mask[i];
  compare("dropout (same mask as CPU)", std::to_string(n), dout.get(), want, 0.0,
          err + (differ ? std::to_string(differ) + " mask elements differ" : ""));
  std::vector<float> dy = randn(n), dwant(n);
  er::dropout_backward(dwant.data(), mask.data(), dy.data(), n, 0.1f);
  Dev<float> ddy(dy), ddx(n);
  err = cu::dropout_backward(ddx.p, dm.p, ddy.p, n, 0.1f, 0);
  if (err.empty()) err = sync();
  compare("dropout backward", std::to_string(n), ddx.get(), dwant, 0.0, err);
}


void relu_bwd(int64_t n) {
  std::vector<float> x = randn(n), dy = randn(n), want(n);
  er::relu_backward(want.data(), x.data(), dy.data(), n);
  Dev<float> dx(x), ddy(dy), dout(n);
  std::string err = cu::relu_backward(dout.p, dx.p, ddy.p, n, 0);
  if (err.empty()) err = sync();
  compare("ReLU backward", std::to_string(n), dout.get(), want, 0.0, err);
}

void sum_sq(int64_t n) {
  std::vector<float> x = randn(n);
  const double want = er::sum_squares(x.data(), n) + 2.5;
  Dev<double> dout(std::vector<double>{2.5});
  Dev<double> partial(cu::kSumSquaresParts);
  Dev<float> dx(x);
  std::string err = cu::sum_squares(dout.p, partial.p, dx.p, 0, 0);  // nothing: a no-op
  if (err.empty()) err = cu::sum_squares(dout.p, partial.p, dx.p, n, 0);
  if (err.empty()) err = sync();
  compare("sum of squares (+= into)", std::to_string(n), {(float)dout.get()[0]}, {(float)want}, 1e-9, err);
}

void embedding_bwd(int64_t N, int64_t C, int64_t rows) {
  std::vector<float> dy = randn(N * C), table = randn(rows * C);
  std::vector<int32_t> idx(N);
  std::uniform_int_distribution<int32_t> pick(0, (int32_t)rows - 1);
  for (int64_t i = 0; i < N; i++) idx[i] = i % 5 == 0 ? 1 : pick(rng);  // repeats
  std::vector<float> want = table;
  er::embedding_backward(want.data(), dy.data(), idx.data(), N, C);
  Dev<float> ddy(dy), dt(table);
  Dev<int32_t> di(idx);
  std::string err = cu::embedding_backward(dt.p, ddy.p, di.p, N, C, 0);
  if (err.empty()) err = sync();
  compare("embedding backward", dims(N, C) + " -> " + std::to_string(rows), dt.get(), want, 0.0, err);
}

void relative_bias_bwd(int64_t B, int64_t heads, int64_t T) {
  const int64_t W = 2 * T - 1;
  std::vector<float> ds = randn(B * heads * T * T), base = randn(heads * W), want = base;
  for (int64_t h = 0; h < heads; h++)
    for (int64_t w = 0; w < W; w++) {
      float s = 0.0f;  // the kernel's order: rows, then queries
      for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < T; i++) {
          const int64_t j = w - (T - 1) + i;
          if (j >= 0 && j < T) s += ds[((b * heads + h) * T + i) * T + j];
        }
      want[h * W + w] += s;
    }
  Dev<float> dds(ds), db(base);
  std::string err = cu::relative_bias_backward(db.p, dds.p, B, heads, T, 0);
  if (err.empty()) err = sync();
  compare("relative bias backward", std::to_string(B) + " x " + std::to_string(heads) + " x " + dims(T, T), db.get(),
          want, 1e-6, err);
}
}  // namespace

int main() {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::printf("SKIP: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::printf("device: %s (sm_%d%d, %.0f GiB), runtime %d, driver %d\n", prop.name, prop.major, prop.minor,
              prop.totalGlobalMem / 1073741824.0, runtime, driver);
  casts(1 << 20);
  casts(1001);
  bias_gelu(4096, 3072);
  bias_gelu(7, 37);
  gelu_bwd(4096 * 3072);
  relu(4096 * 64);
  relu(1001);
  add(4096 * 768);
  add(1001);
  layernorm(4096, 768);
  layernorm(5, 37);
  layernorm(3, 1025);
  softmax(12 * 32 * 128, 128);
  softmax(9, 7);
  softmax(4, 513);
  bias_bwd(4096, 768);
  bias_bwd(3, 37);
  relative_bias_add(32, 12, 128, 32);
  relative_bias_add(3, 5, 7, 32);
  embeddings(4096, 768, 30522);
  cross_entropy(4096, 9, false);
  cross_entropy(33, 3, true);
  adamw(110000000 / 16);
  adamw(37);
  relu_bwd(4096 * 64);
  relu_bwd(1001);
  sum_sq(110000000 / 16);
  sum_sq(37);
  embedding_bwd(4096, 768, 30522);
  embedding_bwd(37, 5, 3);
  relative_bias_bwd(32, 12, 128);
  relative_bias_bwd(3, 5, 7);
  dropout(4096 * 768);
  dropout(1001);

  int failed = 0;
  std::printf("\n| kernel | shape | max abs error | max rel error | tolerance | result |\n| --- | --- | ---: | ---: | ---: | --- |\n");
  for (const Row& r : rows) {
    failed += !r.ok;
    std::printf("| %s | %s | %.2e | %.2e | %.0e | %s%s%s |\n", r.kernel.c_str(), r.shape.c_str(), r.abs_err, r.rel_err,
                r.tol, r.ok ? "pass" : "FAIL", r.note.empty() ? "" : ": ", r.note.c_str());
  }
  std::printf("\n%d of %zu checks failed\n", failed, rows.size());
  return failed ? 1 : 0;
}
