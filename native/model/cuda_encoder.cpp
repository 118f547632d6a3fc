#include "model/cuda_encoder.h"
#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/nvtx.h"

namespace er {
namespace cuda {

namespace {

size_t elem_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

}  // namespace

CudaEncoder::~CudaEncoder() {
  if (stream_) cudaStreamSynchronize(stream_);
  free_ring();
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
  blas_.reset();
  for (void* p : buffers_) cudaFree(p);
  for (void* p : allocations_) cudaFree(p);
  if (rel_dev_) cudaFree(rel_dev_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaEncoder::upload(void** dst, const float* src, size_t n, bool convert, const char* what) {
  const size_t bytes = n * (convert ? elem_bytes(in_) : 4);
  cudaError_t e = cudaMalloc(dst, bytes);
  if (e != cudaSuccess) return alloc_error(e, bytes, what);
  allocations_.push_back(*dst);
  weight_bytes_ += bytes;
  if (!convert || in_ == DType::F32)
    return error_text(cudaMemcpyAsync(*dst, src, n * 4, cudaMemcpyHostToDevice, stream_), what);
  // through an fp32 staging buffer, converted on the device
  float* tmp = nullptr;
  e = cudaMalloc(&tmp, n * 4);
  if (e != cudaSuccess) return alloc_error(e, n * 4, what);
  std::string err = error_text(cudaMemcpyAsync(tmp, src, n * 4, cudaMemcpyHostToDevice, stream_), what);
  if (err.empty())
    err = in_ == DType::BF16 ? f32_to_bf16((uint16_t*)*dst, tmp, (int64_t)n, stream_)
                             : f32_to_f16((uint16_t*)*dst, tmp, (int64_t)n, stream_);
  if (err.empty()) err = check_stream(stream_, what);
  cudaFree(tmp);
  return err;
}

std::string CudaEncoder::upload_f32(float** dst, const float* src, size_t n, const char* what) {
  void* p = nullptr;
  std::string err = upload(&p, src, n, false, what);
  *dst = (float*)p;
  return err;
}

std::string upload_batch(const BatchBuffers& d, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                         const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t N, int64_t H,
                         cudaStream_t stream) {
  NvtxRange copy("copy the batch to the GPU");
  const size_t n4 = (size_t)N * 4;
  auto up = [&](void* dst, const void* src, size_t bytes, const char* what) {
    return error_text(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), what);
  };
  std::string err = up(d.mask, mask, n4, "copying the mask");
  if (!err.empty()) return err;
  if (hidden) return up(d.x, hidden, n4 * H, "copying the hidden states");
  if (hidden16) {  // half the bytes over the bus; the cast runs on the GPU
    err = up(d.h16, hidden16, (size_t)N * H * 2, "copying the fp16 hidden states");
    return err.empty() ? f16_to_f32(d.x, d.h16, N * H, stream) : err;
  }
  err = up(d.ids, ids, n4, "copying the token ids");
  if (err.empty() && positions) err = up(d.pos, positions, n4, "copying the positions");
  if (err.empty() && types) err = up(d.types, types, n4, "copying the token types");
  return err;
}

std::string check_host(const HostEncoder& h, int device, const char* who) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return error_text(e, "no usable CUDA GPU (cudaGetDeviceCount); use --device cpu");
  if (device < 0 || device >= count)
    return "GPU " + std::to_string(device) + " does not exist (this machine has " + std::to_string(count) + ")";
  const EncoderConfig& c = h.cfg;
  if (c.hidden <= 0 || c.heads <= 0 || c.hidden % c.heads != 0 || c.intermediate <= 0 ||
      (int64_t)h.layer.size() != c.layers)
    return std::string("invalid encoder shape for the ") + who;
  if (c.dis.on || c.mask_embeddings)
    return std::string("the ") + who + " does not run DeBERTa-v2's disentangled attention yet; use --device cpu";
  if (c.rel_buckets > 0 && !h.rel_bias) return "MPNet's relative position bias (encoder.rel_bias) was not given";
  const HostTask& task = h.task;
  if (task.head >= 0 && (task.head > 2 || task.labels < 1 || !task.head_w || !task.head_b ||
                         (task.head == 2 && task.labels != 2)))
    return std::string("invalid task head for the ") + who;
  if (task.adapter_size > 0 && task.adapters.size() != 2 * h.layer.size())
    return "the task model's adapters do not match its layers";
  return "";
}

std::string CudaEncoder::create(const HostEncoder& h, DType in, int device, std::unique_ptr<CudaEncoder>* out) {
  std::string bad = check_host(h, device, "GPU encoder");
  if (!bad.empty()) return bad;
  const EncoderConfig& c = h.cfg;
  const HostTask& task = h.task;
  if (task.adapter_size > 0 && c.intermediate < c.hidden)
    return "the GPU encoder runs adapters only where the FFN is at least as wide as the hidden size";
  std::unique_ptr<CudaEncoder> enc(new CudaEncoder);
  enc->cfg_ = c;
  if (c.rel_buckets > 0) enc->rel_table_.assign(h.rel_bias, h.rel_bias + c.rel_buckets * c.heads);
  enc->in_ = in;
  enc->device_ = device;
  std::string err = error_text(cudaSetDevice(device), "cudaSetDevice");
  if (err.empty()) err = error_text(cudaStreamCreateWithFlags(&enc->stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  if (err.empty()) err = Blas::create(enc->stream_, &enc->blas_);
  if (!err.empty()) return err;
  const int64_t H = c.hidden, I = c.intermediate;
  err = enc->upload_f32(&enc->word_, h.emb.word, (size_t)(c.vocab * H), "the word embeddings");
  if (err.empty() && h.emb.position) err = enc->upload_f32(&enc->position_, h.emb.position, (size_t)(c.max_positions * H), "the position embeddings");
  if (err.empty() && h.emb.token_type && c.type_vocab > 0) err = enc->upload_f32(&enc->type_, h.emb.token_type, (size_t)(c.type_vocab * H), "the token-type embeddings");
  if (err.empty()) err = enc->upload_f32(&enc->ln_w_, h.emb.ln_w, (size_t)H, "the embedding LayerNorm");
  if (err.empty()) err = enc->upload_f32(&enc->ln_b_, h.emb.ln_b, (size_t)H, "the embedding LayerNorm");
  std::vector<float> stacked_w((size_t)(3 * H * H)), stacked_b((size_t)(3 * H));
  for (size_t l = 0; err.empty() && l < h.layer.size(); l++) {
    const LayerWeights& w = h.layer[l];
    Layer L;
    const float* qw[3] = {w.q_w, w.k_w, w.v_w};
    const float* qb[3] = {w.q_b, w.k_b, w.v_b};
    for (int j = 0; j < 3; j++) {
      std::memcpy(stacked_w.data() + j * H * H, qw[j], H * H * sizeof(float));
      std::memcpy(stacked_b.data() + j * H, qb[j], H * sizeof(float));
    }
    err = enc->upload(&L.qkv_w, stacked_w.data(), stacked_w.size(), true, "a layer's Q, K, V");
    if (err.empty()) err = enc->upload_f32(&L.qkv_b, stacked_b.data(), stacked_b.size(), "a layer's Q, K, V bias");
    if (err.empty()) err = check_stream(enc->stream_, "uploading Q, K, V");  // stacked_* are reused
    if (err.empty()) err = enc->upload(&L.o_w, w.o_w, (size_t)(H * H), true, "a layer's attention output");
    if (err.empty()) err = enc->upload_f32(&L.o_b, w.o_b, (size_t)H, "a layer's attention output bias");
    if (err.empty()) err = enc->upload_f32(&L.ln1_w, w.ln1_w, (size_t)H, "a layer's LayerNorm");
    if (err.empty()) err = enc->upload_f32(&L.ln1_b, w.ln1_b, (size_t)H, "a layer's LayerNorm");
    if (err.empty()) err = enc->upload(&L.f1_w, w.ffn_in_w, (size_t)(I * H), true, "a layer's FFN");
    if (err.empty()) err = enc->upload_f32(&L.f1_b, w.ffn_in_b, (size_t)I, "a layer's FFN bias");
    if (err.empty()) err = enc->upload(&L.f2_w, w.ffn_out_w, (size_t)(H * I), true, "a layer's FFN");
    if (err.empty()) err = enc->upload_f32(&L.f2_b, w.ffn_out_b, (size_t)H, "a layer's FFN bias");
    if (err.empty()) err = enc->upload_f32(&L.ln2_w, w.ln2_w, (size_t)H, "a layer's LayerNorm");
    if (err.empty()) err = enc->upload_f32(&L.ln2_b, w.ln2_b, (size_t)H, "a layer's LayerNorm");
    if (err.empty() && task.adapter_size > 0) {
      const int64_t b = task.adapter_size;
      for (int site = 0; site < 2 && err.empty(); site++) {
        const HostAdapter& a = task.adapters[2 * l + site];
        if (!a.dw) continue;
        err = enc->upload(&L.ad_dw[site], a.dw, (size_t)(b * H), true, "an adapter");
        if (err.empty()) err = enc->upload_f32(&L.ad_db[site], a.db, (size_t)b, "an adapter's bias");
        if (err.empty()) err = enc->upload(&L.ad_uw[site], a.uw, (size_t)(H * b), true, "an adapter");
        if (err.empty()) err = enc->upload_f32(&L.ad_ub[site], a.ub, (size_t)H, "an adapter's bias");
      }
    }
    enc->layers_.push_back(L);
  }
  if (err.empty() && task.head >= 0) {
    enc->head_ = task.head;
    enc->labels_ = task.labels;
    err = enc->upload_f32(&enc->head_w_, task.head_w, (size_t)(task.labels * H), "the task head");
    if (err.empty()) err = enc->upload_f32(&enc->head_b_, task.head_b, (size_t)task.labels, "the task head's bias");
  }
  enc->adapter_size_ = task.adapter_size;
  enc->adapter_act_ = task.adapter_act;
  if (err.empty()) err = check_stream(enc->stream_, "uploading the encoder's weights");
  if (err.empty()) *out = std::move(enc);
  return err;
}

std::string CudaEncoder::reserve(int64_t B, int64_t T) {
  const int64_t N = B * T, H = cfg_.hidden, I = cfg_.intermediate, scores = B * cfg_.heads * T * T;
  if (N <= cap_tokens_ && scores <= cap_scores_) return "";
  cudaStreamSynchronize(stream_);  // the old buffers may still be in use
  for (void* p : buffers_) cudaFree(p);
  buffers_.clear();
  buffer_bytes_ = 0;
  cap_tokens_ = cap_scores_ = 0;
  auto get = [&](void** p, size_t bytes, const char* what) -> std::string {
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) return alloc_error(e, bytes, what);
    buffers_.push_back(*p);
    buffer_bytes_ += bytes;
    return "";
  };
  const std::string what = "a batch of " + std::to_string(B) + " x " + std::to_string(T) + " tokens";
  std::string err = get((void**)&x_, N * H * 4, what.c_str());
  if (err.empty()) err = get((void**)&qkv_, N * 3 * H * 4, what.c_str());
  if (err.empty()) err = get((void**)&ctx_, N * H * 4, what.c_str());
  if (err.empty()) err = get((void**)&t1_, N * H * 4, what.c_str());
  if (err.empty()) err = get((void**)&ff_, N * I * 4, what.c_str());
  if (err.empty()) err = get((void**)&scores_, scores * 4, what.c_str());
  const int64_t widest = std::max(std::max(H, I), adapter_size_);
  if (err.empty() && in_ != DType::F32) err = get(&in16_, N * widest * 2, what.c_str());
  if (err.empty() && adapter_size_ > 0) err = get((void**)&ad_, N * adapter_size_ * 4, what.c_str());
  if (err.empty() && head_ >= 0) err = get((void**)&head_in_, N * H * 4, what.c_str());
  if (err.empty() && head_ >= 0) err = get((void**)&logits_, N * labels_ * 4, what.c_str());
  if (err.empty() && head_ >= 0) err = get((void**)&h16_, N * H * 2, what.c_str());
  for (int32_t** p : {&ids_, &pos_, &types_, &mask_})
    if (err.empty()) err = get((void**)p, N * 4, what.c_str());
  if (!err.empty()) return err;
  cap_tokens_ = N;
  cap_scores_ = scores;
  return "";
}

std::string CudaEncoder::relative_bias_for(int64_t T) {
  if (T == rel_T_) return "";
  const size_t n = (size_t)(cfg_.heads * (2 * T - 1));
  if (T > rel_cap_T_) {
    cudaStreamSynchronize(stream_);  // the old bias may still be read
    if (rel_dev_) cudaFree(rel_dev_);
    rel_dev_ = nullptr;
    rel_cap_T_ = 0;
    cudaError_t e = cudaMalloc(&rel_dev_, n * 4);
    if (e != cudaSuccess) return alloc_error(e, n * 4, "MPNet's relative position bias");
    rel_cap_T_ = T;
  }
  relative_bias(cfg_, rel_table_.data(), T, rel_host_);
  // pageable memory: the call returns once rel_host_ has been staged, so it may change after
  std::string err = error_text(cudaMemcpyAsync(rel_dev_, rel_host_.data(), n * 4, cudaMemcpyHostToDevice, stream_),
                               "copying MPNet's relative position bias");
  rel_T_ = err.empty() ? T : 0;
  return err;
}

std::string CudaEncoder::linear(float* out, const float* x, const void* W, const float* b, int64_t N, int64_t C,
                                int64_t OC) {
  if (in_ == DType::F32) return blas_->gemm(false, true, N, OC, C, 1.0f, x, C, W, C, 0.0f, out, OC, b, DType::F32);
  std::string err = in_ == DType::BF16 ? f32_to_bf16((uint16_t*)in16_, x, N * C, stream_)
                                       : f32_to_f16((uint16_t*)in16_, x, N * C, stream_);
  if (!err.empty()) return err;
  return blas_->gemm(false, true, N, OC, C, 1.0f, in16_, C, W, C, 0.0f, out, OC, b, in_);
}

std::string CudaEncoder::adapter(float* a, float* tmp, const Layer& L, int site, int64_t N) {
  const int64_t H = cfg_.hidden, b = adapter_size_;
  std::string err = linear(ad_, a, L.ad_dw[site], L.ad_db[site], N, H, b);
  if (err.empty())
    err = adapter_act_ == 1 ? relu_forward(ad_, ad_, N * b, stream_) : bias_gelu_forward(ad_, ad_, nullptr, N, b, stream_);
  if (err.empty()) err = linear(tmp, ad_, L.ad_uw[site], L.ad_ub[site], N, b, H);
  if (err.empty()) err = add_into(a, tmp, N * H, stream_);
  return err.empty() ? err : err + " (adapter)";
}

std::string CudaEncoder::blocks(float* x, const int32_t* mask, int64_t B, int64_t T, int64_t from, int64_t to) {
  const int64_t N = B * T, H = cfg_.hidden, I = cfg_.intermediate, heads = cfg_.heads, d = H / heads;
  const float scale = 1.0f / std::sqrt((float)d);
  const bool rel = cfg_.rel_buckets > 0;
  if (rel && from < to) {
    std::string err = relative_bias_for(T);
    if (!err.empty()) return err;
  }
  for (int64_t l = from; l < to; l++) {
    NvtxRange range("layer " + std::to_string(l + 1) + " forward");
    const Layer& L = layers_[l];
    std::string err = linear(qkv_, x, L.qkv_w, L.qkv_b, N, H, 3 * H);
    // attention per batch row, all heads in one strided-batched product
    for (int64_t b = 0; err.empty() && b < B; b++) {
      const float* q = qkv_ + b * T * 3 * H;
      err = blas_->gemm_batched(false, true, T, T, d, scale, q, 3 * H, d, q + H, 3 * H, d, 0.0f,
                                scores_ + b * heads * T * T, T, T * T, heads);
    }
    if (err.empty() && rel) err = add_relative_bias(scores_, rel_dev_, B, heads, T, stream_);
    if (err.empty()) err = softmax_masked_batched(scores_, mask, 1.0f, B, heads * T, T, stream_);
    for (int64_t b = 0; err.empty() && b < B; b++) {
      const float* v = qkv_ + b * T * 3 * H + 2 * H;
      err = blas_->gemm_batched(false, false, T, d, T, 1.0f, scores_ + b * heads * T * T, T, T * T, v, 3 * H, d, 0.0f,
                                ctx_ + b * T * H, H, d, heads);
    }
    if (err.empty()) err = linear(t1_, ctx_, L.o_w, L.o_b, N, H, H);
    if (err.empty() && L.ad_dw[0]) err = adapter(t1_, ctx_, L, 0, N);  // ctx_ is free again
    if (err.empty()) err = layernorm_forward(t1_, nullptr, nullptr, t1_, x, L.ln1_w, L.ln1_b, N, H, cfg_.eps, stream_);
    if (err.empty()) err = linear(ff_, t1_, L.f1_w, L.f1_b, N, H, I);
    if (err.empty()) err = bias_gelu_forward(ff_, ff_, nullptr, N, I, stream_);
    if (err.empty()) err = linear(ctx_, ff_, L.f2_w, L.f2_b, N, I, H);
    if (err.empty() && L.ad_dw[1]) err = adapter(ctx_, ff_, L, 1, N);  // ff_ (N, I >= H) is free again
    if (err.empty()) err = layernorm_forward(x, nullptr, nullptr, ctx_, t1_, L.ln2_w, L.ln2_b, N, H, cfg_.eps, stream_);
    if (!err.empty()) return err + " in layer " + std::to_string(l + 1);
  }
  return "";
}

std::string CudaEncoder::forward_device(float* out, const int32_t* ids, const int32_t* positions,
                                        const int32_t* types, const int32_t* mask, int64_t B, int64_t T,
                                        int64_t to_layer) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  if (to_layer < 0 || to_layer > cfg_.layers)
    return "toLayer " + std::to_string(to_layer) + " is out of range 0.." + std::to_string(cfg_.layers);
  std::string err = reserve(B, T);
  if (!err.empty()) return err;
  const int64_t N = B * T, H = cfg_.hidden;
  err = embedding_sum(out, word_, position_, type_, ids, positions, types, N, H, stream_);
  if (err.empty()) err = layernorm_forward(out, nullptr, nullptr, out, nullptr, ln_w_, ln_b_, N, H, cfg_.eps, stream_);
  if (err.empty()) err = blocks(out, mask, B, T, 0, to_layer);
  return err;
}

std::string CudaEncoder::forward_from_device(float* out, const float* hidden, const int32_t* mask, int64_t B,
                                             int64_t T, int64_t from_layer, int64_t to_layer) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  if (from_layer < 0 || from_layer > cfg_.layers || to_layer < from_layer || to_layer > cfg_.layers)
    return "layers " + std::to_string(from_layer) + ".." + std::to_string(to_layer) + " are out of range 0.." +
           std::to_string(cfg_.layers);
  std::string err = reserve(B, T);
  if (!err.empty()) return err;
  if (out != hidden) {
    err = error_text(cudaMemcpyAsync(out, hidden, B * T * cfg_.hidden * 4, cudaMemcpyDeviceToDevice, stream_),
                     "copying the hidden states");
    if (!err.empty()) return err;
  }
  return blocks(out, mask, B, T, from_layer, to_layer);
}

std::string CudaEncoder::check_ids(const int32_t* ids, const int32_t* positions, const int32_t* types, int64_t N) const {
  for (int64_t i = 0; i < N; i++) {  // the kernels index tables with these: check them here
    if (ids[i] < 0 || ids[i] >= cfg_.vocab) return "token id out of range at " + std::to_string(i);
    if (position_ && (positions[i] < 0 || positions[i] >= cfg_.max_positions))
      return "position id out of range at " + std::to_string(i);
    if (types && type_ && (types[i] < 0 || types[i] >= cfg_.type_vocab))
      return "token type id out of range at " + std::to_string(i);
  }
  return "";
}

std::string CudaEncoder::forward(float* out, const int32_t* ids, const int32_t* positions, const int32_t* types,
                                 const int32_t* mask, int64_t B, int64_t T, int64_t to_layer) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  const int64_t N = B * T;
  std::string bad = check_ids(ids, positions, types, N);
  if (!bad.empty()) return bad;
  NvtxRange range("forward " + std::to_string(B) + " x " + std::to_string(T) + " to layer " + std::to_string(to_layer));
  std::string err = reserve(B, T);
  if (!err.empty()) return err;
  const size_t bytes = (size_t)N * 4;
  {
    NvtxRange copy("copy the batch to the GPU");
    err = error_text(cudaMemcpyAsync(ids_, ids, bytes, cudaMemcpyHostToDevice, stream_), "copying the token ids");
    if (err.empty()) err = error_text(cudaMemcpyAsync(pos_, positions, bytes, cudaMemcpyHostToDevice, stream_), "copying the positions");
    if (err.empty() && types) err = error_text(cudaMemcpyAsync(types_, types, bytes, cudaMemcpyHostToDevice, stream_), "copying the token types");
    if (err.empty()) err = error_text(cudaMemcpyAsync(mask_, mask, bytes, cudaMemcpyHostToDevice, stream_), "copying the mask");
  }
  if (err.empty()) err = forward_device(x_, ids_, pos_, types ? types_ : nullptr, mask_, B, T, to_layer);
  NvtxRange back("copy the hidden states to the host (waits for the GPU)");
  if (err.empty())
    err = error_text(cudaMemcpyAsync(out, x_, (size_t)N * cfg_.hidden * 4, cudaMemcpyDeviceToHost, stream_),
                     "copying the hidden states back");
  if (err.empty()) err = check_stream(stream_, "the GPU forward pass");
  return err;
}

