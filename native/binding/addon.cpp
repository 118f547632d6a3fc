// N-API glue only: argument guards, conversion, handing work to the compute thread. No maths here.
// The TypeScript side (src/native/binding.ts) validates arguments with precise
// messages; these guards are the cheap second line.
#include <napi.h>
#include "binding/args.h"
#include "binding/compute.h"
#include "binding/cuda.h"
#include <dnnl.h>
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include "kernels/ops.h"
#include "kernels/crc32c.h"
#include "kernels/linear.h"
#include "model/encoder.h"

void init_store(Napi::Env env, Napi::Object exports);
void init_train(Napi::Env env, Napi::Object exports);
void init_sqlite(Napi::Env env, Napi::Object exports);
std::shared_ptr<er::Encoder> unwrap_encoder(const Napi::Value& v);
Napi::Value CudaInfo(const Napi::CallbackInfo& info);

namespace {

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : (int)n;
}

int64_t get_int(const Napi::Object& o, const char* key, int64_t lo = 0, int64_t hi = er_binding::kMaxDim) {
  return er_binding::get_int(o.Get(key), (std::string("config.") + key).c_str(), lo, hi);
}


// Output memory handed to JavaScript without a copy; freed by the finalizer.
Napi::Float32Array adopt_floats(Napi::Env env, std::vector<float>* buf) {
  size_t bytes = buf->size() * sizeof(float);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, buf->data(), bytes, [](Napi::Env e, void*, std::vector<float>* v) {
        Napi::MemoryManagement::AdjustExternalMemory(e, -(int64_t)(v->size() * sizeof(float)));
        delete v;
      }, buf);
  Napi::MemoryManagement::AdjustExternalMemory(env, (int64_t)bytes);
  return Napi::Float32Array::New(env, buf->size(), ab, 0);
}

