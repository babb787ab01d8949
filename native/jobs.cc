// Job pool: worker threads fed by two mutex-protected queues (closes first), results
// reaching JS through one uv_async_t per environment, whose callback settles every
// finished job in one scope. Submissions are handed to the threads once per turn of the
// loop (uv_check, uv_prepare). Threads start on demand up to a cap and leave when idle;
// none is ever joined: a thread blocked in the kernel on a hung device cannot be
// cancelled, and teardown must not wait for it (docs/design.md, "Hung devices").
#include "jobs.h"

#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "errors.h"

namespace diskseqd {

namespace {

// The jobs need a few hundred bytes of stack; the default 8 MiB is only address space.
constexpr size_t kStackSize = 256 * 1024;
// Threads that only closes may use, so a close never waits behind opens.
constexpr int kCloseReserve = 2;
constexpr int kDefaultMaxThreads = 64;
constexpr int kDefaultIdleMs = 10000;
constexpr int kDefaultSpinMaxUs = 500;
/** The first spin window, and the smallest: halving below it stops spinning. */
constexpr int64_t kSpinStartNs = 50 * 1000;

using Clock = std::chrono::steady_clock;

}  // namespace

/**
 * Per-environment pool. Counting under `mu_`: every live thread is exactly one of
 * searching (awake, will look at the queues before sleeping), busy (running a job) or idle
 * (waiting in `idlers_`). Jobs are queued with a wake-up only when no thread is searching:
 * the searching one takes them. A thread that takes a job and leaves more runnable wakes
 * or starts the next itself, so a job blocked in the kernel holds up only its own thread.
 *
 * Waking a sleeping thread is what costs the JS thread (a futex wake and, on a VM, an
 * inter-processor interrupt: ~10 us measured in a micro-benchmark, ~40 us of CPU per open
 * under sequential opens, against ~1 us for the rest of a call). So
 * submissions collect in `pending_` and are queued together after the poll phase (uv_check)
 * or before the loop would block (uv_prepare): one wake-up per turn of the loop, however
 * many requests that turn handled.
 *
 * The thread woken is the one that went idle last (a stack, each thread waiting on a
 * condition variable of its own). With one shared condition variable the longest-idle
 * thread woke, so after a burst had started four threads each sequential open went to the
 * next of them in turn, always to the thread least likely to share a CPU and a warm cache
 * with the JS thread: sequential open p50 went from about 350 us with one thread to 650 us
 * with four (bench, c-client, 1 connection). The stack also lets the threads beneath it
 * reach their idle time and leave.
 *
 * Before it sleeps, the thread that ran the last job keeps looking for the next one for a
 * while (one thread at a time; it counts as searching, so a job queued meanwhile needs no
 * wake-up at all). On the VMs this was measured on, waking a sleeping thread costs the JS
 * thread an inter-processor interrupt — about 40 us of its CPU time per open, and as much
 * again in latency — where a job found by a spinning thread costs a memory write. The
 * window adapts as the kernel's haltpoll governor adapts its poll: it starts at 0, doubles
 * (from 50 us, up to the configured maximum, 500 us by default) whenever a thread slept and
 * the next job came within the maximum, and halves (to 0 below 50 us) whenever it came
 * later. Back-to-back opens so keep one thread spinning between them; a daemon that serves
 * an open now and then spins at most a few windows after each burst and then not at all.
 *
 * The other direction is the same hop: a result wakes a JS thread asleep in epoll through
 * uv_async. So before the loop would block (uv_prepare) with jobs outstanding, the JS thread
 * waits for their results a while (AwaitResults), polling the loop's epoll fd for anything
 * else and yielding like the spin; a job that finishes meanwhile sends no uv_async, and its
 * promise settles in that turn. Its window adapts as the threads' does (the same maximum):
 * it grows when the loop blocked and a result woke it within the maximum, and halves
 * whenever it passes with nothing, so a job stuck on a hung device closes it in a few turns.
 * Nothing waits while something runs without polling (setImmediate: uv_backend_timeout 0).
 *
 * Lifetime: threads are detached and may outlive the environment (blocked on a hung
 * device). The JS side and each live thread hold the pool; the last to let go deletes it.
 * The addon itself is pinned in memory (RTLD_NODELETE), so no thread ever runs unloaded code.
 */
class JobPool {
 public:
  JobPool(napi_env env, napi_ref resource, napi_async_context context)
      : env_(env), resource_(resource), context_(context) {}