std::string CudaEncoder::forward_from(float* out, const float* hidden, const int32_t* mask, int64_t B, int64_t T,
                                      int64_t from_layer, int64_t to_layer) {
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  NvtxRange range("forward " + std::to_string(B) + " x " + std::to_string(T) + " from layer " +
                  std::to_string(from_layer) + " to " + std::to_string(to_layer));
  std::string err = reserve(B, T);
  if (!err.empty()) return err;
  const size_t N = (size_t)(B * T), bytes = N * cfg_.hidden * 4;
  {
    NvtxRange copy("copy the hidden states to the GPU");
    err = error_text(cudaMemcpyAsync(x_, hidden, bytes, cudaMemcpyHostToDevice, stream_), "copying the hidden states");
    if (err.empty()) err = error_text(cudaMemcpyAsync(mask_, mask, N * 4, cudaMemcpyHostToDevice, stream_), "copying the mask");
  }
  if (err.empty()) err = forward_from_device(x_, x_, mask_, B, T, from_layer, to_layer);
  NvtxRange back("copy the hidden states to the host (waits for the GPU)");
  if (err.empty())
    err = error_text(cudaMemcpyAsync(out, x_, bytes, cudaMemcpyDeviceToHost, stream_), "copying the hidden states back");
  if (err.empty()) err = check_stream(stream_, "the GPU forward pass");
  return err;
}

