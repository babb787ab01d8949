// Block device opens, probes and closes; the slow ones run off the event loop (jobs.h).
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "errors.h"
#include "jobs.h"
#include "probe.h"

namespace diskseqd {

namespace {

/** Resolves deferred with value, or rejects it with the exception building value left. */
bool ResolveOrReject(Napi::Env env, napi_deferred deferred, Napi::Value value) {
  if (env.IsExceptionPending()) {
    napi_reject_deferred(env, deferred, env.GetAndClearPendingException().Value());
    return false;
  }
  return napi_resolve_deferred(env, deferred, value) == napi_ok;
}

/** Rejects with a Node-shaped errno error (code, errno, syscall, path when given). */
void RejectErrno(Napi::Env env, napi_deferred deferred, int err, const char* syscall,
                 const std::string& path = std::string()) {
  napi_reject_deferred(env, deferred, ErrnoError(env, err, syscall, path).Value());
}

/** open + probe. Owns the fd until the promise has resolved with it. */
class OpenJob : public Job {
 public:
  OpenJob(std::string path, int flags) : path_(std::move(path)), flags_(flags) {}

  // Last resort only: an fd nobody took is normally closed by Abandon, on a worker.
  ~OpenJob() override { Abandon(); }

  const char* Kind() const override { return "open"; }

  void Run() override {
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

  bool Settle(Napi::Env env, napi_deferred deferred) override {
    if (err_ != 0) {
      RejectErrno(env, deferred, err_, syscall_, path_);
      return true;
    }
    // [fd, ...probe] (see kProbeSlots)
    Napi::Array result = Napi::Array::New(env, 1 + kProbeSlots);
    result.Set(0u, Napi::Number::New(env, fd_));
    ProbeToSlots(env, probe_, result, 1);
    if (!ResolveOrReject(env, deferred, result)) return false;  // fd_ is still ours
    fd_ = -1;  // the caller owns it now
    return true;
  }

  void Abandon() override {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  std::string path_;
  int flags_;
  int fd_ = -1;
  int err_ = 0;
  const char* syscall_ = nullptr;
  FdProbe probe_;
};

class ProbeJob : public Job {
 public:
  explicit ProbeJob(int fd) : fd_(fd) {}

  const char* Kind() const override { return "probe"; }

  void Run() override { err_ = ProbeFd(fd_, &probe_); }

  bool Settle(Napi::Env env, napi_deferred deferred) override {
    if (err_ != 0) {
      RejectErrno(env, deferred, err_, "fstat");
    } else {
      ResolveOrReject(env, deferred, ProbeToJs(env, probe_));
    }
    return true;  // holds nothing
  }

 private:
  int fd_;
  int err_ = 0;
  FdProbe probe_;
};

class CloseJob : public Job {
 public:
  explicit CloseJob(int fd) : fd_(fd) {}

  const char* Kind() const override { return "close"; }

  void Run() override {
    // EINTR is not an error here: Linux has released the fd, retrying could close another.
    if (close(fd_) != 0 && errno != EINTR) err_ = errno;
  }

  bool Settle(Napi::Env env, napi_deferred deferred) override {
    if (err_ != 0) {
      RejectErrno(env, deferred, err_, "close");
    } else {
      ResolveOrReject(env, deferred, env.Undefined());
    }
    return true;
  }

  // The caller handed the fd over: it is closed even if the environment is going away.
  bool MustRun() const override { return true; }

 private:
  int fd_;
  int err_ = 0;
};

/** This environment's job pool (the functions' data). */
JobPool* PoolOf(const Napi::CallbackInfo& info) {
  return static_cast<JobPool*>(info.Data());
}

Napi::Value OpenDevice(const Napi::CallbackInfo& info) {
  std::string path;
  int32_t flags;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &flags)) return info.Env().Undefined();
  return SubmitJob(info.Env(), PoolOf(info), new OpenJob(std::move(path), flags));
}

Napi::Value ProbeFdAsync(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return info.Env().Undefined();
  return SubmitJob(info.Env(), PoolOf(info), new ProbeJob(fd));
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
  return SubmitJob(info.Env(), PoolOf(info), new CloseJob(fd));
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
  c.Set("ETIMEDOUT", ETIMEDOUT);
  c.Freeze();
  return c;
}

}  // namespace

void InitDevice(Napi::Env env, Napi::Object exports) {
  JobPool* pool = CreateJobPool(env);
  if (pool == nullptr) return;
  InitJobPool(env, exports, pool);
  InitOpenVerify(env, exports, pool);
  exports.Set("openDevice", Napi::Function::New(env, OpenDevice, "openDevice", pool));
  exports.Set("probeFd", Napi::Function::New(env, ProbeFdAsync, "probeFd", pool));
  exports.Set("probeFdSync", Napi::Function::New(env, ProbeFdSync, "probeFdSync"));
  exports.Set("closeAsync", Napi::Function::New(env, CloseAsync, "closeAsync", pool));
  exports.Set("close", Napi::Function::New(env, CloseSync, "close"));
  exports.Set("mknodBlock", Napi::Function::New(env, MknodBlock, "mknodBlock"));
  exports.Set("constants", Constants(env));
}

}  // namespace diskseqd
