// N-API glue for training: the TaskModel object and its async step. No maths here.
#include <napi.h>
#include "binding/args.h"
#include "binding/compute.h"
#include <cmath>
#include <cstring>
#include <memory>
#include "binding/cuda.h"
#include "model/trainer.h"

std::shared_ptr<er::Encoder> unwrap_encoder(const Napi::Value& v);

namespace {


double num(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return er_binding::get_number(v, key);
}

int64_t integer(const Napi::Object& o, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return er_binding::get_int(v, key, lo, hi);
}

// A task model's copy on a GPU (device 'cuda'), guarded by the model's mutex. An inference
// model's is uploaded on the compute thread before the first step and again after its
// parameters change; a trainable model's is the trainer below.
struct GpuTask {
  int32_t device = 0;
  int32_t precision = 0;  // er::cuda::BackendPrecision
  std::shared_ptr<er_binding::GpuEncoder> enc;
  uint64_t version = ~uint64_t(0);  // the model's version() it was uploaded at
  // a trainable model: its copy on the GPU (created before the first step), which holds the
  // current values; the host's copies are refreshed when read (values_stale, grads_stale) and
  // the GPU's after the host changed a value (device_stale)
  std::shared_ptr<er_binding::GpuTrainer> trainer;
  bool values_stale = false, grads_stale = false, device_stale = false;
};

// Before the host reads a trained model's values (what 0) or gradients (1): copies them back
// from the GPU when they changed there. Caller holds the model's mutex.
std::string refresh_host(GpuTask* g, int what) {
  if (!g || !g->trainer) return "";
  bool& stale = what == 0 ? g->values_stale : g->grads_stale;
  if (!stale) return "";
  std::string err = g->trainer->sync(what);
  if (err.empty()) stale = false;
  return err;
}

// config.device 'cuda', config.gpu, config.gpuPrecision; null for 'cpu'
std::shared_ptr<GpuTask> parse_device(const Napi::CallbackInfo& info, const Napi::Object& c, const er::TrainConfig& cfg,
                                      const er::Encoder& enc) {
  Napi::Value dev = c.Get("device");
  THROW_IF(!dev.IsUndefined() && !dev.IsString(), "config.device must be 'cpu' or 'cuda'");
  const std::string device = dev.IsString() ? dev.As<Napi::String>().Utf8Value() : "cpu";
  THROW_IF(device != "cpu" && device != "cuda", "config.device must be 'cpu' or 'cuda', got '" + device + "'");
  if (device == "cpu") return nullptr;
  THROW_IF(enc.cfg.dis.on, "the GPU does not run DeBERTa-v2's disentangled attention yet; use device 'cpu'");
  std::string why;
  THROW_IF(!er_binding::cuda_backend(&why), why);
  auto g = std::make_shared<GpuTask>();
  g->device = (int32_t)integer(c, "gpu", 0, 0, 1023);
  Napi::Value gp = c.Get("gpuPrecision");
  const std::string p = gp.IsString() ? gp.As<Napi::String>().Utf8Value() : (cfg.bf16 ? "bf16" : "fp32");
  THROW_IF(p != "fp32" && p != "bf16" && p != "fp16", "gpuPrecision must be 'fp32', 'bf16' or 'fp16'");
  g->precision = er_binding::backend_precision(p);
  // training takes the model's own precision (fp32 or bf16 GEMM inputs), as on the CPU
  THROW_IF(!cfg.inference && p != (cfg.bf16 ? "bf16" : "fp32"),
           "a task model trains on the GPU in its own precision ('" + std::string(cfg.bf16 ? "bf16" : "fp32") +
               "'); leave gpuPrecision out, or set precision instead");
  return g;
}

class TaskModelHandle : public Napi::ObjectWrap<TaskModelHandle> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "TaskModel",
                       {InstanceMethod("step", &TaskModelHandle::Step),
                        InstanceMethod("parameters", &TaskModelHandle::Parameters),
                        InstanceMethod("getParameter", &TaskModelHandle::GetParameter),
                        InstanceMethod("getGradient", &TaskModelHandle::GetGradient),
                        InstanceMethod("setParameter", &TaskModelHandle::SetParameter),
                        InstanceMethod("memory", &TaskModelHandle::Memory)});
  }

  static Napi::FunctionReference* ctor;
  // buildTaskModel's completion constructs one with no arguments while this holds the model
  static std::shared_ptr<er::TaskModel>* adopting;  // JavaScript thread only
  static std::shared_ptr<GpuTask>* adopting_gpu;

  // The training configuration from its JavaScript object (checked; throws a JS error).
  static er::TrainConfig parse_config(const Napi::CallbackInfo& info, const Napi::Object& c, const er::Encoder& enc_ref) {
    const er::Encoder* enc = &enc_ref;
    er::TrainConfig cfg;
    cfg.mode = (er::TrainMode)integer(c, "mode", 2, 0, 4);
    cfg.k = integer(c, "k", 0, 0, enc->cfg.layers);
    cfg.head = (er::HeadKind)integer(c, "head", 0, 0, 2);
    cfg.num_labels = integer(c, "numLabels", 2, 1, 1 << 20);
    cfg.adapter_size = integer(c, "adapterSize", 64, 0, 1 << 16);
    cfg.adapter_act = (er::AdapterAct)integer(c, "adapterAct", 0, 0, 1);
    cfg.hidden_dropout = (float)num(c, "hiddenDropout", 0.1);
    cfg.attention_dropout = (float)num(c, "attentionDropout", 0.1);
    cfg.head_dropout = (float)num(c, "headDropout", 0.1);
    cfg.seed = (uint64_t)integer(c, "seed", 0, 0, (int64_t(1) << 53));
    cfg.bf16 = c.Get("precision").IsString() && c.Get("precision").As<Napi::String>().Utf8Value() == "bf16";
    cfg.inference = c.Get("inference").ToBoolean().Value();
    Napi::Value al = c.Get("adapterLayers");
    if (al.IsArray()) {
      Napi::Array a = al.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++)
        cfg.adapter_layers.push_back(er_binding::get_int(a.Get(i), "adapterLayers[i]", 0, enc->cfg.layers));
    }
    Napi::Value cw = c.Get("classWeights");
    if (!cw.IsUndefined() && !cw.IsNull()) {
      const float* w = er_binding::array_data<const float>(cw, napi_float32_array, (size_t)cfg.num_labels,
                                                           "classWeights (a Float32Array with one weight per label)");
      cfg.class_weights.assign(w, w + cfg.num_labels);
      for (float x : cfg.class_weights)
        THROW_IF(!(x >= 0.0f) || !std::isfinite(x), "classWeights must be finite and non-negative");
    }
    return cfg;
  }

  static std::string build_error(const std::bad_alloc&) {
    return "cannot allocate the task model's parameters and optimizer state; lower adapterSize or train fewer layers (a larger k)";
  }

  // new TaskModel(encoder, {mode, k, head, numLabels, adapterSize, adapterLayers, adapterAct,
  //   hiddenDropout, attentionDropout, headDropout, seed, classWeights}); or, from
  // buildTaskModel(), new TaskModel() while `adopting` holds the built model
  TaskModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TaskModelHandle>(info) {
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kTaskModelTag);
    if (adopting && info.Length() == 0) {
      model_ = std::move(*adopting);
      adopting = nullptr;
      if (adopting_gpu) gpu_ = std::move(*adopting_gpu);
      adopting_gpu = nullptr;
      hidden_ = model_->encoder_hidden();
      queue_ = er_binding::compute_queue_for(info.Env());
      return;
    }
    THROW_IF(info.Length() < 2 || !info[1].IsObject(), "TaskModel(encoder, config)");
    std::shared_ptr<er::Encoder> enc = unwrap_encoder(info[0]);
    hidden_ = enc->cfg.hidden;
    er::TrainConfig cfg = parse_config(info, info[1].As<Napi::Object>(), *enc);
    gpu_ = parse_device(info, info[1].As<Napi::Object>(), cfg, *enc);
    try {
      model_ = std::make_shared<er::TaskModel>(enc, cfg);
    } catch (const std::bad_alloc& e) {
      throw Napi::Error::New(info.Env(), build_error(e));
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    queue_ = er_binding::compute_queue_for(info.Env());
  }

  // Builds the model (allocating and copying its parameters) on a worker thread.
  class BuildWorker : public Napi::AsyncWorker {
   public:
    BuildWorker(Napi::Env env, std::shared_ptr<er::Encoder> enc, er::TrainConfig cfg, std::shared_ptr<GpuTask> gpu)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), enc_(std::move(enc)), cfg_(std::move(cfg)),
          gpu_(std::move(gpu)) {}
    Napi::Promise::Deferred deferred;
    void Execute() override {
      try {
        model_ = std::make_shared<er::TaskModel>(enc_, cfg_);
      } catch (const std::bad_alloc& e) {
        SetError(build_error(e));
      } catch (const std::exception& e) {
        SetError(e.what());
      } catch (...) {
        SetError("unknown native error while building a task model");
      }
    }
    void OnOK() override {
      adopting = &model_;
      adopting_gpu = &gpu_;
      Napi::Object o = ctor->New({});
      adopting = nullptr;
      adopting_gpu = nullptr;
      deferred.Resolve(o);
    }
    void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

   private:
    std::shared_ptr<er::Encoder> enc_;
    er::TrainConfig cfg_;
    std::shared_ptr<GpuTask> gpu_;
    std::shared_ptr<er::TaskModel> model_;
  };

  // buildTaskModel(encoder, config) -> Promise<TaskModel>
  static Napi::Value Build(const Napi::CallbackInfo& info) {
    THROW_IF(info.Length() < 2 || !info[1].IsObject(), "buildTaskModel(encoder, config)");
    std::shared_ptr<er::Encoder> enc = unwrap_encoder(info[0]);
    er::TrainConfig cfg = parse_config(info, info[1].As<Napi::Object>(), *enc);
    std::shared_ptr<GpuTask> gpu = parse_device(info, info[1].As<Napi::Object>(), cfg, *enc);
    auto* w = new BuildWorker(info.Env(), enc, std::move(cfg), std::move(gpu));
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

 private:
  // A step on the encoder's compute thread; inputs are read in place.
  class StepJob : public er_binding::ComputeJob {
   public:
    StepJob(Napi::Env env, std::shared_ptr<er::TaskModel> m, std::shared_ptr<GpuTask> gpu)
        : ComputeJob(env), model_(std::move(m)), gpu_(std::move(gpu)) {}
    er::TrainInputs in;
    const int32_t* labels = nullptr;
    bool train = false, backward = false, zero = true, update = false, want_logits = false;
    er::AdamWOptions adam;
    void run() override {
      try {
        std::lock_guard<std::mutex> lock(model_->mu);
        if (gpu_ && !model_->config().inference) {
          std::string err = gpu_train_step();
          if (!err.empty()) fail(err);
          return;
        }
        if (gpu_ && !train && !backward) {
          std::string err = gpu_step();
          if (!err.empty()) fail(err);
          return;
        }
        if (zero && backward) model_->zero_grad();
        std::string err = model_->step(in, labels, train, backward, &loss_, want_logits ? &logits_ : nullptr);
        if (!err.empty()) {
          fail(err);
          return;
        }
        if (update) norm_ = model_->adamw(adam);
      } catch (const std::bad_alloc&) {
        fail("out of memory in a training step (" + std::to_string(in.B) + " x " + std::to_string(in.T) +
             " tokens); lower the batch size or the sequence length");
      }
    }
    Napi::Value result(Napi::Env env) override {
      Napi::Object o = Napi::Object::New(env);
      o.Set("loss", loss_);
      o.Set("gradNorm", norm_);
      if (want_logits) {
        Napi::Float32Array a = Napi::Float32Array::New(env, logits_.size());
        std::memcpy(a.Data(), logits_.data(), logits_.size() * sizeof(float));
        o.Set("logits", a);
      }
      return o;
    }

   private:
    // the forward on the GPU (uploading the model first when its parameters changed), the
    // loss on the host from the logits
    // "" when the step's input suits the mode on the GPU: layer-k states (fp32 or fp16) for a
    // recycled mode, or token ids for any (a recycled mode's prefix then runs there too)
    std::string gpu_input_error() const {
      const er::TrainConfig& c = model_->config();
      const bool recycled = c.mode == er::TrainMode::Reduced || c.mode == er::TrainMode::ReducedAdapters;
      const bool states = in.hidden || in.hidden16;
      if (states && !recycled) return "this mode takes token ids as input";
      if (!states && !in.ids) return "this mode takes layer-" + std::to_string(c.k) + " hidden states or token ids as input";
      return "";
    }

    std::string gpu_step() {
      const er::TrainConfig& c = model_->config();
      const bool states = in.hidden || in.hidden16;
      std::string bad = gpu_input_error();
      if (!bad.empty()) return bad;
      if (!gpu_->enc || gpu_->version != model_->version()) {
        er::cuda::HostEncoder host;
        model_->host_view(&host);
        gpu_->enc.reset();  // the old copy's memory first
        std::string err = er_binding::GpuEncoder::create(host, gpu_->precision, gpu_->device, &gpu_->enc);
        if (!err.empty()) return err;
        gpu_->version = model_->version();
      }
      const int64_t R = c.head == er::HeadKind::Sequence ? in.B : in.B * in.T;
      logits_.assign((size_t)(R * c.num_labels), 0.0f);
      std::string err = gpu_->enc->task_forward(logits_.data(), in.hidden, in.hidden16, in.ids, in.positions, in.types,
                                                in.mask, in.B, in.T, states ? c.k : 0);
      if (err.empty() && labels) err = model_->loss_of(logits_.data(), labels, in.mask, in.B, in.T, &loss_);
      return err;
    }

    // a trainable model's step on the GPU: forward there, the loss and its gradient on the
    // host from the logits, backward and AdamW there
    std::string gpu_train_step() {
      const er::TrainConfig& c = model_->config();
      std::string err = gpu_input_error();
      if (!err.empty()) return err;
      if (backward && !labels) return "training needs labels";
      GpuTask& g = *gpu_;
      if (!g.trainer) {
        er::cuda::HostEncoder host;
        model_->host_view(&host);
        er::cuda::HostTrain spec;
        model_->train_view(&spec);
        err = er_binding::GpuTrainer::create(host, spec, g.device, &g.trainer);
        if (!err.empty()) return err;
        g.device_stale = false;
      }
      if (g.device_stale) {
        err = g.trainer->sync(2);
        if (!err.empty()) return err;
        g.device_stale = false;
      }
      if (zero && backward) {
        err = g.trainer->zero_grad();
        if (!err.empty()) return err;
        g.grads_stale = true;
      }
      const int64_t R = c.head == er::HeadKind::Sequence ? in.B : in.B * in.T;
      logits_.assign((size_t)(R * c.num_labels), 0.0f);
      err = g.trainer->forward(logits_.data(), in.hidden, in.hidden16, in.ids, in.positions, in.types, in.mask, in.B, in.T,
                               train, model_->take_step_number());
      std::vector<float> dlogits;
      if (err.empty() && labels)
        err = model_->loss_of(logits_.data(), labels, in.mask, in.B, in.T, &loss_, backward ? &dlogits : nullptr);
      if (err.empty() && backward) {
        err = g.trainer->backward(dlogits.data());
        g.grads_stale = true;
      }
      if (err.empty() && update) {
        er::cuda::HostAdamW o;
        o.lr = adam.lr;
        o.beta1 = adam.beta1;
        o.beta2 = adam.beta2;
        o.eps = adam.eps;
        o.weight_decay = adam.weight_decay;
        o.clip = adam.clip;
        err = g.trainer->adamw(o, model_->steps() + 1, &norm_);
        if (err.empty()) model_->updated_elsewhere();
        g.values_stale = true;
      }
      return err;
    }

    std::shared_ptr<er::TaskModel> model_;
    std::shared_ptr<GpuTask> gpu_;
    double loss_ = 0, norm_ = 0;
    std::vector<float> logits_;
  };

  // step(inputs {ids?, positions?, types?, mask, hidden?, B, T}, labels | null,
  //      {train, backward, zeroGrad, update: {lr, beta1, beta2, eps, weightDecay, clip} | null,
  //       threads, logits}) -> Promise<{loss, gradNorm, logits?}>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kTaskModelTag, "TaskModel");
    THROW_IF(info.Length() < 3 || !info[0].IsObject() || !info[2].IsObject(), "step(inputs, labels, options)");
    Napi::Object in = info[0].As<Napi::Object>(), opt = info[2].As<Napi::Object>();
    auto w = std::make_unique<StepJob>(info.Env(), model_, gpu_);
    {
      int64_t B = er_binding::get_int(in.Get("B"), "B (batch size)", 1, er_binding::kMaxDim);
      int64_t T = er_binding::get_int(in.Get("T"), "T (sequence length)", 1, er_binding::kMaxDim);
      if ((uint64_t)B * (uint64_t)T * (uint64_t)hidden_size() > er_binding::kMaxElements)
        throw Napi::RangeError::New(info.Env(), "batch of " + std::to_string(B) + " x " + std::to_string(T) + " tokens is too large");
      size_t n = (size_t)(B * T);
      w->in.B = B;
      w->in.T = T;
      w->in.mask = er_binding::array_data<const int32_t>(in.Get("mask"), napi_int32_array, n, "mask");
      w->hold(in.Get("mask"));
      if (in.Get("hidden").IsTypedArray()) {
        w->in.hidden = er_binding::array_data<const float>(in.Get("hidden"), napi_float32_array, n * (size_t)hidden_size(), "hidden");
        w->hold(in.Get("hidden"));
      } else if (in.Get("hidden16").IsTypedArray()) {
        THROW_IF(!gpu_, "fp16 hidden states (hidden16) run on a GPU model only; give fp32 hidden states on the CPU");
        w->in.hidden16 = er_binding::array_data<const uint16_t>(in.Get("hidden16"), napi_uint16_array,
                                                                 n * (size_t)hidden_size(), "hidden16");
        w->hold(in.Get("hidden16"));
      } else {
        w->in.ids = er_binding::array_data<const int32_t>(in.Get("ids"), napi_int32_array, n, "ids");
        w->in.positions = er_binding::array_data<const int32_t>(in.Get("positions"), napi_int32_array, n, "positions");
        w->hold(in.Get("ids"));
        w->hold(in.Get("positions"));
        if (in.Get("types").IsTypedArray()) {
          w->in.types = er_binding::array_data<const int32_t>(in.Get("types"), napi_int32_array, n, "types");
          w->hold(in.Get("types"));
        }
      }
      if (info[1].IsTypedArray()) {
        const er::TrainConfig& c = model_->config();
        size_t want = c.head == er::HeadKind::Sequence ? (size_t)B : c.head == er::HeadKind::QA ? (size_t)(2 * B) : n;
        w->labels = er_binding::array_data<const int32_t>(info[1], napi_int32_array, want, "labels");
        w->hold(info[1]);
      }
      w->train = opt.Get("train").ToBoolean().Value();
      w->backward = opt.Get("backward").ToBoolean().Value();
      w->zero = !opt.Get("zeroGrad").IsBoolean() || opt.Get("zeroGrad").ToBoolean().Value();
      w->want_logits = opt.Get("logits").ToBoolean().Value();
      w->in.threads = (int)integer(opt, "threads", 1, 1, 4096);
      if (opt.Get("update").IsObject()) {
        Napi::Object u = opt.Get("update").As<Napi::Object>();
        w->update = true;
        w->adam.lr = (float)num(u, "lr", 1e-4);
        w->adam.beta1 = (float)num(u, "beta1", 0.9);
        w->adam.beta2 = (float)num(u, "beta2", 0.999);
        w->adam.eps = (float)num(u, "eps", 1e-8);
        w->adam.weight_decay = (float)num(u, "weightDecay", 0.01);
        w->adam.clip = (float)num(u, "clip", 1.0);
      }
    }
    return queue_->submit(info.Env(), std::move(w));
  }

  int64_t hidden_size() const { return hidden_; }

  const er::Param* find(const Napi::CallbackInfo& info) {
    THROW_IF(info.Length() < 1 || !info[0].IsString(), "expected a parameter name");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    for (const er::Param& p : model_->params())
      if (p.name == name) return &p;
    throw Napi::RangeError::New(info.Env(), "no trainable parameter named " + name);
  }

  Napi::Value Parameters(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kTaskModelTag, "TaskModel");
    Napi::Array a = Napi::Array::New(info.Env(), model_->params().size());
    uint32_t i = 0;
    for (const er::Param& p : model_->params()) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("name", p.name);
      o.Set("size", (double)p.n);
      o.Set("decay", p.decay);
      a.Set(i++, o);
    }
    return a;
  }

  Napi::Value GetParameter(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kTaskModelTag, "TaskModel");
    const er::Param* p = find(info);
    std::lock_guard<std::mutex> lock(model_->mu);
    std::string err = refresh_host(gpu_.get(), 0);
    THROW_IF(!err.empty(), err);
    Napi::Float32Array a = Napi::Float32Array::New(info.Env(), p->n);
    std::memcpy(a.Data(), p->data, p->n * sizeof(float));
    return a;
  }

  Napi::Value GetGradient(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kTaskModelTag, "TaskModel");
    const er::Param* p = find(info);
    THROW_IF(!p->grad, "this task model was opened for inference only; it has no gradients");
    std::lock_guard<std::mutex> lock(model_->mu);
    std::string err = refresh_host(gpu_.get(), 1);
    THROW_IF(!err.empty(), err);
    Napi::Float32Array a = Napi::Float32Array::New(info.Env(), p->n);
    std::memcpy(a.Data(), p->grad, p->n * sizeof(float));
    return a;
  }

  Napi::Value SetParameter(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kTaskModelTag, "TaskModel");
    const er::Param* p = find(info);
    const float* src = er_binding::array_data<const float>(info[1], napi_float32_array, (size_t)p->n, "value");
    std::lock_guard<std::mutex> lock(model_->mu);
    std::string err = refresh_host(gpu_.get(), 0);  // the other values, before the GPU's copy is replaced
    THROW_IF(!err.empty(), err);
    std::memcpy(p->data, src, p->n * sizeof(float));
    model_->parameters_changed();
    if (gpu_ && gpu_->trainer) gpu_->device_stale = true;
    return info.Env().Undefined();
  }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kTaskModelTag, "TaskModel");
    Napi::Object o = Napi::Object::New(info.Env());
    if (gpu_) {
      std::lock_guard<std::mutex> lock(model_->mu);
      uint64_t weights = 0, buffers = 0;
      if (gpu_->enc) gpu_->enc->memory(&weights, &buffers);
      if (gpu_->trainer) gpu_->trainer->memory(&weights, &buffers);
      o.Set("gpu", gpu_->device);
      o.Set("deviceWeightBytes", (double)weights);
      o.Set("deviceBufferBytes", (double)buffers);
    }
    o.Set("paramBytes", (double)model_->param_bytes());
    o.Set("activationBytes", (double)model_->activation_bytes());
    o.Set("steps", (double)model_->steps());
    return o;
  }

 public:
  std::shared_ptr<er::TaskModel> model_;
  std::shared_ptr<GpuTask> gpu_;  // device 'cuda': evaluation steps run there
  std::shared_ptr<er_binding::ComputeQueue> queue_;  // the encoder's compute thread
  int64_t hidden_ = 0;
};

}  // namespace

Napi::FunctionReference* TaskModelHandle::ctor = nullptr;
std::shared_ptr<er::TaskModel>* TaskModelHandle::adopting = nullptr;
std::shared_ptr<GpuTask>* TaskModelHandle::adopting_gpu = nullptr;

void init_train(Napi::Env env, Napi::Object exports) {
  Napi::Function f = TaskModelHandle::Init(env);
  TaskModelHandle::ctor = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("TaskModel", f);
  exports.Set("buildTaskModel", Napi::Function::New(env, TaskModelHandle::Build));
}
