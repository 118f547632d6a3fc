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

// Dropout streams: dropout_stream(step, site, part) with the sites of kernels/rng.h; part =
// batch row x head for the attention probabilities.

std::string head_loss_of(const TrainConfig& cfg, const float* logits, float* dlogits, const int32_t* mask, int64_t B,
                         int64_t T, const int32_t* labels, double* loss);

}  // namespace

// Storage of one or more parameters: values, gradients and Adam moments.
struct ParamBlock {
  std::vector<float> data, grad, m, v;
  // an inference-only model keeps the values alone
  ParamBlock(int64_t n, bool inference) : data(n), grad(inference ? 0 : n), m(inference ? 0 : n), v(inference ? 0 : n) {}
  float* g(int64_t off) { return grad.empty() ? nullptr : grad.data() + off; }
};

struct TLayer {
  int64_t index = 0;
  bool trainable = false, adapters = false;
  BlockWeights w;
  AdapterWeights ad[2];  // 0: after the attention output, 1: after the FFN output
  BlockSaved saved;
  std::unique_ptr<LayerLinears> own_packed;  // inference: prepacked from this model's weights
};

struct TaskModel::Impl {
  std::vector<std::unique_ptr<ParamBlock>> blocks;
  std::vector<TLayer> layers;  // the layers in the graph, bottom to top
  int64_t first = 0;           // index of the first layer in the graph
  bool train_embeddings = false;
  bool embeddings_in_graph = false;  // embeddings computed here (full) vs by the encoder
  float *emb_word = nullptr, *emb_pos = nullptr, *emb_type = nullptr, *emb_ln_w = nullptr, *emb_ln_b = nullptr;
  float *g_word = nullptr, *g_pos = nullptr, *g_type = nullptr, *g_ln_w = nullptr, *g_ln_b = nullptr;
  std::vector<float> emb_s, emb_mean, emb_rstd;
  std::vector<uint8_t> emb_mask;
  float *head_w = nullptr, *head_b = nullptr, *g_head_w = nullptr, *g_head_b = nullptr;
  // MPNet's relative position bias table, trained in mode full (else the encoder's is read)
  float *rel_table = nullptr, *g_rel = nullptr;
  // DeBERTa-v2's relative embeddings and their LayerNorm, trained in mode full (else the
  // encoder's table is read); the table of this step (after the LayerNorm), what its
  // backward needs, its gradient, and the table row of each offset
  float *rel_emb = nullptr, *g_rel_emb = nullptr, *rel_ln_w = nullptr, *g_rel_ln_w = nullptr;
  float *rel_ln_b = nullptr, *g_rel_ln_b = nullptr;
  std::vector<float> dis_table, dis_mean, dis_rstd, ddis_table;
  std::vector<int32_t> dis_rows;
  std::vector<float> final_h, head_in, logits, dlogits, dhead_in;
  std::vector<uint8_t> head_mask;
  Workspace ws;               // forward-only scratch and backward buffers
  std::vector<float> hidden;  // forward-only: the running hidden states (N, H)
  bool packed_stale = true;   // forward-only: prepacked linears need (re)building
  uint64_t step_counter = 0;

  EmbeddingTables tables() const { return {emb_word, emb_pos, emb_type, emb_ln_w, emb_ln_b}; }
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
  auto block = [&](int64_t n) -> ParamBlock& {
    m.blocks.emplace_back(new ParamBlock(n, cfg_.inference));
    return *m.blocks.back();
  };
  auto reg = [&](const std::string& name, ParamBlock& b, int64_t off, int64_t n) {
    bool decay = !(name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) &&
                 name.find(".ln.") == std::string::npos;
    params_.push_back(Param{name, b.data.data() + off, b.g(off), b.m.empty() ? nullptr : b.m.data() + off,
                            b.v.empty() ? nullptr : b.v.data() + off, n, decay});
  };
  auto own = [&](const std::string& name, const float* init, int64_t n, float** data, float** grad) {
    ParamBlock& b = block(n);
    if (init) std::memcpy(b.data.data(), init, n * sizeof(float));
    reg(name, b, 0, n);
    *data = b.data.data();
    *grad = b.g(0);
  };

