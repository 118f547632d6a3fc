// A task model's training on the GPU: the trainer of model/trainer.h, same block (post-
// LayerNorm, exact GELU, Houlsby adapters after the attention output and after the FFN,
// MPNet's relative position bias), same modes, heads and dropout sites, in fp32 (cuBLASLt
// with CUBLAS_COMPUTE_32F: no TF32) or with bf16 GEMM inputs in the linear layers (as the
// CPU trainer's bf16 mode: fp32 master weights, gradients, moments, attention and the rest).
//
// The host keeps the task model (model/trainer.h): it tokenizes, computes the loss and its
// gradient from the logits (small), and reads the trained values back when it saves. The
// GPU holds every weight in fp32; the trainable ones (those inside a HostParam's host range)
// with their gradients and Adam moments; and, per layer in the graph, what its backward
// needs. The forward is model/layer.h's list of calls, the backward that list reversed:
//
//   qkv = x Wqkv^T + bqkv;  P = softmax(q k^T / sqrt(d) + rel, mask);  ctx = drop(P) v
//   a = drop(ctx Wo^T + bo);  s1 = a + ad1(a) + x;  y1 = LN1(s1)
//   g = gelu(y1 W1^T + b1);  f = drop(g W2^T + b2);  s2 = f + ad2(f) + y1;  y = LN2(s2)
//
// Dropout uses the CPU's counter-based generator and sites; the attention probabilities are
// drawn as one stream per layer (the CPU draws one per row and head), so those masks differ
// from the CPU's while their distribution is the same. Every reduction (bias and LayerNorm
// gradients, embedding gradients, the relative bias's gradient, the global norm) runs in a
// fixed order: two runs from the same state give the same bits.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "kernels/cuda/blas.h"
#include "model/cuda_backend.h"

namespace er {
namespace cuda {

class CudaTrainer {
 public:
  static std::string create(const HostEncoder& host, const HostTrain& train, int device,
                            std::unique_ptr<CudaTrainer>* out);
  ~CudaTrainer();
  CudaTrainer(const CudaTrainer&) = delete;
  CudaTrainer& operator=(const CudaTrainer&) = delete;

  // host inputs (B, T); logits (host) as CudaEncoder::task_forward's. Waits for the GPU.
  // hidden16: the states in fp16 (as an fp16 store holds them), cast on the GPU
  std::string forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                      const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                      bool dropout, uint64_t step);
  // dlogits (host) of the last forward; gradients accumulate. Waits for the GPU.
  std::string backward(const float* dlogits);
  std::string zero_grad();
  std::string adamw(const HostAdamW& o, int64_t t, double* norm);
  // 0: values to the host, 1: gradients to the host, 2: values from the host
  std::string sync(int what);
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t buffer_bytes() const { return buffer_bytes_; }

 private:
  CudaTrainer() = default;
  // a weight on the GPU and its gradient (null: frozen)
  struct W {
    float* w = nullptr;
    float* g = nullptr;
    uint16_t* w16 = nullptr;  // bf16 mode: the GEMMs' copy of a linear layer's weight
  };
  struct Layer {
    W qkv_w, qkv_b, o_w, o_b, ln1_w, ln1_b, f1_w, f1_b, f2_w, f2_b, ln2_w, ln2_b;
    W ad[2][4];  // per site: down weight, down bias, up weight, up bias (w null: no adapter)
  };
  // what one layer's backward needs, for the largest batch so far
  struct Saved {
    float *x = nullptr, *qkv = nullptr, *probs = nullptr, *pdrop = nullptr, *ctx = nullptr, *a = nullptr;
    float *s1 = nullptr, *mean1 = nullptr, *rstd1 = nullptr, *y1 = nullptr, *ffpre = nullptr, *ffact = nullptr;
    float *f = nullptr, *s2 = nullptr, *mean2 = nullptr, *rstd2 = nullptr;
    float *ad_pre[2] = {nullptr, nullptr}, *ad_act[2] = {nullptr, nullptr};
    uint8_t *mask_p = nullptr, *mask_a = nullptr, *mask_f = nullptr;
  };
  struct Dev {  // one trainable tensor: values, gradient, moments on the GPU; its host arrays
    float *w = nullptr, *g = nullptr, *m = nullptr, *v = nullptr;
    HostParam host;
    bool used = false;  // a weight the trainer runs lies in it
  };
  struct Run {  // trainable tensors adjacent in host memory (params_[first .. first + count - 1])
    const float* host = nullptr;
    int64_t n = 0;
    float *w = nullptr, *g = nullptr, *m = nullptr, *v = nullptr;
    size_t first = 0, count = 0;
  };