  /** JS thread: the uv handles and the teardown hook. False on failure (see CreateJobPool). */
  bool Start(uv_loop_t* loop);
  /** JS thread: see SubmitJob. */
  Napi::Value Submit(Napi::Env env, Job* job);
  /**
   * JS thread: the thread cap (closes' reserve included), the idle time before a thread
   * leaves, and the largest spin window (0: never spin).
   */
  void Configure(int max_threads, int idle_ms, int spin_max_us);
  /** JS thread: threads, queues and jobs submitted by kind. */
  Napi::Object Stats(Napi::Env env);

 private:
  /** JS thread: adds job to pending_, arming the flush at the end of this turn. */
  void AddPending(Job* job);
  /** JS thread: moves pending_ to the queues and wakes or starts a thread if none is awake. */
  void Flush();

  static void* ThreadMain(void* arg);
  static void OnAsync(uv_async_t* async);
  static void OnCheck(uv_check_t* check);
  static void OnPrepare(uv_prepare_t* prepare);
  static void OnCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  static void OnClosed(uv_handle_t* handle);
  /**
   * JS thread, before the loop would block, with jobs outstanding: waits a short, adaptive
   * window for their results (or any other event) without sleeping, and settles what came.
   */
  void AwaitResults();

  /** Under mu_ (JS or worker thread): starts a detached thread, counted as searching. */
  int StartThread();
  /** An idle thread's wait. Shared: the waker may notify after unlocking, even if the thread has gone on. */
  struct Idler {
    std::condition_variable cv;
    /** Set by ClaimIdle: counted as searching again, a wake-up immune to spurious ones. */
    bool claimed = false;
  };

  /** Under mu_: moves the thread idle the shortest time to searching; the caller notifies it after unlocking. */
  std::shared_ptr<Idler> ClaimIdle();
  /** Under mu_: wakes every idle thread (configuration changed, or stopping). */
  void NotifyAllIdle();
  /**
   * Called with mu_ held at the point where the calling thread would sleep: spins for the
   * current window (unlocked) unless another thread spins. True when a job may be there.
   */
  bool SpinForWork(std::unique_lock<std::mutex>& lock);
  /** Under mu_: a sleeping thread was given a job `idle_ns` after it ran out of work: adapt the window. */
  void AdaptSpin(int64_t idle_ns);
  /** Under mu_: whether a thread may take a job now. */
  bool HasRunnable() const;
  /** Under mu_: the next job a thread may take (closes first), or nullptr. */
  Job* TakeRunnable(bool* counted);
  /** Under mu_: with runnable jobs and nobody searching, claims an idle thread (to notify) or starts one. */
  std::shared_ptr<Idler> Dispatch();
  int OthersLimit() const { return max_threads_ > kCloseReserve ? max_threads_ - kCloseReserve : 1; }
  void Work();
  /** Worker thread, unlocked: runs, abandons or drops job; true to deliver it. */
  bool Process(Job* job, bool stopping);
  /** JS thread: settles the finished jobs in one handle scope and one callback scope. */
  void Deliver();

  napi_env env_;
  napi_ref resource_;
  napi_async_context context_;
  uv_async_t async_;
  uv_check_t check_;
  uv_prepare_t prepare_;
  /** uv handles initialised and not yet closed. */
  int live_handles_ = 0;
  napi_async_cleanup_hook_handle hook_ = nullptr;

  // JS thread only.
  size_t unsettled_ = 0;
  bool tearing_down_ = false;
  std::vector<Job*> pending_;
  std::vector<Job*> delivering_;
  std::vector<std::pair<const char*, double>> submitted_;
  /** The JS thread's wait window now (AwaitResults), and when it last blocked with jobs outstanding. */
  int64_t await_ns_ = 0;
  Clock::time_point blocked_at_{};
  bool blocked_waiting_ = false;
  double await_hits_ = 0;