std::string CudaEncoder::task_forward(float* logits, const float* hidden, const uint16_t* hidden16, const int32_t* ids,
                                      const int32_t* positions, const int32_t* types, const int32_t* mask, int64_t B,
                                      int64_t T, int64_t from_layer) {
  if (head_ < 0) return "this GPU encoder has no task head";
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  const int64_t N = B * T, H = cfg_.hidden;
  if (hidden && hidden16) return "give the hidden states in fp32 or in fp16, not both";
  const bool states = hidden || hidden16;
  if (states && (from_layer < 0 || from_layer > cfg_.layers))
    return "fromLayer " + std::to_string(from_layer) + " is out of range 0.." + std::to_string(cfg_.layers);
  if (!states) {
    std::string bad = check_ids(ids, positions, types, N);
    if (!bad.empty()) return bad;
  }
  NvtxRange range("task batch " + std::to_string(B) + " x " + std::to_string(T));
  std::string err = reserve(B, T);
  if (!err.empty()) return err;
  err = upload_batch({mask_, ids_, pos_, types_, x_, h16_}, hidden, hidden16, ids, positions, types, mask, N, H, stream_);
  if (err.empty())
    err = states ? forward_from_device(x_, x_, mask_, B, T, from_layer, cfg_.layers)
                 : forward_device(x_, ids_, pos_, types ? types_ : nullptr, mask_, B, T, cfg_.layers);
  // the head: each row's first token (sequence) or every token, through an fp32 linear layer
  const bool seq = head_ == 0;
  const int64_t R = seq ? B : N;
  const float* rows = x_;
  if (err.empty() && seq) {
    err = error_text(cudaMemcpy2DAsync(head_in_, H * 4, x_, T * H * 4, H * 4, B, cudaMemcpyDeviceToDevice, stream_),
                     "gathering the first tokens");
    rows = head_in_;
  }
  if (err.empty()) {
    NvtxRange hr("task head");
    err = blas_->gemm(false, true, R, labels_, H, 1.0f, rows, H, head_w_, H, 0.0f, logits_, labels_, head_b_, DType::F32);
  }
  NvtxRange back("copy the logits to the host (waits for the GPU)");
  if (err.empty())
    err = error_text(cudaMemcpyAsync(logits, logits_, (size_t)(R * labels_) * 4, cudaMemcpyDeviceToHost, stream_),
                     "copying the logits back");
  if (err.empty()) err = check_stream(stream_, "the GPU task forward pass");
  return err;
}