class EncoderHandle : public Napi::ObjectWrap<EncoderHandle> {
 public:
  static Napi::FunctionReference* ctor;
  struct LoadSpec;
  static LoadSpec* adopting;  // JavaScript thread only
  std::shared_ptr<er::Encoder> encoder() const { return enc_; }
  bool on_gpu() const { return gpu_ != nullptr; }

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeEncoder",
                       {InstanceMethod("forward", &EncoderHandle::Forward),
                        InstanceMethod("forwardFrom", &EncoderHandle::ForwardFrom),
                        InstanceMethod("memory", &EncoderHandle::Memory),
                        InstanceMethod("close", &EncoderHandle::Close)});
  }

  // new NativeEncoder(config, tensors); loadEncoder's completion constructs one with no
  // arguments while `adopting` holds the encoder it loaded (no napi External: its wrapper
  // would outlive the process when the GC never ran)
  // config: {vocab, hidden, layers, heads, intermediate, maxPositions, typeVocab, eps, precision}
  // tensors: [{slot, file, offset, bytes, dtype: 0 F32 | 1 F16 | 2 BF16, count}]
  EncoderHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EncoderHandle>(info) {
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kEncoderTag);
    if (adopting && info.Length() == 0) {
      enc_ = std::move(adopting->enc);
      gpu_ = std::move(adopting->gpu);
      adopting = nullptr;
      return;
    }
    LoadSpec spec = parse_load(info);
    std::string err = load_weights(spec);
    THROW_IF(!err.empty(), err);
    enc_ = std::move(spec.enc);
    gpu_ = std::move(spec.gpu);
  }

  // What loading an encoder needs, read from JavaScript values on the JavaScript thread.
  struct TensorSpec {
    std::string slot, file;
    uint64_t offset, bytes, count;
    int32_t dtype;
  };
  struct LoadSpec {
    std::shared_ptr<er::Encoder> enc;
    std::vector<TensorSpec> tensors;
    std::string precision;
    // device 'cuda': the weights go on to GPU `gpu_index` (the host copy stays mapped, not prepacked)
    bool cuda = false;
    int32_t gpu_index = 0;
    std::shared_ptr<er_binding::GpuEncoder> gpu;
  };

  static LoadSpec parse_load(const Napi::CallbackInfo& info) {
    THROW_IF(info.Length() < 2 || !info[0].IsObject() || !info[1].IsArray(),
             "NativeEncoder(config, tensors) expects an object and an array");
    LoadSpec spec;
    spec.enc = std::make_shared<er::Encoder>();
    er::EncoderConfig& c = spec.enc->cfg;
    Napi::Object cfg = info[0].As<Napi::Object>();
    c.vocab = get_int(cfg, "vocab");
    c.hidden = get_int(cfg, "hidden");
    c.layers = get_int(cfg, "layers");
    c.heads = get_int(cfg, "heads");
    c.intermediate = get_int(cfg, "intermediate");
    c.max_positions = get_int(cfg, "maxPositions");
    c.type_vocab = get_int(cfg, "typeVocab");
    c.eps = (float)er_binding::get_number(cfg.Get("eps"), "config.eps");
    if (!cfg.Get("relBuckets").IsUndefined()) c.rel_buckets = get_int(cfg, "relBuckets", 0, 1 << 16);
    if (!cfg.Get("relMaxDistance").IsUndefined()) c.rel_max_distance = get_int(cfg, "relMaxDistance", 1, 1 << 20);
    auto flag = [&](const Napi::Object& o, const char* where, const char* key, bool fallback) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) return fallback;
      THROW_IF(!v.IsBoolean(), std::string(where) + key + " must be a boolean");
      return v.As<Napi::Boolean>().Value();
    };
    Napi::Value disv = cfg.Get("disentangled");
    if (!disv.IsUndefined() && !disv.IsNull()) {
      THROW_IF(!disv.IsObject(), "config.disentangled must be an object");
      Napi::Object d = disv.As<Napi::Object>();
      er::DisentangledConfig& dc = c.dis;
      dc.on = flag(d, "config.disentangled.", "relativeAttention", false);
      dc.c2p = flag(d, "config.disentangled.", "c2p", false);
      dc.p2c = flag(d, "config.disentangled.", "p2c", false);
      dc.share_key = flag(d, "config.disentangled.", "shareKey", true);
      dc.rel_ln = flag(d, "config.disentangled.", "relLayerNorm", false);
      // DeBERTa-v2's embeddings: absolute positions only when position_biased_input, times the mask
      c.abs_positions = flag(d, "config.disentangled.", "absolutePositions", true);
      c.mask_embeddings = true;
      dc.buckets = er_binding::get_int(d.Get("buckets"), "config.disentangled.buckets", -1, 1 << 16);
      dc.max_relative = er_binding::get_int(d.Get("maxRelative"), "config.disentangled.maxRelative", 1, 1 << 20);
      dc.span = dc.buckets > 0 ? dc.buckets : dc.max_relative;
      dc.scale_factor = 1.0f + (dc.c2p ? 1.0f : 0.0f) + (dc.p2c ? 1.0f : 0.0f);
    }
    THROW_IF(c.vocab <= 0 || c.hidden <= 0 || c.layers < 0 || c.heads <= 0 ||
                 c.hidden % c.heads != 0 || c.intermediate <= 0 || c.max_positions <= 0 ||
                 c.type_vocab < 0,
             "invalid encoder config");
    spec.enc->layer.assign(c.layers, er::LayerWeights{});
    Napi::Value prec = cfg.Get("precision");
    spec.precision = prec.IsString() ? prec.As<Napi::String>().Utf8Value() : "fp32";
    Napi::Value dev = cfg.Get("device");
    THROW_IF(!dev.IsUndefined() && !dev.IsString(), "config.device must be 'cpu' or 'cuda'");
    const std::string device = dev.IsString() ? dev.As<Napi::String>().Utf8Value() : "cpu";
    THROW_IF(device != "cpu" && device != "cuda", "config.device must be 'cpu' or 'cuda', got '" + device + "'");
    spec.cuda = device == "cuda";
    if (spec.cuda && !cfg.Get("gpu").IsUndefined()) spec.gpu_index = (int32_t)get_int(cfg, "gpu", 0, 1023);
    if (spec.cuda)
      THROW_IF(spec.precision != "fp32" && spec.precision != "bf16" && spec.precision != "fp16",
               "precision must be 'fp32', 'bf16' or 'fp16' on device 'cuda'");
    else
      THROW_IF(spec.precision != "fp32" && spec.precision != "bf16", "precision must be 'fp32' or 'bf16'");
    Napi::Array tensors = info[1].As<Napi::Array>();
    const int64_t kMaxBytes = int64_t(1) << 50;
    for (uint32_t i = 0; i < tensors.Length(); i++) {
      Napi::Value tv = tensors.Get(i);
      THROW_IF(!tv.IsObject(), "tensors[" + std::to_string(i) + "] must be an object");
      Napi::Object t = tv.As<Napi::Object>();
      THROW_IF(!t.Get("slot").IsString() || !t.Get("file").IsString(),
               "tensors[" + std::to_string(i) + "]: slot and file must be strings");
      TensorSpec ts;
      ts.slot = t.Get("slot").As<Napi::String>().Utf8Value();
      ts.file = t.Get("file").As<Napi::String>().Utf8Value();
      ts.offset = (uint64_t)er_binding::get_int(t.Get("offset"), "tensor offset", 0, kMaxBytes);
      ts.bytes = (uint64_t)er_binding::get_int(t.Get("bytes"), "tensor bytes", 0, kMaxBytes);
      ts.dtype = (int32_t)er_binding::get_int(t.Get("dtype"), "tensor dtype", 0, 2);
      ts.count = (uint64_t)er_binding::get_int(t.Get("count"), "tensor count", 0, kMaxBytes);
      THROW_IF(slot_pointer(*spec.enc, ts.slot, ts.count) == nullptr,
               "tensor " + ts.slot + ": unknown slot or wrong element count");
      spec.tensors.push_back(std::move(ts));
    }
    return spec;
  }

  // Maps (or widens) every tensor and prepares the linear layers: the heavy part of
  // loading, on any thread. Returns an error message or "".
  static std::string load_weights(LoadSpec& spec) {
    er::Encoder& enc = *spec.enc;
    try {
      for (const TensorSpec& t : spec.tensors)
        *slot_pointer(enc, t.slot, t.count) = enc.weights.tensor(t.file, t.offset, t.bytes, (er::WeightDtype)t.dtype, t.count);
    } catch (const std::bad_alloc&) {
      return "cannot allocate memory to widen the F16/BF16 weights to F32; free memory or use an F32 checkpoint";
    } catch (const std::exception& e) {
      return e.what();
    }
    std::string missing = missing_slot(enc);
    if (!missing.empty()) return "tensor " + missing + " was not given";
    if (spec.cuda) {
      er::cuda::HostEncoder host{enc.cfg, enc.emb, enc.layer, enc.rel_bias};
      try {
        return er_binding::GpuEncoder::create(host, er_binding::backend_precision(spec.precision), spec.gpu_index,
                                              &spec.gpu);
      } catch (const std::exception& e) {
        return std::string("cannot load the encoder onto the GPU: ") + e.what();
      }
    }
    try {
      return er::encoder_set_precision(enc, spec.precision == "bf16" ? er::Precision::BF16 : er::Precision::FP32);
    } catch (const std::bad_alloc&) {
      return "cannot allocate the prepacked " + spec.precision + " weights; use precision 'fp32' or free memory";
    } catch (const std::exception& e) {
      return std::string("cannot prepare the encoder's weights: ") + e.what();
    }
  }

  class LoadWorker : public Napi::AsyncWorker {
   public:
    LoadWorker(Napi::Env env, LoadSpec spec)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), spec_(std::move(spec)) {}
    Napi::Promise::Deferred deferred;
    void Execute() override {
      std::string err = load_weights(spec_);
      if (!err.empty()) SetError(err);
    }
    void OnOK() override {
      adopting = &spec_;
      Napi::Object o = ctor->Value().New({});
      adopting = nullptr;
      deferred.Resolve(o);
    }
    void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

   private:
    LoadSpec spec_;
  };

  // loadEncoder(config, tensors) -> Promise<NativeEncoder>: the weights are mapped,
  // widened and prepacked in libuv's pool (file I/O and copies), not on the JavaScript thread.
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    auto* w = new LoadWorker(info.Env(), parse_load(info));
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

 private:
  // Canonical slot names (the TypeScript family tables map checkpoint names onto them).
  static const float** slot_pointer(er::Encoder& enc, const std::string& slot, uint64_t count) {
    const er::EncoderConfig& c = enc.cfg;
    uint64_t H = c.hidden, I = c.intermediate;
    er::EmbeddingTables& e = enc.emb;
    if (slot == "embeddings.word") return count == c.vocab * H ? &e.word : nullptr;
    if (slot == "embeddings.position") return count == c.max_positions * H ? &e.position : nullptr;
    if (slot == "embeddings.token_type")
      return c.type_vocab > 0 && count == c.type_vocab * H ? &e.token_type : nullptr;
    if (slot == "embeddings.ln.weight") return count == H ? &e.ln_w : nullptr;
    if (slot == "embeddings.ln.bias") return count == H ? &e.ln_b : nullptr;
    if (slot == "encoder.rel_bias")
      return c.rel_buckets > 0 && count == (uint64_t)(c.rel_buckets * c.heads) ? &enc.rel_bias : nullptr;
    if (slot == "encoder.rel_embeddings")
      return c.dis.on && count == (uint64_t)(2 * c.dis.span) * H ? &enc.rel_emb : nullptr;
    if (slot == "encoder.rel_ln.weight") return c.dis.rel_ln && count == H ? &enc.rel_ln_w : nullptr;
    if (slot == "encoder.rel_ln.bias") return c.dis.rel_ln && count == H ? &enc.rel_ln_b : nullptr;
    if (slot.rfind("layer.", 0) != 0) return nullptr;
    size_t dot = slot.find('.', 6);
    if (dot == std::string::npos) return nullptr;
    int64_t l = -1;
    try {
      l = std::stoll(slot.substr(6, dot - 6));
    } catch (...) {
      return nullptr;
    }
    if (l < 0 || l >= c.layers) return nullptr;
    er::LayerWeights& w = enc.layer[l];
    std::string name = slot.substr(dot + 1);
    struct Entry { const char* name; const float** ptr; uint64_t count; };
    const Entry entries[] = {
        {"attn.q.weight", &w.q_w, H * H},         {"attn.q.bias", &w.q_b, H},
        {"attn.k.weight", &w.k_w, H * H},         {"attn.k.bias", &w.k_b, H},
        {"attn.v.weight", &w.v_w, H * H},         {"attn.v.bias", &w.v_b, H},
        {"attn.out.weight", &w.o_w, H * H},       {"attn.out.bias", &w.o_b, H},
        {"attn.ln.weight", &w.ln1_w, H},          {"attn.ln.bias", &w.ln1_b, H},
        {"ffn.in.weight", &w.ffn_in_w, I * H},    {"ffn.in.bias", &w.ffn_in_b, I},
        {"ffn.out.weight", &w.ffn_out_w, H * I},  {"ffn.out.bias", &w.ffn_out_b, H},
        {"ffn.ln.weight", &w.ln2_w, H},           {"ffn.ln.bias", &w.ln2_b, H},
    };
    for (const Entry& en : entries)
      if (name == en.name) return count == en.count ? en.ptr : nullptr;
    if (c.dis.on && !c.dis.share_key) {  // DeBERTa-v2's own position projections
      const Entry pos[] = {
          {"attn.pos_q.weight", &w.pos_q_w, H * H}, {"attn.pos_q.bias", &w.pos_q_b, H},
          {"attn.pos_k.weight", &w.pos_k_w, H * H}, {"attn.pos_k.bias", &w.pos_k_b, H},
      };
      for (const Entry& en : pos)
        if (name == en.name) return count == en.count ? en.ptr : nullptr;
    }
    return nullptr;
  }

  static std::string missing_slot(const er::Encoder& enc) {
    const er::EmbeddingTables& e = enc.emb;
    if (!e.word) return "embeddings.word";
    if (enc.cfg.abs_positions && !e.position) return "embeddings.position";
    if (enc.cfg.type_vocab > 0 && !e.token_type) return "embeddings.token_type";
    if (!e.ln_w || !e.ln_b) return "embeddings.ln";
    if (enc.cfg.rel_buckets > 0 && !enc.rel_bias) return "encoder.rel_bias";
    if (enc.cfg.dis.on && !enc.rel_emb) return "encoder.rel_embeddings";
    if (enc.cfg.dis.on && enc.cfg.dis.rel_ln && (!enc.rel_ln_w || !enc.rel_ln_b)) return "encoder.rel_ln";
    for (size_t l = 0; l < enc.layer.size(); l++) {
      const er::LayerWeights& w = enc.layer[l];
      const float* all[] = {w.q_w, w.q_b, w.k_w, w.k_b, w.v_w, w.v_b, w.o_w, w.o_b,
                            w.ln1_w, w.ln1_b, w.ffn_in_w, w.ffn_in_b, w.ffn_out_w, w.ffn_out_b,
                            w.ln2_w, w.ln2_b};
      for (const float* p : all)
        if (!p) return "layer." + std::to_string(l) + ".*";
      if (enc.cfg.dis.on && !enc.cfg.dis.share_key) {
        if (enc.cfg.dis.c2p && (!w.pos_k_w || !w.pos_k_b)) return "layer." + std::to_string(l) + ".attn.pos_k";
        if (enc.cfg.dis.p2c && (!w.pos_q_w || !w.pos_q_b)) return "layer." + std::to_string(l) + ".attn.pos_q";
      }
    }
    return "";
  }

  // A forward pass on the encoder's compute thread; inputs are read in place.
  class ForwardJob : public er_binding::ComputeJob {
   public:
    ForwardJob(Napi::Env env, std::shared_ptr<er::Encoder> enc, std::shared_ptr<er_binding::GpuEncoder> gpu)
        : ComputeJob(env), enc_(std::move(enc)), gpu_(std::move(gpu)) {}
    const int32_t *ids = nullptr, *positions = nullptr, *types = nullptr, *mask = nullptr;
    const float* hidden = nullptr;
    int64_t B = 0, T = 0, from = 0, to = 0;
    int threads = 1;
    bool from_hidden = false;
    bool round_f16 = false;  // round the output to fp16 and back (what an fp16 store holds)

    void run() override {
      const uint64_t out_bytes = (uint64_t)B * T * enc_->cfg.hidden * sizeof(float);
      try {
        out_.reset(new std::vector<float>((size_t)B * T * enc_->cfg.hidden));
      } catch (const std::bad_alloc&) {
        fail(er_binding::alloc_message("the forward pass's output", out_bytes, "the batch size or the sequence length"));
        return;
      }
      try {
        std::string err;
        if (gpu_) {
          err = from_hidden ? gpu_->forward_from(out_->data(), hidden, mask, B, T, from, to)
                            : gpu_->forward(out_->data(), ids, positions, types, mask, B, T, to);
          // as on the CPU, padding positions hold zeros (the GPU runs them, masked as keys)
          const int64_t H = enc_->cfg.hidden;
          if (err.empty())
            for (int64_t i = 0; i < B * T; i++)
              if (mask[i] == 0) std::fill(out_->data() + i * H, out_->data() + (i + 1) * H, 0.0f);
        } else {
          err = from_hidden ? er::encoder_forward_from(*enc_, out_->data(), hidden, mask, B, T, from, to, threads)
                            : er::encoder_forward(*enc_, out_->data(), ids, positions, types, mask, B, T, to, threads);
        }
        if (!err.empty()) fail(err);
        else if (round_f16) er::round_to_f16(out_->data(), (int64_t)out_->size());
      } catch (const std::bad_alloc&) {
        fail("out of memory in the forward pass (" + std::to_string(B) + " x " + std::to_string(T) +
             " tokens); lower the batch size or the sequence length");
      }
    }
    Napi::Value result(Napi::Env env) override { return adopt_floats(env, out_.release()); }

   private:
    std::shared_ptr<er::Encoder> enc_;
    std::shared_ptr<er_binding::GpuEncoder> gpu_;
    std::unique_ptr<std::vector<float>> out_;
  };

  size_t checked_elements(const Napi::CallbackInfo& info, int64_t B, int64_t T) {
    THROW_IF((uint64_t)B * (uint64_t)T * (uint64_t)enc_->cfg.hidden > er_binding::kMaxElements,
             "batch of " + std::to_string(B) + " x " + std::to_string(T) + " tokens is too large");
    return (size_t)(B * T);
  }

  // forward(ids, positions, typeIds | null, mask, B, T, toLayer, threads[, roundF16])
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kEncoderTag, "NativeEncoder");
    THROW_IF(!enc_, "encoder is closed");
    THROW_IF(info.Length() < 8, "forward expects 8 arguments");
    int64_t B = er_binding::get_int(info[4], "batch size", 1, er_binding::kMaxDim);
    int64_t T = er_binding::get_int(info[5], "sequence length", 1, er_binding::kMaxDim);
    size_t n = checked_elements(info, B, T);
    const int64_t to = er_binding::get_int(info[6], "toLayer", 0, enc_->cfg.layers);
    const int threads = (int)er_binding::get_int(info[7], "threads", 1, 4096);
    auto w = std::make_unique<ForwardJob>(info.Env(), enc_, gpu_);
    w->ids = er_binding::array_data<const int32_t>(info[0], napi_int32_array, n, "ids");
    w->positions = er_binding::array_data<const int32_t>(info[1], napi_int32_array, n, "positions");
    if (!info[2].IsNull() && !info[2].IsUndefined())
      w->types = er_binding::array_data<const int32_t>(info[2], napi_int32_array, n, "typeIds");
    w->mask = er_binding::array_data<const int32_t>(info[3], napi_int32_array, n, "attentionMask");
    for (int i = 0; i < 4; i++) w->hold(info[i]);
    w->B = B;
    w->T = T;
    w->to = to;
    w->threads = threads;
    w->round_f16 = info.Length() > 8 && info[8].ToBoolean().Value();
    return queue()->submit(info.Env(), std::move(w));
  }

  // forwardFrom(hidden, mask, B, T, fromLayer, toLayer, threads)
  Napi::Value ForwardFrom(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kEncoderTag, "NativeEncoder");
    THROW_IF(!enc_, "encoder is closed");
    THROW_IF(info.Length() < 7, "forwardFrom expects 7 arguments");
    int64_t B = er_binding::get_int(info[2], "batch size", 1, er_binding::kMaxDim);
    int64_t T = er_binding::get_int(info[3], "sequence length", 1, er_binding::kMaxDim);
    size_t n = checked_elements(info, B, T);
    const int64_t from = er_binding::get_int(info[4], "fromLayer", 0, enc_->cfg.layers);
    const int64_t to = er_binding::get_int(info[5], "toLayer", 0, enc_->cfg.layers);
    const int threads = (int)er_binding::get_int(info[6], "threads", 1, 4096);
    auto w = std::make_unique<ForwardJob>(info.Env(), enc_, gpu_);
    w->hidden = er_binding::array_data<const float>(info[0], napi_float32_array, n * enc_->cfg.hidden, "hidden");
    w->mask = er_binding::array_data<const int32_t>(info[1], napi_int32_array, n, "attentionMask");
    w->hold(info[0]);
    w->hold(info[1]);
    w->from_hidden = true;
    w->B = B;
    w->T = T;
    w->from = from;
    w->to = to;
    w->threads = threads;
    return queue()->submit(info.Env(), std::move(w));
  }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kEncoderTag, "NativeEncoder");
    Napi::Object o = Napi::Object::New(info.Env());
    if (enc_) {
      o.Set("mappedBytes", (double)enc_->weights.mapped_bytes());
      o.Set("ownedBytes", (double)enc_->weights.owned_bytes());
      o.Set("packedBytes", (double)er::encoder_packed_bytes(*enc_));
      o.Set("workspaceBytes", (double)enc_->ws.held.load());
      if (gpu_) {
        uint64_t weights = 0, buffers = 0;
        gpu_->memory(&weights, &buffers);
        o.Set("gpu", gpu_->device());
        o.Set("deviceWeightBytes", (double)weights);
        o.Set("deviceBufferBytes", (double)buffers);
      }
    }
    return o;
  }

  // Drops this handle's reference; running jobs keep the encoder alive until they end.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kEncoderTag, "NativeEncoder");
    enc_.reset();
    gpu_.reset();
    return info.Env().Undefined();
  }

  // the compute thread of this environment (shared by every encoder and task model)
  const std::shared_ptr<er_binding::ComputeQueue>& queue() {
    if (!queue_) queue_ = er_binding::compute_queue_for(Env());
    return queue_;
  }

  std::shared_ptr<er::Encoder> enc_;
  std::shared_ptr<er_binding::GpuEncoder> gpu_;  // device 'cuda': the forward passes run there
  std::shared_ptr<er_binding::ComputeQueue> queue_;
};

