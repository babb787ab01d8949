/*
 * The functions tools use to inspect or resolve a path before opening it: the stat
 * family, access, readlink and realpath. For a /dev/disk/by-diskseq/ path they describe
 * the verified device - whether or not udev made a symlink there - and never resolve the
 * name to /dev/loopN or the like, which would bring the race back:
 *  - stat/lstat/fstatat/statx/__xstat...: a read-only verified fd from diskseqd, fstat'ed
 *    and closed (a block device with the right st_rdev; lstat the same: no link);
 *  - access/faccessat/euidaccess: whether diskseqd grants an open with that access;
 *  - readlink/readlinkat: EINVAL (not a link), without asking the daemon;
 *  - realpath/canonicalize_file_name: the canonical by-diskseq path itself, once the
 *    device is confirmed to exist.
 * Every other path goes to libc untouched.
 */
#include "broker-open.h"
#include "path-match.h"
#include "real-libc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Old-glibc and fortify entry points, not declared by current headers. */
int __xstat(int ver, const char *path, struct stat *buf);
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);

#define REAL(name, ...) \
  (real_libc()->name ? real_libc()->name(__VA_ARGS__) : (errno = ENOSYS, -1))

/* A read-only verified fd for dp, or -1 with errno set. */
static int inspect_fd(const struct diskseq_path *dp, enum broker_access access) {
  struct broker_request req = { .access = access };
  int fd = broker_open(dp, &req, 1);
  if (fd < 0) {
    errno = -fd;
    return -1;
  }
  return fd;
}

/* Closes the inspection fd and turns rc into the call's result with errno right: the
   caller's errno is restored on success, the failing call's kept on failure. */
static int finish(int fd, int rc, int saved_errno) {
  int err = errno;
  close(fd);
  errno = rc == 0 ? saved_errno : err;
  return rc;
}

#define STAT_VIA_FD(dp, fstat_call)                                                        \
  do {                                                                                     \
    int saved_ = errno, fd = inspect_fd(dp, BROKER_READ_ONLY);                             \
    if (fd < 0) return -1;                                                                 \
    return finish(fd, (fstat_call) == 0 ? 0 : -1, saved_);                                 \
  } while (0)

EXPORT int stat(const char *path, struct stat *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, STAT_VIA_FD(&dp, fstat(fd, buf)), return -1);
  return REAL(stat, path, buf);
}

EXPORT int stat64(const char *path, struct stat64 *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, STAT_VIA_FD(&dp, fstat64(fd, buf)), return -1);
  return REAL(stat64, path, buf);
}

EXPORT int lstat(const char *path, struct stat *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, STAT_VIA_FD(&dp, fstat(fd, buf)), return -1);
  return REAL(lstat, path, buf);
}

EXPORT int lstat64(const char *path, struct stat64 *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, STAT_VIA_FD(&dp, fstat64(fd, buf)), return -1);
  return REAL(lstat64, path, buf);
}

/* AT_SYMLINK_NOFOLLOW changes nothing (no link); an absolute path ignores dirfd. */
EXPORT int fstatat(int dirfd, const char *path, struct stat *buf, int flags) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, STAT_VIA_FD(&dp, fstat(fd, buf)), return -1);
  return REAL(fstatat, dirfd, path, buf, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, STAT_VIA_FD(&dp, fstat64(fd, buf)), return -1);
  return REAL(fstatat64, dirfd, path, buf, flags);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, {
    if (real_libc()->statx == NULL) {
      errno = ENOSYS;
      return -1;
    }
    STAT_VIA_FD(&dp, real_libc()->statx(fd, "", AT_EMPTY_PATH | (flags & AT_STATX_SYNC_TYPE),
                                        mask, buf));
  }, return -1);
  return REAL(statx, dirfd, path, flags, mask, buf);
}

/* The versioned stat entry points that binaries built against glibc < 2.33 call: the
   answer comes from the matching __fxstat with the caller's struct version. */
#define XSTAT_VIA_FD(dp, fx, ver, buf)                                                     \
  do {                                                                                     \
    if (real_libc()->fx == NULL) {                                                         \
      errno = ENOSYS;                                                                      \
      return -1;                                                                           \
    }                                                                                      \
    STAT_VIA_FD(dp, real_libc()->fx(ver, fd, buf));                                        \
  } while (0)

EXPORT int __xstat(int ver, const char *path, struct stat *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XSTAT_VIA_FD(&dp, fxstat, ver, buf), return -1);
  return REAL(xstat, ver, path, buf);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XSTAT_VIA_FD(&dp, fxstat64, ver, buf), return -1);
  return REAL(xstat64, ver, path, buf);
}

