// One post-LayerNorm encoder block (BERT family: exact GELU, optional Houlsby
// adapters), composed from the kernels of native/kernels. Every user runs this one
// implementation: the encoder's prefix pass (forward only, frozen weights), forward-only
// serving of a task model, and training (forward saving what backward needs, then the
// backward).
//
// Forward, as a list of kernel calls:
//   qkv = x Wqkv^T + bqkv                       linear
//   ctx = softmax(q k^T / sqrt(d), mask) v      attention (probabilities dropped out)
//   a   = dropout(ctx Wo^T + bo)                linear, dropout
//   a   = a + up(act(down(a)))                  adapter (when present)
//   y1  = LN1(a + x)                            layernorm
//   h   = gelu(y1 W1^T + b1)                    linear, gelu
//   f   = dropout(h W2^T + b2)                  linear, dropout
//   f   = f + up(act(down(f)))                  adapter (when present)
//   y   = LN2(f + y1)                           layernorm
// Backward is the same list reversed.
//
// Two ways to run the forward:
//   - saving (training and evaluation of a trainable model): every intermediate goes to a
//     BlockSaved; linear layers run as GEMMs on the fp32 weights (they change every step);
//   - forward-only (the encoder, inference task models): nothing is kept; intermediates
//     live in a Workspace bounded by the batch; linear layers run through prepacked
//     oneDNN primitives with the bias and GELU fused.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "kernels/linear.h"
#include "kernels/rng.h"

namespace er {

enum class AdapterAct : int32_t { Gelu = 0, Relu = 1 };

// C = alpha op(A) op(B) + beta C (gemm_f32 or gemm_bf16 of kernels/gemm.h)
// Scratch vectors grow to the largest batch and are kept (grow, grow8), or freed (drop).
inline void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}
inline void grow8(std::vector<uint8_t>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}
template <class V>
void drop(V& v) {
  V().swap(v);
}

using GemmFn = bool (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                        const float*, int64_t, float, float*, int64_t);

// out (N, OC) = x (N, C) W^T + b, a GEMM on the fp32 weight (W (OC, C), b (OC) or null)
bool linear_forward(GemmFn gemm, float* out, const float* x, const float* W, const float* b, int64_t N,
                    int64_t C, int64_t OC);
// gW (OC, C) += dy^T x; gb (OC) += colsum dy (each skipped when null); dx (N, C) = dy W, or
// += when accumulate (skipped when null)
bool linear_backward(GemmFn gemm, float* dx, float* gW, float* gb, const float* dy, const float* x,
                     const float* W, int64_t N, int64_t C, int64_t OC, bool accumulate);

// The GEMM side of one layer prepared for forward-only use: Q, K and V fused into one
// (3H, H) linear layer, weights prepacked once in a precision.
struct LayerLinears {
  std::vector<float> qkv_w, qkv_b;  // (3H, H), (3H): Q, K, V stacked
  std::unique_ptr<Linear> qkv, out, ffn_in, ffn_out;
  // qkv from the stacked copy above; the others read the given (OC, C) weights in place
  void build(const float* const q_w[3], const float* const q_b[3], const float* o_w, const float* o_b,
             const float* f1_w, const float* f1_b, const float* f2_w, const float* f2_b, int64_t H,
             int64_t I, bool bf16);
  // the same over an already stacked (3H, H) weight and (3H) bias, read in place
  void build_stacked(const float* qkv_w, const float* qkv_b, const float* o_w, const float* o_b,
                     const float* f1_w, const float* f1_b, const float* f2_w, const float* f2_b, int64_t H,
                     int64_t I, bool bf16);
  uint64_t bytes() const;
};

// A bottleneck adapter: out = h + up(act(down(h))); gradients null when frozen.
struct AdapterWeights {
  float *dw = nullptr, *db = nullptr, *uw = nullptr, *ub = nullptr;  // (b, H), (b), (H, b), (H)
  float *g_dw = nullptr, *g_db = nullptr, *g_uw = nullptr, *g_ub = nullptr;
};

// One block's weights (Hugging Face layout, Q, K, V stacked), their gradients (null:
// frozen), adapters (null: none) and, for forward-only runs, its prepacked linears.
struct BlockWeights {
  const float *qkv_w = nullptr, *qkv_b = nullptr, *o_w = nullptr, *o_b = nullptr;
  const float *ln1_w = nullptr, *ln1_b = nullptr, *f1_w = nullptr, *f1_b = nullptr;
  const float *f2_w = nullptr, *f2_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
  float *g_qkv_w = nullptr, *g_qkv_b = nullptr, *g_o_w = nullptr, *g_o_b = nullptr;
  float *g_ln1_w = nullptr, *g_ln1_b = nullptr, *g_f1_w = nullptr, *g_f1_b = nullptr;
  float *g_f2_w = nullptr, *g_f2_b = nullptr, *g_ln2_w = nullptr, *g_ln2_b = nullptr;
  // DeBERTa-v2 without share_att_key: the position projections stacked (2H, H) [query; key],
  // (2H); with it, the first 2H rows of qkv_w / qkv_b serve
  const float *pos_w = nullptr, *pos_b = nullptr;
  float *g_pos_w = nullptr, *g_pos_b = nullptr;
  AdapterWeights* ad[2] = {nullptr, nullptr};  // 0: after the attention output, 1: after the FFN
  int64_t adapter_size = 0;
  AdapterAct adapter_act = AdapterAct::Gelu;
  LayerLinears* packed = nullptr;  // required by forward-only runs
  bool trainable() const { return g_qkv_w != nullptr; }
};