  m.first = recycled || cfg_.mode == TrainMode::FrozenPrefix ? cfg_.k : 0;
  m.train_embeddings = cfg_.mode == TrainMode::Full;
  m.embeddings_in_graph = m.train_embeddings;
  if (m.train_embeddings) {
    const EmbeddingTables& e = enc_->emb;
    own("embeddings.word", e.word, ec.vocab * H, &m.emb_word, &m.g_word);
    if (e.position) own("embeddings.position", e.position, ec.max_positions * H, &m.emb_pos, &m.g_pos);
    if (e.token_type) own("embeddings.token_type", e.token_type, ec.type_vocab * H, &m.emb_type, &m.g_type);
    own("embeddings.ln.weight", e.ln_w, H, &m.emb_ln_w, &m.g_ln_w);
    own("embeddings.ln.bias", e.ln_b, H, &m.emb_ln_b, &m.g_ln_b);
    if (ec.rel_buckets > 0 && enc_->rel_bias)
      own("encoder.rel_bias", enc_->rel_bias, ec.rel_buckets * ec.heads, &m.rel_table, &m.g_rel);
    if (ec.dis.on) {
      own("encoder.rel_embeddings", enc_->rel_emb, 2 * ec.dis.span * H, &m.rel_emb, &m.g_rel_emb);
      if (ec.dis.rel_ln) {
        own("encoder.rel_ln.weight", enc_->rel_ln_w, H, &m.rel_ln_w, &m.g_rel_ln_w);
        own("encoder.rel_ln.bias", enc_->rel_ln_b, H, &m.rel_ln_b, &m.g_rel_ln_b);
      }
    }
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
      ParamBlock& qw = block(3 * H * H);
      ParamBlock& qb = block(3 * H);
      const float* ws[3] = {w.q_w, w.k_w, w.v_w};
      const float* bs[3] = {w.q_b, w.k_b, w.v_b};
      const char* nm[3] = {"attn.q", "attn.k", "attn.v"};
      for (int j = 0; j < 3; j++) {
        std::memcpy(qw.data.data() + j * H * H, ws[j], H * H * sizeof(float));
        std::memcpy(qb.data.data() + j * H, bs[j], H * sizeof(float));
        reg(layer_name(l, nm[j]) + ".weight", qw, j * H * H, H * H);
        reg(layer_name(l, nm[j]) + ".bias", qb, j * H, H);
      }
      L.w.qkv_w = qw.data.data();
      L.w.qkv_b = qb.data.data();
      L.w.g_qkv_w = qw.g(0);
      L.w.g_qkv_b = qb.g(0);
      float* d;
      own(layer_name(l, "attn.out.weight"), w.o_w, H * H, &d, &L.w.g_o_w); L.w.o_w = d;
      own(layer_name(l, "attn.out.bias"), w.o_b, H, &d, &L.w.g_o_b); L.w.o_b = d;
      own(layer_name(l, "attn.ln.weight"), w.ln1_w, H, &d, &L.w.g_ln1_w); L.w.ln1_w = d;
      own(layer_name(l, "attn.ln.bias"), w.ln1_b, H, &d, &L.w.g_ln1_b); L.w.ln1_b = d;
      own(layer_name(l, "ffn.in.weight"), w.ffn_in_w, I * H, &d, &L.w.g_f1_w); L.w.f1_w = d;
      own(layer_name(l, "ffn.in.bias"), w.ffn_in_b, I, &d, &L.w.g_f1_b); L.w.f1_b = d;
      own(layer_name(l, "ffn.out.weight"), w.ffn_out_w, H * I, &d, &L.w.g_f2_w); L.w.f2_w = d;
      own(layer_name(l, "ffn.out.bias"), w.ffn_out_b, H, &d, &L.w.g_f2_b); L.w.f2_b = d;
      own(layer_name(l, "ffn.ln.weight"), w.ln2_w, H, &d, &L.w.g_ln2_w); L.w.ln2_w = d;
      own(layer_name(l, "ffn.ln.bias"), w.ln2_b, H, &d, &L.w.g_ln2_b); L.w.ln2_b = d;
      if (ec.dis.on && !ec.dis.share_key) {
        // DeBERTa-v2's own position projections, stacked [query; key] as the block reads them;
        // only those the model has are parameters (the other half stays zero)
        ParamBlock& pw = block(2 * H * H);
        ParamBlock& pb = block(2 * H);
        std::memcpy(pw.data.data(), enc_->pos_w[l].data(), 2 * H * H * sizeof(float));
        std::memcpy(pb.data.data(), enc_->pos_b[l].data(), 2 * H * sizeof(float));
        if (ec.dis.p2c) {
          reg(layer_name(l, "attn.pos_q.weight"), pw, 0, H * H);
          reg(layer_name(l, "attn.pos_q.bias"), pb, 0, H);
        }
        if (ec.dis.c2p) {
          reg(layer_name(l, "attn.pos_k.weight"), pw, H * H, H * H);
          reg(layer_name(l, "attn.pos_k.bias"), pb, H, H);
        }
        L.w.pos_w = pw.data.data();
        L.w.pos_b = pb.data.data();
        L.w.g_pos_w = pw.g(0);
        L.w.g_pos_b = pb.g(0);
      }
    } else {
      // the encoder already holds this layer's Q, K, V stacked (its LayerLinears)
      L.w.qkv_w = enc_->linears[l].qkv_w.data();
      L.w.qkv_b = enc_->linears[l].qkv_b.data();
      L.w.o_w = w.o_w; L.w.o_b = w.o_b; L.w.ln1_w = w.ln1_w; L.w.ln1_b = w.ln1_b;
      L.w.f1_w = w.ffn_in_w; L.w.f1_b = w.ffn_in_b; L.w.f2_w = w.ffn_out_w; L.w.f2_b = w.ffn_out_b;
      L.w.ln2_w = w.ln2_w; L.w.ln2_b = w.ln2_b;
      if (ec.dis.on && !ec.dis.share_key) {
        L.w.pos_w = enc_->pos_w[l].data();
        L.w.pos_b = enc_->pos_b[l].data();
      }
    }
    if (L.adapters) {
      const int64_t b = cfg_.adapter_size;
      const char* sites[2] = {"adapter.attn", "adapter.ffn"};
      for (int s = 0; s < 2; s++) {
        AdapterWeights& A = L.ad[s];
        std::string base = layer_name(l, sites[s]);
        own(base + ".down.weight", nullptr, b * H, &A.dw, &A.g_dw);
        own(base + ".down.bias", nullptr, b, &A.db, &A.g_db);
        own(base + ".up.weight", nullptr, H * b, &A.uw, &A.g_uw);
        own(base + ".up.bias", nullptr, H, &A.ub, &A.g_ub);
        normal(A.dw, b * H, 0.02f);
        normal(A.uw, H * b, 1e-3f);  // near zero: a fresh adapter is close to the identity
      }
    }
    L.w.adapter_size = L.adapters ? cfg_.adapter_size : 0;
    L.w.adapter_act = cfg_.adapter_act;
    m.layers.push_back(std::move(L));
  }
  // the adapters' views point into the layers, which no longer move
  for (TLayer& L : m.layers)
    for (int s = 0; s < 2; s++) L.w.ad[s] = L.adapters ? &L.ad[s] : nullptr;
  own("head.weight", nullptr, cfg_.num_labels * H, &m.head_w, &m.g_head_w);
  own("head.bias", nullptr, cfg_.num_labels, &m.head_b, &m.g_head_b);
  normal(m.head_w, cfg_.num_labels * H, 0.02f);
}

