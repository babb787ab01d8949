// Poller: readiness of one fd through uv_poll on this environment's loop.
#pragma once

#include <napi.h>
#include <uv.h>

#include <unordered_set>

namespace diskseqd {

class Poller;

/**
 * Per-environment state. At environment teardown an async cleanup hook closes every open
 * poller and completes only when the last uv_close callback has run: a worker thread's
 * addon code may be unloaded right after, and a close callback must not outlive it.
 */
struct PollerRegistry {
  std::unordered_set<Poller*> open;
  /** uv handles initialised and not yet freed by their close callback (open or closing). */
  size_t live_handles = 0;
  bool tearing_down = false;
  napi_async_cleanup_hook_handle hook = nullptr;
};

/**
 * JS: new Poller(fd, (status, events) => void); start(events), stop(), close().
 *
 * Lifetime: the uv_poll_t lives in a separate heap block freed only by uv_close's callback,
 * so it outlives the JS object if need be. While started the wrapper holds a strong
 * reference to itself (an active poller is never collected, like a Node socket); stop() and
 * close() drop it. The finalizer closes a forgotten poller only as a last resort.
 */
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env, PollerRegistry* registry);

  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

  /**
   * Stops polling and hands the handle to uv_close. With use_napi false (env teardown,
   * finalizer) no N-API call is made.
   */
  void Close(bool use_napi);

 private:
  /** The uv handle and a back pointer that Close() clears before uv_close. */
  struct Handle {
    uv_poll_t poll;
    Poller* owner;
    PollerRegistry* registry;
  };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value CloseMethod(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* poll, int status, int events);
  static void OnClosed(uv_handle_t* handle);
  void SetStrong(bool strong);

  Handle* handle_ = nullptr;
  bool strong_ = false;
  PollerRegistry* registry_ = nullptr;
  Napi::FunctionReference callback_;
};

}  // namespace diskseqd
