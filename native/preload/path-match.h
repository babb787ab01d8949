/*
 * Recognising /dev/disk/by-diskseq/ paths: the only paths the shim answers itself.
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

/*
 * Returns 1 and fills *out when `path` names /dev/disk/by-diskseq/<N>, <N>-part<M> or
 * <N>p<M>; 0 for every other path (including NULL and relative paths), cheaply: a path
 * whose first component is not "dev" is rejected after a few byte compares.
 *
 * Absolute paths are normalised lexically: repeated slashes and "." components are
 * skipped, and ".." inside the /dev/disk/by-diskseq prefix steps back a component (those
 * are real directories). The name must be the last component, with no trailing slash.
 * N and M are strict decimals: first digit 1-9 (no leading zeros, so 0 never matches),
 * N fits in uint64, M in uint32.
 */
int diskseq_path_match(const char *path, struct diskseq_path *out);

/*
 * Writes the canonical (udev) spelling, /dev/disk/by-diskseq/<N> or <N>-part<M>, into
 * buf. Returns the length (like snprintf), which is < size when it fitted.
 */
int diskseq_path_format(const struct diskseq_path *p, char *buf, size_t size);

#endif
