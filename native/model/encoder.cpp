#include "model/encoder.h"
#include <omp.h>
#include <cmath>
#include <cstring>
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/ops.h"

namespace er {

static void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

void Workspace::reserve(int64_t N, int64_t H, int64_t I, int64_t T, int threads, bool bf16) {
  if (bf16 && in16.size() < (size_t)(N * (H > I ? H : I))) in16.resize(N * (H > I ? H : I));
  grow(qkv, N * 3 * H);
  grow(ctx, N * H);
  grow(t1, N * H);
  grow(ff, N * I);
  grow(scores, (size_t)threads * T * T);
}

uint64_t Workspace::bytes() const {
  return (qkv.capacity() + ctx.capacity() + t1.capacity() + ff.capacity() + scores.capacity()) * 4 + in16.capacity() * 2;
}

void Workspace::trim(uint64_t keep) {
  if (bytes() <= keep) {
    held = bytes();
    return;
  }
  std::vector<float>().swap(qkv);
  std::vector<float>().swap(ctx);
  std::vector<float>().swap(t1);
  std::vector<float>().swap(ff);
  std::vector<float>().swap(scores);
  std::vector<uint16_t>().swap(in16);
  held = 0;
}

int64_t mask_extent(const int32_t* mask, int64_t T) {
  int64_t e = T;
  while (e > 0 && mask[e - 1] == 0) e--;
  return e;
}

// ctx (B, T, H) = softmax(q k^T / sqrt(d), masked) v, per batch row and head, where
// q, k, v are (B, T, H) views with row stride ld (3H when they come fused).
// Query rows past the row's extent are padding: their output is set to zero.
static bool attention_forward(float* ctx, float* scores, const float* q, const float* k,
                              const float* v, int64_t ld, const int32_t* mask, int64_t B,
                              int64_t T, int64_t H, int64_t heads) {
  const int64_t d = H / heads;
  const float scale = 1.0f / std::sqrt((float)d);
  const OpsTable& K = ops();
  bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
  for (int64_t bh = 0; bh < B * heads; bh++) {
    int64_t b = bh / heads, h = bh % heads;
    const int32_t* m = mask + b * T;
    int64_t e = mask_extent(m, T);
    float* s = scores + (int64_t)omp_get_thread_num() * T * T;  // (e, e)
    const float* qb = q + b * T * ld + h * d;
    const float* kb = k + b * T * ld + h * d;
    const float* vb = v + b * T * ld + h * d;
    float* cb = ctx + b * T * H + h * d;
    if (e > 0) {
      // the 1/sqrt(d) scale rides on the GEMM
      ok = ok && gemm_f32(false, true, e, e, d, scale, qb, ld, kb, ld, 0.0f, s, e);
      K.softmax_masked_forward(s, m, 1.0f, e, e);
      ok = ok && gemm_f32(false, false, e, d, e, 1.0f, s, e, vb, ld, 0.0f, cb, H);
    }
    for (int64_t t = e; t < T; t++) std::memset(cb + t * H, 0, d * sizeof(float));
  }
  return ok;
}

std::string encoder_set_precision(Encoder& enc, Precision p) {
  std::lock_guard<std::mutex> lock(enc.mu);
  const int64_t H = enc.cfg.hidden, I = enc.cfg.intermediate;
  const bool bf16 = p == Precision::BF16;
  std::vector<LayerLinears> linears(enc.layer.size());
  for (size_t l = 0; l < enc.layer.size(); l++) {
    const LayerWeights& w = enc.layer[l];
    LayerLinears& L = linears[l];
    L.qkv_w.resize(3 * H * H);
    L.qkv_b.resize(3 * H);
    const float* ws[3] = {w.q_w, w.k_w, w.v_w};
    const float* bs[3] = {w.q_b, w.k_b, w.v_b};
    for (int j = 0; j < 3; j++) {
      std::memcpy(L.qkv_w.data() + j * H * H, ws[j], H * H * sizeof(float));
      std::memcpy(L.qkv_b.data() + j * H, bs[j], H * sizeof(float));
    }
    L.qkv.reset(new Linear(L.qkv_w.data(), L.qkv_b.data(), H, 3 * H, bf16));
    L.out.reset(new Linear(w.o_w, w.o_b, H, H, bf16));
    L.ffn_in.reset(new Linear(w.ffn_in_w, w.ffn_in_b, H, I, bf16));
    L.ffn_out.reset(new Linear(w.ffn_out_w, w.ffn_out_b, I, H, bf16));
  }
  enc.linears = std::move(linears);
  enc.precision = p;
  return "";
}

uint64_t encoder_packed_bytes(const Encoder& enc) {
  uint64_t n = 0;
  for (const LayerLinears& L : enc.linears) {
    n += L.qkv_w.size() * 4 + L.qkv_b.size() * 4;
    for (const Linear* x : {L.qkv.get(), L.out.get(), L.ffn_in.get(), L.ffn_out.get()})
      if (x) n += x->packed_bytes();
  }
  return n;
}

// out (N, OC) = act(inp (N, C) @ W^T + b) in the encoder's precision.
static bool linear(Encoder& enc, Linear& L, float* out, const float* inp, int64_t N,
                   LinearAct act = LinearAct::None) {
  const void* src = inp;
  if (L.bf16()) {
    uint16_t* in16 = enc.ws.in16.data();
    ops().f32_to_bf16(in16, inp, N * L.in());
    src = in16;
  }
  return L.forward(out, src, N, act).empty();
}

// One post-LayerNorm block: in (N, H) -> out (N, H); in may equal out. in is read only
// before out is written (by the QKV projection and the first residual).
static bool layer_forward(Encoder& enc, size_t l, const float* in, float* out,
                          const int32_t* mask, int64_t B, int64_t T) {
  const EncoderConfig& c = enc.cfg;
  const LayerWeights& w = enc.layer[l];
  LayerLinears& L = enc.linears[l];
  Workspace& ws = enc.ws;
  const OpsTable& K = ops();
  const int64_t N = B * T, H = c.hidden;
  float* qkv = ws.qkv.data();  // (N, 3H): q | k | v per row
  bool ok = linear(enc, *L.qkv, qkv, in, N) &&
            attention_forward(ws.ctx.data(), ws.scores.data(), qkv, qkv + H, qkv + 2 * H, 3 * H,
                              mask, B, T, H, c.heads) &&
            linear(enc, *L.out, ws.t1.data(), ws.ctx.data(), N);
  if (!ok) return false;
  K.layernorm_forward(ws.t1.data(), nullptr, nullptr, ws.t1.data(), in, w.ln1_w, w.ln1_b, N, H,
                      c.eps);
  if (!linear(enc, *L.ffn_in, ws.ff.data(), ws.t1.data(), N, LinearAct::Gelu)) return false;
  if (!linear(enc, *L.ffn_out, ws.ctx.data(), ws.ff.data(), N)) return false;
  K.layernorm_forward(out, nullptr, nullptr, ws.ctx.data(), ws.t1.data(), w.ln2_w, w.ln2_b, N, H,
                      c.eps);
  return true;
}

static std::string check_common(const Encoder& enc, int64_t B, int64_t T) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  if (enc.cfg.hidden <= 0 || enc.layer.size() != (size_t)enc.cfg.layers ||
      enc.linears.size() != enc.layer.size())
    return "encoder is not loaded";
  return "";
}

