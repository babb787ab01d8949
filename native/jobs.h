// The addon's own worker threads for blocking device calls, and promise delivery on the loop.
#pragma once

#include <napi.h>

namespace diskseqd {

/**
 * One blocking operation (an open, a probe, a close) run on a worker thread and settled on
 * the JS thread. Replaces Napi::AsyncWorker, whose per-call async work object, threadpool
 * hop and per-completion callback scope cost the JS thread several times more.
 */
class Job {
 public:
  virtual ~Job() = default;

  /** Worker thread: the blocking system calls. No N-API here. */
  virtual void Run() = 0;

  /**
   * JS thread, inside a handle scope and a callback scope: resolve or reject `deferred`
   * (exactly once). Returns false when the job still owns what Run acquired (the promise
   * could not take it); the pool then calls Abandon on a worker thread.
   */
  virtual bool Settle(Napi::Env env, napi_deferred deferred) = 0;

  /** Worker thread: release what Run acquired and nobody took (an opened fd). */
  virtual void Abandon() {}

  /**
   * Whether the job must still run when the environment is torn down and its promise will
   * never settle: true for a close, which releases an fd the caller handed over.
   */
  virtual bool MustRun() const { return false; }

  /** What the pool counts it as, for jobPoolStats() ("open", "probe", "close", ...). */
  virtual const char* Kind() const = 0;

 private:
  friend class JobPool;
  napi_deferred deferred_ = nullptr;
  /** Settled (or its env is gone): the worker only calls Abandon and frees it. */
  bool abandoned_ = false;
};

class JobPool;

/**
 * Creates this environment's pool (threads start lazily, on the first job) and registers
 * its teardown. Returns nullptr with a JS exception pending on failure.
 */
JobPool* CreateJobPool(Napi::Env env);

/** configureJobPool and jobPoolStats, on this environment's pool. */
void InitJobPool(Napi::Env env, Napi::Object exports, JobPool* pool);

/**
 * Takes ownership of job, queues it and returns its promise. If no worker thread exists and
 * none can be started, the promise rejects with pthread_create's error, except that a job
 * which MustRun (a close: it owns an fd) then runs on the JS thread rather than leak.
 */
Napi::Value SubmitJob(Napi::Env env, JobPool* pool, Job* job);

}  // namespace diskseqd
