// A BERT-family encoder on the GPU (post-LayerNorm blocks, exact GELU; MPNet's relative
// position bias too): the weights are
// uploaded once, in the compute precision, and every buffer of a batch shape is kept and
// reused. The same layer numbering as model/encoder.h: forward to layer k, forward from
// layer k. Linear layers run through cuBLASLt (bias in its epilogue), with fp32, bf16 or
// fp16 inputs and fp32 accumulation; attention, softmax, LayerNorm and GELU stay fp32, as
// on the CPU. Padded keys are masked; outputs at padded positions are not meaningful.
//
// It reads host weights through the CPU encoder's own views (EncoderConfig, EmbeddingTables,
// LayerWeights of model/encoder.h), so the addon (from its er::Encoder) and the standalone GPU
// check (bench/gpu, from a file) load it alike.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "kernels/cuda/blas.h"
#include "model/cuda_backend.h"
#include "model/encoder.h"

namespace er {
namespace cuda {

// The device buffers a task batch's inputs go to
struct BatchBuffers {
  int32_t *mask, *ids, *pos, *types;
  float* x;       // the states (B, T, H) fp32
  uint16_t* h16;  // fp16 states before their cast
};
// Copies a batch's mask (B, T) and its input to the device on `stream`: fp32 states, fp16
// states (cast to fp32 into d.x there), or (both null) ids, positions and types (each of
// those two may be null: not copied)
std::string upload_batch(const BatchBuffers& d, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                         const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t N, int64_t H,
                         cudaStream_t stream);

// "" when GPU `device` exists and `h` is an encoder (and task) the GPU code runs, else why
// not; `who` names the caller in the message
std::string check_host(const HostEncoder& h, int device, const char* who);

class CudaEncoder {
 public:
  // uploads the weights to `device` in precision `in` (the linear layers' inputs)
  static std::string create(const HostEncoder& host, DType in, int device, std::unique_ptr<CudaEncoder>* out);
  ~CudaEncoder();
  CudaEncoder(const CudaEncoder&) = delete;
  CudaEncoder& operator=(const CudaEncoder&) = delete;

  // Device arrays (B, T): ids, positions, types (may be null: all 0), mask; out (B, T, H)
  // device fp32 receives layer to_layer. Enqueued on stream(); returns "" or the error.
  std::string forward_device(float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
                             const int32_t* mask, int64_t B, int64_t T, int64_t to_layer);
  // hidden (B, T, H) device, layer from_layer; out may equal hidden
  std::string forward_from_device(float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                                  int64_t from_layer, int64_t to_layer);
  // the same from and to host memory (copies in, runs, copies out, waits)
  std::string forward(float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
                      const int32_t* mask, int64_t B, int64_t T, int64_t to_layer);
  std::string forward_from(float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                           int64_t from_layer, int64_t to_layer);

  // A task model's logits (created with host.task.head >= 0): from layer from_layer's
  // hidden states (B, T, H) host, fp32 (hidden) or fp16 (hidden16: copied as they are, cast
  // on the GPU), or (both null) from host ids, positions and types (may be null) through the
  // embeddings; the layers run with their adapters, then the head.
  // logits (host): sequence (B, labels) from each row's first token, token (B*T, labels),
  // QA (B*T, 2). Waits for the GPU.
  std::string task_forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                           const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                           int64_t from_layer);

  // Recycled inference from an fp16 store: n batches of layer from_layer's states, (B, T, H)
  // fp16 host records each (any host memory, e.g. the store's mapping) with their masks
  // (B, T); out[i] (B, T, H) host fp32 receives layer to_layer of batch i. The records travel
  // as fp16 through a ring of two pinned slots: the calling thread fills slot i % 2 while the
  // GPU runs batch i - 1, a copy stream moves it to the device (overlapping the compute
  // stream; events order them, and a slot is refilled only after the copy that read it and
  // the cast that read its device copy are done), and the compute stream casts it to fp32
  // on the device. Outputs come back through two pinned slots as well. Padding positions
  // are not zeroed. stats (may be null) receives the copy stream's busy time.
  struct PipelineStats {
    double copy_ms = 0;   // host-to-device copies of the records and masks, summed
    double total_ms = 0;  // first copy to last output, wall clock
  };
  std::string forward_from_f16_batches(int64_t n, const uint16_t* const* hidden, const int32_t* const* masks,
                                       int64_t B, int64_t T, int64_t from_layer, int64_t to_layer, float* const* out,
                                       PipelineStats* stats);