TaskModel::~TaskModel() = default;

void TaskModel::zero_grad() {
  for (auto& b : impl_->blocks) std::fill(b->grad.begin(), b->grad.end(), 0.0f);
}

void TaskModel::parameters_changed() {
  impl_->packed_stale = true;
  version_++;
}

std::string TaskModel::loss_of(const float* logits, const int32_t* labels, const int32_t* mask, int64_t B, int64_t T,
                               double* loss, std::vector<float>* dlogits) const {
  const int64_t R = cfg_.head == HeadKind::Sequence ? B : B * T;
  std::vector<float> scratch;
  std::vector<float>& d = dlogits ? *dlogits : scratch;
  d.assign((size_t)(R * cfg_.num_labels), 0.0f);
  return head_loss_of(cfg_, logits, d.data(), mask, B, T, labels, loss);
}

void TaskModel::train_view(cuda::HostTrain* out) {
  const Impl& m = *impl_;
  *out = cuda::HostTrain{};
  out->first = m.first;
  out->recycled = cfg_.mode == TrainMode::Reduced || cfg_.mode == TrainMode::ReducedAdapters;
  out->hidden_dropout = cfg_.hidden_dropout;
  out->attention_dropout = cfg_.attention_dropout;
  out->head_dropout = cfg_.head_dropout;
  out->seed = cfg_.seed;
  out->precision = (int32_t)(cfg_.bf16 ? cuda::BackendPrecision::BF16 : cuda::BackendPrecision::F32);
  for (const Param& p : params_) out->params.push_back({p.data, p.grad, p.n, p.decay ? 1 : 0});
}

