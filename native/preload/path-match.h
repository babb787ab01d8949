/*
 * Recognising /dev/disk/by-diskseq/ paths: the only paths the shim answers itself, and
 * the only ones it must never pass to libc (docs/preload.md, "Which paths").
 */
#ifndef DISKSEQ_PRELOAD_PATH_MATCH_H
#define DISKSEQ_PRELOAD_PATH_MATCH_H

#include <stddef.h>
#include <stdint.h>

/* A parsed by-diskseq name: partition 0 is the whole disk. */
struct diskseq_path {
  uint64_t diskseq;
  uint32_t partition;
};

/* What the shim does with a path. */
enum diskseq_path_kind {
  DISKSEQ_PATH_OTHER = 0,  /* not in the namespace: libc answers, untouched */
  DISKSEQ_PATH_SERVE = 1,  /* a name in the namespace: *out says which device */
  DISKSEQ_PATH_REFUSE = 2, /* in the namespace but not a name the shim serves: fail with *err */
};

/*
 * Classifies `path` as an interposed call with directory fd `dirfd` (AT_FDCWD for the
 * calls without one) would see it:
 *
 *  - An absolute path is normalised lexically over its whole length (repeated slashes,
 *    "." and ".." anywhere). If it then names /dev/disk/by-diskseq/<NAME>, NAME is served
 *    when it is <N>, <N>-part<M> or <N>p<M> and refused otherwise (ENOENT; ENOTDIR when it
 *    must be a directory: a trailing "/", "/." or "/.."; deeper paths are refused too). A
 *    path that normalises elsewhere but whose last directory component is "by-diskseq"
 *    (e.g. a symlinked /x/by-diskseq) is compared by device and inode with the real
 *    /dev/disk/by-diskseq and then handled the same way.
 *  - A relative path is normalised lexically too; when its last component starts with a
 *    digit or any component is "by-diskseq", the directory it names below `dirfd` is
 *    compared by device and inode with /dev/disk/by-diskseq (if that exists): inside it,
 *    the last component is served or refused as above.
 *  - Everything else, NULL and "" included, is DISKSEQ_PATH_OTHER. An absolute path
 *    without the text "by-diskseq" costs one strstr.
 *
 * N and M are strict decimals: first digit 1-9 (no leading zeros, so 0 never matches),
 * N fits in uint64, M in uint32. Thread-safe; never calls an interposed function.
 */
enum diskseq_path_kind diskseq_path_classify(int dirfd, const char *path,
                                             struct diskseq_path *out, int *err);

/*
 * Writes the canonical (udev) spelling, /dev/disk/by-diskseq/<N> or <N>-part<M>, into
 * buf. Returns the length (like snprintf), which is < size when it fitted.
 */
int diskseq_path_format(const struct diskseq_path *p, char *buf, size_t size);

/*
 * The interposed functions' first line: serve a by-diskseq path with `serve`, fail a
 * refused one with `fail` (errno already set), pass everything else on.
 */
#define DISKSEQ_DISPATCH(dirfd, path, dp, serve, fail)                                     \
  do {                                                                                     \
    int err_ = 0;                                                                          \
    enum diskseq_path_kind kind_ = diskseq_path_classify((dirfd), (path), (dp), &err_);    \
    if (kind_ == DISKSEQ_PATH_SERVE) { serve; }                                            \
    if (kind_ == DISKSEQ_PATH_REFUSE) {                                                    \
      errno = err_;                                                                        \
      fail;                                                                                \
    }                                                                                      \
  } while (0)

#endif
