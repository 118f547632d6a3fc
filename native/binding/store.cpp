// N-API glue for the activation store: writer, reader, prefetcher. No format logic
// here (native/store/ owns it); arguments are checked in src/store/ first.
#include <napi.h>
#include "binding/args.h"
#include "binding/compute.h"
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unistd.h>
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
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kWriterTag);
    std::string dir = info[0].As<Napi::String>().Utf8Value();
    const uint8_t* id = er_binding::array_data<uint8_t>(info[1], napi_uint8_array, kIdentityBytes, "identity");
    uint64_t max_bytes = (uint64_t)er_binding::get_int(info[2], "maxSegmentBytes", 1, int64_t(1) << 50);
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
    er_binding::check_this(info, er_binding::kWriterTag, "StoreWriter");
    THROW_IF(!state_, "the store writer is closed");
    uint32_t seg = (uint32_t)er_binding::get_int(info[0], "segment", 0, UINT32_MAX - 1);
    uint64_t committed = (uint64_t)er_binding::get_int(info[1], "committed", 0, int64_t(1) << 50);
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
    er_binding::check_this(info, er_binding::kWriterTag, "StoreWriter");
    THROW_IF(!state_, "the store writer is closed");
    THROW_IF(info.Length() < 8, "append expects 8 arguments");
    uint32_t B = (uint32_t)er_binding::get_int(info[1], "batch size", 1, er_binding::kMaxDim);
    uint32_t T = (uint32_t)er_binding::get_int(info[2], "sequence length", 1, er_binding::kMaxDim);
    uint32_t H = (uint32_t)er_binding::get_int(info[3], "hidden size", 1, 1 << 20);
    THROW_IF((uint64_t)B * T * H > er_binding::kMaxElements, "append: the batch is too large");
    const uint8_t codec = (uint8_t)er_binding::get_int(info[7], "codec", 0, 1);
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
    w->codec = codec;
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kWriterTag, "StoreWriter");
    state_.reset();  // a running append keeps the state until it ends
    return info.Env().Undefined();
  }

  std::shared_ptr<State> state_;
};

// ------------------------------------------------------------------ reader

