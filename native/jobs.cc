// Job pool: worker threads fed by a mutex-protected queue; results reach JS through one
// uv_async_t per environment, whose callback settles every finished job in one scope.
#include "jobs.h"

#include <pthread.h>
#include <signal.h>
#include <uv.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "errors.h"

namespace diskseqd {

namespace {

// Jobs are short (a few microseconds of open + ioctls), so one or two threads carry any
// load on a small machine; but an open or close of a hung device can block for minutes and
// holds its thread meanwhile. Four (libuv's default) leaves the others served while up to
// three devices hang. Threads start only when a job finds none awake.
constexpr int kThreads = 4;
// The jobs need a few hundred bytes of stack; the default 8 MiB is only address space.
constexpr size_t kStackSize = 256 * 1024;

}  // namespace

/**
 * Per-environment pool. Counting under `mu_`: every started thread is exactly one of
 * searching (awake, will look at the queue before sleeping), busy (running a job) or idle
 * (waiting on `wake_`). A job is queued with a wake-up only when no thread is searching:
 * the searching one takes it. A thread that takes a job and leaves more queued wakes the
 * next itself, so a burst of submissions costs the JS thread at most one futex wake.
 */
class JobPool {
 public:
  JobPool(napi_env env, napi_ref resource, napi_async_context context)
      : env_(env), resource_(resource), context_(context) {}

  /** JS thread: uv_async_init + teardown hook. Returns false (nothing to undo) on failure. */
  bool Start(uv_loop_t* loop);
  /** JS thread: see SubmitJob. */
  Napi::Value Submit(Napi::Env env, Job* job);

 private:
  /** Queues job; 0, or pthread_create's errno when no thread exists and none can start. */
  int Enqueue(Job* job);

  static void* ThreadMain(void* arg);
  static void OnAsync(uv_async_t* async);
  static void OnCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  static void OnClosed(uv_handle_t* handle);

  /** Under mu_: starts a thread (counted as searching) with every signal blocked. */
  int StartThread();
  /** Under mu_: moves one idle thread to searching; the caller notifies after unlocking. */
  bool ClaimIdle();
  void Work();
  /** Worker thread, unlocked: runs, abandons or drops job; true to deliver it. */
  bool Process(Job* job, bool stopping);
  /** JS thread: settles the finished jobs in one handle scope and one callback scope. */
  void Deliver();
  /** JS thread, at teardown once every thread has returned: join, close the uv handle. */
  void Finish();

  napi_env env_;
  napi_ref resource_;
  napi_async_context context_;
  uv_async_t async_;
  napi_async_cleanup_hook_handle hook_ = nullptr;

  // JS thread only.
  size_t unsettled_ = 0;
  bool tearing_down_ = false;
  std::vector<Job*> delivering_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job*> queue_;
  std::vector<Job*> done_;
  int started_ = 0;
  int exited_ = 0;
  int searching_ = 0;
  int idle_ = 0;
  /** Wake-ups handed out by ClaimIdle and not yet taken: immune to spurious wake-ups. */
  int tokens_ = 0;
  bool stopping_ = false;
  pthread_t threads_[kThreads];
};

bool JobPool::Start(uv_loop_t* loop) {
  if (uv_async_init(loop, &async_, &JobPool::OnAsync) != 0) return false;
  async_.data = this;
  // Unreferenced while no promise is unsettled, so an idle daemon or client can exit.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  if (napi_add_async_cleanup_hook(env_, &JobPool::OnCleanup, this, nullptr) != napi_ok) {
    // Not reachable in practice; closing would need a callback, so the handle stays, idle.
    return false;
  }
  return true;
}

int JobPool::StartThread() {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kStackSize);
  // Signals stay with the JS thread (Node's handlers); workers' syscalls see no EINTR storm.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&threads_[started_], &attr, &JobPool::ThreadMain, this);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (err == 0) {
    started_++;
    searching_++;
  }
  return err;
}

bool JobPool::ClaimIdle() {
  if (searching_ != 0 || idle_ == 0) return false;
  idle_--;
  searching_++;
  tokens_++;
  return true;
}

int JobPool::Enqueue(Job* job) {
  bool notify = false;
  int err = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    notify = ClaimIdle();
    if (!notify && searching_ == 0 && started_ < kThreads) err = StartThread();
    if (err != 0 && started_ > 0) err = 0;  // a running thread will get to it
    if (err == 0) queue_.push_back(job);
  }
  if (notify) wake_.notify_one();
  return err;
}

void* JobPool::ThreadMain(void* arg) {
  static_cast<JobPool*>(arg)->Work();
  return nullptr;
}

bool JobPool::Process(Job* job, bool stopping) {
  if (job->abandoned_) {
    job->Abandon();
  } else if (stopping && !job->MustRun()) {
    // Teardown: never run. Its promise dies with the environment.
  } else {
    job->Run();
    return true;
  }
  delete job;
  return false;
}

void JobPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {  // here this thread counts as searching
    if (!queue_.empty()) {
      Job* job = queue_.front();
      queue_.pop_front();
      searching_--;
      bool chain = !queue_.empty() && ClaimIdle();
      bool stopping = stopping_;
      lock.unlock();
      if (chain) wake_.notify_one();
      bool deliver = Process(job, stopping);
      lock.lock();
      if (deliver && stopping_) {
        // The environment is going: nobody will settle it; release what it holds here.
        lock.unlock();
        job->Abandon();
        delete job;
        lock.lock();
      } else if (deliver) {
        bool first = done_.empty();
        done_.push_back(job);
        // uv_async_send coalesces anyway; sending only on empty -> non-empty saves a write.
        if (first) uv_async_send(&async_);
      }
      searching_++;
      continue;
    }
    if (stopping_) {
      searching_--;
      if (++exited_ == started_) uv_async_send(&async_);  // Finish may join us now
      return;
    }
    searching_--;
    idle_++;
    wake_.wait(lock, [this] { return tokens_ > 0 || stopping_; });
    if (tokens_ > 0) {
      tokens_--;  // ClaimIdle already counted us as searching
    } else {
      idle_--;
      searching_++;
    }
  }
}

