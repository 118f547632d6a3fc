// A BERT-family encoder (post-LayerNorm blocks, exact GELU), run layer by layer with
// the one block implementation of model/layer.h.
//
// Layer numbering follows Hugging Face's hidden_states: layer 0 is the output of
// the embeddings (+ LayerNorm), layer i (1..L) the output of the i-th block.
// forward(ids, to_layer = k) gives layer k; forward_from(h_k, from_layer = k,
// to_layer = j) runs blocks k+1..j on it. Both use the same code path, so
// forward_from(forward(x, k), k, L) equals forward(x, L) bit for bit.
#pragma once
#include <cstdint>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>
#include "model/layer.h"
#include "model/weights.h"

namespace er {

struct EncoderConfig {
  int64_t vocab = 0, hidden = 0, layers = 0, heads = 0, intermediate = 0;
  int64_t max_positions = 0, type_vocab = 0;  // type_vocab 0: no token-type embeddings
  float eps = 1e-12f;
  // MPNet's relative position bias: buckets of relative distance (0: none), the distance
  // past which buckets stop growing
  int64_t rel_buckets = 0, rel_max_distance = 128;
  // absolute position embeddings added to the input (DeBERTa-v2's position_biased_input may
  // turn them off)
  bool abs_positions = true;
  // the embeddings' output multiplied by the attention mask (DeBERTa-v2)
  bool mask_embeddings = false;
  DisentangledConfig dis;  // DeBERTa-v2's disentangled attention (dis.on false: none)
};

// Compute precision of the linear layers. FP32 is the reference. BF16 runs the
// GEMMs of the linear layers with bfloat16 inputs and weights and fp32
// accumulation; embeddings, LayerNorm, softmax, GELU and attention stay fp32.
enum class Precision : int32_t { FP32 = 0, BF16 = 1 };

struct LayerWeights {
  const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;  // (H, H), (H)
  const float *o_w, *o_b;                          // (H, H), (H)
  const float *ln1_w, *ln1_b;                      // (H)
  const float *ffn_in_w, *ffn_in_b;                // (I, H), (I)
  const float *ffn_out_w, *ffn_out_b;              // (H, I), (H)
  const float *ln2_w, *ln2_b;                      // (H)
  // DeBERTa-v2 without share_att_key: position query / key projections (null: not in the model)
  const float *pos_q_w = nullptr, *pos_q_b = nullptr, *pos_k_w = nullptr, *pos_k_b = nullptr;
};

struct Encoder {
  EncoderConfig cfg;
  EmbeddingTables emb;
  std::vector<LayerWeights> layer;  // as loaded; blocks[] below run them
  const float* rel_bias = nullptr;  // (rel_buckets, heads) when cfg.rel_buckets > 0
  // DeBERTa-v2: the relative embeddings (2 span, H), their LayerNorm (when cfg.dis.rel_ln),
  // and the table every layer reads (after that LayerNorm), computed once at load
  const float *rel_emb = nullptr, *rel_ln_w = nullptr, *rel_ln_b = nullptr;
  std::vector<float> rel_table;
  // per layer, when !cfg.dis.share_key: the position projections, stacked (2H, H) [query; key]
  // and (2H), zeros for a term pos_att_type leaves out
  std::vector<std::vector<float>> pos_w, pos_b;
  std::vector<int32_t> dis_rows;  // the table row of each offset, for the current T
  WeightSet weights;
  Precision precision = Precision::FP32;
  // one per layer, for `precision`; built once at load (task models read the stacked
  // Q, K, V of frozen layers from here, so they are not rebuilt afterwards)
  std::vector<LayerLinears> linears;
  std::vector<BlockWeights> blocks;  // layer l's weights for block_forward
  Workspace ws;
  std::mutex mu;  // one forward at a time per encoder (the workspace is shared)
};

// MPNet's bucket of a relative position (memory - context), bidirectional: exact below a
// quarter of the buckets, log-spaced up to max_distance (transformers' relative_position_bucket,
// in its float32 arithmetic).
int64_t relative_bucket(int64_t relative_position, int64_t buckets, int64_t max_distance);

// The bias a (T)-token row adds to its attention scores, from a (buckets, heads) table:
// out (heads, 2T - 1), the bias of query i and key j at out[h][j - i + T - 1]. Leaves out
// empty without a relative bias (cfg.rel_buckets 0 or no table).
void relative_bias(const EncoderConfig& cfg, const float* table, int64_t T, std::vector<float>& out);
void relative_bias(const Encoder& enc, int64_t T, std::vector<float>& out);
// Its backward: gtable (buckets, heads) += the gradient drel (heads, 2T - 1) gathered by bucket.
void relative_bias_backward(const EncoderConfig& cfg, float* gtable, const float* drel, int64_t T);

// DeBERTa-v2's table every layer reads: LN(rel_emb) when cfg.dis.rel_ln, else rel_emb; out
// (2 span, H). mean and rstd (2 span) are written when non-null (saved for backward).
void disentangled_table(const EncoderConfig& cfg, const float* rel_emb, const float* ln_w, const float* ln_b,
                        float* out, float* mean, float* rstd);

// Builds the linear layers for a precision (after every weight is set); BF16
// converts and prepacks the linear weights once. Returns an error message or "".
std::string encoder_set_precision(Encoder& enc, Precision p);

// Bytes of prepacked (and converted) linear-layer weights held by the encoder.
uint64_t encoder_packed_bytes(const Encoder& enc);

// All arrays are (B, T) row-major; positions are absolute position ids (the
// family's offset already applied); type_ids may be null (all zero).
// out (B, T, H). Returns an empty string on success, else an error message.
std::string encoder_forward(Encoder& enc, float* out, const int32_t* ids, const int32_t* positions,
                            const int32_t* type_ids, const int32_t* mask, int64_t B, int64_t T,
                            int64_t to_layer, int threads);

// hidden (B, T, H) holds layer from_layer; out (B, T, H) receives layer to_layer.
// out may equal hidden.
std::string encoder_forward_from(Encoder& enc, float* out, const float* hidden,
                                 const int32_t* mask, int64_t B, int64_t T, int64_t from_layer,
                                 int64_t to_layer, int threads);

}  // namespace er