  std::mutex mu_;
  /** Bumped (under mu_) whenever jobs are queued: what a spinning thread watches. */
  std::atomic<uint64_t> queued_generation_{0};
  /** Closes, and finished jobs whose promise could not take what they hold: run first. */
  std::deque<Job*> closes_;
  std::deque<Job*> queue_;
  std::vector<Job*> done_;
  /** done_ is not empty: what the JS thread's wait watches. */
  std::atomic<bool> results_ready_{false};
  /** The JS thread waits in AwaitResults: a finished job needs no uv_async_send. */
  bool js_awaiting_ = false;
  int alive_ = 0;
  int searching_ = 0;
  /** Idle threads, the one idle the shortest time last. */
  std::vector<std::shared_ptr<Idler>> idlers_;
  /** Threads running a job from queue_ (not a close). */
  int busy_others_ = 0;
  int max_threads_ = kDefaultMaxThreads;
  int idle_ms_ = kDefaultIdleMs;
  int64_t spin_max_ns_ = kDefaultSpinMaxUs * int64_t{1000};
  /** The spin window now (see the class comment), and whether a thread is spinning. */
  int64_t spin_ns_ = 0;
  bool spinning_ = false;
  double spin_hits_ = 0;
  double wakeups_ = 0;
  unsigned config_generation_ = 0;
  double threads_started_ = 0;
  /** The environment is going: nothing is delivered any more, idle threads leave. */
  bool stopping_ = false;
  /** The JS side has let go: the last thread to leave deletes the pool. */
  bool js_released_ = false;
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

void JobPool::Configure(int max_threads, int idle_ms, int spin_max_us) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    max_threads_ = max_threads;
    idle_ms_ = idle_ms;
    spin_max_ns_ = spin_max_us * int64_t{1000};
    spin_ns_ = std::min(spin_ns_, spin_max_ns_);
    await_ns_ = std::min(await_ns_, spin_max_ns_);
    config_generation_++;
    NotifyAllIdle();  // idle threads start their wait again, with the new idle time
  }
}

int JobPool::StartThread() {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kStackSize);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // Signals stay with the JS thread (Node's handlers); workers' syscalls see no EINTR storm.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  int err = pthread_create(&thread, &attr, &JobPool::ThreadMain, this);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (err == 0) {
    alive_++;
    searching_++;
    threads_started_++;
  }
  return err;
}

std::shared_ptr<JobPool::Idler> JobPool::ClaimIdle() {
  if (searching_ != 0 || idlers_.empty()) return nullptr;
  std::shared_ptr<Idler> idler = std::move(idlers_.back());
  idlers_.pop_back();
  idler->claimed = true;
  searching_++;
  wakeups_++;
  return idler;
}

void JobPool::NotifyAllIdle() {
  for (const std::shared_ptr<Idler>& idler : idlers_) idler->cv.notify_one();
}

bool JobPool::SpinForWork(std::unique_lock<std::mutex>& lock) {
  if (spinning_ || spin_ns_ == 0) return false;
  spinning_ = true;
  const uint64_t seen = queued_generation_.load(std::memory_order_acquire);
  const Clock::time_point deadline = Clock::now() + std::chrono::nanoseconds(spin_ns_);
  lock.unlock();
  bool queued = false;
  // sched_yield, not a pause instruction: any other thread runnable on this CPU (the
  // client, the JS thread, another job) runs first, so the spin only uses a CPU nobody wants.
  do {
    if (queued_generation_.load(std::memory_order_acquire) != seen) {
      queued = true;
      break;
    }
    sched_yield();
  } while (Clock::now() < deadline);
  lock.lock();
  spinning_ = false;
  if (queued) spin_hits_++;
  return queued;
}

void JobPool::AdaptSpin(int64_t idle_ns) {
  if (idle_ns <= spin_max_ns_) {
    spin_ns_ = std::min(std::max(spin_ns_ * 2, kSpinStartNs), spin_max_ns_);
  } else {
    spin_ns_ /= 2;
    if (spin_ns_ < kSpinStartNs) spin_ns_ = 0;
  }
}

bool JobPool::HasRunnable() const {
  return !closes_.empty() || (!queue_.empty() && busy_others_ < OthersLimit());
}

Job* JobPool::TakeRunnable(bool* counted) {
  Job* job = nullptr;
  *counted = false;
  if (!closes_.empty()) {
    job = closes_.front();
    closes_.pop_front();
  } else if (!queue_.empty() && busy_others_ < OthersLimit()) {
    job = queue_.front();
    queue_.pop_front();
    *counted = true;
  }
  return job;
}

