// Job pool: worker threads fed by a mutex-protected queue; results reach JS through one
// uv_async_t per environment, whose callback settles every finished job in one scope.
// Submissions are handed to the threads once per turn of the loop (uv_check, uv_prepare).
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
 * (waiting on `wake_`). Jobs are queued with a wake-up only when no thread is searching:
 * the searching one takes them. A thread that takes a job and leaves more queued wakes the
 * next itself.
 *
 * Waking a sleeping thread is what costs the JS thread (a futex wake and, on a VM, an
 * inter-processor interrupt: ~10 us measured, against ~1 us for the rest of a call). So
 * submissions collect in `pending_` and are queued together after the poll phase (uv_check)
 * or before the loop would block (uv_prepare): one wake-up per turn of the loop, however
 * many requests that turn handled. A job thus starts at most one turn later; it could not
 * complete earlier than the next turn anyway.
 */
class JobPool {
 public:
  JobPool(napi_env env, napi_ref resource, napi_async_context context)
      : env_(env), resource_(resource), context_(context) {}

  /** JS thread: the uv handles and the teardown hook. False on failure (see CreateJobPool). */
  bool Start(uv_loop_t* loop);
  /** JS thread: see SubmitJob. */
  Napi::Value Submit(Napi::Env env, Job* job);

 private:
  /** JS thread: adds job to pending_, arming the flush at the end of this turn. */
  void AddPending(Job* job);
  /** JS thread: moves pending_ to the queue and wakes or starts a thread if none is awake. */
  void Flush();

  static void* ThreadMain(void* arg);
  static void OnAsync(uv_async_t* async);
  static void OnCheck(uv_check_t* check);
  static void OnPrepare(uv_prepare_t* prepare);
  static void OnCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  static void OnClosed(uv_handle_t* handle);

  /** Under mu_ (JS or worker thread): starts a thread, counted as searching. */
  int StartThread();
  /** Under mu_: moves one idle thread to searching; the caller notifies after unlocking. */
  bool ClaimIdle();
  void Work();
  /** Worker thread, unlocked: runs, abandons or drops job; true to deliver it. */
  bool Process(Job* job, bool stopping);
  /** JS thread: settles the finished jobs in one handle scope and one callback scope. */
  void Deliver();
  /** JS thread, at teardown once every thread has returned: join, close the uv handles. */
  void Finish();

  napi_env env_;
  napi_ref resource_;
  napi_async_context context_;
  uv_async_t async_;
  uv_check_t check_;
  uv_prepare_t prepare_;
  /** uv handles initialised and not yet closed (their close callbacks free the pool). */
  int live_handles_ = 0;
  napi_async_cleanup_hook_handle hook_ = nullptr;

  // JS thread only.
  size_t unsettled_ = 0;
  bool tearing_down_ = false;
  /** A thread was started (by Submit): from then on a thread always exists. */
  bool have_thread_ = false;
  std::vector<Job*> pending_;
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
  // These cannot fail on Linux (uv_async_init only when out of fds, at addon load).
  if (uv_async_init(loop, &async_, &JobPool::OnAsync) != 0) return false;
  uv_check_init(loop, &check_);
  uv_prepare_init(loop, &prepare_);
  async_.data = check_.data = prepare_.data = this;
  live_handles_ = 3;
  // Unreferenced while no promise is unsettled, so an idle daemon or client can exit. The
  // flush handles never keep the loop alive: a pending job's promise does, through async_.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
  if (napi_add_async_cleanup_hook(env_, &JobPool::OnCleanup, this, nullptr) != napi_ok) {
    // Not reachable in practice; closing would need callbacks: the handles stay, idle.
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

void JobPool::AddPending(Job* job) {
  if (pending_.empty()) {
    uv_check_start(&check_, &JobPool::OnCheck);
    uv_prepare_start(&prepare_, &JobPool::OnPrepare);
  }
  pending_.push_back(job);
}

void JobPool::Flush() {
  uv_check_stop(&check_);
  uv_prepare_stop(&prepare_);
  if (pending_.empty()) return;
  bool notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.insert(queue_.end(), pending_.begin(), pending_.end());
    notify = ClaimIdle();
    // A failed start is fine: Submit made sure one thread exists, and it gets to the jobs.
    if (!notify && searching_ == 0 && started_ < kThreads) StartThread();
  }
  pending_.clear();
  if (notify) wake_.notify_one();
}

void JobPool::OnCheck(uv_check_t* check) {
  static_cast<JobPool*>(check->data)->Flush();
}

void JobPool::OnPrepare(uv_prepare_t* prepare) {
  static_cast<JobPool*>(prepare->data)->Flush();
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
      // Jobs left and nobody to look at them: this one may block for long, so hand them on.
      bool chain = false;
      if (!queue_.empty() && searching_ == 0) {
        chain = ClaimIdle();
        if (!chain && started_ < kThreads) StartThread();  // failing is fine: we come back
      }
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
  bool in_scope = napi_open_callback_scope(env_, resource, context_, &callback_scope) == napi_ok;
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
    AddPending(job);
  }
  unsettled_ -= delivering_.size();
  if (unsettled_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  delivering_.clear();
  // An exception in a tick callback becomes an uncaughtException there (node::CallbackScope),
  // as for napi_make_callback.
  if (in_scope) napi_close_callback_scope(env_, callback_scope);
}

void JobPool::OnCleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  JobPool* pool = static_cast<JobPool*>(arg);
  pool->hook_ = hook;
  pool->tearing_down_ = true;
  // Referenced, so the loop blocks (not spins) until the last worker's uv_async_send.
  uv_ref(reinterpret_cast<uv_handle_t*>(&pool->async_));
  pool->Flush();  // unflushed closes must still run
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
  napi_async_destroy(env_, context_);
  napi_delete_reference(env_, resource_);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), &JobPool::OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), &JobPool::OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), &JobPool::OnClosed);
}

void JobPool::OnClosed(uv_handle_t* handle) {
  JobPool* pool = static_cast<JobPool*>(handle->data);
  if (--pool->live_handles_ > 0) return;
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
  int err = 0;
  if (!have_thread_) {
    // The first thread starts here, where a failure can still be reported; later ones
    // start in Flush or Work, which may fail harmlessly. Threads only exit at teardown.
    std::lock_guard<std::mutex> lock(mu_);
    err = StartThread();
    have_thread_ = err == 0;
  }
  if (err == 0) {
    AddPending(job);
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
