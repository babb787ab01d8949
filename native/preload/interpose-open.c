/*
 * The open family and fopen: a /dev/disk/by-diskseq/ path is answered with a verified fd
 * from diskseqd; every other path goes to libc untouched.
 *
 * fopen and freopen are interposed themselves because libc's versions call its internal
 * open, which never reaches the interposed one: the shim opens the fd itself and wraps it
 * with fdopen, or (freopen) puts it under the reopened stream with dup3.
 */
#include "broker-open.h"
#include "path-match.h"
#include "real-libc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* glibc's fortify entry points; not declared without _FORTIFY_SOURCE. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* open(2) reads a mode argument only for these flags. */
static int needs_mode(int flags) {
  return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
}

/*
 * Opens a by-diskseq path with open(2) flags, as the kernel would open a device node:
 * O_CREAT and O_TRUNC are ignored, O_CREAT|O_EXCL fails with EEXIST (the node "exists"),
 * O_DIRECTORY (and so O_TMPFILE) with ENOTDIR; O_NOFOLLOW and O_NOCTTY need nothing (the
 * name is no link, a disk no tty). O_PATH gets a read-only verified fd: an O_PATH fd on
 * a device node would not be bound to the disk instance. O_APPEND and O_NOATIME are set
 * on the received fd with F_SETFL. Returns the fd, or -1 with errno set; on success errno
 * is left as it was.
 */
static int open_diskseq(const struct diskseq_path *dp, int flags) {
  struct broker_request req = { 0 };
  int saved = errno, fd;

  if (flags & O_DIRECTORY) {
    errno = ENOTDIR;
    return -1;
  }
  if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
    errno = EEXIST;
    return -1;
  }
  if (flags & O_PATH) {
    req.access = BROKER_READ_ONLY;
  } else {
    switch (flags & O_ACCMODE) {
    case O_RDONLY: req.access = BROKER_READ_ONLY; break;
    case O_RDWR: req.access = BROKER_READ_WRITE; break;
    case O_WRONLY: req.access = BROKER_WRITE_ONLY; break;
    default: errno = EINVAL; return -1; /* O_ACCMODE: no such access for a disk */
    }
    req.exclusive = (flags & O_EXCL) != 0;
    req.direct = (flags & O_DIRECT) != 0;
    req.nonblock = (flags & O_NONBLOCK) != 0;
    req.sync = (flags & O_SYNC) == O_SYNC; /* O_SYNC includes the O_DSYNC bit */
    req.dsync = (flags & O_DSYNC) != 0;
  }
  fd = broker_open(dp, &req, (flags & O_CLOEXEC) != 0);
  if (fd < 0) {
    preload_debug("open of diskseq %llu partition %u failed: errno %d",
                  (unsigned long long)dp->diskseq, dp->partition, -fd);
    errno = -fd;
    return -1;
  }
  if (!(flags & O_PATH) && (flags & (O_APPEND | O_NOATIME))) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | (flags & (O_APPEND | O_NOATIME))) < 0) {
      int err = errno;
      close(fd);
      errno = err;
      return -1;
    }
  }
  errno = saved;
  return fd;
}

#define MODE_ARG(flags, mode)                                                              \
  do {                                                                                     \
    if (needs_mode(flags)) {                                                               \
      va_list ap;                                                                          \
      va_start(ap, flags);                                                                 \
      mode = va_arg(ap, mode_t);                                                           \
      va_end(ap);                                                                          \
    }                                                                                      \
  } while (0)

/* Calls the real function, or fails with ENOSYS when this libc lacks it. */
#define REAL(name, ...) \
  (real_libc()->name ? real_libc()->name(__VA_ARGS__) : (errno = ENOSYS, -1))

