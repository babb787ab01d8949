/*
 * One open through diskseqd: connect, one OpenRequest, one response with the fd,
 * re-check on the fd, disconnect.
 */
#ifndef DISKSEQ_PRELOAD_BROKER_OPEN_H
#define DISKSEQ_PRELOAD_BROKER_OPEN_H

#include "path-match.h"

/* Access modes, with the wire contract's values (diskseqd.v1.Access). */
enum broker_access {
  BROKER_READ_ONLY = 0,
  BROKER_READ_WRITE = 1,
  BROKER_WRITE_ONLY = 2,
};

/* What to ask for; maps 1:1 onto OpenRequest (wait_ms is always 0, no expect). */
struct broker_request {
  enum broker_access access;
  int exclusive, direct, nonblock, sync, dsync;
};

/*
 * Opens the device `dp` names through the daemon at $DISKSEQD_SOCKET (read with
 * secure_getenv; default /run/diskseqd.sock) and returns the fd, or -errno. The fd is
 * close-on-exec unless `cloexec` is 0, and is moved to the lowest free fd number, as
 * open(2) would return, after the shim's socket is closed.
 *
 * Fails closed - never falls back to opening a path itself:
 *  - the daemon's Error codes map to errno: NOT_FOUND and STALE -> ENOENT,
 *    PERMISSION_DENIED -> EACCES, BUSY -> EBUSY, TIMEOUT -> ETIMEDOUT,
 *    INVALID_ARGUMENT -> EINVAL, RESOURCE_EXHAUSTED -> EAGAIN, EXPECTATION_FAILED ->
 *    ENOENT, UNSUPPORTED -> EPROTO, INTERNAL and anything else -> os_errno or EIO;
 *  - the daemon cannot be reached (no socket, refused, closed on us) -> EACCES;
 *  - no answer within 60 s -> ETIMEDOUT;
 *  - a malformed answer (undecodable, truncated, wrong id, not exactly one fd, a device
 *    other than the one asked for) -> EPROTO;
 *  - the received fd's BLKGETDISKSEQ differs from dp->diskseq, it is not a block
 *    device, its st_rdev is not the device the daemon described, or sysfs's `partition`
 *    of that st_rdev is not dp->partition (none for a whole disk) -> ENOENT;
 *  - no fd number left for the socket or the received fd (RLIMIT_NOFILE) -> EMFILE.
 * Every fd received on a failure path is closed. Thread-safe: no shared mutable state.
 * Not async-signal-safe (it allocates the 64 KiB receive buffer with malloc).
 */
int broker_open(const struct diskseq_path *dp, const struct broker_request *req, int cloexec);

/* Writes one "diskseq-preload: ..." line to stderr when DISKSEQ_PRELOAD_DEBUG is set. */
void preload_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
