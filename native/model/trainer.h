// Training on top of an Encoder: the layers above k (or all of them), Houlsby
// adapters, a task head, cross-entropy, and AdamW, in five modes:
//
//   full              embeddings + layers 1..N run and train (no recycling)
//   frozen-prefix     layers 1..k run without gradients (inference path), k+1..N train
//   reduced           input = layer-k activations; layers k+1..N train
//   reduced-adapters  input = layer-k activations; layers k+1..N frozen, their adapters train
//   full-adapters     layers 1..N frozen, adapters in every layer train
//
// Every layer runs model/layer.h's one block implementation. The forward of the trained
// part keeps exactly what backward needs; frozen layers below the lowest trained
// parameter keep nothing. The backward is the forward's list of calls reversed.
// Parameter gradients accumulate (+=) between zero_grad calls.
//
// An inference model (TrainConfig::inference) runs forward-only: no gradients, no
// optimizer state, no saved activations, prepacked linear layers with fused bias and
// GELU; its scratch is bounded by the batch and freed after a batch that grew it past
// kWorkspaceKeepBytes. Its logits equal a training model's evaluation step within 1e-5.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "model/cuda_backend.h"
#include "model/encoder.h"

namespace er {

enum class TrainMode : int32_t { Full = 0, FrozenPrefix = 1, Reduced = 2, ReducedAdapters = 3, FullAdapters = 4 };
enum class HeadKind : int32_t { Sequence = 0, Token = 1, QA = 2 };

struct TrainConfig {
  TrainMode mode = TrainMode::Reduced;
  int64_t k = 0;  // layers 1..k are the recycled / frozen prefix
  HeadKind head = HeadKind::Sequence;
  int64_t num_labels = 2;  // QA: 2 (start, end)
  int64_t adapter_size = 64;
  std::vector<int64_t> adapter_layers;  // 0-based; empty = every layer the mode allows
  AdapterAct adapter_act = AdapterAct::Gelu;
  float hidden_dropout = 0.1f, attention_dropout = 0.1f, head_dropout = 0.1f;
  uint64_t seed = 0;
  std::vector<float> class_weights;  // empty or num_labels
  // bf16 mixed precision: the linear layers' GEMMs take bf16 inputs (fp32 accumulation);
  // master weights, gradients, optimizer state, loss and every other op stay fp32
  bool bf16 = false;
  // inference only: parameters without gradients or Adam moments (a quarter of the
  // memory); backward passes and updates are refused
  bool inference = false;
};

// A trainable tensor: a view into owned storage, with its gradient and Adam moments.
struct Param {
  std::string name;
  float* data;
  float* grad;
  float* m;
  float* v;
  int64_t n;
  bool decay;  // weight decay applies (not to biases and LayerNorm)
};

struct AdamWOptions {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.01f;
  float clip = 1.0f;  // global-norm clipping; <= 0 switches it off
};

// Batch inputs: token ids (full, frozen-prefix, full-adapters) or layer-k hidden states
// (reduced modes). All (B, T) row-major; hidden (B, T, H).
struct TrainInputs {
  const int32_t* ids = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* types = nullptr;
  const int32_t* mask = nullptr;
  const float* hidden = nullptr;
  // on a GPU model only: layer-k states as an fp16 store holds them (B, T, H), cast on the GPU
  const uint16_t* hidden16 = nullptr;
  int64_t B = 0, T = 0;
  int threads = 1;
};

class TaskModel {
 public:
  // Throws std::runtime_error with a message naming the bad setting.
  TaskModel(std::shared_ptr<Encoder> enc, TrainConfig cfg);
  ~TaskModel();
  // Forward (and backward when `backward`), dropout when `train`. labels: Sequence (B),
  // Token (B*T, < 0 ignored), QA (B*2: start, end). loss may be null; logits (when
  // non-null) receive the head's output: Sequence (B, L), Token (B*T, L), QA (B*T, 2).
  std::string step(const TrainInputs& in, const int32_t* labels, bool train, bool backward,
                   double* loss, std::vector<float>* logits);
  void zero_grad();
  // Clips by global norm and applies AdamW to every parameter; returns the norm before clipping.
  double adamw(const AdamWOptions& o);
  std::vector<Param>& params() { return params_; }
  const TrainConfig& config() const { return cfg_; }
  int64_t encoder_hidden() const { return enc_->cfg.hidden; }
  int64_t steps() const { return adam_t_; }
  // Bytes held: parameters + gradients + moments, and the activation buffers.
  uint64_t param_bytes() const;
  uint64_t activation_bytes() const;
  // Frees every activation and scratch buffer (they grow again with the next step).
  void release_activations();
  // Tells an inference model that parameter values were overwritten (its prepacked
  // linear layers are rebuilt before the next forward).
  void parameters_changed();
  // Counts the changes of parameter values (parameters_changed, adamw): a copy of them
  // elsewhere (on a GPU) is stale when the count it was made at differs.
  uint64_t version() const { return version_; }
  // The weights this model runs, as the GPU backend takes them (views, valid while the model
  // lives and its parameters are not changed): the encoder's, with the layers, embeddings
  // and relative bias this model holds in their place, its adapters and its head.
  void host_view(cuda::HostEncoder* out) const;
  // The loss step() would report for these logits (computed elsewhere: the GPU), or the
  // error for bad labels; dlogits (when non-null) receives its gradient, the logits' shape.
  // mask (B, T): the QA head's positions.
  std::string loss_of(const float* logits, const int32_t* labels, const int32_t* mask, int64_t B, int64_t T,
                      double* loss, std::vector<float>* dlogits = nullptr) const;
  // What the GPU trainer needs besides host_view: the layers in the graph, the input,
  // dropout, and the trainable tensors (views of params(), valid while the model lives)
  void train_view(cuda::HostTrain* out);
  // The dropout step number the next step() would draw its masks for (and counts it)
  uint64_t take_step_number();
  // An optimizer step applied to a copy elsewhere (the GPU): counts it in steps() and version()
  void updated_elsewhere();
  std::mutex mu;  // one step at a time

  struct Impl;

 private:
  std::shared_ptr<Encoder> enc_;
  TrainConfig cfg_;
  std::unique_ptr<Impl> impl_;
  std::vector<Param> params_;
  int64_t adam_t_ = 0;
  uint64_t version_ = 0;
};

}  // namespace er
