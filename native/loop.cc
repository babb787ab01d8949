// Loop device helpers for tests and benchmarks (the daemon never attaches anything).
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "errors.h"

namespace diskseqd {

namespace {

/** Attempts before loopClaim gives up with EBUSY. */
constexpr int kClaimAttempts = 100;

void SleepMillis(long ms) {
  timespec ts = {0, ms * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int OpenRetry(const char* path, int flags) {
  int fd;
  do {
    fd = open(path, flags);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

/**
 * One claim attempt of /dev/loop<index>. Returns the exclusive fd of an unbound device,
 * -1 when another claimer won (retry), or -2 with err and syscall set on a real failure.
 */
int TryClaim(int index, int* err, std::string* syscall) {
  std::string path = "/dev/loop" + std::to_string(index);
  int fd = OpenRetry(path.c_str(), O_RDWR | O_EXCL | O_CLOEXEC);
  if (fd < 0) {
    // EBUSY: someone holds it exclusively. ENOENT/ENXIO: removed or in rundown meanwhile.
    if (errno == EBUSY || errno == ENOENT || errno == ENXIO) return -1;
    *err = errno;
    *syscall = "open";
    return -2;
  }
  loop_info64 info = {};
  if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0) {
    close(fd);  // bound between LOOP_CTL_GET_FREE and our open: not ours
    return -1;
  }
  if (errno != ENXIO) {
    *err = errno;
    *syscall = "ioctl(LOOP_GET_STATUS64)";
    close(fd);
    return -2;
  }
  return fd;  // unbound, and our O_EXCL open keeps other claimers' LOOP_CONFIGURE out
}

Napi::Value LoopClaim(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int control = OpenRetry("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) {
    ThrowErrno(env, errno, "open", "/dev/loop-control");
    return env.Undefined();
  }
  int err = EBUSY;
  std::string syscall = "loopClaim";
  int fd = -1;
  int index = -1;
  for (int attempt = 0; attempt < kClaimAttempts && fd < 0; attempt++) {
    // LOOP_CTL_GET_FREE returns the first unbound device even while another claimer holds
    // it open exclusively; after a lost race, LOOP_CTL_ADD(-1) makes a fresh one instead.
    unsigned long request = attempt == 0 ? LOOP_CTL_GET_FREE : LOOP_CTL_ADD;
    index = ioctl(control, request, -1L);
    if (index < 0) {
      err = errno;
      syscall = attempt == 0 ? "ioctl(LOOP_CTL_GET_FREE)" : "ioctl(LOOP_CTL_ADD)";
      if (err == EEXIST || err == EBUSY || err == EINTR) continue;
      break;
    }
    fd = TryClaim(index, &err, &syscall);
    if (fd == -2) break;
    if (fd < 0) {
      err = EBUSY;
      syscall = "loopClaim";
      SleepMillis(1 + attempt % 10);
    }
  }
  close(control);
  if (fd < 0) {
    ThrowErrno(env, err, syscall);
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("index", Napi::Number::New(env, index));
  if (env.IsExceptionPending()) {
    close(fd);
    return env.Undefined();
  }
  return result;
}

Napi::Value LoopConfigure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int loop_fd, backing_fd;
  int32_t flags;
  uint64_t offset, sizelimit;
  if (!ArgFd(info, 0, &loop_fd) || !ArgFd(info, 1, &backing_fd) || !ArgInt(info, 2, &flags) ||
      !ArgUint64(info, 3, &offset) || !ArgUint64(info, 4, &sizelimit)) {
    return env.Undefined();
  }
  loop_config config = {};
  config.fd = static_cast<__u32>(backing_fd);
  config.block_size = 0;  // the kernel's default
  config.info.lo_flags = static_cast<__u32>(flags);
  config.info.lo_offset = offset;
  config.info.lo_sizelimit = sizelimit;
  if (ioctl(loop_fd, LOOP_CONFIGURE, &config) != 0) {
    ThrowErrno(env, errno, "ioctl(LOOP_CONFIGURE)");
  }
  return env.Undefined();
}

Napi::Value LoopClear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int loop_fd;
  if (!ArgFd(info, 0, &loop_fd)) return env.Undefined();
  if (ioctl(loop_fd, LOOP_CLR_FD, 0) != 0) ThrowErrno(env, errno, "ioctl(LOOP_CLR_FD)");
  return env.Undefined();
}

Napi::Value LoopChangeFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int loop_fd, backing_fd;
  if (!ArgFd(info, 0, &loop_fd) || !ArgFd(info, 1, &backing_fd)) return env.Undefined();
  if (ioctl(loop_fd, LOOP_CHANGE_FD, static_cast<unsigned long>(backing_fd)) != 0) {
    ThrowErrno(env, errno, "ioctl(LOOP_CHANGE_FD)");
  }
  return env.Undefined();
}

Napi::Value LoopRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t index;
  if (!ArgInt(info, 0, &index)) return env.Undefined();
  int control = OpenRetry("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) {
    ThrowErrno(env, errno, "open", "/dev/loop-control");
    return env.Undefined();
  }
  if (ioctl(control, LOOP_CTL_REMOVE, static_cast<long>(index)) != 0) ThrowErrno(env, errno, "ioctl(LOOP_CTL_REMOVE)");
  close(control);
  return env.Undefined();
}

}  // namespace

void InitLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("loopClaim", Napi::Function::New(env, LoopClaim, "loopClaim"));
  exports.Set("loopConfigure", Napi::Function::New(env, LoopConfigure, "loopConfigure"));
  exports.Set("loopClear", Napi::Function::New(env, LoopClear, "loopClear"));
  exports.Set("loopChangeFd", Napi::Function::New(env, LoopChangeFd, "loopChangeFd"));
  exports.Set("loopRemove", Napi::Function::New(env, LoopRemove, "loopRemove"));
}

}  // namespace diskseqd
