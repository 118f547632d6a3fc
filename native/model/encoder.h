// A BERT-family encoder (post-LayerNorm blocks, exact GELU), run layer by layer.
//
// Layer numbering follows Hugging Face's hidden_states: layer 0 is the output of
// the embeddings (+ LayerNorm), layer i (1..L) the output of the i-th block.
// forward(ids, to_layer = k) gives layer k; forward_from(h_k, from_layer = k,
// to_layer = j) runs blocks k+1..j on it. Both use the same code path, so
// forward_from(forward(x, k), k, L) equals forward(x, L) bit for bit.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>
#include "model/weights.h"

namespace er {

struct EncoderConfig {
  int64_t vocab = 0, hidden = 0, layers = 0, heads = 0, intermediate = 0;
  int64_t max_positions = 0, type_vocab = 0;  // type_vocab 0: no token-type embeddings
  float eps = 1e-12f;
};

struct EmbeddingWeights {
  const float* word = nullptr;        // (vocab, H)
  const float* position = nullptr;    // (max_positions, H)
  const float* token_type = nullptr;  // (type_vocab, H) or null
  const float* ln_w = nullptr;        // (H)
  const float* ln_b = nullptr;        // (H)
};

struct LayerWeights {
  const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;  // (H, H), (H)
  const float *o_w, *o_b;                          // (H, H), (H)
  const float *ln1_w, *ln1_b;                      // (H)
  const float *ffn_in_w, *ffn_in_b;                // (I, H), (I)
  const float *ffn_out_w, *ffn_out_b;              // (H, I), (H)
  const float *ln2_w, *ln2_b;                      // (H)
};

// Scratch buffers reused across calls; they only grow.
struct Workspace {
  std::vector<float> q, k, v, ctx, t1, ff, scores;  // (N,H) x5, (N,I), (threads,T,T)
  void reserve(int64_t N, int64_t H, int64_t I, int64_t T, int threads);
};

struct Encoder {
  EncoderConfig cfg;
  EmbeddingWeights emb;
  std::vector<LayerWeights> layer;
  WeightSet weights;
  Workspace ws;
  std::mutex mu;  // one forward at a time per encoder (the workspace is shared)
};

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
