#include "model/layer.h"
#include <omp.h>
#include <cmath>
#include <cstring>
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"

namespace er {

bool linear_forward(GemmFn gemm, float* out, const float* x, const float* W, const float* b, int64_t N,
                int64_t C, int64_t OC) {
  if (!gemm(false, true, N, OC, C, 1.0f, x, C, W, C, 0.0f, out, OC)) return false;
  if (b) ops().bias_add(out, b, N, OC);
  return true;
}

bool linear_backward(GemmFn gemm, float* dx, float* gW, float* gb, const float* dy, const float* x,
                const float* W, int64_t N, int64_t C, int64_t OC, bool accumulate) {
  if (gW && !gemm(true, false, OC, C, N, 1.0f, dy, OC, x, C, 1.0f, gW, C)) return false;
  if (gb) ops().bias_backward(gb, dy, N, OC);
  if (dx && !gemm(false, false, N, C, OC, 1.0f, dy, OC, W, C, accumulate ? 1.0f : 0.0f, dx, C))
    return false;
  return true;
}

namespace {

// out (N, OC) = act(inp (N, C) W^T + b) through a prepacked primitive (bf16 input when the
// primitive is bf16, converted through in16)
bool linear_packed(Linear& L, float* out, const float* inp, int64_t N, LinearAct act,
                   std::vector<uint16_t>& in16) {
  const void* src = inp;
  if (L.bf16()) {
    ops().f32_to_bf16(in16.data(), inp, N * L.in());
    src = in16.data();
  }
  return L.forward(out, src, N, act).empty();
}

// out (N, H) = h + up(act(down(h))); pre, act (N, b) are written; out must not alias h
bool adapter_fwd(const AdapterWeights& A, int64_t bsz, AdapterAct kind, float* pre, float* act,
                 float* out, const float* h, int64_t N, int64_t H, GemmFn gemm) {
  if (!linear_forward(gemm, pre, h, A.dw, A.db, N, H, bsz)) return false;
  if (kind == AdapterAct::Gelu) ops().gelu_forward(act, pre, N * bsz);
  else relu_forward(act, pre, N * bsz);
  if (!linear_forward(gemm, out, act, A.uw, A.ub, N, bsz, H)) return false;
  for (int64_t i = 0; i < N * H; i++) out[i] += h[i];
  return true;
}

// dh (N, H): on entry dL/d out, on return dL/d h (the residual plus the adapter's path)
bool adapter_bwd(const AdapterWeights& A, int64_t bsz, AdapterAct kind, const float* pre,
                 const float* act, const float* h, float* dh, float* dmid, int64_t N, int64_t H,
                 GemmFn gemm) {
  if (!linear_backward(gemm, dmid, A.g_uw, A.g_ub, dh, act, A.uw, N, bsz, H, false)) return false;
  if (kind == AdapterAct::Gelu) ops().gelu_backward(dmid, pre, dmid, N * bsz);
  else relu_backward(dmid, pre, dmid, N * bsz);
  return linear_backward(gemm, dh, A.g_dw, A.g_db, dmid, h, A.dw, N, H, bsz, true);
}

// Whether the block adds DeBERTa-v2's position terms (s.dis may be set for its scale alone).
bool dis_active(const BlockShape& s) { return s.dis && s.dis->on && (s.dis->c2p || s.dis->p2c); }

// The scale of the scores: 1/sqrt(d), or 1/sqrt(d * scale_factor) with disentangled attention.
float score_scale(const BlockShape& s) {
  const float d = (float)(s.H / s.heads);
  return 1.0f / std::sqrt(s.dis ? d * s.dis->scale_factor : d);
}

// DeBERTa-v2's position terms of one row and head, added to the scaled scores P (e, e):
// P[i][j] += scale (q_i . posk[delta] + k_j . posq[delta]), delta = i - j. pq, pk: the
// position query and key of head h for delta = -(e-1) .. e-1 (rows of stride 2H); q, k of
// stride 3H; work (2, e, 2e - 1).
bool disentangled_scores(float* P, float* work, const float* q, const float* k, const float* pq,
                         const float* pk, const DisentangledConfig& c, int64_t e, int64_t d, int64_t H,
                         float scale) {
  const int64_t W = 2 * e - 1;
  if (c.c2p) {  // C[i][u] = q_i . posk[u]; P[i][j] += C[i][i - j + e - 1]
    float* C = work;
    if (!gemm_f32(false, true, e, W, d, scale, q, 3 * H, pk, 2 * H, 0.0f, C, W)) return false;
    for (int64_t i = 0; i < e; i++)
      for (int64_t j = 0; j < e; j++) P[i * e + j] += C[i * W + i - j + e - 1];
  }
  if (c.p2c) {  // G[j][u] = k_j . posq[u]; P[i][j] += G[j][i - j + e - 1]
    float* G = work + e * W;
    if (!gemm_f32(false, true, e, W, d, scale, k, 3 * H, pq, 2 * H, 0.0f, G, W)) return false;
    for (int64_t i = 0; i < e; i++)
      for (int64_t j = 0; j < e; j++) P[i * e + j] += G[j * W + i - j + e - 1];
  }
  return true;
}

// ctx (B, T, H) = softmax(q k^T / sqrt(d), masked) v, per batch row and head; q, k, v are
// the thirds of each qkv row (B, T, 3H). Probabilities go to probs (B*heads, T, T) when it
// is non-null (saved for backward), else to the per-thread scratch (threads, T, T). With
// attention dropout (drop non-null, p > 0), v is multiplied by the dropped-out
// probabilities (mask_p (B*heads, T, T), pdrop per-thread scratch). Query rows past a
// row's extent are padding: their output is zero. With s.dis, dis_qk (2T - 1, 2H) holds
// the layer's position queries and keys and dis_work (threads, 2, T, 2T - 1) is scratch.
bool attention_fwd(float* ctx, float* probs, float* scratch, uint8_t* mask_p, float* pdrop,
                   const float* qkv, const BlockShape& s, const BlockDropout* drop, const float* dis_qk,
                   float* dis_work) {
  const int64_t B = s.B, T = s.T, H = s.H, heads = s.heads, d = H / heads;
  const float scale = score_scale(s);
  const bool dis = dis_active(s);
  const float p_att = drop ? drop->attention : 0.0f;
  const OpsTable& K = ops();
  bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
  for (int64_t bh = 0; bh < B * heads; bh++) {
    const int64_t b = bh / heads, h = bh % heads;
    const int32_t* m = s.mask + b * T;
    // packed: the row's tokens start at row_start[b]; padded: at b * T
    const int64_t base = s.row_start ? s.row_start[b] : b * T;
    const int64_t e = s.row_start ? s.row_start[b + 1] - base : mask_extent(m, T);
    const int64_t tid = omp_get_thread_num();
    float* P = probs ? probs + bh * T * T : scratch + tid * T * T;  // (e, e) used
    const float* q = qkv + base * 3 * H + h * d;
    const float* k = q + H;
    const float* v = q + 2 * H;
    float* c = ctx + base * H + h * d;
    if (e > 0) {
      // the 1/sqrt(d) scale rides on the GEMM
      ok = ok && gemm_f32(false, true, e, e, d, scale, q, 3 * H, k, 3 * H, 0.0f, P, e);
      if (s.rel) {
        const float* r = s.rel + h * (2 * T - 1) + (T - 1);  // r[j - i]
        for (int64_t i = 0; i < e; i++)
          for (int64_t j = 0; j < e; j++) P[i * e + j] += r[j - i];
      }
      if (dis) {
        const float* pq = dis_qk + (T - e) * 2 * H + h * d;  // delta = -(e-1) at row T - e
        ok = ok && disentangled_scores(P, dis_work + tid * 2 * T * (2 * T - 1), q, k, pq, pq + H, *s.dis, e, d, H,
                                       scale);
      }
      K.softmax_masked_forward(P, m, 1.0f, e, e);
      const float* Pv = P;
      if (p_att > 0) {
        float* pd = pdrop + tid * T * T;
        dropout_forward(pd, mask_p + bh * T * T, P, e * e, p_att, drop->seed,
                        dropout_stream(drop->step, drop->site, (uint64_t)bh));
        Pv = pd;
      }
      ok = ok && gemm_f32(false, false, e, d, e, 1.0f, Pv, e, v, 3 * H, 0.0f, c, H);
    }
    if (!s.row_start)
      for (int64_t t = e; t < T; t++) std::memset(c + t * H, 0, d * sizeof(float));
  }
  return ok;
}

// dqkv (B, T, 3H) from dctx (B, T, H), the saved qkv and probabilities (and dropout mask)
// With s.dis: dis_qk as in attention_fwd, dis_work (threads, 2, T, 2T - 1) scratch, and
// ddis_qk (threads, 2T - 1, 2H) per-thread slabs that receive dL/d dis_qk (null: not needed).
bool attention_bwd(float* dqkv, const float* dctx, const float* qkv, const float* probs,
                   const uint8_t* mask_p, float* dscores, float* pdrop, const BlockShape& s,
                   float p_att, const float* dis_qk, float* dis_work, float* ddis_qk) {
  const int64_t B = s.B, T = s.T, H = s.H, heads = s.heads, d = H / heads;
  const float scale = score_scale(s);
  const bool dis = dis_active(s);
  const OpsTable& K = ops();
  bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
  for (int64_t bh = 0; bh < B * heads; bh++) {
    const int64_t b = bh / heads, h = bh % heads;
    const int64_t e = mask_extent(s.mask + b * T, T);
    const int64_t tid = omp_get_thread_num();
    const float* P = probs + bh * T * T;
    float* dP = dscores + tid * T * T;
    const float* q = qkv + b * T * 3 * H + h * d;
    const float* k = q + H;
    const float* v = q + 2 * H;
    const float* dc = dctx + b * T * H + h * d;
    float* dq = dqkv + b * T * 3 * H + h * d;
    float* dk = dq + H;
    float* dv = dq + 2 * H;
    if (e > 0) {
      const float* Pv = P;
      if (p_att > 0) {  // the dropped-out probabilities the forward multiplied V with
        const uint8_t* mk = mask_p + bh * T * T;
        float* Pd = pdrop + tid * T * T;
        const float keep = 1.0f / (1.0f - p_att);
        for (int64_t i = 0; i < e * e; i++) Pd[i] = mk[i] ? P[i] * keep : 0.0f;
        Pv = Pd;
      }
      ok = ok && gemm_f32(false, true, e, e, d, 1.0f, dc, H, v, 3 * H, 0.0f, dP, e);   // dP' = dctx V^T
      ok = ok && gemm_f32(true, false, e, d, e, 1.0f, Pv, e, dc, H, 0.0f, dv, 3 * H);  // dV = P'^T dctx
      if (p_att > 0) dropout_backward(dP, mask_p + bh * T * T, dP, e * e, p_att);
      K.softmax_backward(dP, P, dP, e, e);                                                  // dS
      if (s.drel) {  // the relative bias was added to the scaled scores: its gradient is dS
        float* g = s.drel + (tid * heads + h) * (2 * T - 1) + (T - 1);  // g[j - i]
        for (int64_t i = 0; i < e; i++)
          for (int64_t j = 0; j < e; j++) g[j - i] += dP[i * e + j];
      }
      ok = ok && gemm_f32(false, false, e, d, e, scale, dP, e, k, 3 * H, 0.0f, dq, 3 * H);  // dQ = s dS K
      ok = ok && gemm_f32(true, false, e, d, e, scale, dP, e, q, 3 * H, 0.0f, dk, 3 * H);   // dK = s dS^T Q
      if (dis) {
        // the position terms: C[i][u] and G[j][u] (u = i - j + e - 1) each received dS[i][j]
        const int64_t W = 2 * e - 1;
        const float* pq = dis_qk + (T - e) * 2 * H + h * d;
        const float* pk = pq + H;
        float* dpq = ddis_qk ? ddis_qk + tid * (2 * T - 1) * 2 * H + (T - e) * 2 * H + h * d : nullptr;
        float* work = dis_work + tid * 2 * T * (2 * T - 1);
        if (s.dis->c2p) {
          float* dC = work;
          std::memset(dC, 0, e * W * sizeof(float));
          for (int64_t i = 0; i < e; i++)
            for (int64_t j = 0; j < e; j++) dC[i * W + i - j + e - 1] = dP[i * e + j];
          ok = ok && gemm_f32(false, false, e, d, W, scale, dC, W, pk, 2 * H, 1.0f, dq, 3 * H);  // dQ += s dC posk
          if (dpq) ok = ok && gemm_f32(true, false, W, d, e, scale, dC, W, q, 3 * H, 1.0f, dpq + H, 2 * H);
        }
        if (s.dis->p2c) {
          float* dG = work + e * W;
          std::memset(dG, 0, e * W * sizeof(float));
          for (int64_t i = 0; i < e; i++)
            for (int64_t j = 0; j < e; j++) dG[j * W + i - j + e - 1] = dP[i * e + j];
          ok = ok && gemm_f32(false, false, e, d, W, scale, dG, W, pq, 2 * H, 1.0f, dk, 3 * H);  // dK += s dG posq
          if (dpq) ok = ok && gemm_f32(true, false, W, d, e, scale, dG, W, k, 3 * H, 1.0f, dpq, 2 * H);
        }
      }
    }
    for (int64_t t = e; t < T; t++) {
      std::memset(dq + t * 3 * H, 0, d * sizeof(float));
      std::memset(dk + t * 3 * H, 0, d * sizeof(float));
      std::memset(dv + t * 3 * H, 0, d * sizeof(float));
    }
  }
  return ok;
}

}  // namespace

int64_t mask_extent(const int32_t* mask, int64_t T) {
  int64_t e = T;
  while (e > 0 && mask[e - 1] == 0) e--;
  return e;
}

// ---------------------------------------------------------------- disentangled attention

int64_t log_bucket_position(int64_t relative, int64_t buckets, int64_t max_relative) {
  if (buckets <= 0 || max_relative <= 0) return relative;
  const int64_t mid = buckets / 2;
  const int64_t sign = relative > 0 ? 1 : (relative < 0 ? -1 : 0);
  const int64_t abs_pos = (relative < mid && relative > -mid) ? mid - 1 : (relative < 0 ? -relative : relative);
  if (abs_pos <= mid) return relative;
  // float32, as torch computes it: ceil(log(abs / mid) / log((max - 1) / mid) * (mid - 1)) + mid
  const float denom = std::log((float)((double)(max_relative - 1) / (double)mid));
  const float lp = std::ceil(std::log((float)abs_pos / (float)mid) / denom * (float)(mid - 1)) + (float)mid;
  return (int64_t)(lp * (float)sign);
}

void disentangled_rows(const DisentangledConfig& c, int64_t T, std::vector<int32_t>& rows) {
  rows.resize((size_t)(2 * T - 1));
  for (int64_t delta = -(T - 1); delta <= T - 1; delta++) {
    int64_t r = log_bucket_position(delta, c.buckets, c.max_relative) + c.span;
    r = r < 0 ? 0 : (r > 2 * c.span - 1 ? 2 * c.span - 1 : r);
    rows[delta + T - 1] = (int32_t)r;
  }
}

void attach_disentangled(BlockShape& s, const DisentangledConfig& c, const float* table, std::vector<int32_t>& rows) {
  if (c.scale_factor == 1.0f && !c.on) return;
  s.dis = &c;  // its scale, at least
  if (!c.on) return;
  disentangled_rows(c, s.T, rows);
  s.dis_table = table;
  s.dis_rows = rows.data();
}

namespace {

// The position projections of the relative rows: out (2T - 1, 2H) [query; key] = in W^T + b,
// through the layer's own Q and K (share_att_key) or its position projections.
const float* dis_weight(const BlockWeights& w, const BlockShape& s) { return s.dis->share_key ? w.qkv_w : w.pos_w; }
const float* dis_bias(const BlockWeights& w, const BlockShape& s) { return s.dis->share_key ? w.qkv_b : w.pos_b; }

// in (2T - 1, H) = the table rows each offset reads (dropped out per table row, so offsets
// that share a row share its mask), then out = their projections
bool dis_prepare(const BlockWeights& w, const BlockShape& s, const BlockDropout* drop, float* in, uint8_t* mask,
                 float* out, GemmFn gemm) {
  const int64_t R = 2 * s.T - 1, H = s.H;
  const bool dropping = drop && drop->hidden > 0;
  for (int64_t u = 0; u < R; u++) {
    const float* src = s.dis_table + (int64_t)s.dis_rows[u] * H;
    if (dropping)
      dropout_forward(in + u * H, mask + u * H, src, H, drop->hidden, drop->seed,
                      dropout_stream(drop->step, drop->site + 3, (uint64_t)s.dis_rows[u]));
    else
      std::memcpy(in + u * H, src, H * sizeof(float));
  }
  return linear_forward(gemm, out, in, dis_weight(w, s), dis_bias(w, s), R, H, 2 * H);
}

}  // namespace

// ---------------------------------------------------------------- buffers

void LayerLinears::build(const float* const q_w[3], const float* const q_b[3], const float* o_w,
                         const float* o_b, const float* f1_w, const float* f1_b, const float* f2_w,
                         const float* f2_b, int64_t H, int64_t I, bool bf16) {
  qkv_w.resize(3 * H * H);
  qkv_b.resize(3 * H);
  for (int j = 0; j < 3; j++) {
    std::memcpy(qkv_w.data() + j * H * H, q_w[j], H * H * sizeof(float));
    std::memcpy(qkv_b.data() + j * H, q_b[j], H * sizeof(float));
  }
  build_stacked(qkv_w.data(), qkv_b.data(), o_w, o_b, f1_w, f1_b, f2_w, f2_b, H, I, bf16);
}

void LayerLinears::build_stacked(const float* stacked_w, const float* stacked_b, const float* o_w,
                                 const float* o_b, const float* f1_w, const float* f1_b, const float* f2_w,
                                 const float* f2_b, int64_t H, int64_t I, bool bf16) {
  qkv.reset(new Linear(stacked_w, stacked_b, H, 3 * H, bf16));
  out.reset(new Linear(o_w, o_b, H, H, bf16));
  ffn_in.reset(new Linear(f1_w, f1_b, H, I, bf16));
  ffn_out.reset(new Linear(f2_w, f2_b, I, H, bf16));
}

uint64_t LayerLinears::bytes() const {
  uint64_t n = qkv_w.size() * 4 + qkv_b.size() * 4;
  for (const Linear* x : {qkv.get(), out.get(), ffn_in.get(), ffn_out.get()})
    if (x) n += x->packed_bytes();
  return n;
}

// Every buffer of a BlockSaved / Workspace, for fn(vector&) (one list, so freeing and
// counting cannot drift apart).
template <class Saved, class Fn>
static void each_buffer(Saved& b, Fn fn) {
  for (auto* v : {&b.x, &b.qkv, &b.probs, &b.ctx, &b.a, &b.s1, &b.mean1, &b.rstd1, &b.y1, &b.ffpre, &b.ffact, &b.f,
                  &b.s2, &b.mean2, &b.rstd2, &b.ad_pre[0], &b.ad_act[0], &b.ad_pre[1], &b.ad_act[1]})
    fn(*v);
  for (auto* v : {&b.dis_in, &b.dis_qk}) fn(*v);
  for (auto* v : {&b.mask_p, &b.mask_a, &b.mask_f, &b.mask_dis}) fn(*v);
}

template <class Ws, class Fn>
static void each_workspace_buffer(Ws& w, Fn fn) {
  for (auto* v : {&w.qkv, &w.ctx, &w.t1, &w.ff, &w.scores, &w.ad_pre, &w.ad_act, &w.packed, &w.rel, &w.drel, &w.dA,
                  &w.dB, &w.dC, &w.dff, &w.dqkv, &w.dad, &w.dscores, &w.pdrop, &w.dis_in, &w.dis_qk, &w.dis_scores,
                  &w.ddis_qk, &w.ddis_in})
    fn(*v);
  fn(w.in16);
  fn(w.row_start);
}

template <class V>
static uint64_t capacity_bytes(const V& v) {
  return v.capacity() * sizeof(typename V::value_type);
}

void BlockSaved::clear() {
  each_buffer(*this, [](auto& v) { drop(v); });
}

uint64_t BlockSaved::bytes() const {
  uint64_t n = 0;
  each_buffer(*this, [&](const auto& v) { n += capacity_bytes(v); });
  return n;
}

void Workspace::reserve(const BlockShape& s, int64_t adapter_size, bool bf16) {
  const int64_t N = s.tokens(), H = s.H, I = s.I;
  if (bf16 && in16.size() < (size_t)(N * (H > I ? H : I))) in16.resize(N * (H > I ? H : I));
  grow(qkv, N * 3 * H);
  grow(ctx, N * H);
  grow(t1, N * H);
  grow(ff, N * I);
  grow(scores, (size_t)s.threads * s.T * s.T);
  if (adapter_size > 0) {
    grow(ad_pre, N * adapter_size);
    grow(ad_act, N * adapter_size);
  }
  if (dis_active(s)) {
    grow(dis_in, (2 * s.T - 1) * H);
    grow(dis_qk, (2 * s.T - 1) * 2 * H);
    grow(dis_scores, (size_t)s.threads * 2 * s.T * (2 * s.T - 1));
  }
}

void Workspace::reserve_backward(const BlockShape& s, int64_t adapter_size, bool dropout) {
  const int64_t N = s.B * s.T, H = s.H, I = s.I;
  grow(dA, N * H);
  grow(dB, N * H);
  grow(dC, N * H);
  grow(dff, N * I);
  grow(dqkv, N * 3 * H);
  if (adapter_size > 0) grow(dad, N * adapter_size);
  grow(dscores, (size_t)s.threads * s.T * s.T);
  if (dropout) grow(pdrop, (size_t)s.threads * s.T * s.T);
  if (dis_active(s)) {
    grow(dis_scores, (size_t)s.threads * 2 * s.T * (2 * s.T - 1));
    grow(ddis_qk, (size_t)s.threads * (2 * s.T - 1) * 2 * H);
    grow(ddis_in, (2 * s.T - 1) * H);
  }
}

uint64_t Workspace::bytes() const {
  uint64_t n = 0;
  each_workspace_buffer(*this, [&](const auto& v) { n += capacity_bytes(v); });
  return n;
}

void Workspace::trim(uint64_t keep) {
  if (bytes() > keep) each_workspace_buffer(*this, [](auto& v) { drop(v); });
  held = bytes();
}

// ---------------------------------------------------------------- forward

std::string block_forward(const BlockWeights& w, const BlockShape& s, const float* x, float* out,
                          Workspace& ws, GemmFn adapter_gemm) {
  if (!w.packed) return "block_forward needs prepacked linear layers";
  LayerLinears& L = *w.packed;
  const OpsTable& K = ops();
  const int64_t N = s.tokens(), H = s.H;
  if (!linear_packed(*L.qkv, ws.qkv.data(), x, N, LinearAct::None, ws.in16)) return "oneDNN matmul failed (QKV)";
  if (dis_active(s) && !dis_prepare(w, s, nullptr, ws.dis_in.data(), nullptr, ws.dis_qk.data(), &gemm_f32))
    return "GEMM failed (relative positions)";
  if (!attention_fwd(ws.ctx.data(), nullptr, ws.scores.data(), nullptr, nullptr, ws.qkv.data(), s, nullptr,
                     ws.dis_qk.data(), ws.dis_scores.data()))
    return "attention GEMM failed";
  if (!linear_packed(*L.out, ws.t1.data(), ws.ctx.data(), N, LinearAct::None, ws.in16))
    return "oneDNN matmul failed (attention output)";
  const float* a = ws.t1.data();
  if (w.ad[0]) {
    if (!adapter_fwd(*w.ad[0], w.adapter_size, w.adapter_act, ws.ad_pre.data(), ws.ad_act.data(),
                     ws.ctx.data(), ws.t1.data(), N, H, adapter_gemm))
      return "adapter GEMM failed";
    a = ws.ctx.data();
  }
  float* y1 = ws.t1.data();
  K.layernorm_forward(y1, nullptr, nullptr, a, x, w.ln1_w, w.ln1_b, N, H, s.eps);
  if (!linear_packed(*L.ffn_in, ws.ff.data(), y1, N, LinearAct::Gelu, ws.in16)) return "oneDNN matmul failed (FFN in)";
  if (!linear_packed(*L.ffn_out, ws.ctx.data(), ws.ff.data(), N, LinearAct::None, ws.in16))
    return "oneDNN matmul failed (FFN out)";
  const float* f = ws.ctx.data();
  if (w.ad[1]) {
    if (!adapter_fwd(*w.ad[1], w.adapter_size, w.adapter_act, ws.ad_pre.data(), ws.ad_act.data(),
                     ws.qkv.data(), ws.ctx.data(), N, H, adapter_gemm))
      return "adapter GEMM failed";
    f = ws.qkv.data();
  }
  K.layernorm_forward(out, nullptr, nullptr, f, y1, w.ln2_w, w.ln2_b, N, H, s.eps);
  return "";
}

std::string blocks_forward(const std::vector<const BlockWeights*>& blocks, int64_t first, BlockShape s,
                           const float* x, float* out, Workspace& ws, int64_t adapter_size, bool bf16,
                           GemmFn adapter_gemm) {
  const int64_t B = s.B, T = s.T, H = s.H, N = B * T;
  if (blocks.empty()) {
    if (out != x) std::memcpy(out, x, (size_t)(N * H) * sizeof(float));
    return "";
  }
  omp_set_num_threads(s.threads);
  const int64_t tokens = pack_layout(ws.row_start, s.mask, B, T);
  const bool packed = tokens < N;
  float* h = out;
  if (packed) {
    s.row_start = ws.row_start.data();
    grow(ws.packed, tokens * H);
    pack_rows(ws.packed.data(), x, s.row_start, B, T, H);
    h = ws.packed.data();
    x = h;
  }
  ws.reserve(s, adapter_size, bf16);
  for (size_t i = 0; i < blocks.size(); i++) {
    std::string err = block_forward(*blocks[i], s, x, h, ws, adapter_gemm);
    if (!err.empty()) return err + " in layer " + std::to_string(first + (int64_t)i + 1);
    x = h;
  }
  if (packed) unpack_rows(out, h, s.row_start, B, T, H);
  return "";
}

std::string block_forward_saving(const BlockWeights& w, const BlockShape& s, const BlockDropout& drop,
                                 BlockSaved& sv, float* out, Workspace& ws, GemmFn gemm) {
  const OpsTable& K = ops();
  const int64_t B = s.B, T = s.T, N = B * T, H = s.H, I = s.I, bsz = w.adapter_size;
  for (std::vector<float>* v : {&sv.ctx, &sv.a, &sv.s1, &sv.y1, &sv.f, &sv.s2}) grow(*v, N * H);
  for (std::vector<float>* v : {&sv.mean1, &sv.rstd1, &sv.mean2, &sv.rstd2}) grow(*v, N);
  grow(sv.qkv, N * 3 * H);
  grow(sv.probs, (size_t)B * s.heads * T * T);
  grow(sv.ffpre, N * I);
  grow(sv.ffact, N * I);
  for (int j = 0; j < 2; j++)
    if (w.ad[j]) {
      grow(sv.ad_pre[j], N * bsz);
      grow(sv.ad_act[j], N * bsz);
    }
  if (drop.attention > 0) {
    grow8(sv.mask_p, (size_t)B * s.heads * T * T);
    grow(ws.pdrop, (size_t)s.threads * T * T);
  }
  if (drop.hidden > 0) {
    grow8(sv.mask_a, N * H);
    grow8(sv.mask_f, N * H);
  }
  if (dis_active(s)) {
    grow(sv.dis_in, (2 * T - 1) * H);
    grow(sv.dis_qk, (2 * T - 1) * 2 * H);
    if (drop.hidden > 0) grow8(sv.mask_dis, (2 * T - 1) * H);
    grow(ws.dis_scores, (size_t)s.threads * 2 * T * (2 * T - 1));
  }
  const float* x = sv.x.data();
  if (!linear_forward(gemm, sv.qkv.data(), x, w.qkv_w, w.qkv_b, N, H, 3 * H)) return "GEMM failed (QKV)";
  if (dis_active(s) && !dis_prepare(w, s, &drop, sv.dis_in.data(), sv.mask_dis.data(), sv.dis_qk.data(), gemm))
    return "GEMM failed (relative positions)";
  if (!attention_fwd(sv.ctx.data(), sv.probs.data(), nullptr, sv.mask_p.data(), ws.pdrop.data(), sv.qkv.data(),
                     s, &drop, sv.dis_qk.data(), ws.dis_scores.data()))
    return "attention GEMM failed";
  if (!linear_forward(gemm, sv.a.data(), sv.ctx.data(), w.o_w, w.o_b, N, H, H)) return "GEMM failed (attention output)";
  if (drop.hidden > 0)
    dropout_forward(sv.a.data(), sv.mask_a.data(), sv.a.data(), N * H, drop.hidden, drop.seed,
                    dropout_stream(drop.step, drop.site + 1, 0));
  if (w.ad[0]) {
    if (!adapter_fwd(*w.ad[0], bsz, w.adapter_act, sv.ad_pre[0].data(), sv.ad_act[0].data(), sv.s1.data(),
                     sv.a.data(), N, H, gemm))
      return "adapter GEMM failed";
    for (int64_t i = 0; i < N * H; i++) sv.s1[i] += x[i];
  } else {
    for (int64_t i = 0; i < N * H; i++) sv.s1[i] = sv.a[i] + x[i];
  }
  K.layernorm_forward(sv.y1.data(), sv.mean1.data(), sv.rstd1.data(), sv.s1.data(), nullptr, w.ln1_w, w.ln1_b,
                      N, H, s.eps);
  if (!linear_forward(gemm, sv.ffpre.data(), sv.y1.data(), w.f1_w, w.f1_b, N, H, I)) return "GEMM failed (FFN in)";
  K.gelu_forward(sv.ffact.data(), sv.ffpre.data(), N * I);
  if (!linear_forward(gemm, sv.f.data(), sv.ffact.data(), w.f2_w, w.f2_b, N, I, H)) return "GEMM failed (FFN out)";
  if (drop.hidden > 0)
    dropout_forward(sv.f.data(), sv.mask_f.data(), sv.f.data(), N * H, drop.hidden, drop.seed,
                    dropout_stream(drop.step, drop.site + 2, 0));
  if (w.ad[1]) {
    if (!adapter_fwd(*w.ad[1], bsz, w.adapter_act, sv.ad_pre[1].data(), sv.ad_act[1].data(), sv.s2.data(),
                     sv.f.data(), N, H, gemm))
      return "adapter GEMM failed";
    for (int64_t i = 0; i < N * H; i++) sv.s2[i] += sv.y1[i];
  } else {
    for (int64_t i = 0; i < N * H; i++) sv.s2[i] = sv.f[i] + sv.y1[i];
  }
  K.layernorm_forward(out, sv.mean2.data(), sv.rstd2.data(), sv.s2.data(), nullptr, w.ln2_w, w.ln2_b, N, H,
                      s.eps);
  return "";
}

// ---------------------------------------------------------------- backward

std::string block_backward(const BlockWeights& w, const BlockShape& s, const BlockDropout& drop,
                           const BlockSaved& sv, float* d, bool need_dx, Workspace& ws, GemmFn gemm) {
  const OpsTable& K = ops();
  const int64_t N = s.B * s.T, H = s.H, I = s.I, bsz = w.adapter_size;
  // y = LN2(s2); s2 = f + y1
  float* ds2 = ws.dB.data();
  K.layernorm_backward(ds2, w.g_ln2_w, w.g_ln2_b, d, sv.s2.data(), w.ln2_w, sv.mean2.data(), sv.rstd2.data(), N, H);
  float* dy1 = ws.dC.data();
  std::memcpy(dy1, ds2, N * H * sizeof(float));  // the residual path
  float* df = ds2;
  if (w.ad[1] && !adapter_bwd(*w.ad[1], bsz, w.adapter_act, sv.ad_pre[1].data(), sv.ad_act[1].data(),
                              sv.f.data(), df, ws.dad.data(), N, H, gemm))
    return "adapter GEMM failed";
  if (drop.hidden > 0) dropout_backward(df, sv.mask_f.data(), df, N * H, drop.hidden);
  if (!linear_backward(gemm, ws.dff.data(), w.g_f2_w, w.g_f2_b, df, sv.ffact.data(), w.f2_w, N, I, H, false))
    return "GEMM failed (FFN out backward)";
  K.gelu_backward(ws.dff.data(), sv.ffpre.data(), ws.dff.data(), N * I);
  if (!linear_backward(gemm, dy1, w.g_f1_w, w.g_f1_b, ws.dff.data(), sv.y1.data(), w.f1_w, N, H, I, true))
    return "GEMM failed (FFN in backward)";
  // y1 = LN1(s1); s1 = a + x
  float* ds1 = d;  // d(out) is no longer needed; it becomes d(x)
  K.layernorm_backward(ds1, w.g_ln1_w, w.g_ln1_b, dy1, sv.s1.data(), w.ln1_w, sv.mean1.data(), sv.rstd1.data(), N, H);
  float* da = ws.dB.data();
  std::memcpy(da, ds1, N * H * sizeof(float));
  if (w.ad[0] && !adapter_bwd(*w.ad[0], bsz, w.adapter_act, sv.ad_pre[0].data(), sv.ad_act[0].data(),
                              sv.a.data(), da, ws.dad.data(), N, H, gemm))
    return "adapter GEMM failed";
  if (!w.trainable() && !need_dx) return "";  // nothing below this point trains
  if (drop.hidden > 0) dropout_backward(da, sv.mask_a.data(), da, N * H, drop.hidden);
  float* dctx = ws.dC.data();
  if (!linear_backward(gemm, dctx, w.g_o_w, w.g_o_b, da, sv.ctx.data(), w.o_w, N, H, H, false))
    return "GEMM failed (attention output backward)";
  // DeBERTa-v2: the position projections' gradient is needed when their weights or the
  // relative table train
  const bool dis_grad = dis_active(s) && (s.ddis_table || (s.dis->share_key ? w.g_qkv_w : w.g_pos_w));
  const int64_t R = 2 * s.T - 1;
  if (dis_grad) std::memset(ws.ddis_qk.data(), 0, (size_t)s.threads * R * 2 * H * sizeof(float));
  if (!attention_bwd(ws.dqkv.data(), dctx, sv.qkv.data(), sv.probs.data(), sv.mask_p.data(), ws.dscores.data(),
                     ws.pdrop.data(), s, drop.attention, sv.dis_qk.data(), ws.dis_scores.data(),
                     dis_grad ? ws.ddis_qk.data() : nullptr))
    return "attention GEMM failed";
  if (dis_grad) {
    float* dqk = ws.ddis_qk.data();
    for (int t = 1; t < s.threads; t++)
      for (int64_t i = 0; i < R * 2 * H; i++) dqk[i] += dqk[t * R * 2 * H + i];
    float* gw = s.dis->share_key ? w.g_qkv_w : w.g_pos_w;  // [query; key] rows: the first 2H of Wqkv
    float* gb = s.dis->share_key ? w.g_qkv_b : w.g_pos_b;
    float* din = s.ddis_table ? ws.ddis_in.data() : nullptr;
    if (!linear_backward(gemm, din, gw, gb, dqk, sv.dis_in.data(), dis_weight(w, s), R, H, 2 * H, false))
      return "GEMM failed (relative positions backward)";
    if (din) {  // back through the per-row dropout, into the table rows the offsets read
      if (drop.hidden > 0) dropout_backward(din, sv.mask_dis.data(), din, R * H, drop.hidden);
      for (int64_t u = 0; u < R; u++) {
        float* g = s.ddis_table + (int64_t)s.dis_rows[u] * H;
        for (int64_t c = 0; c < H; c++) g[c] += din[u * H + c];
      }
    }
  }
  // x feeds QKV and the residual: dx = dqkv Wqkv + ds1
  if (!linear_backward(gemm, need_dx ? ds1 : nullptr, w.g_qkv_w, w.g_qkv_b, ws.dqkv.data(), sv.x.data(), w.qkv_w, N,
                  H, 3 * H, true))
    return "GEMM failed (QKV backward)";
  return "";
}

// ---------------------------------------------------------------- packing

int64_t pack_layout(std::vector<int64_t>& row_start, const int32_t* mask, int64_t B, int64_t T) {
  row_start.resize(B + 1);
  row_start[0] = 0;
  for (int64_t b = 0; b < B; b++) row_start[b + 1] = row_start[b] + mask_extent(mask + b * T, T);
  return row_start[B];
}

void pack_rows(float* dst, const float* src, const int64_t* row_start, int64_t B, int64_t T, int64_t H) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++)
    std::memcpy(dst + row_start[b] * H, src + b * T * H, (row_start[b + 1] - row_start[b]) * H * sizeof(float));
}