EXPORT int open(const char *path, int flags, ...) {
  struct diskseq_path dp;
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(open, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...) {
  struct diskseq_path dp;
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(open64, path, flags, mode);
}

/* An absolute path ignores dirfd, in the kernel and here. */
EXPORT int openat(int dirfd, const char *path, int flags, ...) {
  struct diskseq_path dp;
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  DISKSEQ_DISPATCH(dirfd, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(openat, dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
  struct diskseq_path dp;
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  DISKSEQ_DISPATCH(dirfd, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(openat64, dirfd, path, flags, mode);
}

/* The _2 variants abort (through libc) when given flags that need a mode. */
EXPORT int __open_2(const char *path, int flags) {
  struct diskseq_path dp;
  if (!needs_mode(flags)) DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(open_2, path, flags);
}

EXPORT int __open64_2(const char *path, int flags) {
  struct diskseq_path dp;
  if (!needs_mode(flags)) DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(open64_2, path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags) {
  struct diskseq_path dp;
  if (!needs_mode(flags)) DISKSEQ_DISPATCH(dirfd, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(openat_2, dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags) {
  struct diskseq_path dp;
  if (!needs_mode(flags)) DISKSEQ_DISPATCH(dirfd, path, &dp, return open_diskseq(&dp, flags), return -1);
  return REAL(openat64_2, dirfd, path, flags);
}

/* libc's creat makes the syscall itself, so it needs its own entry. */
EXPORT int creat(const char *path, mode_t mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return open_diskseq(&dp, O_CREAT | O_WRONLY | O_TRUNC), return -1);
  return REAL(creat, path, mode);
}

EXPORT int creat64(const char *path, mode_t mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return open_diskseq(&dp, O_CREAT | O_WRONLY | O_TRUNC), return -1);
  return REAL(creat64, path, mode);
}

/* fopen's mode string as open(2) flags (glibc's letters); -1 for an invalid mode. */
static int fopen_flags(const char *mode) {
  int flags;
  switch (mode[0]) {
  case 'r': flags = O_RDONLY; break;
  case 'w': flags = O_WRONLY | O_CREAT | O_TRUNC; break;
  case 'a': flags = O_WRONLY | O_CREAT | O_APPEND; break;
  default: return -1;
  }
  for (const char *m = mode + 1; *m != '\0' && *m != ','; m++) {
    if (*m == '+') flags = (flags & ~O_ACCMODE) | O_RDWR;
    else if (*m == 'x') flags |= O_EXCL;
    else if (*m == 'e') flags |= O_CLOEXEC;
    /* 'b', 'c', 'm' and unknown letters change nothing for a device */
  }
  return flags;
}

static FILE *fopen_diskseq(const struct diskseq_path *dp, const char *mode) {
  int flags = mode ? fopen_flags(mode) : -1, fd;
  FILE *file;
  if (flags < 0) {
    errno = EINVAL;
    return NULL;
  }
  fd = open_diskseq(dp, flags);
  if (fd < 0) return NULL;
  file = fdopen(fd, mode);
  if (file == NULL) {
    int err = errno;
    close(fd);
    errno = err;
  }
  return file;
}

EXPORT FILE *fopen(const char *path, const char *mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return fopen_diskseq(&dp, mode), return NULL);
  if (real_libc()->fopen == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->fopen(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return fopen_diskseq(&dp, mode), return NULL);
  if (real_libc()->fopen64 == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->fopen64(path, mode);
}

/*
 * freopen: libc reopens `stream` in `mode` on /dev/null (which keeps the stream's fd
 * number and sets up its buffering and mode), then the verified fd takes that fd slot.
 * As with libc's freopen, a failure closes the stream.
 */
static FILE *freopen_diskseq(const struct diskseq_path *dp, const char *mode, FILE *stream,
                             FILE *(*real_freopen)(const char *, const char *, FILE *)) {
  int flags = mode ? fopen_flags(mode) : -1, fd, err;
  FILE *file;
  if (flags < 0 || real_freopen == NULL) {
    fclose(stream);
    errno = flags < 0 ? EINVAL : ENOSYS;
    return NULL;
  }
  fd = open_diskseq(dp, flags);
  if (fd < 0) {
    err = errno;
    fclose(stream);
    errno = err;
    return NULL;
  }
  file = real_freopen("/dev/null", mode, stream);
  if (file == NULL) {
    err = errno;
    close(fd);
    errno = err;
    return NULL;
  }
  if (dup3(fd, fileno(file), (flags & O_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
    err = errno;
    close(fd);
    fclose(file);
    errno = err;
    return NULL;
  }
  close(fd);
  return file;
}

/* A refused path: as libc's freopen does on failure, the stream is closed; errno kept. */
static FILE *freopen_refused(FILE *stream) {
  int err = errno;
  fclose(stream);
  errno = err;
  return NULL;
}

EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return freopen_diskseq(&dp, mode, stream, real_libc()->freopen),
                   return freopen_refused(stream));
  if (real_libc()->freopen == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->freopen(path, mode, stream);
}

EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return freopen_diskseq(&dp, mode, stream, real_libc()->freopen64),
                   return freopen_refused(stream));
  if (real_libc()->freopen64 == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->freopen64(path, mode, stream);
}