void CudaEncoder::free_ring() {
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  for (Slot& r : ring_) {
    if (r.pinned_in) cudaFreeHost(r.pinned_in);
    if (r.pinned_mask) cudaFreeHost(r.pinned_mask);
    if (r.pinned_out) cudaFreeHost(r.pinned_out);
    if (r.dev_in) cudaFree(r.dev_in);
    if (r.dev_mask) cudaFree(r.dev_mask);
    for (cudaEvent_t e : {r.copy_start, r.copied, r.consumed, r.computed})
      if (e) cudaEventDestroy(e);
    r = Slot{};
  }
  ring_tokens_ = 0;
}

std::string CudaEncoder::reserve_ring(int64_t B, int64_t T) {
  const int64_t N = B * T, H = cfg_.hidden;
  if (N <= ring_tokens_) return "";
  cudaStreamSynchronize(stream_);
  free_ring();
  std::string err;
  if (!copy_stream_) err = error_text(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "the copy stream");
  const std::string what = "the fp16 ring for " + std::to_string(B) + " x " + std::to_string(T) + " tokens";
  for (Slot& r : ring_) {
    auto host = [&](void** p, size_t bytes) {
      if (!err.empty()) return;
      cudaError_t e = cudaHostAlloc(p, bytes, cudaHostAllocDefault);
      if (e != cudaSuccess) err = "cannot pin " + std::to_string(bytes >> 20) + " MiB of host memory for " + what + " (" +
                                  cudaGetErrorString(e) + "); use a smaller batch";
    };
    auto dev = [&](void** p, size_t bytes) {
      if (!err.empty()) return;
      cudaError_t e = cudaMalloc(p, bytes);
      if (e != cudaSuccess) err = alloc_error(e, bytes, what.c_str());
    };
    host((void**)&r.pinned_in, (size_t)(N * H * 2));
    host((void**)&r.pinned_mask, (size_t)(N * 4));
    host((void**)&r.pinned_out, (size_t)(N * H * 4));
    dev((void**)&r.dev_in, (size_t)(N * H * 2));
    dev((void**)&r.dev_mask, (size_t)(N * 4));
    for (cudaEvent_t* e : {&r.copy_start, &r.copied, &r.consumed, &r.computed})
      if (err.empty()) err = error_text(cudaEventCreate(e), "cudaEventCreate");
  }
  if (!err.empty()) {
    free_ring();
    return err;
  }
  ring_tokens_ = N;
  return "";
}

