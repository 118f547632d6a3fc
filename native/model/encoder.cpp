#include "model/encoder.h"
#include <omp.h>
#include <cmath>
#include <cstring>
#include "kernels/gemm.h"
#include "kernels/ops.h"

namespace er {

std::string encoder_set_precision(Encoder& enc, Precision p) {
  std::lock_guard<std::mutex> lock(enc.mu);
  const int64_t H = enc.cfg.hidden, I = enc.cfg.intermediate;
  std::vector<LayerLinears> linears(enc.layer.size());
  for (size_t l = 0; l < enc.layer.size(); l++) {
    const LayerWeights& w = enc.layer[l];
    const float* const qw[3] = {w.q_w, w.k_w, w.v_w};
    const float* const qb[3] = {w.q_b, w.k_b, w.v_b};
    linears[l].build(qw, qb, w.o_w, w.o_b, w.ffn_in_w, w.ffn_in_b, w.ffn_out_w, w.ffn_out_b, H, I,
                     p == Precision::BF16);
  }
  enc.linears = std::move(linears);
  enc.blocks.assign(enc.layer.size(), BlockWeights{});
  for (size_t l = 0; l < enc.layer.size(); l++) {
    const LayerWeights& w = enc.layer[l];
    BlockWeights& b = enc.blocks[l];
    b.qkv_w = enc.linears[l].qkv_w.data();
    b.qkv_b = enc.linears[l].qkv_b.data();
    b.o_w = w.o_w; b.o_b = w.o_b; b.ln1_w = w.ln1_w; b.ln1_b = w.ln1_b;
    b.f1_w = w.ffn_in_w; b.f1_b = w.ffn_in_b; b.f2_w = w.ffn_out_w; b.f2_b = w.ffn_out_b;
    b.ln2_w = w.ln2_w; b.ln2_b = w.ln2_b;
    b.packed = &enc.linears[l];
  }
  if (enc.cfg.dis.on) {
    const int64_t span = enc.cfg.dis.span;
    if (span <= 0 || !enc.rel_emb) return "the relative position embeddings were not given";
    enc.rel_table.resize((size_t)(2 * span * H));
    disentangled_table(enc.cfg, enc.rel_emb, enc.rel_ln_w, enc.rel_ln_b, enc.rel_table.data(), nullptr, nullptr);
    if (!enc.cfg.dis.share_key) {
      // [query; key] stacked, zeros for a projection the model does not have
      enc.pos_w.assign(enc.layer.size(), std::vector<float>((size_t)(2 * H * H), 0.0f));
      enc.pos_b.assign(enc.layer.size(), std::vector<float>((size_t)(2 * H), 0.0f));
      for (size_t l = 0; l < enc.layer.size(); l++) {
        const LayerWeights& w = enc.layer[l];
        if (w.pos_q_w) std::memcpy(enc.pos_w[l].data(), w.pos_q_w, H * H * sizeof(float));
        if (w.pos_q_b) std::memcpy(enc.pos_b[l].data(), w.pos_q_b, H * sizeof(float));
        if (w.pos_k_w) std::memcpy(enc.pos_w[l].data() + H * H, w.pos_k_w, H * H * sizeof(float));
        if (w.pos_k_b) std::memcpy(enc.pos_b[l].data() + H, w.pos_k_b, H * sizeof(float));
      }
      for (size_t l = 0; l < enc.layer.size(); l++) {
        enc.blocks[l].pos_w = enc.pos_w[l].data();
        enc.blocks[l].pos_b = enc.pos_b[l].data();
      }
    }
  }
  enc.precision = p;
  return "";
}

void disentangled_table(const EncoderConfig& c, const float* rel_emb, const float* ln_w, const float* ln_b,
                        float* out, float* mean, float* rstd) {
  const int64_t rows = 2 * c.dis.span, H = c.hidden;
  if (c.dis.rel_ln) ops().layernorm_forward(out, mean, rstd, rel_emb, nullptr, ln_w, ln_b, rows, H, c.eps);
  else std::memcpy(out, rel_emb, (size_t)(rows * H) * sizeof(float));
}

void relative_bias(const Encoder& enc, int64_t T, std::vector<float>& out) {
  relative_bias(enc.cfg, enc.rel_bias, T, out);
}

uint64_t encoder_packed_bytes(const Encoder& enc) {
  uint64_t n = 0;
  for (const LayerLinears& L : enc.linears) n += L.bytes();
  return n;
}

static std::string check_common(const Encoder& enc, int64_t B, int64_t T) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  if (enc.cfg.hidden <= 0 || enc.layer.size() != (size_t)enc.cfg.layers ||
      enc.blocks.size() != enc.layer.size())
    return "encoder is not loaded";
  return "";
}

static BlockShape shape(const Encoder& enc, const int32_t* mask, int64_t B, int64_t T, int threads) {
  const EncoderConfig& c = enc.cfg;
  BlockShape s;
  s.B = B; s.T = T; s.H = c.hidden; s.I = c.intermediate; s.heads = c.heads; s.eps = c.eps;
  s.mask = mask;
  s.threads = threads;
  return s;
}

// Blocks from..to-1 on `in` into `out` (in may equal out). The caller holds enc.mu.
static std::string run_blocks(Encoder& enc, const float* in, float* out, BlockShape s, int64_t from, int64_t to) {
  std::vector<const BlockWeights*> blocks;
  for (int64_t l = from; l < to; l++) blocks.push_back(&enc.blocks[l]);
  relative_bias(enc, s.T, enc.ws.rel);
  if (!enc.ws.rel.empty()) s.rel = enc.ws.rel.data();
  attach_disentangled(s, enc.cfg.dis, enc.rel_table.data(), enc.dis_rows);
  return blocks_forward(blocks, from, s, in, out, enc.ws, 0, enc.precision == Precision::BF16, &gemm_f32);
}

std::string encoder_forward(Encoder& enc, float* out, const int32_t* ids, const int32_t* positions,
                            const int32_t* type_ids, const int32_t* mask, int64_t B, int64_t T,
                            int64_t to_layer, int threads) {
  std::string err = check_common(enc, B, T);
  if (!err.empty()) return err;
  const EncoderConfig& c = enc.cfg;
  if (to_layer < 0 || to_layer > c.layers)
    return "toLayer " + std::to_string(to_layer) + " is out of range 0.." + std::to_string(c.layers);
  const int64_t N = B * T;
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
  embeddings_forward(enc.emb, out, nullptr, nullptr, nullptr, ids, positions, type_ids, N, c.hidden, c.eps,
                     c.mask_embeddings ? mask : nullptr);
  std::string r = run_blocks(enc, out, out, shape(enc, mask, B, T, threads), 0, to_layer);
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
  std::lock_guard<std::mutex> lock(enc.mu);
  std::string r = run_blocks(enc, hidden, out, shape(enc, mask, B, T, threads), from_layer, to_layer);
  enc.ws.trim(kWorkspaceKeepBytes);
  return r;
}

}  // namespace er
