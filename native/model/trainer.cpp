#include "model/trainer.h"
#include <omp.h>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"

namespace er {

namespace {

// Dropout streams: one per (step, site, part) so masks are independent:
// sites 0 embeddings, 1 head, 16 + 4 l + {0 attention probabilities, 1 attention
// output, 2 FFN output} for layer l; part = batch row x head for the probabilities.
enum Site : uint64_t { kEmb = 0, kHead = 1, kLayerBase = 16 };
inline uint64_t stream_id(uint64_t step, uint64_t site, uint64_t part) {
  return (step << 40) ^ (site << 24) ^ part;
}

void grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}
void grow8(std::vector<uint8_t>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

using GemmFn = bool (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                        const float*, int64_t, float, float*, int64_t);

// out (N, OC) = x (N, C) W^T + b
bool linear_fwd(GemmFn gemm, float* out, const float* x, const float* W, const float* b, int64_t N, int64_t C,
                int64_t OC) {
  if (!gemm(false, true, N, OC, C, 1.0f, x, C, W, C, 0.0f, out, OC)) return false;
  if (b) ops().bias_add(out, b, N, OC);
  return true;
}

// gW (OC, C) += dy^T x; gb (OC) += colsum dy; dx (N, C) (=, or += when accumulate) dy W
bool linear_bwd(GemmFn gemm, float* dx, float* gW, float* gb, const float* dy, const float* x, const float* W,
                int64_t N, int64_t C, int64_t OC, bool accumulate) {
  if (gW && !gemm(true, false, OC, C, N, 1.0f, dy, OC, x, C, 1.0f, gW, C)) return false;
  if (gb) ops().bias_backward(gb, dy, N, OC);
  if (dx && !gemm(false, false, N, C, OC, 1.0f, dy, OC, W, C, accumulate ? 1.0f : 0.0f, dx, C))
    return false;
  return true;
}


}  // namespace

struct Block {
  std::vector<float> data, grad, m, v;
  // an inference-only model keeps the values alone
  Block(int64_t n, bool inference) : data(n), grad(inference ? 0 : n), m(inference ? 0 : n), v(inference ? 0 : n) {}
  float* g(int64_t off) { return grad.empty() ? nullptr : grad.data() + off; }
};

struct Adapter {
  float *dw = nullptr, *db = nullptr, *uw = nullptr, *ub = nullptr;  // (b, H), (b), (H, b), (H)
  float *g_dw = nullptr, *g_db = nullptr, *g_uw = nullptr, *g_ub = nullptr;
  std::vector<float> pre, act;  // (N, b) saved
};

struct TLayer {
  int64_t index = 0;
  bool trainable = false, adapters = false;
  const float *qkv_w = nullptr, *qkv_b = nullptr, *o_w = nullptr, *o_b = nullptr;
  const float *ln1_w = nullptr, *ln1_b = nullptr, *f1_w = nullptr, *f1_b = nullptr;
  const float *f2_w = nullptr, *f2_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
  float *g_qkv_w = nullptr, *g_qkv_b = nullptr, *g_o_w = nullptr, *g_o_b = nullptr;
  float *g_ln1_w = nullptr, *g_ln1_b = nullptr, *g_f1_w = nullptr, *g_f1_b = nullptr;
  float *g_f2_w = nullptr, *g_f2_b = nullptr, *g_ln2_w = nullptr, *g_ln2_b = nullptr;
  Adapter ad[2];  // 0: after the attention output, 1: after the FFN output
  // saved activations
  std::vector<float> x, qkv, probs, ctx, a, s1, mean1, rstd1, y1, ffpre, ffact, f, s2, mean2, rstd2;
  std::vector<uint8_t> mask_p, mask_a, mask_f;
};

struct TaskModel::Impl {
  std::vector<std::unique_ptr<Block>> blocks;
  std::vector<TLayer> layers;  // the layers in the training graph, bottom to top
  int64_t first = 0;           // index of the first layer in the graph
  bool train_embeddings = false;
  bool embeddings_in_graph = false;  // embeddings computed here (full) vs by the encoder
  float *emb_word = nullptr, *emb_pos = nullptr, *emb_type = nullptr, *emb_ln_w = nullptr, *emb_ln_b = nullptr;
  float *g_word = nullptr, *g_pos = nullptr, *g_type = nullptr, *g_ln_w = nullptr, *g_ln_b = nullptr;
  std::vector<float> emb_s, emb_mean, emb_rstd;
  std::vector<uint8_t> emb_mask;
  float *head_w = nullptr, *head_b = nullptr, *g_head_w = nullptr, *g_head_b = nullptr;
  std::vector<float> final_h, head_in, logits, dlogits, dhead_in;
  std::vector<uint8_t> head_mask;
  // backward scratch
  std::vector<float> dA, dB, dC, dff, dqkv, dad, dscores, pdrop;
  uint64_t step_counter = 0;
};

static std::string layer_name(int64_t l, const char* part) { return "layer." + std::to_string(l) + "." + part; }

TaskModel::TaskModel(std::shared_ptr<Encoder> enc, TrainConfig cfg)
    : enc_(std::move(enc)), cfg_(std::move(cfg)), impl_(new Impl) {
  const EncoderConfig& ec = enc_->cfg;
  const int64_t H = ec.hidden, I = ec.intermediate, N = ec.layers;
  if (cfg_.k < 0 || cfg_.k > N) throw std::runtime_error("k must be in 0.." + std::to_string(N));
  const bool recycled = cfg_.mode == TrainMode::Reduced || cfg_.mode == TrainMode::ReducedAdapters;
  if ((recycled || cfg_.mode == TrainMode::FrozenPrefix) && cfg_.k >= N)
    throw std::runtime_error("k must be below the number of layers (" + std::to_string(N) + ") in this mode");
  if (cfg_.num_labels < 1) throw std::runtime_error("the head needs at least one label");
  if (cfg_.head == HeadKind::QA && cfg_.num_labels != 2) throw std::runtime_error("a QA head has 2 outputs (start, end)");
  if (!cfg_.class_weights.empty() && (int64_t)cfg_.class_weights.size() != cfg_.num_labels)
    throw std::runtime_error("classWeights must have one weight per label");
  const bool with_adapters = cfg_.mode == TrainMode::ReducedAdapters || cfg_.mode == TrainMode::FullAdapters;
  if (with_adapters && cfg_.adapter_size < 1) throw std::runtime_error("adapterSize must be at least 1");
  for (float p : {cfg_.hidden_dropout, cfg_.attention_dropout, cfg_.head_dropout})
    if (!(p >= 0.0f && p < 1.0f)) throw std::runtime_error("dropout probabilities must be in [0, 1)");

  Impl& m = *impl_;
  std::mt19937_64 rng(cfg_.seed * 0x9E3779B97F4A7C15ull + 12345);
  auto normal = [&](float* dst, int64_t n, float std) {
    std::normal_distribution<float> d(0.0f, std);
    for (int64_t i = 0; i < n; i++) dst[i] = std == 0.0f ? 0.0f : d(rng);
  };
  // allocates a block and registers views of it as named parameters
  auto block = [&](int64_t n) -> Block& {
    m.blocks.emplace_back(new Block(n, cfg_.inference));
    return *m.blocks.back();
  };
  auto reg = [&](const std::string& name, Block& b, int64_t off, int64_t n) {
    bool decay = !(name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) &&
                 name.find(".ln.") == std::string::npos;
    params_.push_back(Param{name, b.data.data() + off, b.g(off), b.m.empty() ? nullptr : b.m.data() + off,
                            b.v.empty() ? nullptr : b.v.data() + off, n, decay});
  };
  auto own = [&](const std::string& name, const float* init, int64_t n, float** data, float** grad) {
    Block& b = block(n);
    if (init) std::memcpy(b.data.data(), init, n * sizeof(float));
    reg(name, b, 0, n);
    *data = b.data.data();
    *grad = b.g(0);
  };

  m.first = recycled || cfg_.mode == TrainMode::FrozenPrefix ? cfg_.k : 0;
  m.train_embeddings = cfg_.mode == TrainMode::Full;
  m.embeddings_in_graph = m.train_embeddings;
  if (m.train_embeddings) {
    const EmbeddingWeights& e = enc_->emb;
    own("embeddings.word", e.word, ec.vocab * H, &m.emb_word, &m.g_word);
    own("embeddings.position", e.position, ec.max_positions * H, &m.emb_pos, &m.g_pos);
    if (e.token_type) own("embeddings.token_type", e.token_type, ec.type_vocab * H, &m.emb_type, &m.g_type);
    own("embeddings.ln.weight", e.ln_w, H, &m.emb_ln_w, &m.g_ln_w);
    own("embeddings.ln.bias", e.ln_b, H, &m.emb_ln_b, &m.g_ln_b);
  }
  std::vector<bool> adapter_allowed(N, false);
  if (with_adapters) {
    for (int64_t l = cfg_.mode == TrainMode::ReducedAdapters ? cfg_.k : 0; l < N; l++) adapter_allowed[l] = true;
    if (!cfg_.adapter_layers.empty()) {
      std::vector<bool> chosen(N, false);
      for (int64_t l : cfg_.adapter_layers) {
        if (l < 0 || l >= N || !adapter_allowed[l])
          throw std::runtime_error("adapter layer " + std::to_string(l + 1) + " is not a layer this mode runs with adapters");
        chosen[l] = true;
      }
      adapter_allowed = chosen;
    }
  }
  for (int64_t l = m.first; l < N; l++) {
    TLayer L;
    L.index = l;
    const LayerWeights& w = enc_->layer[l];
    L.trainable = cfg_.mode == TrainMode::Full ||
                  ((cfg_.mode == TrainMode::FrozenPrefix || cfg_.mode == TrainMode::Reduced) && l >= cfg_.k);
    L.adapters = adapter_allowed[l];
    if (L.trainable) {
      // Q, K, V live in one (3H, H) block; each is registered as its own parameter
      Block& qw = block(3 * H * H);
      Block& qb = block(3 * H);
      const float* ws[3] = {w.q_w, w.k_w, w.v_w};
      const float* bs[3] = {w.q_b, w.k_b, w.v_b};
      const char* nm[3] = {"attn.q", "attn.k", "attn.v"};
      for (int j = 0; j < 3; j++) {
        std::memcpy(qw.data.data() + j * H * H, ws[j], H * H * sizeof(float));
        std::memcpy(qb.data.data() + j * H, bs[j], H * sizeof(float));
        reg(layer_name(l, nm[j]) + ".weight", qw, j * H * H, H * H);
        reg(layer_name(l, nm[j]) + ".bias", qb, j * H, H);
      }
      L.qkv_w = qw.data.data();
      L.qkv_b = qb.data.data();
      L.g_qkv_w = qw.g(0);
      L.g_qkv_b = qb.g(0);
      float* d;
      own(layer_name(l, "attn.out.weight"), w.o_w, H * H, &d, &L.g_o_w); L.o_w = d;
      own(layer_name(l, "attn.out.bias"), w.o_b, H, &d, &L.g_o_b); L.o_b = d;
      own(layer_name(l, "attn.ln.weight"), w.ln1_w, H, &d, &L.g_ln1_w); L.ln1_w = d;
      own(layer_name(l, "attn.ln.bias"), w.ln1_b, H, &d, &L.g_ln1_b); L.ln1_b = d;
      own(layer_name(l, "ffn.in.weight"), w.ffn_in_w, I * H, &d, &L.g_f1_w); L.f1_w = d;
      own(layer_name(l, "ffn.in.bias"), w.ffn_in_b, I, &d, &L.g_f1_b); L.f1_b = d;
      own(layer_name(l, "ffn.out.weight"), w.ffn_out_w, H * I, &d, &L.g_f2_w); L.f2_w = d;
      own(layer_name(l, "ffn.out.bias"), w.ffn_out_b, H, &d, &L.g_f2_b); L.f2_b = d;
      own(layer_name(l, "ffn.ln.weight"), w.ln2_w, H, &d, &L.g_ln2_w); L.ln2_w = d;
      own(layer_name(l, "ffn.ln.bias"), w.ln2_b, H, &d, &L.g_ln2_b); L.ln2_b = d;
    } else {
      // the encoder already holds this layer's Q, K, V stacked (its LayerLinears)
      L.qkv_w = enc_->linears[l].qkv_w.data();
      L.qkv_b = enc_->linears[l].qkv_b.data();
      L.o_w = w.o_w; L.o_b = w.o_b; L.ln1_w = w.ln1_w; L.ln1_b = w.ln1_b;
      L.f1_w = w.ffn_in_w; L.f1_b = w.ffn_in_b; L.f2_w = w.ffn_out_w; L.f2_b = w.ffn_out_b;
      L.ln2_w = w.ln2_w; L.ln2_b = w.ln2_b;
    }
    if (L.adapters) {
      const int64_t b = cfg_.adapter_size;
      const char* sites[2] = {"adapter.attn", "adapter.ffn"};
      for (int s = 0; s < 2; s++) {
        Adapter& A = L.ad[s];
        std::string base = layer_name(l, sites[s]);
        own(base + ".down.weight", nullptr, b * H, &A.dw, &A.g_dw);
        own(base + ".down.bias", nullptr, b, &A.db, &A.g_db);
        own(base + ".up.weight", nullptr, H * b, &A.uw, &A.g_uw);
        own(base + ".up.bias", nullptr, H, &A.ub, &A.g_ub);
        normal(A.dw, b * H, 0.02f);
        normal(A.uw, H * b, 1e-3f);  // near zero: a fresh adapter is close to the identity
      }
    }
    m.layers.push_back(std::move(L));
  }
  own("head.weight", nullptr, cfg_.num_labels * H, &m.head_w, &m.g_head_w);
  own("head.bias", nullptr, cfg_.num_labels, &m.head_b, &m.g_head_b);
  normal(m.head_w, cfg_.num_labels * H, 0.02f);
}

TaskModel::~TaskModel() = default;

void TaskModel::zero_grad() {
  for (auto& b : impl_->blocks) std::fill(b->grad.begin(), b->grad.end(), 0.0f);
}

uint64_t TaskModel::param_bytes() const {
  uint64_t n = 0;
  for (auto& b : impl_->blocks) n += (b->data.size() + b->grad.size() + b->m.size() + b->v.size()) * 4;
  return n;
}

void TaskModel::release_activations() {
  Impl& m = *impl_;
  auto drop = [](auto& v) { std::decay_t<decltype(v)>().swap(v); };
  for (TLayer& L : m.layers) {
    for (std::vector<float>* v : {&L.x, &L.qkv, &L.probs, &L.ctx, &L.a, &L.s1, &L.mean1, &L.rstd1, &L.y1,
                                   &L.ffpre, &L.ffact, &L.f, &L.s2, &L.mean2, &L.rstd2,
                                   &L.ad[0].pre, &L.ad[0].act, &L.ad[1].pre, &L.ad[1].act})
      drop(*v);
    drop(L.mask_p);
    drop(L.mask_a);
    drop(L.mask_f);
  }
  for (std::vector<float>* v : {&m.emb_s, &m.emb_mean, &m.emb_rstd, &m.final_h, &m.head_in, &m.logits,
                                 &m.dlogits, &m.dhead_in, &m.dA, &m.dB, &m.dC, &m.dff, &m.dqkv, &m.dad,
                                 &m.dscores, &m.pdrop})
    drop(*v);
  drop(m.emb_mask);
  drop(m.head_mask);
}

uint64_t TaskModel::activation_bytes() const {
  uint64_t n = 0;
  const Impl& m = *impl_;
  for (const TLayer& L : m.layers) {
    for (const std::vector<float>* v : {&L.x, &L.qkv, &L.probs, &L.ctx, &L.a, &L.s1, &L.mean1, &L.rstd1, &L.y1,
                                         &L.ffpre, &L.ffact, &L.f, &L.s2, &L.mean2, &L.rstd2,
                                         &L.ad[0].pre, &L.ad[0].act, &L.ad[1].pre, &L.ad[1].act})
      n += v->capacity() * 4;
    n += L.mask_p.capacity() + L.mask_a.capacity() + L.mask_f.capacity();
  }
  for (const std::vector<float>* v : {&m.emb_s, &m.emb_mean, &m.emb_rstd, &m.final_h, &m.head_in, &m.logits,
                                       &m.dlogits, &m.dhead_in, &m.dA, &m.dB, &m.dC, &m.dff, &m.dqkv, &m.dad,
                                       &m.dscores, &m.pdrop})
    n += v->capacity() * 4;
  n += m.emb_mask.capacity() + m.head_mask.capacity();
  return n;
}

double TaskModel::adamw(const AdamWOptions& o) {
  if (cfg_.inference) return 0.0;  // refused by step(); nothing to update
  double ss = 0;
  for (const Param& p : params_) ss += sum_squares(p.grad, p.n);
  double norm = std::sqrt(ss);
  float scale = 1.0f;
  if (o.clip > 0 && norm > o.clip) scale = (float)(o.clip / (norm + 1e-6));
  adam_t_++;
  for (const Param& p : params_)
    adamw_update(p.data, p.m, p.v, p.grad, p.n, o.lr, o.beta1, o.beta2, o.eps,
                 p.decay ? o.weight_decay : 0.0f, adam_t_, scale);
  return norm;
}

std::string TaskModel::step(const TrainInputs& in, const int32_t* labels, bool train, bool backward,
                            double* loss_out, std::vector<float>* logits_out) {
  Impl& m = *impl_;
  const EncoderConfig& ec = enc_->cfg;
  const int64_t H = ec.hidden, I = ec.intermediate, heads = ec.heads, d = H / heads;
  const int64_t B = in.B, T = in.T, N = B * T;
  const OpsTable& K = ops();
  const bool recycled = cfg_.mode == TrainMode::Reduced || cfg_.mode == TrainMode::ReducedAdapters;
  if (recycled && !in.hidden) return "this mode takes layer-" + std::to_string(cfg_.k) + " hidden states as input";
  if (!recycled && !in.ids) return "this mode takes token ids as input";
  if (backward && cfg_.inference) return "this task model was opened for inference only; it has no gradients (create it without inference to train)";
  const uint64_t step_no = m.step_counter++;
  if (!recycled) {
    for (int64_t i = 0; i < N; i++)
      if (in.ids[i] < 0 || in.ids[i] >= ec.vocab || in.positions[i] < 0 || in.positions[i] >= ec.max_positions)
        return "token or position id out of range at " + std::to_string(i);
  }
  const float p_hid = train ? cfg_.hidden_dropout : 0.0f, p_att = train ? cfg_.attention_dropout : 0.0f,
              p_head = train ? cfg_.head_dropout : 0.0f;
  const float scale = 1.0f / std::sqrt((float)d);
  // the linear layers' GEMMs in the chosen precision; attention stays fp32
  const GemmFn G = cfg_.bf16 ? &gemm_bf16 : &gemm_f32;

  // ---------------------------------------------------------------- forward
  TLayer* bottom = m.layers.empty() ? nullptr : &m.layers.front();
  std::vector<float>& x0 = bottom ? bottom->x : m.final_h;
  grow(x0, N * H);
  if (recycled) {
    std::memcpy(x0.data(), in.hidden, N * H * sizeof(float));
  } else if (m.embeddings_in_graph) {
    grow(m.emb_s, N * H);
    grow(m.emb_mean, N);
    grow(m.emb_rstd, N);
    for (int64_t i = 0; i < N; i++) {
      float* o = m.emb_s.data() + i * H;
      const float* w = m.emb_word + (int64_t)in.ids[i] * H;
      const float* p = m.emb_pos + (int64_t)in.positions[i] * H;
      for (int64_t j = 0; j < H; j++) o[j] = w[j] + p[j];
      if (m.emb_type) {
        const float* t = m.emb_type + (int64_t)(in.types ? in.types[i] : 0) * H;
        for (int64_t j = 0; j < H; j++) o[j] += t[j];
      }
    }
    K.layernorm_forward(x0.data(), m.emb_mean.data(), m.emb_rstd.data(), m.emb_s.data(), nullptr,
                        m.emb_ln_w, m.emb_ln_b, N, H, ec.eps);
    if (p_hid > 0) {
      grow8(m.emb_mask, N * H);
      dropout_forward(x0.data(), m.emb_mask.data(), x0.data(), N * H, p_hid, cfg_.seed, stream_id(step_no, kEmb, 0));
    }
  } else {
    // frozen embeddings (and frozen prefix layers): the encoder's inference path, no dropout
    std::string err = encoder_forward(*enc_, x0.data(), in.ids, in.positions, in.types, in.mask, B, T,
                                      m.first, in.threads);
    if (!err.empty()) return err;
    if (p_hid > 0 && m.first == 0) {
      grow8(m.emb_mask, N * H);
      dropout_forward(x0.data(), m.emb_mask.data(), x0.data(), N * H, p_hid, cfg_.seed, stream_id(step_no, kEmb, 0));
    }
  }
  omp_set_num_threads(in.threads);
  const int threads = in.threads;
  grow(m.pdrop, (size_t)threads * T * T);
  grow(m.dscores, (size_t)threads * T * T);

  for (size_t li = 0; li < m.layers.size(); li++) {
    TLayer& L = m.layers[li];
    const uint64_t site = kLayerBase + 4 * (uint64_t)L.index;
    grow(L.qkv, N * 3 * H);
    grow(L.probs, (size_t)B * heads * T * T);
    grow(L.ctx, N * H);
    grow(L.a, N * H);
    grow(L.s1, N * H);
    grow(L.mean1, N);
    grow(L.rstd1, N);
    grow(L.y1, N * H);
    grow(L.ffpre, N * I);
    grow(L.ffact, N * I);
    grow(L.f, N * H);
    grow(L.s2, N * H);
    grow(L.mean2, N);
    grow(L.rstd2, N);
    if (p_att > 0) grow8(L.mask_p, (size_t)B * heads * T * T);
    if (p_hid > 0) {
      grow8(L.mask_a, N * H);
      grow8(L.mask_f, N * H);
    }
    std::vector<float>& out = li + 1 < m.layers.size() ? m.layers[li + 1].x : m.final_h;
    grow(out, N * H);
    const float* x = L.x.data();
    if (!linear_fwd(G, L.qkv.data(), x, L.qkv_w, L.qkv_b, N, H, 3 * H)) return "GEMM failed";
    bool ok = true;
    const float* qkv = L.qkv.data();
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
    for (int64_t bh = 0; bh < B * heads; bh++) {
      int64_t b = bh / heads, h = bh % heads;
      const int32_t* mk = in.mask + b * T;
      int64_t e = mask_extent(mk, T);
      float* P = L.probs.data() + bh * T * T;  // (e, e) used
      const float* q = qkv + b * T * 3 * H + h * d;
      const float* kk = q + H;
      const float* v = q + 2 * H;
      float* c = L.ctx.data() + b * T * H + h * d;
      if (e > 0) {
        ok = ok && gemm_f32(false, true, e, e, d, scale, q, 3 * H, kk, 3 * H, 0.0f, P, e);
        K.softmax_masked_forward(P, mk, 1.0f, e, e);
        const float* Pv = P;
        if (p_att > 0) {
          float* pd = m.pdrop.data() + (int64_t)omp_get_thread_num() * T * T;
          dropout_forward(pd, L.mask_p.data() + bh * T * T, P, e * e, p_att, cfg_.seed, stream_id(step_no, site, (uint64_t)bh));
          Pv = pd;
        }
        ok = ok && gemm_f32(false, false, e, d, e, 1.0f, Pv, e, v, 3 * H, 0.0f, c, H);
      }
      for (int64_t t = e; t < T; t++) std::memset(c + t * H, 0, d * sizeof(float));
    }
    if (!ok) return "attention GEMM failed";
    if (!linear_fwd(G, L.a.data(), L.ctx.data(), L.o_w, L.o_b, N, H, H)) return "GEMM failed";
    if (p_hid > 0) dropout_forward(L.a.data(), L.mask_a.data(), L.a.data(), N * H, p_hid, cfg_.seed, stream_id(step_no, site + 1, 0));
    // adapter after the attention output, then the residual and LayerNorm
    auto adapter_fwd = [&](Adapter& A, const float* hin, float* out_sum) -> bool {
      const int64_t bsz = cfg_.adapter_size;
      grow(A.pre, N * bsz);
      grow(A.act, N * bsz);
      if (!linear_fwd(G, A.pre.data(), hin, A.dw, A.db, N, H, bsz)) return false;
      if (cfg_.adapter_act == AdapterAct::Gelu) K.gelu_forward(A.act.data(), A.pre.data(), N * bsz);
      else relu_forward(A.act.data(), A.pre.data(), N * bsz);
      if (!linear_fwd(G, out_sum, A.act.data(), A.uw, A.ub, N, bsz, H)) return false;
      for (int64_t i = 0; i < N * H; i++) out_sum[i] += hin[i];
      return true;
    };
    if (L.adapters) {
      if (!adapter_fwd(L.ad[0], L.a.data(), L.s1.data())) return "GEMM failed";
      for (int64_t i = 0; i < N * H; i++) L.s1[i] += x[i];
    } else {
      for (int64_t i = 0; i < N * H; i++) L.s1[i] = L.a[i] + x[i];
    }
    K.layernorm_forward(L.y1.data(), L.mean1.data(), L.rstd1.data(), L.s1.data(), nullptr, L.ln1_w, L.ln1_b, N, H, ec.eps);
    if (!linear_fwd(G, L.ffpre.data(), L.y1.data(), L.f1_w, L.f1_b, N, H, I)) return "GEMM failed";
    K.gelu_forward(L.ffact.data(), L.ffpre.data(), N * I);
    if (!linear_fwd(G, L.f.data(), L.ffact.data(), L.f2_w, L.f2_b, N, I, H)) return "GEMM failed";
    if (p_hid > 0) dropout_forward(L.f.data(), L.mask_f.data(), L.f.data(), N * H, p_hid, cfg_.seed, stream_id(step_no, site + 2, 0));
    if (L.adapters) {
      if (!adapter_fwd(L.ad[1], L.f.data(), L.s2.data())) return "GEMM failed";
      for (int64_t i = 0; i < N * H; i++) L.s2[i] += L.y1[i];
    } else {
      for (int64_t i = 0; i < N * H; i++) L.s2[i] = L.f[i] + L.y1[i];
    }
    K.layernorm_forward(out.data(), L.mean2.data(), L.rstd2.data(), L.s2.data(), nullptr, L.ln2_w, L.ln2_b, N, H, ec.eps);
  }

  // ---------------------------------------------------------------- head
  const int64_t Lb = cfg_.num_labels;
  const bool seq = cfg_.head == HeadKind::Sequence;
  const int64_t R = seq ? B : N;  // rows the head sees
  grow(m.head_in, R * H);
  for (int64_t r = 0; r < R; r++)
    std::memcpy(m.head_in.data() + r * H, m.final_h.data() + (seq ? r * T : r) * H, H * sizeof(float));
  if (p_head > 0) {
    grow8(m.head_mask, R * H);
    dropout_forward(m.head_in.data(), m.head_mask.data(), m.head_in.data(), R * H, p_head, cfg_.seed, stream_id(step_no, kHead, 0));
  }
  grow(m.logits, R * Lb);
  grow(m.dlogits, R * Lb);
  if (!linear_fwd(G, m.logits.data(), m.head_in.data(), m.head_w, m.head_b, R, H, Lb)) return "GEMM failed";
  if (logits_out) logits_out->assign(m.logits.begin(), m.logits.begin() + R * Lb);
  if (!labels) return backward ? "training needs labels" : "";

  double loss = 0;
  const float* cw = cfg_.class_weights.empty() ? nullptr : cfg_.class_weights.data();
  if (cfg_.head == HeadKind::QA) {
    // start and end logits per row over its positions; padding is never a start or end
    std::vector<float> zs(B * T), ze(B * T), ds(B * T), de(B * T);
    std::vector<uint8_t> mk(B * T);
    std::vector<int32_t> ys(B), ye(B);
    for (int64_t b = 0; b < B; b++) {
      ys[b] = labels[2 * b];
      ye[b] = labels[2 * b + 1];
      for (int64_t t = 0; t < T; t++) {
        zs[b * T + t] = m.logits[(b * T + t) * 2];
        ze[b * T + t] = m.logits[(b * T + t) * 2 + 1];
        mk[b * T + t] = in.mask[b * T + t] != 0;
      }
      for (int32_t y : {ys[b], ye[b]})
        if (y >= T || (y >= 0 && !mk[b * T + y]))
          return "QA label of row " + std::to_string(b) + " points past the row's tokens";
    }
    loss = 0.5 * cross_entropy_forward_backward(ds.data(), zs.data(), ys.data(), nullptr, mk.data(), B, T, 0.5f) +
           0.5 * cross_entropy_forward_backward(de.data(), ze.data(), ye.data(), nullptr, mk.data(), B, T, 0.5f);
    for (int64_t i = 0; i < N; i++) {
      m.dlogits[i * 2] = ds[i];
      m.dlogits[i * 2 + 1] = de[i];
    }
  } else {
    for (int64_t r = 0; r < R; r++)
      if (labels[r] >= Lb) return "label " + std::to_string(labels[r]) + " at row " + std::to_string(r) + " is not below the number of labels " + std::to_string(Lb);
    loss = cross_entropy_forward_backward(m.dlogits.data(), m.logits.data(), labels, cw, nullptr, R, Lb, 1.0f);
  }
  if (loss_out) *loss_out = loss;
  if (!backward) return "";

  // ---------------------------------------------------------------- backward
  grow(m.dhead_in, R * H);
  if (!linear_bwd(G, m.dhead_in.data(), m.g_head_w, m.g_head_b, m.dlogits.data(), m.head_in.data(), m.head_w, R, H, Lb, false))
    return "GEMM failed";
  if (p_head > 0) dropout_backward(m.dhead_in.data(), m.head_mask.data(), m.dhead_in.data(), R * H, p_head);
  grow(m.dA, N * H);
  grow(m.dB, N * H);
  grow(m.dC, N * H);
  grow(m.dff, N * I);
  grow(m.dqkv, N * 3 * H);
  float* dy = m.dA.data();  // gradient of the current layer's output
  if (seq) {
    std::memset(dy, 0, N * H * sizeof(float));
    for (int64_t b = 0; b < B; b++) std::memcpy(dy + b * T * H, m.dhead_in.data() + b * H, H * sizeof(float));
  } else {
    std::memcpy(dy, m.dhead_in.data(), N * H * sizeof(float));
  }
  // the lowest parameter decides how far down the gradient must go
  const bool need_input_grad = m.embeddings_in_graph;
  for (int64_t li = (int64_t)m.layers.size() - 1; li >= 0; li--) {
    TLayer& L = m.layers[li];
    const bool lowest = li == 0;
    const bool need_dx = !lowest || need_input_grad;
    float* ds = m.dB.data();
    // y2 = LN2(s2); s2 = f2 + y1
    K.layernorm_backward(ds, L.g_ln2_w, L.g_ln2_b, dy, L.s2.data(), L.ln2_w, L.mean2.data(), L.rstd2.data(), N, H);
    float* dy1 = m.dC.data();
    std::memcpy(dy1, ds, N * H * sizeof(float));  // the residual path
    auto adapter_bwd = [&](Adapter& A, const float* hin, float* dh /* in: d(out), out: d(hin) */) -> bool {
      const int64_t bsz = cfg_.adapter_size;
      grow(m.dad, N * bsz);
      // out = hin + up(act(down(hin)))
      if (!linear_bwd(G, m.dad.data(), A.g_uw, A.g_ub, dh, A.act.data(), A.uw, N, bsz, H, false)) return false;
      if (cfg_.adapter_act == AdapterAct::Gelu) K.gelu_backward(m.dad.data(), A.pre.data(), m.dad.data(), N * bsz);
      else relu_backward(m.dad.data(), A.pre.data(), m.dad.data(), N * bsz);
      return linear_bwd(G, dh, A.g_dw, A.g_db, m.dad.data(), hin, A.dw, N, H, bsz, true);
    };
    float* df = ds;  // d f2, becomes d f
    if (L.adapters && !adapter_bwd(L.ad[1], L.f.data(), df)) return "GEMM failed";
    if (p_hid > 0) dropout_backward(df, L.mask_f.data(), df, N * H, cfg_.hidden_dropout);
    if (!linear_bwd(G, m.dff.data(), L.g_f2_w, L.g_f2_b, df, L.ffact.data(), L.f2_w, N, I, H, false)) return "GEMM failed";
    K.gelu_backward(m.dff.data(), L.ffpre.data(), m.dff.data(), N * I);
    if (!linear_bwd(G, dy1, L.g_f1_w, L.g_f1_b, m.dff.data(), L.y1.data(), L.f1_w, N, H, I, true)) return "GEMM failed";
    // y1 = LN1(s1); s1 = a2 + x
    float* ds1 = dy;  // dy is no longer needed
    K.layernorm_backward(ds1, L.g_ln1_w, L.g_ln1_b, dy1, L.s1.data(), L.ln1_w, L.mean1.data(), L.rstd1.data(), N, H);
    float* da = m.dB.data();
    std::memcpy(da, ds1, N * H * sizeof(float));
    if (L.adapters && !adapter_bwd(L.ad[0], L.a.data(), da)) return "GEMM failed";
    if (!L.trainable && !need_dx) break;  // nothing below this point trains
    if (p_hid > 0) dropout_backward(da, L.mask_a.data(), da, N * H, cfg_.hidden_dropout);
    float* dctx = m.dC.data();
    if (!linear_bwd(G, dctx, L.g_o_w, L.g_o_b, da, L.ctx.data(), L.o_w, N, H, H, false)) return "GEMM failed";
    // attention backward, per batch row and head
    float* dqkv = m.dqkv.data();
    const float* qkv = L.qkv.data();
    bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
    for (int64_t bh = 0; bh < B * heads; bh++) {
      int64_t b = bh / heads, h = bh % heads;
      int64_t e = mask_extent(in.mask + b * T, T);
      const float* P = L.probs.data() + bh * T * T;
      float* dP = m.dscores.data() + (int64_t)omp_get_thread_num() * T * T;
      float* Pd = m.pdrop.data() + (int64_t)omp_get_thread_num() * T * T;
      const float* q = qkv + b * T * 3 * H + h * d;
      const float* kk = q + H;
      const float* v = q + 2 * H;
      const float* dc = dctx + b * T * H + h * d;
      float* dq = dqkv + b * T * 3 * H + h * d;
      float* dk = dq + H;
      float* dv = dq + 2 * H;
      if (e > 0) {
        const float* Pv = P;
        if (p_att > 0) {  // the dropped-out probabilities the forward multiplied V with
          const uint8_t* mk = L.mask_p.data() + bh * T * T;
          const float s = 1.0f / (1.0f - cfg_.attention_dropout);
          for (int64_t i = 0; i < e * e; i++) Pd[i] = mk[i] ? P[i] * s : 0.0f;
          Pv = Pd;
        }
        ok = ok && gemm_f32(false, true, e, e, d, 1.0f, dc, H, v, 3 * H, 0.0f, dP, e);      // dP' = dctx V^T
        ok = ok && gemm_f32(true, false, e, d, e, 1.0f, Pv, e, dc, H, 0.0f, dv, 3 * H);     // dV = P'^T dctx
        if (p_att > 0) dropout_backward(dP, L.mask_p.data() + bh * T * T, dP, e * e, cfg_.attention_dropout);
        K.softmax_backward(dP, P, dP, e, e);                                                // dS
        ok = ok && gemm_f32(false, false, e, d, e, scale, dP, e, kk, 3 * H, 0.0f, dq, 3 * H); // dQ = s dS K
        ok = ok && gemm_f32(true, false, e, d, e, scale, dP, e, q, 3 * H, 0.0f, dk, 3 * H);   // dK = s dS^T Q
      }
      for (int64_t t = e; t < T; t++) {
        std::memset(dq + t * 3 * H, 0, d * sizeof(float));
        std::memset(dk + t * 3 * H, 0, d * sizeof(float));
        std::memset(dv + t * 3 * H, 0, d * sizeof(float));
      }
    }
    if (!ok) return "attention GEMM failed";
    // x feeds QKV and the residual: dx = dqkv Wqkv + ds1
    float* dx = need_dx ? ds1 : nullptr;
    if (!linear_bwd(G, dx, L.g_qkv_w, L.g_qkv_b, dqkv, L.x.data(), L.qkv_w, N, H, 3 * H, true)) return "GEMM failed";
    if (!need_dx) break;
    dy = ds1;  // the gradient of the layer below's output
    if (dy != m.dA.data()) {
      std::memcpy(m.dA.data(), dy, N * H * sizeof(float));
      dy = m.dA.data();
    }
  }
  if (m.embeddings_in_graph) {
    // x0 = dropout(LN(word + position + type))
    float* dx0 = m.layers.empty() ? m.dA.data() : dy;
    if (p_hid > 0) dropout_backward(dx0, m.emb_mask.data(), dx0, N * H, cfg_.hidden_dropout);
    float* demb = m.dB.data();
    K.layernorm_backward(demb, m.g_ln_w, m.g_ln_b, dx0, m.emb_s.data(), m.emb_ln_w, m.emb_mean.data(), m.emb_rstd.data(), N, H);
    embedding_backward(m.g_word, demb, in.ids, N, H);
    embedding_backward(m.g_pos, demb, in.positions, N, H);
    if (m.g_type) {
      std::vector<int32_t> zeros;
      const int32_t* types = in.types;
      if (!types) {
        zeros.assign(N, 0);
        types = zeros.data();
      }
      embedding_backward(m.g_type, demb, types, N, H);
    }
  }
  return "";
}

}  // namespace er
