// N-API glue for the activation store: writer, reader, prefetcher. No format logic
// here (native/store/ owns it); arguments are checked in src/store/ first.
#include <napi.h>
#include "binding/args.h"
#include <cmath>
#include <cstring>
#include <memory>
#include "store/prefetch.h"
#include "store/segment.h"

namespace {

using er::store::kIdentityBytes;
using er::store::kKeyBytes;


// ------------------------------------------------------------------ writer

class WriterHandle : public Napi::ObjectWrap<WriterHandle> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "StoreWriter",
                       {InstanceMethod("openSegment", &WriterHandle::OpenSegment),
                        InstanceMethod("append", &WriterHandle::Append),
                        InstanceMethod("close", &WriterHandle::Close)});
  }

  // new StoreWriter(dir, identity: Uint8Array(16), maxSegmentBytes)
  WriterHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WriterHandle>(info) {
    THROW_IF(info.Length() < 3 || !info[0].IsString(), "StoreWriter(dir, identity, maxSegmentBytes)");
    std::string dir = info[0].As<Napi::String>().Utf8Value();
    const uint8_t* id = er_binding::array_data<uint8_t>(info[1], napi_uint8_array, kIdentityBytes, "identity");
    uint64_t max_bytes = (uint64_t)info[2].As<Napi::Number>().Int64Value();
    try {
      state_ = std::make_shared<State>();
      state_->lock = std::make_unique<er::store::StoreLock>(dir);
      state_->writer = std::make_unique<er::store::SegmentWriter>(dir, id, max_bytes);
    } catch (const std::exception& e) {
      state_.reset();
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

 private:
  struct State {
    std::mutex mu;
    std::unique_ptr<er::store::StoreLock> lock;
    std::unique_ptr<er::store::SegmentWriter> writer;
  };

  Napi::Value OpenSegment(const Napi::CallbackInfo& info) {
    THROW_IF(!state_, "the store writer is closed");
    uint32_t seg = info[0].As<Napi::Number>().Uint32Value();
    uint64_t committed = (uint64_t)info[1].As<Napi::Number>().Int64Value();
    try {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->writer->open_segment(seg, committed);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }

  class AppendWorker : public Napi::AsyncWorker {
   public:
    AppendWorker(Napi::Env env, std::shared_ptr<State> st)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), st_(std::move(st)) {}
    Napi::Promise::Deferred deferred;
    std::vector<Napi::ObjectReference> refs;
    const float* hidden = nullptr;
    const int32_t* lengths = nullptr;
    const uint8_t* keys = nullptr;
    const uint8_t* select = nullptr;
    uint32_t B = 0, T = 0, H = 0;
    uint8_t codec = 0;
    void Execute() override {
      std::lock_guard<std::mutex> lock(st_->mu);
      er::store::SegmentWriter& w = *st_->writer;
      uint32_t seg0 = w.segment();
      uint64_t end0 = w.end();
      out_.assign((size_t)B * 4, NAN);
      try {
        for (uint32_t b = 0; b < B; b++) {
          if (!select[b]) continue;
          er::store::Location loc = w.append(keys + (size_t)b * kKeyBytes, (uint32_t)lengths[b], H, codec,
                                             hidden + (size_t)b * T * H);
          out_[b * 4 + 0] = loc.segment;
          out_[b * 4 + 1] = (double)loc.offset;
          out_[b * 4 + 2] = (double)loc.bytes;
          out_[b * 4 + 3] = loc.crc;
        }
        w.sync();
      } catch (const std::exception& e) {
        // nothing of this batch is committed; drop what reached the current segment
        if (w.segment() == seg0) w.rollback(end0);
        SetError(e.what());
      } catch (...) {
        SetError("unknown native error while appending records");
      }
    }
    void OnOK() override {
      Napi::Float64Array a = Napi::Float64Array::New(Env(), out_.size());
      std::memcpy(a.Data(), out_.data(), out_.size() * sizeof(double));
      deferred.Resolve(a);
    }
    void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

   private:
    std::shared_ptr<State> st_;
    std::vector<double> out_;
  };

  // append(hidden Float32Array(B*T*H), B, T, H, lengths Int32Array(B), keys Uint8Array(B*32),
  //        select Uint8Array(B), codec) -> Promise<Float64Array(B*4)> [segment, offset, bytes, crc]
  Napi::Value Append(const Napi::CallbackInfo& info) {
    THROW_IF(!state_, "the store writer is closed");
    THROW_IF(info.Length() < 8, "append expects 8 arguments");
    uint32_t B = info[1].As<Napi::Number>().Uint32Value(), T = info[2].As<Napi::Number>().Uint32Value(),
             H = info[3].As<Napi::Number>().Uint32Value();
    auto* w = new AppendWorker(info.Env(), state_);
    try {
      w->hidden = er_binding::array_data<float>(info[0], napi_float32_array, (size_t)B * T * H, "hidden");
      w->lengths = er_binding::array_data<int32_t>(info[4], napi_int32_array, B, "lengths");
      w->keys = er_binding::array_data<uint8_t>(info[5], napi_uint8_array, (size_t)B * kKeyBytes, "keys");
      w->select = er_binding::array_data<uint8_t>(info[6], napi_uint8_array, B, "select");
      for (uint32_t b = 0; b < B; b++)
        if (w->lengths[b] < 0 || (uint32_t)w->lengths[b] > T)
          throw Napi::RangeError::New(info.Env(), "lengths[" + std::to_string(b) + "] is outside 0..T");
    } catch (...) {
      delete w;
      throw;
    }
    for (int i : {0, 4, 5, 6}) w->refs.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    w->B = B;
    w->T = T;
    w->H = H;
    w->codec = (uint8_t)info[7].As<Napi::Number>().Uint32Value();
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    state_.reset();  // a running append keeps the state until it ends
    return info.Env().Undefined();
  }

  std::shared_ptr<State> state_;
};

// ------------------------------------------------------------------ reader

class ReaderHandle : public Napi::ObjectWrap<ReaderHandle> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "StoreReader",
                                   {InstanceMethod("read", &ReaderHandle::Read),
                                    InstanceMethod("verifySegment", &ReaderHandle::VerifySegment)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  // new StoreReader(dir, identity: Uint8Array(16))
  ReaderHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReaderHandle>(info) {
    THROW_IF(info.Length() < 2 || !info[0].IsString(), "StoreReader(dir, identity)");
    dir_ = info[0].As<Napi::String>().Utf8Value();
    const uint8_t* id = er_binding::array_data<uint8_t>(info[1], napi_uint8_array, kIdentityBytes, "identity");
    std::memcpy(identity_, id, kIdentityBytes);
    reader = std::make_shared<er::store::SegmentReader>(dir_, id);
  }

  std::shared_ptr<er::store::SegmentReader> reader;

 private:
  // read(segment, offset, bytes, tokens, hidden, key Uint8Array(32), verify) -> Float32Array(tokens*hidden)
  Napi::Value Read(const Napi::CallbackInfo& info) {
    THROW_IF(info.Length() < 7, "read expects 7 arguments");
    uint32_t seg = info[0].As<Napi::Number>().Uint32Value();
    uint64_t off = (uint64_t)info[1].As<Napi::Number>().Int64Value();
    uint64_t bytes = (uint64_t)info[2].As<Napi::Number>().Int64Value();
    uint32_t tokens = info[3].As<Napi::Number>().Uint32Value(), H = info[4].As<Napi::Number>().Uint32Value();
    const uint8_t* key = er_binding::array_data<uint8_t>(info[5], napi_uint8_array, kKeyBytes, "key");
    bool verify = info[6].ToBoolean().Value();
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), (size_t)tokens * H);
    try {
      auto m = reader->map(seg, off + bytes);
      std::string err = er::store::record_decode(m->data + off, m->size - off, key, tokens, H, verify, out.Data(), H);
      if (!err.empty())
        throw std::runtime_error(er::store::segment_path(dir_, seg) + " at byte " + std::to_string(off) + ": " + err);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return out;
  }

  class VerifyWorker : public Napi::AsyncWorker {
   public:
    VerifyWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise::Deferred deferred;
    std::string path;
    uint8_t identity[kIdentityBytes];
    uint32_t segment = 0;
    uint64_t committed = 0;
    void Execute() override {
      try {
        report_ = er::store::verify_segment(path, identity, segment, committed);
      } catch (const std::exception& e) {
        SetError(e.what());
      }
    }
    void OnOK() override {
      Napi::Object o = Napi::Object::New(Env());
      o.Set("records", (double)report_.records);
      o.Set("bytes", (double)report_.bytes);
      Napi::Array problems = Napi::Array::New(Env(), report_.problems.size());
      for (size_t i = 0; i < report_.problems.size(); i++) problems.Set((uint32_t)i, report_.problems[i]);
      o.Set("problems", problems);
      deferred.Resolve(o);
    }
    void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

   private:
    er::store::VerifyReport report_;
  };

  // verifySegment(segment, committed) -> Promise<{records, bytes, problems}>
  Napi::Value VerifySegment(const Napi::CallbackInfo& info) {
    auto* w = new VerifyWorker(info.Env());
    w->segment = info[0].As<Napi::Number>().Uint32Value();
    w->committed = (uint64_t)info[1].As<Napi::Number>().Int64Value();
    w->path = er::store::segment_path(dir_, w->segment);
    std::memcpy(w->identity, identity_, kIdentityBytes);
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

  std::string dir_;
  uint8_t identity_[kIdentityBytes];
};
Napi::FunctionReference* ReaderHandle::ctor = nullptr;

// ------------------------------------------------------------------ prefetcher

class PrefetchHandle : public Napi::ObjectWrap<PrefetchHandle> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Prefetcher",
                       {InstanceMethod("next", &PrefetchHandle::Next),
                        InstanceMethod("release", &PrefetchHandle::Release),
                        InstanceMethod("stats", &PrefetchHandle::Stats),
                        InstanceMethod("stop", &PrefetchHandle::Stop)});
  }

  // new Prefetcher(reader, {hidden, batchStart: Uint32Array, segments: Uint32Array,
  //   offsets: Float64Array, bytes: Float64Array, tokens: Uint32Array, keys: Uint8Array},
  //   {depth, verify, maxRows, maxTokens})
  PrefetchHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PrefetchHandle>(info) {
    THROW_IF(info.Length() < 3 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsObject(),
             "Prefetcher(reader, plan, options)");
    ReaderHandle* r = Napi::ObjectWrap<ReaderHandle>::Unwrap(info[0].As<Napi::Object>());
    Napi::Object plan = info[1].As<Napi::Object>(), opts = info[2].As<Napi::Object>();
    er::store::Plan p;
    p.hidden = plan.Get("hidden").As<Napi::Number>().Uint32Value();
    Napi::Value bs = plan.Get("batchStart");
    uint32_t* starts = er_binding::array_data<uint32_t>(bs, napi_uint32_array, (size_t)-1, "batchStart");
    size_t nb1 = bs.As<Napi::TypedArray>().ElementLength();
    THROW_IF(nb1 < 1, "batchStart must have at least one entry");
    p.batch_start.assign(starts, starts + nb1);
    size_t n = p.batch_start.back();
    THROW_IF(p.batch_start[0] != 0, "batchStart must start at 0");
    for (size_t i = 1; i < nb1; i++) THROW_IF(p.batch_start[i] < p.batch_start[i - 1], "batchStart must not decrease");
    uint32_t* segs = er_binding::array_data<uint32_t>(plan.Get("segments"), napi_uint32_array, n, "segments");
    double* offs = er_binding::array_data<double>(plan.Get("offsets"), napi_float64_array, n, "offsets");
    double* bytes = er_binding::array_data<double>(plan.Get("bytes"), napi_float64_array, n, "bytes");
    uint32_t* toks = er_binding::array_data<uint32_t>(plan.Get("tokens"), napi_uint32_array, n, "tokens");
    uint8_t* keys = er_binding::array_data<uint8_t>(plan.Get("keys"), napi_uint8_array, n * kKeyBytes, "keys");
    p.records.resize(n);
    for (size_t i = 0; i < n; i++) {
      p.records[i].segment = segs[i];
      p.records[i].offset = (uint64_t)offs[i];
      p.records[i].bytes = (uint64_t)bytes[i];
      p.records[i].tokens = toks[i];
      std::memcpy(p.records[i].key, keys + i * kKeyBytes, kKeyBytes);
    }
    int depth = opts.Get("depth").As<Napi::Number>().Int32Value();
    bool verify = opts.Get("verify").ToBoolean().Value();
    uint32_t max_rows = opts.Get("maxRows").As<Napi::Number>().Uint32Value();
    uint32_t max_tokens = opts.Get("maxTokens").As<Napi::Number>().Uint32Value();
    THROW_IF(depth < 0 || depth > 64, "depth must be in 0..64");
    pf_ = std::make_shared<er::store::Prefetcher>(r->reader, std::move(p), depth, verify, max_rows, max_tokens);
    buffers_.resize(pf_->slot_count());
    masks_.resize(pf_->slot_count());
    uint64_t bytes_total = 0;
    for (size_t i = 0; i < pf_->slot_count(); i++)
      bytes_total += pf_->slot((int)i).hidden.size() * 4 + pf_->slot((int)i).mask.size() * 4;
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), (int64_t)bytes_total);
    external_ = (int64_t)bytes_total;
  }

  ~PrefetchHandle() override {
    if (pf_) pf_->stop();
  }

 private:
  class NextWorker : public Napi::AsyncWorker {
   public:
    NextWorker(Napi::Env env, PrefetchHandle* owner, std::shared_ptr<er::store::Prefetcher> pf, uint64_t index)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), owner_(owner), pf_(std::move(pf)), index_(index) {
      self_ = Napi::Persistent(owner->Value());
    }
    Napi::Promise::Deferred deferred;
    void Execute() override {
      std::string err;
      slot_ = pf_->acquire(index_, &err);
      if (!err.empty()) {
        if (slot_ >= 0) pf_->release(slot_);
        slot_ = -1;
        SetError(err);
      }
    }
    void OnOK() override { deferred.Resolve(owner_->View(Env(), slot_)); }
    void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

   private:
    PrefetchHandle* owner_;
    Napi::ObjectReference self_;
    std::shared_ptr<er::store::Prefetcher> pf_;
    uint64_t index_;
    int slot_ = -1;
  };

  // Views over a slot's buffers (created once per slot; the prefetcher outlives them).
  Napi::Object View(Napi::Env env, int slot) {
    er::store::Slot& s = pf_->slot(slot);
    if (buffers_[slot].IsEmpty()) {
      auto* keep = new std::shared_ptr<er::store::Prefetcher>(pf_);
      buffers_[slot] = Napi::Persistent(Napi::ArrayBuffer::New(
          env, s.hidden.data(), s.hidden.size() * sizeof(float),
          [](Napi::Env, void*, std::shared_ptr<er::store::Prefetcher>* k) { delete k; }, keep));
      auto* keep2 = new std::shared_ptr<er::store::Prefetcher>(pf_);
      masks_[slot] = Napi::Persistent(Napi::ArrayBuffer::New(
          env, s.mask.data(), s.mask.size() * sizeof(int32_t),
          [](Napi::Env, void*, std::shared_ptr<er::store::Prefetcher>* k) { delete k; }, keep2));
    }
    uint64_t H = s.hidden.size() / ((uint64_t)std::max<size_t>(1, s.mask.size()));
    Napi::Object o = Napi::Object::New(env);
    o.Set("slot", slot);
    o.Set("batch", (double)s.batch);
    o.Set("rows", s.rows);
    o.Set("tokens", s.tokens);
    o.Set("hidden", Napi::Float32Array::New(env, (size_t)s.rows * s.tokens * H, buffers_[slot].Value(), 0));
    o.Set("mask", Napi::Int32Array::New(env, (size_t)s.rows * s.tokens, masks_[slot].Value(), 0));
    return o;
  }

  // next(index) -> Promise<{slot, batch, rows, tokens, hidden, mask}>
  Napi::Value Next(const Napi::CallbackInfo& info) {
    THROW_IF(!pf_, "the prefetcher is stopped");
    uint64_t index = (uint64_t)info[0].As<Napi::Number>().Int64Value();
    auto* w = new NextWorker(info.Env(), this, pf_, index);
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (pf_) pf_->release(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    if (!pf_) return o;
    er::store::PrefetchStats s = pf_->stats();
    o.Set("consumerWaitMs", s.consumer_wait_ns / 1e6);
    o.Set("decodeMs", s.decode_ns / 1e6);
    o.Set("bytesRead", (double)s.bytes_read);
    o.Set("batches", (double)s.batches);
    o.Set("bufferBytes", (double)external_);
    return o;
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (pf_) pf_->stop();
    return info.Env().Undefined();
  }

  std::shared_ptr<er::store::Prefetcher> pf_;
  std::vector<Napi::Reference<Napi::ArrayBuffer>> buffers_, masks_;
  int64_t external_ = 0;
};

}  // namespace

void init_store(Napi::Env env, Napi::Object exports) {
  exports.Set("StoreWriter", WriterHandle::Init(env));
  exports.Set("StoreReader", ReaderHandle::Init(env));
  exports.Set("Prefetcher", PrefetchHandle::Init(env));
}
