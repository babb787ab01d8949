// fstat + loop/diskseq/size/read-only ioctls on one fd.
#include "probe.h"

#include <cerrno>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#ifndef BLKGETDISKSEQ
#define BLKGETDISKSEQ _IOR(0x12, 128, __u64)
#endif

namespace diskseqd {

int ProbeFd(int fd, FdProbe* probe) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  probe->mode = st.st_mode;
  probe->rdev_major = major(st.st_rdev);
  probe->rdev_minor = minor(st.st_rdev);

  struct loop_info64 info = {};
  if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0) {
    probe->loop_bound = 1;
    probe->loop_flags = info.lo_flags;
  } else {
    // ENXIO: a loop device with nothing bound (or in rundown). Anything else (ENOTTY,
    // EINVAL, ...): not something we can call a loop device.
    probe->loop_bound = errno == ENXIO ? 0 : -1;
  }

  uint64_t diskseq = 0;
  if (ioctl(fd, BLKGETDISKSEQ, &diskseq) == 0) {
    probe->has_diskseq = true;
    probe->diskseq = diskseq;
  } else {
    probe->diskseq_errno = errno;
  }

  uint64_t size = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) == 0) {
    probe->has_size = true;
    probe->size = size;
  }

  int read_only = 0;
  if (ioctl(fd, BLKROGET, &read_only) == 0) probe->read_only = read_only != 0;
  return 0;
}

Napi::Object ProbeToJs(Napi::Env env, const FdProbe& probe) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("mode", Napi::Number::New(env, probe.mode));
  out.Set("rdevMajor", Napi::Number::New(env, probe.rdev_major));
  out.Set("rdevMinor", Napi::Number::New(env, probe.rdev_minor));
  if (probe.loop_bound < 0) {
    out.Set("loopBound", env.Null());
  } else {
    out.Set("loopBound", Napi::Boolean::New(env, probe.loop_bound == 1));
  }
  out.Set("loopFlags", Napi::Number::New(env, probe.loop_flags));
  if (probe.has_diskseq) {
    out.Set("diskseq", Napi::BigInt::New(env, probe.diskseq));
  } else {
    out.Set("diskseq", env.Null());
  }
  out.Set("diskseqErrno", Napi::Number::New(env, probe.diskseq_errno));
  if (probe.has_size) {
    out.Set("size", Napi::BigInt::New(env, probe.size));
  } else {
    out.Set("size", env.Null());
  }
  if (probe.read_only < 0) {
    out.Set("readOnly", env.Null());
  } else {
    out.Set("readOnly", Napi::Boolean::New(env, probe.read_only == 1));
  }
  return out;
}

}  // namespace diskseqd
