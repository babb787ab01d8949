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

/**
 * Probes cross to JS as kProbeSlots consecutive elements of an array, in FdProbe's order
 * (mode, rdevMajor, rdevMinor, loopBound, loopFlags, diskseq, diskseqErrno, size, readOnly;
 * null where the field is null), and native/index.ts gives them their shape. Elements,
 * not named properties: building a result object property by property through N-API
 * (key internalisation, a map transition per property) was 6.9% of the daemon's samples
 * (9.5% of the JS thread's) on the open path (perf, 4 connections), where a JS object
 * literal costs next to nothing.
 */
constexpr uint32_t kProbeSlots = 9;

/** Stores probe in out[at .. at + kProbeSlots) (may leave an exception pending). */
void ProbeToSlots(Napi::Env env, const FdProbe& probe, Napi::Array out, uint32_t at);

/** A new array holding only the probe's slots. */
Napi::Array ProbeToJs(Napi::Env env, const FdProbe& probe);

}  // namespace diskseqd