std::shared_ptr<JobPool::Idler> JobPool::Dispatch() {
  if (searching_ != 0 || !HasRunnable()) return nullptr;
  if (std::shared_ptr<Idler> idler = ClaimIdle()) return idler;
  // A failed start is fine: a thread exists (Submit made sure) and gets to the jobs.
  if (alive_ < max_threads_) StartThread();
  return nullptr;
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
  if (unsettled_ == 0) uv_prepare_stop(&prepare_);
  if (pending_.empty()) return;
  std::shared_ptr<Idler> woken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Job* job : pending_) {
      if (job->abandoned_ || job->MustRun()) closes_.push_back(job);
      else queue_.push_back(job);
    }
    queued_generation_.fetch_add(1, std::memory_order_release);
    woken = Dispatch();
  }
  pending_.clear();
  if (woken) woken->cv.notify_one();  // counted in ClaimIdle
}

void JobPool::OnCheck(uv_check_t* check) {
  static_cast<JobPool*>(check->data)->Flush();
}

void JobPool::OnPrepare(uv_prepare_t* prepare) {
  JobPool* pool = static_cast<JobPool*>(prepare->data);
  pool->Flush();
  if (!pool->tearing_down_) pool->AwaitResults();
}

void JobPool::AwaitResults() {
  uv_loop_t* loop = async_.loop;
  const int backend = uv_backend_fd(loop);
  // One window per turn of the loop, however many results it brings.
  const Clock::time_point deadline = Clock::now() + std::chrono::nanoseconds(await_ns_);
  // uv_backend_timeout 0: something runs without polling (setImmediate, a handle closing).
  while (await_ns_ > 0 && unsettled_ > 0 && !tearing_down_ && uv_backend_timeout(loop) != 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      js_awaiting_ = true;
    }
    bool other_event = false;
    bool expired = false;
    for (;;) {
      if (results_ready_.load(std::memory_order_acquire)) break;
      struct pollfd ready = {backend, POLLIN, 0};
      if (poll(&ready, 1, 0) > 0) {  // a socket, a signal, another uv_async: the loop's turn
        other_event = true;
        break;
      }
      if (Clock::now() >= deadline) {
        expired = true;
        break;
      }
      sched_yield();  // as the threads' spin: whatever else is runnable on this CPU goes first
    }
    bool results;
    {
      std::lock_guard<std::mutex> lock(mu_);
      js_awaiting_ = false;
      results = !done_.empty();  // also those finished as the wait ended: they sent no uv_async
    }
    if (results) {
      await_hits_++;
      Deliver();
      if (tearing_down_) return;  // a continuation ended the environment (OnCleanup flushed)
      Flush();  // what their continuations submitted, before the loop may block
    } else if (expired) {
      await_ns_ /= 2;  // no result within the window: shrink it, as the threads' spin
      if (await_ns_ < kSpinStartNs) await_ns_ = 0;
    }
    if (!results || other_event) break;
  }
  if (unsettled_ > 0) {  // the loop may block now: a result that wakes it says whether to wait next time
    blocked_at_ = Clock::now();
    blocked_waiting_ = true;
  }
}