void unpack_rows(float* dst, const float* src, const int64_t* row_start, int64_t B, int64_t T, int64_t H) {
  // back to front, so that dst may hold src at its start (packed rows never move forward)
  for (int64_t b = B - 1; b >= 0; b--) {
    const int64_t e = row_start[b + 1] - row_start[b];
    std::memmove(dst + b * T * H, src + row_start[b] * H, e * H * sizeof(float));
    std::memset(dst + (b * T + e) * H, 0, (T - e) * H * sizeof(float));
  }
}

// ---------------------------------------------------------------- embeddings

void embeddings_forward(const EmbeddingTables& e, float* out, float* sum, float* mean, float* rstd,
                        const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N,
                        int64_t H, float eps, const int32_t* mask) {
  float* s = sum ? sum : out;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float* o = s + i * H;
    const float* w = e.word + (int64_t)ids[i] * H;
    if (e.position) {
      const float* p = e.position + (int64_t)positions[i] * H;
      for (int64_t j = 0; j < H; j++) o[j] = w[j] + p[j];
    } else {
      std::memcpy(o, w, H * sizeof(float));
    }
    if (e.token_type) {
      const float* t = e.token_type + (int64_t)(types ? types[i] : 0) * H;
      for (int64_t j = 0; j < H; j++) o[j] += t[j];
    }
  }
  ops().layernorm_forward(out, mean, rstd, s, nullptr, e.ln_w, e.ln_b, N, H, eps);
  if (mask)
    for (int64_t i = 0; i < N; i++)
      if (!mask[i]) std::memset(out + i * H, 0, H * sizeof(float));
}

}  // namespace er