uint64_t TaskModel::take_step_number() { return impl_->step_counter++; }

void TaskModel::updated_elsewhere() {
  adam_t_++;
  version_++;
}

void TaskModel::host_view(cuda::HostEncoder* h) const {
  const Impl& m = *impl_;
  const EncoderConfig& ec = enc_->cfg;
  const int64_t H = ec.hidden;
  h->cfg = ec;
  h->emb = m.emb_word ? m.tables() : enc_->emb;
  h->layer = enc_->layer;
  h->rel_bias = m.rel_table ? m.rel_table : enc_->rel_bias;
  cuda::HostTask& t = h->task;
  t = cuda::HostTask{};
  t.head = (int32_t)cfg_.head;
  t.labels = cfg_.num_labels;
  t.head_w = m.head_w;
  t.head_b = m.head_b;
  t.adapter_act = (int32_t)cfg_.adapter_act;
  t.adapters.assign((size_t)(2 * ec.layers), cuda::HostAdapter{});
  for (const TLayer& L : m.layers) {
    // the layers in the graph: trained copies, or views of the encoder's own (frozen)
    LayerWeights& w = h->layer[(size_t)L.index];
    w.q_w = L.w.qkv_w;
    w.k_w = L.w.qkv_w + H * H;
    w.v_w = L.w.qkv_w + 2 * H * H;
    w.q_b = L.w.qkv_b;
    w.k_b = L.w.qkv_b + H;
    w.v_b = L.w.qkv_b + 2 * H;
    w.o_w = L.w.o_w;
    w.o_b = L.w.o_b;
    w.ln1_w = L.w.ln1_w;
    w.ln1_b = L.w.ln1_b;
    w.ffn_in_w = L.w.f1_w;
    w.ffn_in_b = L.w.f1_b;
    w.ffn_out_w = L.w.f2_w;
    w.ffn_out_b = L.w.f2_b;
    w.ln2_w = L.w.ln2_w;
    w.ln2_b = L.w.ln2_b;
    if (!L.adapters) continue;
    t.adapter_size = L.w.adapter_size;
    for (int s = 0; s < 2; s++)
      t.adapters[(size_t)(2 * L.index + s)] = {L.ad[s].dw, L.ad[s].db, L.ad[s].uw, L.ad[s].ub};
  }
  if (t.adapter_size == 0) t.adapters.clear();
}

uint64_t TaskModel::param_bytes() const {
  uint64_t n = 0;
  for (auto& b : impl_->blocks) n += (b->data.size() + b->grad.size() + b->m.size() + b->v.size()) * 4;
  return n;
}

void TaskModel::release_activations() {
  Impl& m = *impl_;
  for (TLayer& L : m.layers) L.saved.clear();
  for (std::vector<float>* v : {&m.emb_s, &m.emb_mean, &m.emb_rstd, &m.final_h, &m.head_in, &m.logits,
                                 &m.dlogits, &m.dhead_in, &m.hidden})
    drop(*v);
  drop(m.emb_mask);
  drop(m.head_mask);
  m.ws.trim(0);
}

uint64_t TaskModel::activation_bytes() const {
  uint64_t n = 0;
  const Impl& m = *impl_;
  for (const TLayer& L : m.layers) n += L.saved.bytes();
  for (const std::vector<float>* v : {&m.emb_s, &m.emb_mean, &m.emb_rstd, &m.final_h, &m.head_in, &m.logits,
                                       &m.dlogits, &m.dhead_in, &m.hidden})
    n += v->capacity() * 4;
  return n + m.emb_mask.capacity() + m.head_mask.capacity() + m.ws.bytes();
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
  version_++;
  return norm;
}

namespace {

// One step's settings, shared by its stages.
struct Pass {
  TaskModel::Impl& m;
  const TrainConfig& cfg;
  Encoder& enc;
  const TrainInputs& in;
  BlockShape shape;
  GemmFn gemm;  // the linear layers' GEMMs in the chosen precision; attention stays fp32
  float p_hid, p_att, p_head;
  uint64_t step_no;
  bool recycled;

