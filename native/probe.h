// The fd probe of open-and-verify step 4 (docs/design.md): fstat, loop binding, diskseq, size,
// read-only state.
#pragma once

#include <napi.h>

#include <cstdint>
#include <sys/types.h>

namespace diskseqd {

/** Plain result of ProbeFd, filled off the JS thread and converted on it. */
struct FdProbe {
  mode_t mode = 0;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  int loop_bound = -1;  // -1: not a loop (null), 0: unbound (ENXIO), 1: bound
  uint32_t loop_flags = 0;
  bool has_diskseq = false;
  uint64_t diskseq = 0;
  int diskseq_errno = 0;
  bool has_size = false;
  uint64_t size = 0;
  int read_only = -1;  // -1: BLKROGET failed (null), else its answer
};

/**
 * Probes fd in the order fstat, LOOP_GET_STATUS64, BLKGETDISKSEQ, BLKGETSIZE64, BLKROGET: binding is
 * checked before the diskseq is read (an unbound loop's fd is not pinned). Safe on any
 * thread. Returns 0, or the errno of fstat (the only step whose failure fails the probe).
 */
int ProbeFd(int fd, FdProbe* probe);

/** The FdProbe as the JS object of native/index.ts (may leave an exception pending). */
Napi::Object ProbeToJs(Napi::Env env, const FdProbe& probe);

}  // namespace diskseqd