Napi::FunctionReference* EncoderHandle::ctor = nullptr;
EncoderHandle::LoadSpec* EncoderHandle::adopting = nullptr;

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("kernels", er::ops().name);
  o.Set("defaultThreads", default_threads());
  const dnnl_version_t* v = dnnl_version();
  o.Set("gemm", "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                    std::to_string(v->patch));
  o.Set("bf16Matmul", er::linear_impl_info(true));
  o.Set("fp32Matmul", er::linear_impl_info(false));
  return o;
}

// f16ToF32(src Uint16Array, dst Float32Array[, reps]): the store's decode kernel, run
// `reps` times (for benchmarks and tools); copyF32(src, dst[, reps]): memcpy, the
// baseline it is compared with. Both return the seconds spent.
Napi::Value F16ToF32(const Napi::CallbackInfo& info) {
  THROW_IF(info.Length() < 2, "f16ToF32(Uint16Array, Float32Array[, reps])");
  const uint16_t* src = er_binding::array_data<const uint16_t>(info[0], napi_uint16_array, (size_t)-1, "f16ToF32 source (a Uint16Array)");
  size_t n = info[0].As<Napi::TypedArray>().ElementLength();
  float* dst = er_binding::array_data<float>(info[1], napi_float32_array, n, "f16ToF32 destination (a Float32Array as long as the source)");
  int reps = info.Length() > 2 && !info[2].IsUndefined() ? (int)er_binding::get_int(info[2], "reps", 0, 1 << 30) : 1;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; r++) er::ops().f16_to_f32(dst, src, (int64_t)n);
  return Napi::Number::New(info.Env(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

Napi::Value CopyF32(const Napi::CallbackInfo& info) {
  THROW_IF(info.Length() < 2, "copyF32(Float32Array, Float32Array[, reps])");
  const float* src = er_binding::array_data<const float>(info[0], napi_float32_array, (size_t)-1, "copyF32 source (a Float32Array)");
  size_t n = info[0].As<Napi::TypedArray>().ElementLength();
  float* dst = er_binding::array_data<float>(info[1], napi_float32_array, n, "copyF32 destination (a Float32Array as long as the source)");
  int reps = info.Length() > 2 && !info[2].IsUndefined() ? (int)er_binding::get_int(info[2], "reps", 0, 1 << 30) : 1;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; r++) std::memcpy(dst, src, n * sizeof(float));
  return Napi::Number::New(info.Env(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// microKernel(name, ...arrays, reps): one kernel of the engine run `reps` times on
// caller-owned arrays, for the micro-benchmarks (bench/micro.mjs); returns seconds.
//   'crc32c'    (Uint8Array data)
//   'gelu'      (Float32Array inp, Float32Array out)                       erf GELU
//   'layerNorm' (Float32Array inp, Float32Array out, Float32Array weight, Float32Array bias)
//               rows = inp.length / weight.length
Napi::Value MicroKernel(const Napi::CallbackInfo& info) {
  THROW_IF(info.Length() < 2 || !info[0].IsString(), "microKernel(name, ...arrays, reps)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  const size_t last = info.Length() - 1;
  int reps = (int)er_binding::get_int(info[last], "reps", 0, 1 << 30);
  auto t0 = std::chrono::steady_clock::now();
  volatile uint32_t sink = 0;
  if (name == "crc32c" && last == 2) {
    const uint8_t* d = er_binding::array_data<const uint8_t>(info[1], napi_uint8_array, (size_t)-1, "crc32c data (a Uint8Array)");
    size_t n = info[1].As<Napi::TypedArray>().ElementLength();
    for (int r = 0; r < reps; r++) sink = sink + er::crc32c(0, d, n);
  } else if (name == "gelu" && last == 3) {
    const float* in = er_binding::array_data<const float>(info[1], napi_float32_array, (size_t)-1, "gelu input (a Float32Array)");
    size_t n = info[1].As<Napi::TypedArray>().ElementLength();
    float* out = er_binding::array_data<float>(info[2], napi_float32_array, n, "gelu output (a Float32Array as long as the input)");
    for (int r = 0; r < reps; r++) er::ops().gelu_forward(out, in, (int64_t)n);
  } else if (name == "layerNorm" && last == 5) {
    const float* w = er_binding::array_data<const float>(info[3], napi_float32_array, (size_t)-1, "layerNorm weight (a Float32Array)");
    size_t C = info[3].As<Napi::TypedArray>().ElementLength();
    THROW_IF(C == 0, "layerNorm weight must not be empty");
    const float* b = er_binding::array_data<const float>(info[4], napi_float32_array, C, "layerNorm bias (a Float32Array as long as the weight)");
    const float* in = er_binding::array_data<const float>(info[1], napi_float32_array, (size_t)-1, "layerNorm input (a Float32Array)");
    size_t n = info[1].As<Napi::TypedArray>().ElementLength();
    THROW_IF(n % C != 0, "layerNorm input length must be a multiple of the weight's");
    float* out = er_binding::array_data<float>(info[2], napi_float32_array, n, "layerNorm output (a Float32Array as long as the input)");
    for (int r = 0; r < reps; r++) er::ops().layernorm_forward(out, nullptr, nullptr, in, nullptr, w, b, (int64_t)(n / C), (int64_t)C, 1e-12f);
  } else {
    throw Napi::TypeError::New(info.Env(), "microKernel: unknown kernel or wrong arguments: " + name +
                                               " (crc32c(data, reps), gelu(inp, out, reps), layerNorm(inp, out, weight, bias, reps))");
  }
  (void)sink;
  return Napi::Number::New(info.Env(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// externalMemory(): the external memory V8 has been told about (napi_adjust_external_memory
// by 0), for tests and tools that check the addon's accounting.
Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), (double)Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function enc = EncoderHandle::Init(env);
  EncoderHandle::ctor = new Napi::FunctionReference(Napi::Persistent(enc));
  exports.Set("NativeEncoder", enc);
  exports.Set("loadEncoder", Napi::Function::New(env, EncoderHandle::Load));
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo));
  exports.Set("f16ToF32", Napi::Function::New(env, F16ToF32));
  exports.Set("copyF32", Napi::Function::New(env, CopyF32));
  exports.Set("externalMemory", Napi::Function::New(env, ExternalMemory));
  exports.Set("microKernel", Napi::Function::New(env, MicroKernel));
  init_store(env, exports);
  init_train(env, exports);
  init_sqlite(env, exports);
  return exports;
}

}  // namespace

std::shared_ptr<er::Encoder> unwrap_encoder(const Napi::Value& v) {
  EncoderHandle* h = er_binding::unwrap_tagged<EncoderHandle>(v, er_binding::kEncoderTag, "NativeEncoder");
  auto enc = h->encoder();
  if (!enc) throw Napi::Error::New(v.Env(), "the encoder is closed");
  if (h->on_gpu())
    throw Napi::Error::New(v.Env(), "this encoder was loaded with device 'cuda', and task models run on the CPU so far; "
                                    "load the encoder with device 'cpu' for a TaskModel");
  return enc;
}

NODE_API_MODULE(embedding_recycler, Init)
