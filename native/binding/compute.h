// Compute threads owned by the addon. Long native work (forward passes, training and
// inference steps) is queued to a thread of its own, one per JavaScript environment and
// shared by every encoder and task model in it, instead of being parked in libuv's pool: the pool stays free
// for fs, dns and crypto, and concurrent calls wait in this queue, not on a mutex inside
// a pool thread. Results come back to the JavaScript thread through a thread-safe
// function and settle the promise the caller holds.
#pragma once
#include <napi.h>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace er_binding {

// A channel from native threads to the JavaScript thread: post() runs a function there.
// The loop is kept alive only while posts are expected (expect() on the JavaScript thread
// before the native side may post). Safe against the environment's teardown: posts after
// it are dropped.
class JsChannel {
 public:
  JsChannel(Napi::Env env, const char* name);
  ~JsChannel();  // any thread
  JsChannel(const JsChannel&) = delete;
  JsChannel& operator=(const JsChannel&) = delete;
  // JavaScript thread: one more post() will come; the loop stays alive until it has run.
  void expect(Napi::Env env);
  // Any thread: runs fn(env) on the JavaScript thread. False when the environment is gone.
  bool post(std::function<void(Napi::Env)> fn);

  struct State;

 private:
  std::shared_ptr<State> st_;
};

// One unit of work: run() on the compute thread, result() on the JavaScript thread.
class ComputeJob {
 public:
  explicit ComputeJob(Napi::Env env) : deferred_(Napi::Promise::Deferred::New(env)) {}
  virtual ~ComputeJob() = default;
  ComputeJob(const ComputeJob&) = delete;
  ComputeJob& operator=(const ComputeJob&) = delete;
  // Inputs read in place, held (and so kept from the garbage collector) until settled.
  std::vector<Napi::ObjectReference> refs;
  void hold(const Napi::Value& v) {
    if (v.IsObject()) refs.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  // Compute thread: the work. Report a failure with fail(); exceptions are caught.
  virtual void run() = 0;
  // JavaScript thread: what the promise resolves to (only when run() did not fail).
  virtual Napi::Value result(Napi::Env env) = 0;
  void fail(std::string message) { error_ = std::move(message); }

  // Called by the queue.
  void execute();
  void settle(Napi::Env env);
  Napi::Promise promise() { return deferred_.Promise(); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string error_;
};

class ComputeQueue {
 public:
  // A queue with its own thread (made by compute_queue_for, owned by shared_ptr). The
  // thread does not keep the process alive while idle.
  explicit ComputeQueue(Napi::Env env);
  // Stops and joins the thread once it has run what was queued.
  ~ComputeQueue();
  ComputeQueue(const ComputeQueue&) = delete;
  ComputeQueue& operator=(const ComputeQueue&) = delete;
  // JavaScript thread: queues the job (taking it over) and returns its promise.
  Napi::Promise submit(Napi::Env env, std::unique_ptr<ComputeJob> job);

  struct State;

 private:
  std::shared_ptr<State> st_;
};

// The compute queue of this environment (made on first use, kept for the process).
std::shared_ptr<ComputeQueue> compute_queue_for(Napi::Env env);

}  // namespace er_binding
