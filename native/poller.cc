// uv_poll wrapper; see poller.h for the lifetime rules.
#include "poller.h"

#include <cerrno>
#include <string>

#include "addon.h"
#include "errors.h"

namespace diskseqd {

namespace {

/** A libuv error as our errno-shaped error (libuv errors are negative errnos on Linux). */
void ThrowUv(Napi::Env env, int status, const char* syscall) {
  ThrowErrno(env, -status, syscall);
}

/** The last step of teardown: let Node go on (and maybe unload us), free the registry. */
void FinishTeardown(PollerRegistry* registry) {
  napi_remove_async_cleanup_hook(registry->hook);
  delete registry;
}

/** Env teardown: close every open poller; done when all close callbacks have run. */
void CleanupRegistry(napi_async_cleanup_hook_handle hook, void* arg) {
  PollerRegistry* registry = static_cast<PollerRegistry*>(arg);
  registry->hook = hook;
  registry->tearing_down = true;
  while (!registry->open.empty()) {
    (*registry->open.begin())->Close(false);  // erases itself from the set
  }
  if (registry->live_handles == 0) FinishTeardown(registry);
}

}  // namespace

void Poller::OnClosed(uv_handle_t* h) {
  Handle* handle = static_cast<Handle*>(h->data);
  PollerRegistry* registry = handle->registry;
  delete handle;
  registry->live_handles--;
  if (registry->tearing_down && registry->live_handles == 0) FinishTeardown(registry);
}

Napi::Function Poller::Define(Napi::Env env, PollerRegistry* registry) {
  return DefineClass(env, "Poller",
                     {
                         InstanceMethod("start", &Poller::Start),
                         InstanceMethod("stop", &Poller::Stop),
                         InstanceMethod("close", &Poller::CloseMethod),
                     },
                     registry);
}

Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  Napi::Env env = info.Env();
  registry_ = static_cast<PollerRegistry*>(info.Data());
  int fd;
  if (!ArgFd(info, 0, &fd)) return;
  if (info.Length() < 2 || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "argument 1 must be a function").ThrowAsJavaScriptException();
    return;
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "no uv loop for this environment").ThrowAsJavaScriptException();
    return;
  }
  Handle* handle = new Handle();
  handle->owner = this;
  handle->registry = registry_;
  int status = uv_poll_init(loop, &handle->poll, fd);
  if (status != 0) {
    delete handle;  // uv_poll_init failed: the handle was never registered with the loop
    ThrowUv(env, status, "uv_poll_init");
    return;
  }
  handle->poll.data = handle;
  handle_ = handle;
  registry_->live_handles++;
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  registry_->open.insert(this);
}

Poller::~Poller() {
  Close(false);
}

void Poller::SetStrong(bool strong) {
  if (strong == strong_) return;
  if (strong) {
    Ref();
  } else {
    Unref();
  }
  strong_ = strong;
}

void Poller::Close(bool use_napi) {
  if (handle_ == nullptr) return;
  Handle* handle = handle_;
  handle_ = nullptr;
  registry_->open.erase(this);
  uv_poll_stop(&handle->poll);
  handle->owner = nullptr;  // no callback reaches this object any more
  uv_close(reinterpret_cast<uv_handle_t*>(&handle->poll), &Poller::OnClosed);
  if (use_napi) {
    SetStrong(false);
    callback_.Reset();  // lets the callback's closure be collected now
  }
}

Napi::Value Poller::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t events;
  if (!ArgInt(info, 0, &events)) return env.Undefined();
  if (handle_ == nullptr) {
    ThrowErrno(env, EBADF, "uv_poll_start");
    return env.Undefined();
  }
  int status = uv_poll_start(&handle_->poll, events, &Poller::OnPoll);
  if (status != 0) {
    ThrowUv(env, status, "uv_poll_start");
    return env.Undefined();
  }
  SetStrong(true);
  return env.Undefined();
}

Napi::Value Poller::Stop(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) {
    uv_poll_stop(&handle_->poll);
    SetStrong(false);
  }
  return info.Env().Undefined();
}

Napi::Value Poller::CloseMethod(const Napi::CallbackInfo& info) {
  Close(true);
  return info.Env().Undefined();
}

void Poller::OnPoll(uv_poll_t* poll, int status, int events) {
  Handle* handle = static_cast<Handle*>(poll->data);
  Poller* self = handle->owner;
  if (self == nullptr) return;
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  Napi::Value args[] = {Napi::Number::New(env, status), Napi::Number::New(env, events)};
  // MakeCallback runs the nextTick and microtask queues afterwards, as for any libuv callback.
  // napi_make_callback needs an object receiver: the Poller itself (alive, it is strong).
  Napi::Object receiver = self->Value();
  if (receiver.IsEmpty()) receiver = env.Global();
  self->callback_.MakeCallback(receiver, {args[0], args[1]});
  // `self` may be closed now; it is not touched again.
  if (env.IsExceptionPending()) {
    // No JS frame is below us: hand the exception to process 'uncaughtException'.
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(env, error.Value());
  }
}

void InitPoller(Napi::Env env, Napi::Object exports) {
  PollerRegistry* registry = new PollerRegistry();
  // Freed when the hook completes. Hooks run in reverse order of registration, so ours runs
  // before N-API's own teardown finalizes the wrappers: a finalizer then finds its poller
  // closed and never touches the registry.
  if (napi_add_async_cleanup_hook(env, CleanupRegistry, registry, nullptr) != napi_ok) {
    delete registry;
    Napi::Error::New(env, "napi_add_async_cleanup_hook failed").ThrowAsJavaScriptException();
    return;
  }
  exports.Set("Poller", Poller::Define(env, registry));
}

}  // namespace diskseqd