EXPORT int __lxstat(int ver, const char *path, struct stat *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XSTAT_VIA_FD(&dp, fxstat, ver, buf), return -1);
  return REAL(lxstat, ver, path, buf);
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *buf) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XSTAT_VIA_FD(&dp, fxstat64, ver, buf), return -1);
  return REAL(lxstat64, ver, path, buf);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, XSTAT_VIA_FD(&dp, fxstat, ver, buf), return -1);
  return REAL(fxstatat, ver, dirfd, path, buf, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, XSTAT_VIA_FD(&dp, fxstat64, ver, buf), return -1);
  return REAL(fxstatat64, ver, dirfd, path, buf, flags);
}

/*
 * access(2) for a by-diskseq path: F_OK and R_OK ask for a read-only open, W_OK for a
 * write-only one, R_OK|W_OK for read-write (a grant decides, not the node's mode bits);
 * X_OK additionally needs an execute bit on the device, which device nodes lack. The
 * daemon judges the socket's credentials, the effective ids: for the programs LD_PRELOAD
 * reaches (not setuid ones) those equal the real ids access() is about.
 */
static int access_diskseq(const struct diskseq_path *dp, int mode) {
  enum broker_access access = BROKER_READ_ONLY;
  struct stat st;
  int saved = errno, fd;
  if (mode & ~(R_OK | W_OK | X_OK)) {
    errno = EINVAL;
    return -1;
  }
  if (mode & W_OK) access = (mode & R_OK) ? BROKER_READ_WRITE : BROKER_WRITE_ONLY;
  fd = inspect_fd(dp, access);
  if (fd < 0) return -1;
  if (mode & X_OK) {
    if (fstat(fd, &st) != 0) return finish(fd, -1, saved);
    if ((st.st_mode & 0111) == 0) {
      errno = EACCES;
      return finish(fd, -1, saved);
    }
  }
  return finish(fd, 0, saved);
}

EXPORT int access(const char *path, int mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return access_diskseq(&dp, mode), return -1);
  return REAL(access, path, mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, {
    if (flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) {
      errno = EINVAL;
      return -1;
    }
    return access_diskseq(&dp, mode);
  }, return -1);
  return REAL(faccessat, dirfd, path, mode, flags);
}

EXPORT int euidaccess(const char *path, int mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return access_diskseq(&dp, mode), return -1);
  return REAL(euidaccess, path, mode);
}

EXPORT int eaccess(const char *path, int mode) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return access_diskseq(&dp, mode), return -1);
  return REAL(eaccess, path, mode);
}

/* A by-diskseq name is the device itself, never a link to /dev/loopN or the like. */
EXPORT ssize_t readlink(const char *path, char *buf, size_t size) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, errno = EINVAL; return -1, return -1);
  return REAL(readlink, path, buf, size);
}

EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(dirfd, path, &dp, errno = EINVAL; return -1, return -1);
  return REAL(readlinkat, dirfd, path, buf, size);
}

/*
 * realpath for a by-diskseq path: the canonical spelling of the same name (<N> or
 * <N>-part<M>, normalised), after confirming through diskseqd that the device exists
 * (realpath fails with ENOENT for a missing file; a denied one gives EACCES).
 */
static char *realpath_diskseq(const struct diskseq_path *dp, char *resolved) {
  char canonical[64];
  int saved = errno, len, fd;
  len = diskseq_path_format(dp, canonical, sizeof canonical);
  if (len < 0 || (size_t)len >= sizeof canonical) {
    errno = ENAMETOOLONG;
    return NULL;
  }
  fd = inspect_fd(dp, BROKER_READ_ONLY);
  if (fd < 0) return NULL;
  finish(fd, 0, saved);
  if (resolved == NULL) {
    resolved = malloc((size_t)len + 1);
    if (resolved == NULL) return NULL; /* errno = ENOMEM */
  }
  memcpy(resolved, canonical, (size_t)len + 1);
  errno = saved;
  return resolved;
}

EXPORT char *realpath(const char *path, char *resolved) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return realpath_diskseq(&dp, resolved), return NULL);
  if (real_libc()->realpath == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->realpath(path, resolved);
}

/* With a buffer smaller than PATH_MAX, libc's checker aborts before looking at the path. */
EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen) {
  struct diskseq_path dp;
  if (resolved == NULL || resolvedlen >= PATH_MAX)
    DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return realpath_diskseq(&dp, resolved), return NULL);
  if (real_libc()->realpath_chk == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->realpath_chk(path, resolved, resolvedlen);
}

EXPORT char *canonicalize_file_name(const char *path) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, return realpath_diskseq(&dp, NULL), return NULL);
  if (real_libc()->canonicalize_file_name == NULL) {
    errno = ENOSYS;
    return NULL;
  }
  return real_libc()->canonicalize_file_name(path);
}
