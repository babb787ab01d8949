/*
 * Extended-attribute reads (ls -l asks for ACLs and security labels, cp -a copies them):
 * for a /dev/disk/by-diskseq/ path they are read from a read-only verified fd, so a tool
 * that stat'ed the device through the shim does not then fail on the same name. Other
 * paths go to libc untouched. Writes (setxattr, removexattr) are not interposed.
 */
#include "broker-open.h"
#include "path-match.h"
#include "real-libc.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define REAL(name, ...) \
  (real_libc()->name ? real_libc()->name(__VA_ARGS__) : (errno = ENOSYS, -1))

/* Runs `call` (an f*xattr on fd) on a read-only verified fd; errno as for the call. */
#define XATTR_VIA_FD(dp, call)                                                             \
  do {                                                                                     \
    struct broker_request req_ = { .access = BROKER_READ_ONLY };                           \
    int saved_ = errno, fd = broker_open(dp, &req_, 1), err_;                              \
    ssize_t rc_;                                                                           \
    if (fd < 0) {                                                                          \
      errno = -fd;                                                                         \
      return -1;                                                                           \
    }                                                                                      \
    rc_ = (call);                                                                          \
    err_ = errno;                                                                          \
    close(fd);                                                                             \
    errno = rc_ < 0 ? err_ : saved_;                                                       \
    return rc_;                                                                            \
  } while (0)

EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XATTR_VIA_FD(&dp, fgetxattr(fd, name, value, size)), return -1);
  return REAL(getxattr, path, name, value, size);
}

/* Not a link: the same answer as getxattr. */
EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XATTR_VIA_FD(&dp, fgetxattr(fd, name, value, size)), return -1);
  return REAL(lgetxattr, path, name, value, size);
}

EXPORT ssize_t listxattr(const char *path, char *list, size_t size) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XATTR_VIA_FD(&dp, flistxattr(fd, list, size)), return -1);
  return REAL(listxattr, path, list, size);
}

EXPORT ssize_t llistxattr(const char *path, char *list, size_t size) {
  struct diskseq_path dp;
  DISKSEQ_DISPATCH(AT_FDCWD, path, &dp, XATTR_VIA_FD(&dp, flistxattr(fd, list, size)), return -1);
  return REAL(llistxattr, path, list, size);
}