void* JobPool::ThreadMain(void* arg) {
  pthread_setname_np(pthread_self(), "diskseqd-job");  // tests and ps tell the pool's threads apart
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
  std::shared_ptr<Idler> idler;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {  // here this thread counts as searching
    bool counted;
    if (Job* job = TakeRunnable(&counted)) {
      searching_--;
      if (counted) busy_others_++;
      // Jobs left and nobody to look at them: this one may block for long, so hand them on.
      std::shared_ptr<Idler> chain = Dispatch();
      bool stopping = stopping_;
      lock.unlock();
      if (chain) chain->cv.notify_one();
      bool deliver = Process(job, stopping);
      lock.lock();
      if (counted) busy_others_--;
      if (deliver && stopping_) {
        // The environment is going: nobody will settle it; release what it holds here.
        lock.unlock();
        job->Abandon();
        delete job;
        lock.lock();
      } else if (deliver) {
        bool first = done_.empty();
        done_.push_back(job);
        results_ready_.store(true, std::memory_order_release);
        // uv_async_send coalesces anyway; sending only on empty -> non-empty saves a write.
        // A JS thread in AwaitResults sees results_ready_ and takes them itself.
        if (first && !js_awaiting_) uv_async_send(&async_);
      }
      searching_++;
      continue;
    }
    if (stopping_) break;  // nothing left that must run
    const Clock::time_point out_of_work = Clock::now();
    if (SpinForWork(lock)) continue;
    if (HasRunnable() || stopping_) continue;  // queued as the spin ended
    searching_--;
    if (!idler) idler = std::make_shared<Idler>();
    idler->claimed = false;
    idlers_.push_back(idler);
    const unsigned generation = config_generation_;
    bool woken = idler->cv.wait_for(lock, std::chrono::milliseconds(idle_ms_),
                                    [&] { return idler->claimed || stopping_ || config_generation_ != generation; });
    if (idler->claimed) {  // ClaimIdle took us off the stack and counted us as searching
      AdaptSpin(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - out_of_work).count());
      continue;
    }
    for (auto it = idlers_.begin(); it != idlers_.end(); ++it) {
      if (*it == idler) {
        idlers_.erase(it);
        break;
      }
    }
    searching_++;
    if (woken) continue;  // configuration changed, or stopping: look again
    // Idle for idle_ms_, far beyond any window: the window shrinks (the last thread, which
    // stays, would otherwise spin it out again each time), and this thread leaves, unless
    // it is the last (the next job then starts at once).
    AdaptSpin(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - out_of_work).count());
    if (alive_ > 1) break;
  }
  searching_--;
  alive_--;
  bool last = alive_ == 0 && js_released_;
  lock.unlock();
  if (last) delete this;
}

void JobPool::OnAsync(uv_async_t* async) {
  JobPool* pool = static_cast<JobPool*>(async->data);
  if (!pool->tearing_down_) pool->Deliver();
}

void JobPool::Deliver() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    delivering_.swap(done_);  // done_ gets the old, cleared vector's capacity back
    results_ready_.store(false, std::memory_order_relaxed);
  }
  if (delivering_.empty()) return;
  if (blocked_waiting_) {
    // The loop blocked with jobs outstanding and a result woke it: had it waited, how long?
    blocked_waiting_ = false;
    const int64_t waited = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - blocked_at_).count();
    if (waited <= spin_max_ns_) await_ns_ = std::min(std::max(await_ns_ * 2, kSpinStartNs), spin_max_ns_);
  }
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
  if (unsettled_ == 0 && pending_.empty()) uv_prepare_stop(&prepare_);
  delivering_.clear();
  // An exception in a tick callback becomes an uncaughtException there (node::CallbackScope),
  // as for napi_make_callback.
  if (in_scope) napi_close_callback_scope(env_, callback_scope);
}

void JobPool::OnCleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  JobPool* pool = static_cast<JobPool*>(arg);
  pool->hook_ = hook;
  pool->tearing_down_ = true;
  pool->Flush();  // unflushed closes must still run
  std::vector<Job*> dropped;
  std::vector<Job*> inline_closes;
  std::shared_ptr<Idler> claimed;
  {
    std::lock_guard<std::mutex> lock(pool->mu_);
    pool->stopping_ = true;
    // Finished but never settled: their fds are closed by a worker.
    for (Job* job : pool->done_) {
      job->abandoned_ = true;
      pool->closes_.push_back(job);
    }
    pool->done_.clear();
    pool->queued_generation_.fetch_add(1, std::memory_order_release);  // a spinning thread looks now
    // Never started: they hold nothing, and nobody will settle them.
    dropped.assign(pool->queue_.begin(), pool->queue_.end());
    pool->queue_.clear();
    if (!pool->closes_.empty() && pool->searching_ == 0) {
      claimed = pool->ClaimIdle();
      if (!claimed && pool->StartThread() != 0 && pool->alive_ == 0) {
        inline_closes.assign(pool->closes_.begin(), pool->closes_.end());  // no thread at all
        pool->closes_.clear();
      }
    }
    pool->NotifyAllIdle();  // they see stopping_ and leave
  }
  if (claimed) claimed->cv.notify_one();  // it takes the closes first
  for (Job* job : dropped) delete job;
  for (Job* job : inline_closes) {
    if (!pool->Process(job, true)) continue;
    job->Abandon();
    delete job;
  }
  // Threads still blocked in the kernel are not waited for: they leave when their job
  // returns, and the last one out deletes the pool (js_released_, below).
  napi_async_destroy(pool->env_, pool->context_);
  napi_delete_reference(pool->env_, pool->resource_);
  uv_close(reinterpret_cast<uv_handle_t*>(&pool->async_), &JobPool::OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&pool->check_), &JobPool::OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&pool->prepare_), &JobPool::OnClosed);
}