class ReaderHandle : public Napi::ObjectWrap<ReaderHandle> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "StoreReader",
                       {InstanceMethod("read", &ReaderHandle::Read),
                        InstanceMethod("verifySegment", &ReaderHandle::VerifySegment),
                        InstanceMethod("close", &ReaderHandle::Close)});
  }

  // new StoreReader(dir, identity: Uint8Array(16), hidden)
  ReaderHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReaderHandle>(info) {
    THROW_IF(info.Length() < 3 || !info[0].IsString(), "StoreReader(dir, identity, hidden)");
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kReaderTag);
    dir_ = info[0].As<Napi::String>().Utf8Value();
    const uint8_t* id = er_binding::array_data<uint8_t>(info[1], napi_uint8_array, kIdentityBytes, "identity");
    hidden = (uint32_t)er_binding::get_int(info[2], "hidden size", 1, 1 << 20);
    std::memcpy(identity_, id, kIdentityBytes);
    reader = std::make_shared<er::store::SegmentReader>(dir_, id);
  }

  std::shared_ptr<er::store::SegmentReader> reader;
  // ring memory shared by this store's prefetchers (kept between batches() loops)
  std::shared_ptr<er::store::RingPool> pool = std::make_shared<er::store::RingPool>(uint64_t(512) << 20);
  uint32_t hidden = 0;

  // A record's place as the index gives it, checked before any byte is touched: an
  // aligned offset past the file header, a size that holds the header and at least
  // the payload of `tokens` x hidden fp16 values (which also bounds the output by the
  // file), no overflow. The record's own header is then checked against it on decode.
  static std::string show(double v) {
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15) return std::to_string((int64_t)v);
    return std::to_string(v);
  }

  static std::string check_ref(uint64_t seg, double off, double bytes, double tokens) {
    const double kMax = 1125899906842624.0;  // 2^50
    if (!(seg <= UINT32_MAX)) return "segment must be an integer in 0..2^32-1";
    if (!(off >= er::store::kSegmentHeaderBytes && off <= kMax && off == std::floor(off)) ||
        (uint64_t)off % er::store::kRecordAlign != 0)
      return "offset " + show(off) + " is not a record offset (a multiple of 64 past the segment header)";
    if (!(bytes >= er::store::kRecordHeaderBytes && bytes <= kMax && bytes == std::floor(bytes)) ||
        (uint64_t)bytes % er::store::kRecordAlign != 0)
      return "bytes " + show(bytes) + " is not a record size (a multiple of 64, at least 64)";
    if (!(tokens >= 0 && tokens <= 2147483647.0 && tokens == std::floor(tokens)))
      return "tokens must be an integer in 0..2^31-1";
    return "";
  }

 private:
  // read(segment, offset, bytes, tokens, hidden, key Uint8Array(32), verify) -> Float32Array(tokens*hidden)
  Napi::Value Read(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kReaderTag, "StoreReader");
    THROW_IF(info.Length() < 7, "read expects 7 arguments");
    for (int i = 0; i < 5; i++) THROW_IF(!info[i].IsNumber(), "read: segment, offset, bytes, tokens and hidden must be numbers");
    const double segd = info[0].As<Napi::Number>().DoubleValue();
    const double offd = info[1].As<Napi::Number>().DoubleValue();
    const double bytesd = info[2].As<Napi::Number>().DoubleValue();
    const double tokd = info[3].As<Napi::Number>().DoubleValue();
    std::string bad = segd >= 0 && segd == std::floor(segd) ? check_ref((uint64_t)segd, offd, bytesd, tokd)
                                                           : std::string("segment must be a non-negative integer");
    if (!bad.empty()) throw Napi::RangeError::New(info.Env(), "read: " + bad);
    uint32_t seg = (uint32_t)segd, tokens = (uint32_t)tokd;
    uint64_t off = (uint64_t)offd, bytes = (uint64_t)bytesd;
    uint32_t H = (uint32_t)er_binding::get_int(info[4], "hidden", hidden, hidden);
    if (er::store::record_bytes(er::store::codec_payload_bytes(er::store::kCodecF16, tokens, H)) > bytes)
      throw Napi::RangeError::New(info.Env(), "read: a record of " + std::to_string(bytes) + " bytes cannot hold " +
                                                  std::to_string(tokens) + " x " + std::to_string(H) + " values");
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

  // close(): unmaps the segment files (reads after it map them again).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kReaderTag, "StoreReader");
    reader->unmap_all();
    pool->clear();
    return info.Env().Undefined();
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
    er_binding::check_this(info, er_binding::kReaderTag, "StoreReader");
    const uint32_t segment = (uint32_t)er_binding::get_int(info[0], "segment", 0, UINT32_MAX);
    const uint64_t committed = (uint64_t)er_binding::get_int(info[1], "committed", 0, int64_t(1) << 50);
    auto* w = new VerifyWorker(info.Env());
    w->segment = segment;
    w->committed = committed;
    w->path = er::store::segment_path(dir_, w->segment);
    std::memcpy(w->identity, identity_, kIdentityBytes);
    Napi::Promise p = w->deferred.Promise();
    w->Queue();
    return p;
  }

  std::string dir_;
  uint8_t identity_[kIdentityBytes];
};

// ------------------------------------------------------------------ prefetcher

