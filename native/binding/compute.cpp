#include "binding/compute.h"
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <thread>
#include <cstdlib>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace er_binding {

void ComputeJob::execute() {
  try {
    run();
  } catch (const std::bad_alloc&) {
    fail("out of memory in native work; lower the batch size or the sequence length");
  } catch (const std::exception& e) {
    fail(e.what());
  } catch (...) {
    fail("unknown native error");
  }
}

void ComputeJob::settle(Napi::Env env) {
  Napi::HandleScope scope(env);
  if (!error_.empty()) {
    deferred_.Reject(Napi::Error::New(env, error_).Value());
    return;
  }
  try {
    deferred_.Resolve(result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

// ------------------------------------------------------------------ JsChannel

namespace {
using Fn = std::function<void(Napi::Env)>;
void call_fn(Napi::Env env, Napi::Function, JsChannel::State* st, Fn* fn);
using Tsfn = Napi::TypedThreadSafeFunction<JsChannel::State, Fn, call_fn>;
}  // namespace

struct JsChannel::State {
  std::mutex mu;
  // set (under mu) when the thread-safe function is finalized, at the latest while the
  // environment is torn down; nothing calls into it after that
  bool closed = false;
  Tsfn tsfn;
  size_t expected = 0;  // JavaScript thread only
};

namespace {
void call_fn(Napi::Env env, Napi::Function, JsChannel::State* st, Fn* fn) {
  std::unique_ptr<Fn> own(fn);
  // env is null while the environment is torn down: nobody waits any more
  if (env == nullptr || !fn) return;
  {
    Napi::HandleScope scope(env);
    (*fn)(env);
  }
  if (st->expected > 0 && --st->expected == 0) st->tsfn.Unref(env);
}
}  // namespace

JsChannel::JsChannel(Napi::Env env, const char* name) : st_(std::make_shared<State>()) {
  // the thread-safe function owns a reference to the state until it is finalized
  auto* keep = new std::shared_ptr<State>(st_);
  st_->tsfn = Tsfn::New(env, name, 0, 1, st_.get(),
                        [](Napi::Env, std::shared_ptr<State>* k, State* st) {
                          {
                            std::lock_guard<std::mutex> lock(st->mu);
                            st->closed = true;
                          }
                          delete k;
                        },
                        keep);
  st_->tsfn.Unref(env);
}

JsChannel::~JsChannel() {
  std::lock_guard<std::mutex> lock(st_->mu);
  if (!st_->closed) st_->tsfn.Release();
}

void JsChannel::expect(Napi::Env env) {
  if (st_->expected++ == 0) st_->tsfn.Ref(env);
}

bool JsChannel::post(std::function<void(Napi::Env)> fn) {
  auto* f = new Fn(std::move(fn));
  std::lock_guard<std::mutex> lock(st_->mu);
  if (st_->closed || st_->tsfn.NonBlockingCall(f) != napi_ok) {
    delete f;  // dropped with the environment (its captures must not need it)
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ ComputeQueue

struct ComputeQueue::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<ComputeJob*> jobs;
  bool stop = false;
  std::shared_ptr<JsChannel> channel;
  std::thread thread;
};

namespace {

// The compute thread (and the OpenMP workers it starts, which inherit it) runs at a lower
// scheduling priority than the JavaScript thread: when every core is busy computing, the
// event loop still gets a core at once to accept, parse and answer requests. Default
// nice +5 over the process; ER_COMPUTE_NICE=0 keeps the process's priority.
void lower_priority() {
  int delta = 5;
  if (const char* e = std::getenv("ER_COMPUTE_NICE")) delta = std::atoi(e);
  if (delta <= 0) return;
  const pid_t tid = (pid_t)syscall(SYS_gettid);
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, (id_t)tid);
  if (errno == 0) setpriority(PRIO_PROCESS, (id_t)tid, std::min(19, now + delta));  // advisory
}

void loop(ComputeQueue::State* st) {
  lower_priority();
  for (;;) {
    ComputeJob* job;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait(lock, [&] { return st->stop || !st->jobs.empty(); });
      if (st->jobs.empty()) break;  // stopped and drained
      job = st->jobs.front();
      st->jobs.pop_front();
    }
    job->execute();
    // refused only while the environment shuts down; the job is then dropped with it
    // (its references can no longer be released)
    st->channel->post([job](Napi::Env env) {
      job->settle(env);
      delete job;
    });
  }
}

}  // namespace

ComputeQueue::ComputeQueue(Napi::Env env) : st_(std::make_shared<State>()) {
  st_->channel = std::make_shared<JsChannel>(env, "embedding-recycler compute");
  st_->thread = std::thread(loop, st_.get());
}

// compute_queue_for keeps its queues for the life of the process; a queue made otherwise
// is woken here and joined once its thread has run what was queued.
ComputeQueue::~ComputeQueue() {
  {
    std::lock_guard<std::mutex> lock(st_->mu);
    st_->stop = true;
  }
  st_->cv.notify_all();
  if (st_->thread.joinable()) st_->thread.join();
}

Napi::Promise ComputeQueue::submit(Napi::Env env, std::unique_ptr<ComputeJob> job) {
  Napi::Promise p = job->promise();
  st_->channel->expect(env);
  {
    std::lock_guard<std::mutex> lock(st_->mu);
    st_->jobs.push_back(job.release());
  }
  st_->cv.notify_one();
  return p;
}

std::shared_ptr<ComputeQueue> compute_queue_for(Napi::Env env) {
  // One queue per environment, for the life of the process: the CPU engines share the
  // cores anyway (one OpenMP team at a time is the fast way to use them), and a thread
  // that never exits keeps its OpenMP pool, instead of tearing one down per encoder.
  // (A worker thread's environment leaves its queue's thread blocked when it ends.)
  static std::mutex mu;
  static std::map<napi_env, std::shared_ptr<ComputeQueue>> queues;
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<ComputeQueue>& q = queues[(napi_env)env];
  if (!q) q = std::make_shared<ComputeQueue>(env);
  return q;
}

}  // namespace er_binding
