// Block device opens, probes and closes; the slow ones run off the event loop.
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "errors.h"
#include "probe.h"

namespace diskseqd {

namespace {

/**
 * Base for the device workers: the result is built in OnOK (never through AsyncWorker's
 * message-only SetError) so rejections carry code/errno/syscall.
 */
class DeviceWorker : public Napi::AsyncWorker {
 public:
  DeviceWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  /** Rejects with the errno error recorded by Execute. */
  void RejectErrno() {
    Napi::Env env = Env();
    deferred_.Reject(ErrnoError(env, err_, syscall_, path_).Value());
  }

  /** Settles with value, or rejects with the exception building it left pending. */
  bool ResolveOrReject(Napi::Value value) {
    Napi::Env env = Env();
    if (env.IsExceptionPending()) {
      deferred_.Reject(env.GetAndClearPendingException().Value());
      return false;
    }
    deferred_.Resolve(value);
    return !env.IsExceptionPending();
  }

  Napi::Promise::Deferred deferred_;
  int err_ = 0;
  std::string syscall_;
  std::string path_;
};

/** open + probe. Owns the fd until the promise has resolved with it. */
class OpenDeviceWorker : public DeviceWorker {
 public:
  OpenDeviceWorker(Napi::Env env, std::string path, int flags)
      : DeviceWorker(env, "diskseqd.openDevice"), flags_(flags) {
    path_ = std::move(path);
  }

  // Runs when the promise did not take the fd: failed resolve, cancelled work, teardown.
  ~OpenDeviceWorker() override {
    if (fd_ >= 0) close(fd_);
  }

  void Execute() override {
    int fd;
    do {
      fd = open(path_.c_str(), flags_ | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      err_ = errno;
      syscall_ = "open";
      return;
    }
    fd_ = fd;
    int err = ProbeFd(fd_, &probe_);
    if (err != 0) {
      close(fd_);  // still off the loop: a last close of a block device may be slow
      fd_ = -1;
      err_ = err;
      syscall_ = "fstat";
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) return RejectErrno();
    Napi::Object result = Napi::Object::New(env);
    result.Set("fd", Napi::Number::New(env, fd_));
    result.Set("probe", ProbeToJs(env, probe_));
    if (ResolveOrReject(result)) fd_ = -1;  // the caller owns it now
  }

 private:
  int flags_;
  int fd_ = -1;
  FdProbe probe_;
};

class ProbeFdWorker : public DeviceWorker {
 public:
  ProbeFdWorker(Napi::Env env, int fd) : DeviceWorker(env, "diskseqd.probeFd"), fd_(fd) {}

  void Execute() override {
    err_ = ProbeFd(fd_, &probe_);
    if (err_ != 0) syscall_ = "fstat";
  }

  void OnOK() override {
    if (err_ != 0) return RejectErrno();
    ResolveOrReject(ProbeToJs(Env(), probe_));
  }

 private:
  int fd_;
  FdProbe probe_;
};

class CloseWorker : public DeviceWorker {
 public:
  CloseWorker(Napi::Env env, int fd) : DeviceWorker(env, "diskseqd.closeAsync"), fd_(fd) {}

  void Execute() override {
    // EINTR is not an error here: Linux has released the fd, retrying could close another.
    if (close(fd_) != 0 && errno != EINTR) {
      err_ = errno;
      syscall_ = "close";
    }
  }

  void OnOK() override {
    if (err_ != 0) return RejectErrno();
    ResolveOrReject(Env().Undefined());
  }

 private:
  int fd_;
};

/** Queues worker and returns its promise; deletes it if it cannot be queued. */
template <typename Worker>
Napi::Value QueueWorker(Napi::Env env, Worker* worker) {
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  if (env.IsExceptionPending()) {
    delete worker;
    return env.Undefined();
  }
  return promise;
}

Napi::Value OpenDevice(const Napi::CallbackInfo& info) {
  std::string path;
  int32_t flags;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &flags)) return info.Env().Undefined();
  return QueueWorker(info.Env(), new OpenDeviceWorker(info.Env(), std::move(path), flags));
}

Napi::Value ProbeFdAsync(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return info.Env().Undefined();
  return QueueWorker(info.Env(), new ProbeFdWorker(info.Env(), fd));
}

Napi::Value ProbeFdSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  FdProbe probe;
  int err = ProbeFd(fd, &probe);
  if (err != 0) {
    ThrowErrno(env, err, "fstat");
    return env.Undefined();
  }
  return ProbeToJs(env, probe);
}

Napi::Value CloseAsync(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return info.Env().Undefined();
  return QueueWorker(info.Env(), new CloseWorker(info.Env(), fd));
}

Napi::Value CloseSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  // EINTR is not retried and not reported: Linux has closed the fd anyway.
  if (close(fd) != 0 && errno != EINTR) ThrowErrno(env, errno, "close");
  return env.Undefined();
}

Napi::Value MknodBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int32_t mode, dev_major, dev_minor;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &mode) || !ArgInt(info, 2, &dev_major) ||
      !ArgInt(info, 3, &dev_minor)) {
    return env.Undefined();
  }
  dev_t dev = makedev(static_cast<unsigned>(dev_major), static_cast<unsigned>(dev_minor));
  if (mknod(path.c_str(), S_IFBLK | (static_cast<mode_t>(mode) & 07777), dev) != 0) {
    ThrowErrno(env, errno, "mknod", path);
  }
  return env.Undefined();
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("O_RDONLY", O_RDONLY);
  c.Set("O_WRONLY", O_WRONLY);
  c.Set("O_RDWR", O_RDWR);
  c.Set("O_EXCL", O_EXCL);
  c.Set("O_DIRECT", O_DIRECT);
  c.Set("O_NONBLOCK", O_NONBLOCK);
  c.Set("O_SYNC", O_SYNC);
  c.Set("O_DSYNC", O_DSYNC);
  c.Set("O_CLOEXEC", O_CLOEXEC);
  c.Set("S_IFMT", S_IFMT);
  c.Set("S_IFBLK", S_IFBLK);
  c.Set("LO_FLAGS_PARTSCAN", static_cast<int>(LO_FLAGS_PARTSCAN));
  c.Set("LO_FLAGS_AUTOCLEAR", static_cast<int>(LO_FLAGS_AUTOCLEAR));
  c.Set("LO_FLAGS_READ_ONLY", static_cast<int>(LO_FLAGS_READ_ONLY));
  c.Freeze();
  return c;
}

}  // namespace

void InitDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("openDevice", Napi::Function::New(env, OpenDevice, "openDevice"));
  exports.Set("probeFd", Napi::Function::New(env, ProbeFdAsync, "probeFd"));
  exports.Set("probeFdSync", Napi::Function::New(env, ProbeFdSync, "probeFdSync"));
  exports.Set("closeAsync", Napi::Function::New(env, CloseAsync, "closeAsync"));
  exports.Set("close", Napi::Function::New(env, CloseSync, "close"));
  exports.Set("mknodBlock", Napi::Function::New(env, MknodBlock, "mknodBlock"));
  exports.Set("constants", Constants(env));
}

}  // namespace diskseqd