// Layers from..to-1 into `out`: the first reads `in` in place (in may equal out); with no
// layer to run, out is a copy of in.
static std::string run_layers(Encoder& enc, const float* in, float* out, const int32_t* mask,
                              int64_t B, int64_t T, int64_t from, int64_t to) {
  if (from == to && out != in) std::memcpy(out, in, (size_t)(B * T * enc.cfg.hidden) * sizeof(float));
  for (int64_t l = from; l < to; l++)
    if (!layer_forward(enc, (size_t)l, l == from ? in : out, out, mask, B, T))
      return "oneDNN matmul failed in layer " + std::to_string(l + 1);
  return "";
}

std::string encoder_forward(Encoder& enc, float* out, const int32_t* ids, const int32_t* positions,
                            const int32_t* type_ids, const int32_t* mask, int64_t B, int64_t T,
                            int64_t to_layer, int threads) {
  std::string err = check_common(enc, B, T);
  if (!err.empty()) return err;
  const EncoderConfig& c = enc.cfg;
  if (to_layer < 0 || to_layer > c.layers)
    return "toLayer " + std::to_string(to_layer) + " is out of range 0.." + std::to_string(c.layers);
  const int64_t N = B * T, H = c.hidden;
  // cheap guards; the TypeScript side reports these with the offending position
  for (int64_t i = 0; i < N; i++) {
    if (ids[i] < 0 || ids[i] >= c.vocab) return "token id out of range at " + std::to_string(i);
    if (positions[i] < 0 || positions[i] >= c.max_positions)
      return "position id out of range at " + std::to_string(i);
    if (type_ids && (type_ids[i] < 0 || type_ids[i] >= (c.type_vocab ? c.type_vocab : 1)))
      return "token type id out of range at " + std::to_string(i);
  }
  std::lock_guard<std::mutex> lock(enc.mu);
  omp_set_num_threads(threads);
  enc.ws.reserve(N, H, c.intermediate, T, threads, enc.precision == Precision::BF16);
  const EmbeddingWeights& e = enc.emb;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float* o = out + i * H;
    const float* w = e.word + (int64_t)ids[i] * H;
    const float* p = e.position + (int64_t)positions[i] * H;
    for (int64_t j = 0; j < H; j++) o[j] = w[j] + p[j];
    if (e.token_type) {
      const float* t = e.token_type + (int64_t)(type_ids ? type_ids[i] : 0) * H;
      for (int64_t j = 0; j < H; j++) o[j] += t[j];
    }
  }
  ops().layernorm_forward(out, nullptr, nullptr, out, nullptr, e.ln_w, e.ln_b, N, H, c.eps);
  std::string r = run_layers(enc, out, out, mask, B, T, 0, to_layer);
  enc.ws.trim(kWorkspaceKeepBytes);
  return r;
}

std::string encoder_forward_from(Encoder& enc, float* out, const float* hidden,
                                 const int32_t* mask, int64_t B, int64_t T, int64_t from_layer,
                                 int64_t to_layer, int threads) {
  std::string err = check_common(enc, B, T);
  if (!err.empty()) return err;
  const EncoderConfig& c = enc.cfg;
  if (from_layer < 0 || from_layer > c.layers)
    return "fromLayer " + std::to_string(from_layer) + " is out of range 0.." +
           std::to_string(c.layers);
  if (to_layer < from_layer || to_layer > c.layers)
    return "toLayer " + std::to_string(to_layer) + " is out of range " +
           std::to_string(from_layer) + ".." + std::to_string(c.layers);
  const int64_t N = B * T, H = c.hidden;
  std::lock_guard<std::mutex> lock(enc.mu);
  omp_set_num_threads(threads);
  enc.ws.reserve(N, H, c.intermediate, T, threads, enc.precision == Precision::BF16);
  std::string r = run_layers(enc, hidden, out, mask, B, T, from_layer, to_layer);
  enc.ws.trim(kWorkspaceKeepBytes);
  return r;
}

}  // namespace er