  BlockDropout dropout(const TLayer& L) const {
    BlockDropout d;
    d.hidden = p_hid;
    d.attention = p_att;
    d.seed = cfg.seed;
    d.step = step_no;
    d.site = dropout_layer_site(L.index);
    return d;
  }
};

int64_t max_adapter(const TaskModel::Impl& m) {
  int64_t b = 0;
  for (const TLayer& L : m.layers) b = std::max(b, L.w.adapter_size);
  return b;
}

// Training and evaluation: the layer-`first` input, then every block saving what
// backward needs; the top layer's output lands in m.final_h.
std::string forward_saving(Pass& p) {
  TaskModel::Impl& m = p.m;
  const int64_t N = p.shape.B * p.shape.T, H = p.shape.H;
  std::vector<float>& x0 = m.layers.empty() ? m.final_h : m.layers.front().saved.x;
  grow(x0, N * H);
  if (p.recycled) {
    std::memcpy(x0.data(), p.in.hidden, N * H * sizeof(float));
  } else if (m.embeddings_in_graph) {
    grow(m.emb_s, N * H);
    grow(m.emb_mean, N);
    grow(m.emb_rstd, N);
    embeddings_forward(m.tables(), x0.data(), m.emb_s.data(), m.emb_mean.data(), m.emb_rstd.data(), p.in.ids,
                       p.in.positions, p.in.types, N, H, p.enc.cfg.eps,
                       p.enc.cfg.mask_embeddings ? p.in.mask : nullptr);
  } else {
    // frozen embeddings (and frozen prefix layers): the encoder's forward, no dropout in the prefix
    std::string err = encoder_forward(p.enc, x0.data(), p.in.ids, p.in.positions, p.in.types, p.in.mask,
                                      p.shape.B, p.shape.T, m.first, p.in.threads);
    if (!err.empty()) return err;
  }
  if (p.p_hid > 0 && !p.recycled && m.first == 0) {
    grow8(m.emb_mask, N * H);
    dropout_forward(x0.data(), m.emb_mask.data(), x0.data(), N * H, p.p_hid, p.cfg.seed,
                    dropout_stream(p.step_no, kDropoutEmbeddings, 0));
  }
  omp_set_num_threads(p.in.threads);
  for (size_t li = 0; li < m.layers.size(); li++) {
    TLayer& L = m.layers[li];
    std::vector<float>& out = li + 1 < m.layers.size() ? m.layers[li + 1].saved.x : m.final_h;
    grow(out, N * H);
    std::string err = block_forward_saving(L.w, p.shape, p.dropout(L), L.saved, out.data(), m.ws, p.gemm);
    if (!err.empty()) return err + " in layer " + std::to_string(L.index + 1);
  }
  return "";
}

// Prepacked linear layers for forward-only runs: a frozen layer shares the encoder's
// when the precision matches; a trained one gets its own, rebuilt after its values change.
void prepare_packed(TaskModel::Impl& m, const TrainConfig& cfg, Encoder& enc) {
  const int64_t H = enc.cfg.hidden, I = enc.cfg.intermediate;
  const bool share = (enc.precision == Precision::BF16) == cfg.bf16;
  for (TLayer& L : m.layers) {
    if (!L.trainable && share) {
      L.w.packed = &enc.linears[L.index];
      continue;
    }
    L.own_packed.reset(new LayerLinears);
    L.own_packed->build_stacked(L.w.qkv_w, L.w.qkv_b, L.w.o_w, L.w.o_b, L.w.f1_w, L.w.f1_b, L.w.f2_w, L.w.f2_b,
                                H, I, cfg.bf16);
    L.w.packed = L.own_packed.get();
  }
  m.packed_stale = false;
}

// Forward-only (inference models): nothing saved, padding skipped (rows run packed); the
// top layer's output lands in m.hidden (B, T, H), zeros past each row's extent.
std::string forward_only(Pass& p) {
  TaskModel::Impl& m = p.m;
  const int64_t B = p.shape.B, T = p.shape.T, N = B * T, H = p.shape.H;
  if (m.packed_stale) prepare_packed(m, p.cfg, p.enc);
  grow(m.hidden, N * H);
  const float* x = m.hidden.data();
  if (p.recycled) {
    x = p.in.hidden;
  } else if (m.embeddings_in_graph) {
    embeddings_forward(m.tables(), m.hidden.data(), nullptr, nullptr, nullptr, p.in.ids, p.in.positions,
                       p.in.types, N, H, p.enc.cfg.eps, p.enc.cfg.mask_embeddings ? p.in.mask : nullptr);
  } else {
    std::string err = encoder_forward(p.enc, m.hidden.data(), p.in.ids, p.in.positions, p.in.types, p.in.mask,
                                      B, T, m.first, p.in.threads);
    if (!err.empty()) return err;
  }
  std::vector<const BlockWeights*> blocks;
  for (const TLayer& L : m.layers) blocks.push_back(&L.w);
  return blocks_forward(blocks, m.first, p.shape, x, m.hidden.data(), m.ws, max_adapter(m), p.cfg.bf16, p.gemm);
}

// logits (R, labels) from the top layer's output: the first token of each row (sequence
// head) or every token
std::string head_forward(Pass& p, const float* top) {
  TaskModel::Impl& m = p.m;
  const int64_t B = p.shape.B, T = p.shape.T, H = p.shape.H, Lb = p.cfg.num_labels;
  const bool seq = p.cfg.head == HeadKind::Sequence;
  const int64_t R = seq ? B : B * T;
  grow(m.head_in, R * H);
  if (seq)
    for (int64_t r = 0; r < R; r++) std::memcpy(m.head_in.data() + r * H, top + r * T * H, H * sizeof(float));
  else
    std::memcpy(m.head_in.data(), top, R * H * sizeof(float));
  if (p.p_head > 0) {
    grow8(m.head_mask, R * H);
    dropout_forward(m.head_in.data(), m.head_mask.data(), m.head_in.data(), R * H, p.p_head, p.cfg.seed,
                    dropout_stream(p.step_no, kDropoutHead, 0));
  }
  grow(m.logits, R * Lb);
  grow(m.dlogits, R * Lb);
  if (!linear_forward(p.gemm, m.logits.data(), m.head_in.data(), m.head_w, m.head_b, R, H, Lb))
    return "GEMM failed (head)";
  return "";
}

// The loss of logits (R, labels) against labels, and its gradient in dlogits (the same size)
std::string head_loss_of(const TrainConfig& cfg, const float* logits, float* dlogits, const int32_t* mask, int64_t B,
                         int64_t T, const int32_t* labels, double* loss) {
  const int64_t N = B * T, Lb = cfg.num_labels;
  const float* cw = cfg.class_weights.empty() ? nullptr : cfg.class_weights.data();
  if (cfg.head == HeadKind::QA) {
    // start and end logits per row over its positions; padding is never a start or end
    std::vector<float> zs(N), ze(N), ds(N), de(N);
    std::vector<uint8_t> mk(N);
    std::vector<int32_t> ys(B), ye(B);
    for (int64_t b = 0; b < B; b++) {
      ys[b] = labels[2 * b];
      ye[b] = labels[2 * b + 1];
      for (int64_t t = 0; t < T; t++) {
        zs[b * T + t] = logits[(b * T + t) * 2];
        ze[b * T + t] = logits[(b * T + t) * 2 + 1];
        mk[b * T + t] = mask[b * T + t] != 0;
      }
      for (int32_t y : {ys[b], ye[b]})
        if (y >= T || (y >= 0 && !mk[b * T + y]))
          return "QA label of row " + std::to_string(b) + " points past the row's tokens";
    }
    *loss = 0.5 * cross_entropy_forward_backward(ds.data(), zs.data(), ys.data(), nullptr, mk.data(), B, T, 0.5f) +
            0.5 * cross_entropy_forward_backward(de.data(), ze.data(), ye.data(), nullptr, mk.data(), B, T, 0.5f);
    for (int64_t i = 0; i < N; i++) {
      dlogits[i * 2] = ds[i];
      dlogits[i * 2 + 1] = de[i];
    }
    return "";
  }
  const int64_t R = cfg.head == HeadKind::Sequence ? B : N;
  for (int64_t r = 0; r < R; r++)
    if (labels[r] >= Lb)
      return "label " + std::to_string(labels[r]) + " at row " + std::to_string(r) +
             " is not below the number of labels " + std::to_string(Lb);
  *loss = cross_entropy_forward_backward(dlogits, logits, labels, cw, nullptr, R, Lb, 1.0f);
  return "";
}

std::string head_loss(Pass& p, const int32_t* labels, double* loss) {
  return head_loss_of(p.cfg, p.m.logits.data(), p.m.dlogits.data(), p.in.mask, p.shape.B, p.shape.T, labels, loss);
}

// The forward's list reversed: head, blocks top to bottom (as far down as a parameter
// trains), embeddings.
std::string backward(Pass& p) {
  TaskModel::Impl& m = p.m;
  const int64_t B = p.shape.B, T = p.shape.T, N = B * T, H = p.shape.H, Lb = p.cfg.num_labels;
  const bool seq = p.cfg.head == HeadKind::Sequence;
  const int64_t R = seq ? B : N;
  grow(m.dhead_in, R * H);
  if (!linear_backward(p.gemm, m.dhead_in.data(), m.g_head_w, m.g_head_b, m.dlogits.data(), m.head_in.data(),
                       m.head_w, R, H, Lb, false))
    return "GEMM failed (head backward)";
  if (p.p_head > 0) dropout_backward(m.dhead_in.data(), m.head_mask.data(), m.dhead_in.data(), R * H, p.p_head);
  m.ws.reserve_backward(p.shape, max_adapter(m), p.p_att > 0);
  float* d = m.ws.dA.data();  // dL/d(output of the current layer), then of its input
  if (seq) {
    std::memset(d, 0, N * H * sizeof(float));
    for (int64_t b = 0; b < B; b++) std::memcpy(d + b * T * H, m.dhead_in.data() + b * H, H * sizeof(float));
  } else {
    std::memcpy(d, m.dhead_in.data(), N * H * sizeof(float));
  }
  const int64_t W = 2 * T - 1, heads = p.shape.heads;
  if (m.g_rel) {  // per-thread slabs of the relative bias's gradient, summed below
    m.ws.drel.assign((size_t)(p.shape.threads * heads * W), 0.0f);
    p.shape.drel = m.ws.drel.data();
  }
  if (m.g_rel_emb) {  // DeBERTa-v2's relative table: every layer adds its rows' gradient
    m.ddis_table.assign((size_t)(2 * p.enc.cfg.dis.span * H), 0.0f);
    p.shape.ddis_table = m.ddis_table.data();
  }
  for (int64_t li = (int64_t)m.layers.size() - 1; li >= 0; li--) {
    TLayer& L = m.layers[li];
    const bool need_dx = li > 0 || m.embeddings_in_graph;
    std::string err = block_backward(L.w, p.shape, p.dropout(L), L.saved, d, need_dx, m.ws, p.gemm);
    if (!err.empty()) return err + " in layer " + std::to_string(L.index + 1);
    if (!need_dx) break;
  }
  if (m.g_rel) {
    float* sum = m.ws.drel.data();
    for (int t = 1; t < p.shape.threads; t++)
      for (int64_t i = 0; i < heads * W; i++) sum[i] += m.ws.drel[t * heads * W + i];
    relative_bias_backward(p.enc.cfg, m.g_rel, sum, T);
    p.shape.drel = nullptr;
  }
  if (m.g_rel_emb) {  // table = LN(rel_emb), or rel_emb itself
    const EncoderConfig& ec = p.enc.cfg;
    const int64_t rows = 2 * ec.dis.span;
    if (ec.dis.rel_ln)  // in place: the table's gradient becomes the embeddings'
      ops().layernorm_backward(m.ddis_table.data(), m.g_rel_ln_w, m.g_rel_ln_b, m.ddis_table.data(), m.rel_emb,
                               m.rel_ln_w, m.dis_mean.data(), m.dis_rstd.data(), rows, H);
    for (int64_t i = 0; i < rows * H; i++) m.g_rel_emb[i] += m.ddis_table[i];
    p.shape.ddis_table = nullptr;
  }
  if (m.embeddings_in_graph) {
    // x0 = dropout(LN(word + position + type) [* mask])
    if (p.p_hid > 0) dropout_backward(d, m.emb_mask.data(), d, N * H, p.p_hid);
    if (p.enc.cfg.mask_embeddings)
      for (int64_t i = 0; i < N; i++)
        if (!p.in.mask[i]) std::memset(d + i * H, 0, H * sizeof(float));
    float* demb = m.ws.dB.data();
    ops().layernorm_backward(demb, m.g_ln_w, m.g_ln_b, d, m.emb_s.data(), m.emb_ln_w, m.emb_mean.data(),
                             m.emb_rstd.data(), N, H);
    embedding_backward(m.g_word, demb, p.in.ids, N, H);
    if (m.g_pos) embedding_backward(m.g_pos, demb, p.in.positions, N, H);
    if (m.g_type) {
      std::vector<int32_t> zeros;
      const int32_t* types = p.in.types;
      if (!types) {
        zeros.assign(N, 0);
        types = zeros.data();
      }
      embedding_backward(m.g_type, demb, types, N, H);
    }
  }
  return "";
}

}  // namespace