  cudaStream_t stream() const { return stream_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t buffer_bytes() const { return buffer_bytes_; }

 private:
  CudaEncoder() = default;
  struct Layer {
    void *qkv_w = nullptr, *o_w = nullptr, *f1_w = nullptr, *f2_w = nullptr;  // in the input precision
    float *qkv_b = nullptr, *o_b = nullptr, *ln1_w = nullptr, *ln1_b = nullptr;
    float *f1_b = nullptr, *f2_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
    // adapters after the attention output [0] and the FFN output [1] (dw null: none)
    void *ad_dw[2] = {nullptr, nullptr}, *ad_uw[2] = {nullptr, nullptr};  // in the input precision
    float *ad_db[2] = {nullptr, nullptr}, *ad_ub[2] = {nullptr, nullptr};
  };
  // a = a + up(act(down(a))) over N rows; tmp (N, H) is scratch
  std::string adapter(float* a, float* tmp, const Layer& L, int site, int64_t N);
  std::string reserve(int64_t B, int64_t T);
  // "" when every host id, position and type indexes its table, else the first that does not
  std::string check_ids(const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N) const;
  std::string blocks(float* x, const int32_t* mask, int64_t B, int64_t T, int64_t from, int64_t to);
  std::string linear(float* out, const float* x, const void* W, const float* b, int64_t N, int64_t C, int64_t OC);
  std::string upload(void** dst, const float* src, size_t n, bool convert, const char* what);
  std::string upload_f32(float** dst, const float* src, size_t n, const char* what);
  // MPNet: the (heads, 2T - 1) bias of T-token rows on the GPU, rebuilt when T changes
  std::string relative_bias_for(int64_t T);
  std::string reserve_ring(int64_t B, int64_t T);

  EncoderConfig cfg_;
  DType in_ = DType::F32;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Blas> blas_;
  std::vector<void*> allocations_;
  float *word_ = nullptr, *position_ = nullptr, *type_ = nullptr, *ln_w_ = nullptr, *ln_b_ = nullptr;
  std::vector<Layer> layers_;
  // a task model's head (head_ < 0: none) and adapters
  int32_t head_ = -1;
  int64_t labels_ = 0, adapter_size_ = 0;
  int32_t adapter_act_ = 0;
  float *head_w_ = nullptr, *head_b_ = nullptr;  // fp32
  // batch buffers, for the largest B x T so far
  int64_t cap_tokens_ = 0, cap_scores_ = 0;
  float *x_ = nullptr, *qkv_ = nullptr, *ctx_ = nullptr, *t1_ = nullptr, *ff_ = nullptr, *scores_ = nullptr;
  float *ad_ = nullptr, *head_in_ = nullptr, *logits_ = nullptr;  // adapters' bottleneck, the head's rows and output
  void* in16_ = nullptr;
  uint16_t* h16_ = nullptr;  // fp16 hidden states of a task batch, before their cast
  int32_t *ids_ = nullptr, *pos_ = nullptr, *types_ = nullptr, *mask_ = nullptr;
  std::vector<void*> buffers_;
  uint64_t weight_bytes_ = 0, buffer_bytes_ = 0;
  // MPNet's relative position bias: the table (host), the bias for rel_T_ tokens (host, GPU)
  std::vector<float> rel_table_, rel_host_;
  float* rel_dev_ = nullptr;
  int64_t rel_T_ = 0, rel_cap_T_ = 0;
  // the fp16 ring of forward_from_f16_batches: two slots of pinned records, masks and outputs,
  // their device copies, the copy stream and the events that order the two streams
  struct Slot {
    uint16_t *pinned_in = nullptr, *dev_in = nullptr;
    int32_t *pinned_mask = nullptr, *dev_mask = nullptr;
    float* pinned_out = nullptr;
    cudaEvent_t copy_start = nullptr, copied = nullptr, consumed = nullptr, computed = nullptr;
  };
  Slot ring_[2];
  int64_t ring_tokens_ = 0;
  cudaStream_t copy_stream_ = nullptr;
  void free_ring();
};

}  // namespace cuda
}  // namespace er