void JobPool::OnClosed(uv_handle_t* handle) {
  JobPool* pool = static_cast<JobPool*>(handle->data);
  if (--pool->live_handles_ > 0) return;
  napi_remove_async_cleanup_hook(pool->hook_);  // Node may go on
  bool last;
  {
    std::lock_guard<std::mutex> lock(pool->mu_);
    pool->js_released_ = true;
    last = pool->alive_ == 0;
  }
  if (last) delete pool;
}

JobPool* CreateJobPool(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "no uv loop for this environment").ThrowAsJavaScriptException();
    return nullptr;
  }
  // Worker threads may outlive this environment (blocked on a hung device): the code they
  // run must stay mapped even when Node unloads the addon with it (a Worker's teardown).
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&CreateJobPool), &self) != 0 && self.dli_fname != nullptr) {
    dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);  // a reference never closed
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
  const char* kind = job->Kind();
  bool found = false;
  for (auto& entry : submitted_) {
    if (strcmp(entry.first, kind) == 0) {
      entry.second++;
      found = true;
      break;
    }
  }
  if (!found) submitted_.emplace_back(kind, 1);
  int err = 0;
  {
    // The first thread starts here, where a failure can still be reported; later ones
    // start in Flush or Work, which may fail harmlessly. The last thread never leaves.
    std::lock_guard<std::mutex> lock(mu_);
    if (alive_ == 0) err = StartThread();
  }
  if (err == 0) {
    AddPending(job);
    // The first unsettled promise keeps the loop alive until it settles.
    if (unsettled_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    uv_prepare_start(&prepare_, &JobPool::OnPrepare);  // AwaitResults while jobs are outstanding
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

Napi::Object JobPool::Stats(Napi::Env env) {
  Napi::Object stats = Napi::Object::New(env);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats.Set("threads", alive_);
    int idle = static_cast<int>(idlers_.size());
    stats.Set("idle", idle);
    stats.Set("busy", alive_ - idle - searching_);
    stats.Set("queued", static_cast<double>(queue_.size() + closes_.size() + pending_.size()));
    stats.Set("threadsStarted", threads_started_);
    stats.Set("maxThreads", max_threads_);
    stats.Set("spinUs", static_cast<double>(spin_ns_) / 1000);
    stats.Set("spinHits", spin_hits_);
    stats.Set("spinning", spinning_);
    stats.Set("wakeups", wakeups_);
  }
  stats.Set("awaitUs", static_cast<double>(await_ns_) / 1000);
  stats.Set("awaitHits", await_hits_);
  Napi::Object submitted = Napi::Object::New(env);
  for (const auto& entry : submitted_) submitted.Set(entry.first, entry.second);
  stats.Set("submitted", submitted);
  return stats;
}

Napi::Value SubmitJob(Napi::Env env, JobPool* pool, Job* job) {
  return pool->Submit(env, job);
}

namespace {

Napi::Value ConfigureJobPool(const Napi::CallbackInfo& info) {
  int32_t max_threads, idle_ms, spin_max_us;
  if (!ArgInt(info, 0, &max_threads) || !ArgInt(info, 1, &idle_ms) || !ArgInt(info, 2, &spin_max_us)) {
    return info.Env().Undefined();
  }
  if (max_threads < kCloseReserve + 1 || idle_ms < 1 || spin_max_us < 0 || spin_max_us > 100000) {
    Napi::RangeError::New(info.Env(), "configureJobPool: at least 3 threads and 1 ms, a spin of 0 to 100000 us")
        .ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  static_cast<JobPool*>(info.Data())->Configure(max_threads, idle_ms, spin_max_us);
  return info.Env().Undefined();
}

Napi::Value JobPoolStats(const Napi::CallbackInfo& info) {
  return static_cast<JobPool*>(info.Data())->Stats(info.Env());
}

}  // namespace

void InitJobPool(Napi::Env env, Napi::Object exports, JobPool* pool) {
  exports.Set("configureJobPool", Napi::Function::New(env, ConfigureJobPool, "configureJobPool", pool));
  exports.Set("jobPoolStats", Napi::Function::New(env, JobPoolStats, "jobPoolStats", pool));
}

}  // namespace diskseqd