// DeBERTa-v2's disentangled attention (config.json: relative_attention, pos_att_type,
// position_buckets, max_relative_positions, share_att_key, norm_rel_ebd).
struct DisentangledConfig {
  bool on = false;             // relative_attention
  bool c2p = false, p2c = false;
  bool share_key = true;       // share_att_key: the positions go through the layer's own Q and K
  bool rel_ln = false;         // norm_rel_ebd contains layer_norm
  int64_t buckets = 0;         // position_buckets (<= 0: no log buckets)
  int64_t max_relative = 0;    // max_relative_positions (already defaulted to max_position_embeddings)
  int64_t span = 0;            // att_span: buckets when > 0, else max_relative; the table has 2 span rows
  float scale_factor = 1.0f;   // 1 + (c2p) + (p2c): scores are divided by sqrt(d * scale_factor)
};

// DeBERTa-v2's bucket of a relative position (query - key): exact inside +-buckets/2,
// log-spaced up to max_relative (transformers' make_log_bucket_position, in its float32
// arithmetic); the identity without buckets.
int64_t log_bucket_position(int64_t relative, int64_t buckets, int64_t max_relative);
// The table row each offset delta = i - j in -(T-1)..T-1 reads: rows[delta + T - 1] =
// clamp(bucket(delta) + span, 0, 2 span - 1).
void disentangled_rows(const DisentangledConfig& c, int64_t T, std::vector<int32_t>& rows);

// Sets s.dis for config c (when it changes the scale or adds position terms) and, with
// position terms, the table the layers read (2 span, H) and each offset's row for s.T (kept
// in rows).
struct BlockShape;
void attach_disentangled(BlockShape& s, const DisentangledConfig& c, const float* table, std::vector<int32_t>& rows);

// The batch a block runs on: (B, T, H) padded rows, or packed (forward-only): row b's
// first extent tokens at rows row_start[b] .. row_start[b + 1] - 1 of a (tokens, H)
// array, with no padding between rows (the linear layers then skip the padding).
struct BlockShape {
  int64_t B = 0, T = 0, H = 0, I = 0, heads = 0;
  float eps = 1e-12f;
  const int32_t* mask = nullptr;  // (B, T), also in the packed layout
  int threads = 1;
  const int64_t* row_start = nullptr;  // (B + 1) in the packed layout, else null
  // relative position bias added to the scaled scores (MPNet): (heads, 2T - 1), query i and
  // key j at [h][j - i + T - 1]; null: none
  const float* rel = nullptr;
  // when non-null, the backward adds dL/d rel here: (threads, heads, 2T - 1), one slab per
  // OpenMP thread (the caller zeroes it and sums the slabs)
  float* drel = nullptr;
  // DeBERTa-v2: its config (null: none), the relative table (2 span, H) every layer reads, and
  // for each offset delta = i - j the table row it reads (2T - 1, see disentangled_rows)
  const DisentangledConfig* dis = nullptr;
  const float* dis_table = nullptr;
  const int32_t* dis_rows = nullptr;
  // when non-null, the backward adds dL/d table here (2 span, H)
  float* ddis_table = nullptr;
  int64_t tokens() const { return row_start ? row_start[B] : B * T; }
};

// The packed layout of a padded batch: row_start (B + 1) from each row's extent.
// Returns the packed token count.
int64_t pack_layout(std::vector<int64_t>& row_start, const int32_t* mask, int64_t B, int64_t T);
// dst (tokens, H) = the first extent tokens of each row of src (B, T, H)
void pack_rows(float* dst, const float* src, const int64_t* row_start, int64_t B, int64_t T, int64_t H);
// dst (B, T, H) = src (tokens, H) scattered back to its rows, zeros past each row's extent
void unpack_rows(float* dst, const float* src, const int64_t* row_start, int64_t B, int64_t T, int64_t H);

// Dropout of one block in one step (all probabilities 0: none). Streams are
// dropout_stream(step, site + {0 probabilities, 1 attention output, 2 FFN output}, part)
// (kernels/rng.h), site = dropout_layer_site(layer).
struct BlockDropout {
  float hidden = 0.0f, attention = 0.0f;
  uint64_t seed = 0, step = 0, site = 0;
};