  std::string malloc_dev(void** p, size_t bytes, const char* what, bool weight);
  // the GPU copy of host weight `src` (n floats): inside a trainable tensor, or a frozen copy
  std::string place(W* out, const float* src, size_t n, const char* what);
  // place() for a linear layer's weight: in bf16 mode also its bf16 copy (kept current after
  // every update when it trains)
  std::string matrix(W* out, const float* src, size_t n, const char* what);
  // bf16 mode: the trainable weights' bf16 copies from their fp32 values
  std::string refresh_bf16();
  std::string reserve(int64_t B, int64_t T);
  std::string relative_bias_for(int64_t T);
  std::string linear(float* out, const float* x, const W& w, const W& b, int64_t N, int64_t C, int64_t OC);
  // gW += dy^T x, gb += colsum dy (when trainable); dx = dy W (+= when accumulate; null: none)
  std::string linear_backward(float* dx, const float* dy, const float* x, const W& w, const W& b, int64_t N,
                              int64_t C, int64_t OC, bool accumulate);
  std::string dropout(float* x, uint8_t* mask, int64_t n, float p, uint64_t site);
  std::string layer_forward(const Layer& L, Saved& s, float* out, int64_t l);
  std::string layer_backward(const Layer& L, const Saved& s, float* d, bool need_dx, int64_t l);

  EncoderConfig cfg_;
  HostTrain spec_;
  bool bf16_ = false;
  bool prefix_ = false;  // running the frozen prefix (fp32 GEMMs)
  struct Shadow {
    const float* w;
    uint16_t* w16;
    size_t n;
  };
  std::vector<Shadow> shadows_;              // the trainable weights' bf16 copies
  uint16_t *x16_ = nullptr, *d16_ = nullptr;  // bf16 GEMM inputs (activations, gradients)
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Blas> blas_;
  std::vector<void*> allocations_, buffers_;
  uint64_t weight_bytes_ = 0, buffer_bytes_ = 0;
  std::vector<Dev> params_;  // sorted by host address
  std::vector<Run> runs_;
  W word_, position_, type_, emb_ln_w_, emb_ln_b_, head_w_, head_b_;
  std::vector<Layer> layers_;
  int32_t head_ = 0;
  int64_t labels_ = 0, adapter_size_ = 0;
  int32_t adapter_act_ = 0;
  bool train_embeddings_ = false;
  // MPNet's relative bias: the table (host copy of the current values), whether it trains,
  // the bias for rel_T_ tokens on the GPU, its gradient there, the table's gradient (host)
  std::vector<float> rel_table_, rel_host_, drel_host_, rel_grad_host_;
  W rel_;
  float *rel_dev_ = nullptr, *drel_dev_ = nullptr;
  int64_t rel_T_ = 0;
  // the batch of the last forward
  int64_t B_ = 0, T_ = 0;
  bool saved_ = false;
  float p_hid_ = 0, p_att_ = 0, p_head_ = 0;
  uint64_t step_ = 0;
  // buffers for the largest batch so far
  int64_t cap_tokens_ = 0, cap_scores_ = 0;
  std::vector<Saved> saved_layers_;  // layers first .. N - 1
  Saved scratch_;                    // the forward-only prefix layers run through it
  float *top_ = nullptr, *emb_s_ = nullptr, *emb_mean_ = nullptr, *emb_rstd_ = nullptr;
  uint8_t *emb_mask_ = nullptr, *head_mask_ = nullptr;
  float *head_in_ = nullptr, *logits_ = nullptr, *dlogits_ = nullptr, *dhead_in_ = nullptr;
  float *dA_ = nullptr, *dB_ = nullptr, *dC_ = nullptr, *dff_ = nullptr, *dqkv_ = nullptr, *dP_ = nullptr;
  float *tmp_ = nullptr, *dad_ = nullptr;
  int32_t *ids_ = nullptr, *pos_ = nullptr, *types_ = nullptr, *mask_ = nullptr;
  uint16_t* h16_ = nullptr;  // fp16 input states before their cast
  bool have_types_ = false;
  double *norm_ = nullptr, *norm_parts_ = nullptr;
};

}  // namespace cuda
}  // namespace er