std::string TaskModel::step(const TrainInputs& in, const int32_t* labels, bool train, bool backward_too,
                            double* loss_out, std::vector<float>* logits_out) {
  Impl& m = *impl_;
  const EncoderConfig& ec = enc_->cfg;
  const bool recycled = cfg_.mode == TrainMode::Reduced || cfg_.mode == TrainMode::ReducedAdapters;
  if (in.hidden16) return "fp16 hidden states run on a GPU model only; give fp32 hidden states on the CPU";
  if (recycled && !in.hidden) return "this mode takes layer-" + std::to_string(cfg_.k) + " hidden states as input";
  if (!recycled && !in.ids) return "this mode takes token ids as input";
  if ((backward_too || train) && cfg_.inference)
    return "this task model was opened for inference only; it has no gradients (create it without inference to train)";
  const int64_t N = in.B * in.T;
  if (!recycled) {
    for (int64_t i = 0; i < N; i++)
      if (in.ids[i] < 0 || in.ids[i] >= ec.vocab || in.positions[i] < 0 || in.positions[i] >= ec.max_positions)
        return "token or position id out of range at " + std::to_string(i);
  }
  BlockShape s;
  s.B = in.B; s.T = in.T; s.H = ec.hidden; s.I = ec.intermediate; s.heads = ec.heads; s.eps = ec.eps;
  s.mask = in.mask;
  s.threads = in.threads;
  // MPNet's relative position bias (this model's copy in mode full, else the encoder's)
  relative_bias(ec, m.rel_table ? m.rel_table : enc_->rel_bias, in.T, m.ws.rel);
  if (!m.ws.rel.empty()) s.rel = m.ws.rel.data();
  // DeBERTa-v2: the relative table (this model's, after its LayerNorm, in mode full; else
  // the encoder's) and the row of each offset
  const float* table = enc_->rel_table.data();
  if (m.rel_emb) {
    const int64_t rows = 2 * ec.dis.span;
    grow(m.dis_table, rows * ec.hidden);
    grow(m.dis_mean, rows);
    grow(m.dis_rstd, rows);
    disentangled_table(ec, m.rel_emb, m.rel_ln_w, m.rel_ln_b, m.dis_table.data(), m.dis_mean.data(),
                       m.dis_rstd.data());
    table = m.dis_table.data();
  }
  attach_disentangled(s, ec.dis, table, m.dis_rows);
  Pass p{m, cfg_, *enc_, in, s, cfg_.bf16 ? &gemm_bf16 : &gemm_f32,
         train ? cfg_.hidden_dropout : 0.0f, train ? cfg_.attention_dropout : 0.0f,
         train ? cfg_.head_dropout : 0.0f, m.step_counter++, recycled};

  std::string err = cfg_.inference ? forward_only(p) : forward_saving(p);
  if (err.empty()) err = head_forward(p, cfg_.inference ? m.hidden.data() : m.final_h.data());
  if (err.empty() && logits_out) {
    const int64_t R = cfg_.head == HeadKind::Sequence ? in.B : N;
    logits_out->assign(m.logits.begin(), m.logits.begin() + R * cfg_.num_labels);
  }
  if (err.empty() && !labels && backward_too) err = "training needs labels";
  if (err.empty() && labels) {
    double loss = 0;
    err = head_loss(p, labels, &loss);
    if (err.empty() && loss_out) *loss_out = loss;
  }
  if (err.empty() && labels && backward_too) err = backward(p);
  // an inference model does not keep a far larger batch's buffers for the life of the process
  if (cfg_.inference && activation_bytes() > kWorkspaceKeepBytes) release_activations();
  return err;
}

}  // namespace er