// What a saving forward keeps for backward; grown to the batch.
struct BlockSaved {
  std::vector<float> x, qkv, probs, ctx, a, s1, mean1, rstd1, y1, ffpre, ffact, f, s2, mean2, rstd2;
  std::vector<float> ad_pre[2], ad_act[2];  // (N, b) per adapter
  std::vector<uint8_t> mask_p, mask_a, mask_f;
  // DeBERTa-v2: the layer's relative rows (2T - 1, H) after dropout, their dropout mask and
  // their projections (2T - 1, 2H) [position query; position key]
  std::vector<float> dis_in, dis_qk;
  std::vector<uint8_t> mask_dis;
  void clear();
  uint64_t bytes() const;
};

// Scratch of forward-only runs and of the backward, reused across blocks and calls. The
// buffers grow with the largest batch; trim() frees them after a call that grew them
// past a bound (so one huge request does not pin its memory for the life of the process).
struct Workspace {
  std::vector<float> qkv, ctx, t1, ff, scores;  // (N,3H), (N,H) x2, (N,I), (threads,T,T)
  std::vector<float> ad_pre, ad_act;            // (N, b) forward-only adapters
  std::vector<uint16_t> in16;                   // (N, max(H, I)) bf16 GEMM input
  std::vector<float> packed;                    // (tokens, H) the packed hidden states
  std::vector<int64_t> row_start;               // (B + 1) their layout
  std::vector<float> rel;                       // (heads, 2T - 1) relative position bias
  std::vector<float> drel;                      // (threads, heads, 2T - 1) its gradient
  // DeBERTa-v2: relative rows (2T - 1, H), their projections (2T - 1, 2H), per-thread
  // (T, 2T - 1) x 2 scores scratch, per-thread (2T - 1, 2H) gradient slabs
  std::vector<float> dis_in, dis_qk, dis_scores, ddis_qk, ddis_in;
  // backward
  std::vector<float> dA, dB, dC, dff, dqkv, dad, dscores, pdrop;
  void reserve(const BlockShape& s, int64_t adapter_size, bool bf16);
  void reserve_backward(const BlockShape& s, int64_t adapter_size, bool dropout);
  uint64_t bytes() const;
  // frees every buffer when they hold more than `keep` bytes
  void trim(uint64_t keep);
  // bytes() as of the end of the last call, readable without the owner's lock
  std::atomic<uint64_t> held{0};
};
constexpr uint64_t kWorkspaceKeepBytes = uint64_t(256) << 20;

// Length of the attended prefix of one row of a (T) mask: one past its last non-zero
// position. Attention skips the padded tail after it.
int64_t mask_extent(const int32_t* mask, int64_t T);

// Forward-only: x (N, H) -> out (N, H) with N = s.tokens(); out may equal x. Needs
// w.packed and a workspace reserved for the shape.
std::string block_forward(const BlockWeights& w, const BlockShape& s, const float* x, float* out,
                          Workspace& ws, GemmFn adapter_gemm);

// Forward-only through a stack of blocks (layers first + 1 .. first + blocks.size(), for
// messages): x (B, T, H) -> out (B, T, H); x may equal out; s.rel, when set, is the
// relative bias of every block. Rows with padding run packed (the padding skipped) and out
// holds zeros past each row's extent. With no block, out is a copy of x.
std::string blocks_forward(const std::vector<const BlockWeights*>& blocks, int64_t first, BlockShape s,
                           const float* x, float* out, Workspace& ws, int64_t adapter_size, bool bf16,
                           GemmFn adapter_gemm);

// Saving forward: reads saved.x (N, H), writes out (N, H) (not saved.x) and every saved
// intermediate; `gemm` runs the linear layers.
std::string block_forward_saving(const BlockWeights& w, const BlockShape& s, const BlockDropout& drop,
                                 BlockSaved& saved, float* out, Workspace& ws, GemmFn gemm);

// Backward of a saving forward. d (N, H): on entry dL/d out; on return dL/d x when
// need_dx. Parameter gradients accumulate (+=). A frozen block returns as soon as
// nothing below it needs a gradient. Uses the workspace's backward buffers except dA,
// which the caller may pass as d.
std::string block_backward(const BlockWeights& w, const BlockShape& s, const BlockDropout& drop,
                           const BlockSaved& saved, float* d, bool need_dx, Workspace& ws, GemmFn gemm);

// Embedding tables of a BERT-family model.
struct EmbeddingTables {
  const float* word = nullptr;        // (vocab, H)
  const float* position = nullptr;    // (max_positions, H) or null (none)
  const float* token_type = nullptr;  // (type_vocab, H) or null
  const float* ln_w = nullptr;        // (H)
  const float* ln_b = nullptr;        // (H)
};

// out (N, H) = LN(word[ids] + position[positions] + type[types]); types may be null
// (all 0), the position table too (none added). sum (N, H), mean, rstd (N) are written when
// non-null (saved for backward). With mask (N) non-null, rows where it is 0 become 0
// (DeBERTa-v2 multiplies its embeddings by the attention mask).
void embeddings_forward(const EmbeddingTables& e, float* out, float* sum, float* mean, float* rstd,
                        const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N,
                        int64_t H, float eps, const int32_t* mask = nullptr);

}  // namespace er
