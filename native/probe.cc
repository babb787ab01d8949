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

void ProbeToSlots(Napi::Env env, const FdProbe& probe, Napi::Array out, uint32_t at) {
  Napi::Value null = env.Null();
  out.Set(at + 0, Napi::Number::New(env, probe.mode));
  out.Set(at + 1, Napi::Number::New(env, probe.rdev_major));
  out.Set(at + 2, Napi::Number::New(env, probe.rdev_minor));
  out.Set(at + 3, probe.loop_bound < 0 ? null : Napi::Value(Napi::Boolean::New(env, probe.loop_bound == 1)));
  out.Set(at + 4, Napi::Number::New(env, probe.loop_flags));
  out.Set(at + 5, probe.has_diskseq ? Napi::Value(Napi::BigInt::New(env, probe.diskseq)) : null);
  out.Set(at + 6, Napi::Number::New(env, probe.diskseq_errno));
  out.Set(at + 7, probe.has_size ? Napi::Value(Napi::BigInt::New(env, probe.size)) : null);
  out.Set(at + 8, probe.read_only < 0 ? null : Napi::Value(Napi::Boolean::New(env, probe.read_only == 1)));
}

Napi::Array ProbeToJs(Napi::Env env, const FdProbe& probe) {
  Napi::Array out = Napi::Array::New(env, kProbeSlots);
  ProbeToSlots(env, probe, out, 0);
  return out;
}

}  // namespace diskseqd