std::string CudaEncoder::forward_from_f16_batches(int64_t n, const uint16_t* const* hidden, const int32_t* const* masks,
                                                  int64_t B, int64_t T, int64_t from_layer, int64_t to_layer,
                                                  float* const* out, PipelineStats* stats) {
  if (n <= 0) return "";
  if (B <= 0 || T <= 0) return "batch must have at least one row and one position";
  if (from_layer < 0 || to_layer < from_layer || to_layer > cfg_.layers)
    return "layers " + std::to_string(from_layer) + ".." + std::to_string(to_layer) + " are out of range 0.." +
           std::to_string(cfg_.layers);
  NvtxRange range("recycled forward of " + std::to_string(n) + " fp16 batches of " + std::to_string(B) + " x " +
                  std::to_string(T));
  std::string err = reserve(B, T);
  if (err.empty()) err = reserve_ring(B, T);
  if (!err.empty()) return err;
  const int64_t N = B * T, H = cfg_.hidden;
  const size_t rec_bytes = (size_t)(N * H * 2), mask_bytes = (size_t)(N * 4), out_bytes = (size_t)(N * H * 4);
  double copy_ms = 0;
  const auto t0 = std::chrono::steady_clock::now();
  // the host side of batch i: wait until its output is back, then hand it to the caller
  auto drain = [&](int64_t i) -> std::string {
    Slot& r = ring_[i % 2];
    NvtxRange wait("collect the output of batch " + std::to_string(i));
    std::string e = error_text(cudaEventSynchronize(r.computed), "the recycled forward");
    if (!e.empty()) return e;
    float ms = 0;
    if (cudaEventElapsedTime(&ms, r.copy_start, r.copied) == cudaSuccess) copy_ms += ms;
    std::memcpy(out[i], r.pinned_out, out_bytes);
    return "";
  };
  for (int64_t i = 0; i < n && err.empty(); i++) {
    Slot& r = ring_[i % 2];
    if (i >= 2) err = drain(i - 2);  // also frees slot i % 2: its copy, cast and output are done
    if (!err.empty()) break;
    {
      NvtxRange fill("fill pinned slot " + std::to_string(i % 2) + " with batch " + std::to_string(i));
      std::memcpy(r.pinned_in, hidden[i], rec_bytes);
      std::memcpy(r.pinned_mask, masks[i], mask_bytes);
    }
    err = error_text(cudaEventRecord(r.copy_start, copy_stream_), "the copy stream");
    if (err.empty()) err = error_text(cudaMemcpyAsync(r.dev_in, r.pinned_in, rec_bytes, cudaMemcpyHostToDevice, copy_stream_), "copying fp16 records");
    if (err.empty()) err = error_text(cudaMemcpyAsync(r.dev_mask, r.pinned_mask, mask_bytes, cudaMemcpyHostToDevice, copy_stream_), "copying a mask");
    if (err.empty()) err = error_text(cudaEventRecord(r.copied, copy_stream_), "the copy stream");
    // the compute stream: wait for the records, cast, run the layers, copy the output back
    if (err.empty()) err = error_text(cudaStreamWaitEvent(stream_, r.copied, 0), "ordering the streams");
    if (err.empty()) err = f16_to_f32(x_, r.dev_in, N * H, stream_);
    if (err.empty()) err = error_text(cudaEventRecord(r.consumed, stream_), "the compute stream");
    if (err.empty()) err = blocks(x_, r.dev_mask, B, T, from_layer, to_layer);
    if (err.empty()) err = error_text(cudaMemcpyAsync(r.pinned_out, x_, out_bytes, cudaMemcpyDeviceToHost, stream_), "copying an output back");
    if (err.empty()) err = error_text(cudaEventRecord(r.computed, stream_), "the compute stream");
  }
  for (int64_t i = n >= 2 ? n - 2 : 0; i < n && err.empty(); i++) err = drain(i);
  if (err.empty()) err = check_stream(stream_, "the recycled forward");
  if (stats) {
    stats->copy_ms = copy_ms;
    stats->total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  return err;
}

}  // namespace cuda
}  // namespace er