class PrefetchHandle : public Napi::ObjectWrap<PrefetchHandle> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Prefetcher",
                       {InstanceMethod("next", &PrefetchHandle::Next),
                        InstanceMethod("release", &PrefetchHandle::Release),
                        InstanceMethod("stats", &PrefetchHandle::Stats),
                        InstanceMethod("stop", &PrefetchHandle::Stop),
                        InstanceMethod("free", &PrefetchHandle::Free)});
  }

  // new Prefetcher(reader, {hidden, batchStart: Uint32Array, segments: Uint32Array,
  //   offsets: Float64Array, bytes: Float64Array, tokens: Uint32Array, keys: Uint8Array},
  //   {depth, verify, maxRows, maxTokens, fp16}); fp16: hidden comes as a Uint16Array of the
  //   records' own fp16 values (an fp16 store only)
  PrefetchHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PrefetchHandle>(info) {
    THROW_IF(info.Length() < 3 || !info[1].IsObject() || !info[2].IsObject(), "Prefetcher(reader, plan, options)");
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kPrefetcherTag);
    ReaderHandle* r = er_binding::unwrap_tagged<ReaderHandle>(info[0], er_binding::kReaderTag, "StoreReader");
    Napi::Object plan = info[1].As<Napi::Object>(), opts = info[2].As<Napi::Object>();
    er::store::Plan p;
    p.hidden = (uint32_t)er_binding::get_int(plan.Get("hidden"), "plan.hidden", r->hidden, r->hidden);
    Napi::Value bs = plan.Get("batchStart");
    uint32_t* starts = er_binding::array_data<uint32_t>(bs, napi_uint32_array, (size_t)-1, "batchStart");
    size_t nb1 = bs.As<Napi::TypedArray>().ElementLength();
    THROW_IF(nb1 < 1, "batchStart must have at least one entry");
    p.batch_start.assign(starts, starts + nb1);
    size_t n = p.batch_start.back();
    THROW_IF(p.batch_start[0] != 0, "batchStart must start at 0");
    for (size_t i = 1; i < nb1; i++) THROW_IF(p.batch_start[i] < p.batch_start[i - 1], "batchStart must not decrease");
    const int depth = (int)er_binding::get_int(opts.Get("depth"), "depth", 0, 64);
    const bool verify = opts.Get("verify").ToBoolean().Value();
    const bool fp16 = opts.Get("fp16").ToBoolean().Value();
    const uint32_t max_rows = (uint32_t)er_binding::get_int(opts.Get("maxRows"), "maxRows", 1, er_binding::kMaxDim);
    const uint32_t max_tokens = (uint32_t)er_binding::get_int(opts.Get("maxTokens"), "maxTokens", 1, er_binding::kMaxDim);
    uint32_t* segs = er_binding::array_data<uint32_t>(plan.Get("segments"), napi_uint32_array, n, "segments");
    double* offs = er_binding::array_data<double>(plan.Get("offsets"), napi_float64_array, n, "offsets");
    double* bytes = er_binding::array_data<double>(plan.Get("bytes"), napi_float64_array, n, "bytes");
    uint32_t* toks = er_binding::array_data<uint32_t>(plan.Get("tokens"), napi_uint32_array, n, "tokens");
    uint8_t* keys = er_binding::array_data<uint8_t>(plan.Get("keys"), napi_uint8_array, n * kKeyBytes, "keys");
    p.records.resize(n);
    for (size_t i = 0; i < n; i++) {
      std::string bad = ReaderHandle::check_ref(segs[i], offs[i], bytes[i], toks[i]);
      if (bad.empty() && toks[i] > max_tokens) bad = "tokens exceed maxTokens";
      if (bad.empty() &&
          er::store::record_bytes(er::store::codec_payload_bytes(er::store::kCodecF16, toks[i], p.hidden)) > bytes[i])
        bad = "a record of " + std::to_string((uint64_t)bytes[i]) + " bytes cannot hold " + std::to_string(toks[i]) +
              " x " + std::to_string(p.hidden) + " values";
      if (!bad.empty()) throw Napi::RangeError::New(info.Env(), "plan record " + std::to_string(i) + ": " + bad);
      p.records[i].segment = segs[i];
      p.records[i].offset = (uint64_t)offs[i];
      p.records[i].bytes = (uint64_t)bytes[i];
      p.records[i].tokens = toks[i];
      std::memcpy(p.records[i].key, keys + i * kKeyBytes, kKeyBytes);
    }
    for (size_t b = 0; b + 1 < nb1; b++)
      THROW_IF(p.batch_start[b + 1] - p.batch_start[b] > max_rows,
               "batch " + std::to_string(b) + " has more rows than maxRows");
    const uint64_t ring = er::store::Prefetcher::ring_bytes(depth, max_rows, max_tokens, p.hidden);
    const uint64_t phys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    if (ring > phys)
      throw Napi::RangeError::New(
          info.Env(), er_binding::alloc_message("the prefetch ring", ring, "batchSize, prefetch or maxBytes") +
                          " (this machine has " + std::to_string(phys) + " bytes of memory)");
    try {
      pf_ = std::make_shared<er::store::Prefetcher>(r->reader, std::move(p), depth, verify, max_rows, max_tokens, r->pool,
                                                    fp16);
    } catch (const std::bad_alloc&) {
      throw Napi::RangeError::New(info.Env(), er_binding::alloc_message("the prefetch ring", ring, "batchSize, prefetch or maxBytes"));
    }
    views_.resize(pf_->slot_count());
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), (int64_t)ring);
    external_ = (int64_t)ring;
    ring_ = ring;
  }

  ~PrefetchHandle() override {
    if (pf_) pf_->stop();
    // the GC was told about the ring when it was made; untell it (finalizers may adjust)
    if (external_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -external_);
  }

 private:
  class NextWorker : public Napi::AsyncWorker {
   public:
    NextWorker(Napi::Env env, PrefetchHandle* owner, std::shared_ptr<er::store::Prefetcher> pf, uint64_t index)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), owner_(owner), pf_(std::move(pf)), index_(index) {
      self_ = Napi::Persistent(owner->Value());
      owner_->in_flight_++;
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
    void OnOK() override {
      owner_->in_flight_--;
      if (owner_->stopped_) {
        // stopped while this batch was on its way: hand it back, report the stop
        pf_->release(slot_);
        owner_->maybe_free(Env());
        deferred.Reject(Napi::Error::New(Env(), "the prefetcher was stopped").Value());
        return;
      }
      deferred.Resolve(owner_->View(Env(), slot_));
    }
    void OnError(const Napi::Error& e) override {
      owner_->in_flight_--;
      owner_->maybe_free(Env());
      deferred.Reject(e.Value());
    }

   private:
    PrefetchHandle* owner_;
    Napi::ObjectReference self_;
    std::shared_ptr<er::store::Prefetcher> pf_;
    uint64_t index_;
    int slot_ = -1;
  };

  // The batch in a slot, as views over the slot's memory. Each batch gets ArrayBuffers of
  // its own, and release() detaches them before the slot is refilled: a view kept past its
  // release reads as empty (length 0) and native calls refuse it, instead of silently
  // seeing the next batch's data. The buffers keep the prefetcher (and so the memory) alive.
  Napi::Object View(Napi::Env env, int slot) {
    er::store::Slot& s = pf_->slot(slot);
    const uint64_t H = pf_->hidden();
    const size_t nh = (size_t)s.rows * s.tokens * H, nm = (size_t)s.rows * s.tokens;
    auto* keep = new std::shared_ptr<er::store::Prefetcher>(pf_);
    const size_t value_bytes = pf_->fp16() ? sizeof(uint16_t) : sizeof(float);
    Napi::ArrayBuffer hb = Napi::ArrayBuffer::New(
        env, s.hidden, nh * value_bytes,
        [](Napi::Env, void*, std::shared_ptr<er::store::Prefetcher>* k) { delete k; }, keep);
    auto* keep2 = new std::shared_ptr<er::store::Prefetcher>(pf_);
    Napi::ArrayBuffer mb = Napi::ArrayBuffer::New(
        env, s.mask, nm * sizeof(int32_t),
        [](Napi::Env, void*, std::shared_ptr<er::store::Prefetcher>* k) { delete k; }, keep2);
    views_[slot].hidden = Napi::Persistent(hb);
    views_[slot].mask = Napi::Persistent(mb);
    Napi::Object o = Napi::Object::New(env);
    o.Set("slot", slot);
    o.Set("batch", (double)s.batch);
    o.Set("rows", s.rows);
    o.Set("tokens", s.tokens);
    if (pf_->fp16()) o.Set("hidden", Napi::Uint16Array::New(env, nh, hb, 0));
    else o.Set("hidden", Napi::Float32Array::New(env, nh, hb, 0));
    o.Set("mask", Napi::Int32Array::New(env, nm, mb, 0));
    return o;
  }

  void detach(int slot) {
    SlotViews& v = views_[slot];
    if (!v.hidden.IsEmpty()) {
      Napi::ArrayBuffer b = v.hidden.Value();
      if (!b.IsDetached()) b.Detach();
      v.hidden.Reset();
    }
    if (!v.mask.IsEmpty()) {
      Napi::ArrayBuffer b = v.mask.Value();
      if (!b.IsDetached()) b.Detach();
      v.mask.Reset();
    }
  }

  // After stop() and free(), the ring's memory goes as soon as no batch is on its way to
  // JavaScript. (The caller asks for free() only once no native call reads a slot.)
  void maybe_free(Napi::Env env) {
    if (!stopped_ || !free_wanted_ || in_flight_ > 0 || freed_ || !pf_) return;
    pf_->free_buffers();
    freed_ = true;
    if (external_) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -external_);
      external_ = 0;
    }
  }

  // A next() waiting for the prefetch thread; settled (and freed) on the JavaScript thread.
  struct PendingNext {
    Napi::Promise::Deferred deferred;
    Napi::ObjectReference self;  // keeps this handle alive while the batch is on its way
  };

  void settle_next(Napi::Env env, PendingNext* pn, int slot, const std::string& err) {
    in_flight_--;
    if (!err.empty() || stopped_) {
      // a failed batch, or stopped while it was on its way: hand it back, report why
      if (slot >= 0) pf_->release(slot);
      maybe_free(env);
      pn->deferred.Reject(Napi::Error::New(env, err.empty() ? "the prefetcher was stopped" : err).Value());
      return;
    }
    pn->deferred.Resolve(View(env, slot));
  }

  // next(index) -> Promise<{slot, batch, rows, tokens, hidden, mask}>. With a prefetch
  // thread nothing waits in libuv's pool: the thread hands the batch over when it is
  // decoded. Without one (depth 0) the decode itself runs as a pool job.
  Napi::Value Next(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kPrefetcherTag, "Prefetcher");
    THROW_IF(!pf_ || stopped_, "the prefetcher is stopped");
    uint64_t index = (uint64_t)er_binding::get_int(info[0], "batch index", 0, int64_t(1) << 50);
    if (!pf_->threaded()) {
      auto* w = new NextWorker(info.Env(), this, pf_, index);
      Napi::Promise p = w->deferred.Promise();
      w->Queue();
      return p;
    }
    if (!channel_) channel_ = std::make_shared<er_binding::JsChannel>(info.Env(), "embedding-recycler prefetch");
    auto* pn = new PendingNext{Napi::Promise::Deferred::New(info.Env()), Napi::Persistent(Value())};
    Napi::Promise p = pn->deferred.Promise();
    in_flight_++;
    channel_->expect(info.Env());
    std::shared_ptr<er_binding::JsChannel> ch = channel_;
    PrefetchHandle* owner = this;
    // the callback runs here (batch ready, or an error) or on the prefetch thread; either
    // way the promise is settled from the JavaScript thread's loop
    pf_->acquire_async(index, [ch, pn, owner](int slot, std::string err) {
      ch->post([pn, owner, slot, err](Napi::Env env) {
        owner->settle_next(env, pn, slot, err);
        delete pn;
      });
    });
    return p;
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kPrefetcherTag, "Prefetcher");
    int slot = (int)er_binding::get_int(info[0], "slot", -1, 1 << 20);
    if (pf_ && slot >= 0 && (size_t)slot < views_.size()) {
      detach(slot);
      pf_->release(slot);
    }
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kPrefetcherTag, "Prefetcher");
    Napi::Object o = Napi::Object::New(info.Env());
    if (!pf_) return o;
    er::store::PrefetchStats s = pf_->stats();
    o.Set("consumerWaitMs", s.consumer_wait_ns / 1e6);
    o.Set("decodeMs", s.decode_ns / 1e6);
    o.Set("bytesRead", (double)s.bytes_read);
    o.Set("batches", (double)s.batches);
    o.Set("bufferBytes", (double)ring_);
    return o;
  }

  // Stops the thread; batches already handed out are detached (their memory stays: a
  // native call may still be reading it); a next() still on its way is rejected.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kPrefetcherTag, "Prefetcher");
    if (pf_ && !stopped_) {
      pf_->stop();
      stopped_ = true;
      for (size_t i = 0; i < views_.size(); i++) detach((int)i);
    }
    return info.Env().Undefined();
  }

  // Frees the ring's memory after stop(), once no next() is in flight. The caller
  // (src/store/store.ts) calls it when no native call reads a slot any more.
  Napi::Value Free(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kPrefetcherTag, "Prefetcher");
    THROW_IF(!stopped_, "free() needs stop() first");
    free_wanted_ = true;
    maybe_free(info.Env());
    return info.Env().Undefined();
  }

  struct SlotViews {
    Napi::Reference<Napi::ArrayBuffer> hidden, mask;
  };
  std::shared_ptr<er::store::Prefetcher> pf_;
  std::shared_ptr<er_binding::JsChannel> channel_;  // from the prefetch thread, made on first use
  std::vector<SlotViews> views_;
  int64_t external_ = 0;  // bytes the GC has been told about, until the ring is freed
  uint64_t ring_ = 0;
  int in_flight_ = 0;
  bool stopped_ = false, free_wanted_ = false, freed_ = false;
};

}  // namespace

void init_store(Napi::Env env, Napi::Object exports) {
  exports.Set("StoreWriter", WriterHandle::Init(env));
  exports.Set("StoreReader", ReaderHandle::Init(env));
  exports.Set("Prefetcher", PrefetchHandle::Init(env));
}