void JobPool::OnAsync(uv_async_t* async) {
  JobPool* pool = static_cast<JobPool*>(async->data);
  if (!pool->tearing_down_) return pool->Deliver();
  bool all_exited;
  {
    std::lock_guard<std::mutex> lock(pool->mu_);
    all_exited = pool->exited_ == pool->started_;
  }
  if (all_exited) pool->Finish();
}

void JobPool::Deliver() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    delivering_.swap(done_);  // done_ gets the old, cleared vector's capacity back
  }
  if (delivering_.empty()) return;
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  napi_value resource;
  napi_callback_scope callback_scope;
  napi_get_reference_value(env_, resource_, &resource);
  // Closing a callback scope runs process.nextTick callbacks and microtasks, as after any
  // libuv callback: the promise continuations of the whole batch run then, once.
  napi_open_callback_scope(env_, resource, context_, &callback_scope);
  for (Job* job : delivering_) {
    napi_deferred deferred = job->deferred_;
    job->deferred_ = nullptr;
    bool released = job->Settle(env, deferred);
    if (env.IsExceptionPending()) env.GetAndClearPendingException();  // Settle rejected with it
    if (released) {
      delete job;
      continue;
    }
    // The promise could not take what the job holds: release it on a worker, off the loop.
    job->abandoned_ = true;
    if (Enqueue(job) != 0) {
      job->Abandon();
      delete job;
    }
  }
  unsettled_ -= delivering_.size();
  if (unsettled_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  delivering_.clear();
  napi_close_callback_scope(env_, callback_scope);  // an exception in a tick callback
  // becomes an uncaughtException there (node::CallbackScope), as for napi_make_callback.
}

void JobPool::OnCleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  JobPool* pool = static_cast<JobPool*>(arg);
  pool->hook_ = hook;
  pool->tearing_down_ = true;
  // Referenced, so the loop blocks (not spins) until the last worker's uv_async_send.
  uv_ref(reinterpret_cast<uv_handle_t*>(&pool->async_));
  bool none_running;
  {
    std::lock_guard<std::mutex> lock(pool->mu_);
    pool->stopping_ = true;
    // Finished but never settled: their fds are closed by a worker before it exits.
    for (Job* job : pool->done_) {
      job->abandoned_ = true;
      pool->queue_.push_front(job);
    }
    pool->done_.clear();
    none_running = pool->exited_ == pool->started_;
  }
  pool->wake_.notify_all();
  if (none_running) pool->Finish();
}

void JobPool::Finish() {
  // Every thread has left Work(); join so none still runs addon code when it is unloaded.
  for (int i = 0; i < started_; i++) pthread_join(threads_[i], nullptr);
  started_ = exited_ = 0;
  napi_async_destroy(env_, context_);
  napi_delete_reference(env_, resource_);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), &JobPool::OnClosed);
}

void JobPool::OnClosed(uv_handle_t* handle) {
  JobPool* pool = static_cast<JobPool*>(handle->data);
  napi_remove_async_cleanup_hook(pool->hook_);  // Node may go on (and unload us)
  delete pool;
}

JobPool* CreateJobPool(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "no uv loop for this environment").ThrowAsJavaScriptException();
    return nullptr;
  }
  // The async resource of every settlement (what async_hooks sees as its trigger).
  Napi::Object resource = Napi::Object::New(env);
  napi_ref resource_ref;
  napi_async_context context;
  if (napi_create_reference(env, resource, 1, &resource_ref) != napi_ok) return nullptr;
  if (napi_async_init(env, resource, Napi::String::New(env, "diskseqd.job"), &context) !=
      napi_ok) {
    napi_delete_reference(env, resource_ref);
    return nullptr;
  }
  JobPool* pool = new JobPool(env, resource_ref, context);
  if (!pool->Start(loop)) {
    // The uv handle may already be initialised: the pool is leaked rather than freed under it.
    Napi::Error::New(env, "cannot start the job pool").ThrowAsJavaScriptException();
    return nullptr;
  }
  return pool;
}

Napi::Value JobPool::Submit(Napi::Env env, Job* job) {
  napi_deferred deferred;
  napi_value promise;
  if (napi_create_promise(env, &deferred, &promise) != napi_ok) {
    delete job;  // never ran: holds nothing
    return env.Undefined();
  }
  job->deferred_ = deferred;
  int err = Enqueue(job);
  if (err == 0) {
    // The first unsettled promise keeps the loop alive until it settles.
    if (unsettled_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    return Napi::Value(env, promise);
  }
  // No thread at all and none can start. A close must still happen; the rest fail.
  job->deferred_ = nullptr;
  if (job->MustRun()) {
    job->Run();
    if (!job->Settle(env, deferred)) job->Abandon();
  } else {
    napi_reject_deferred(env, deferred, ErrnoError(env, err, "pthread_create").Value());
  }
  delete job;
  return Napi::Value(env, promise);
}

Napi::Value SubmitJob(Napi::Env env, JobPool* pool, Job* job) {
  return pool->Submit(env, job);
}

}  // namespace diskseqd
