/*
 * Recognising /dev/disk/by-diskseq/ paths (see path-match.h). Runs on every path the
 * interposed functions see, so the common case - any path not under /dev - must cost
 * only a few compares.
 */
#include "path-match.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const prefix[] = { "dev", "disk", "by-diskseq" };
#define PREFIX_DEPTH (sizeof prefix / sizeof prefix[0])

static int component_is(const char *s, size_t len, const char *want) {
  return strlen(want) == len && memcmp(s, want, len) == 0;
}

/* Parses a strict decimal in [1, max] from s[0..len); returns the bytes used, 0 if none. */
static size_t parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *value) {
  size_t i = 0;
  uint64_t v = 0;
  if (len == 0 || s[0] < '1' || s[0] > '9') return 0;
  for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
    uint64_t digit = (uint64_t)(s[i] - '0');
    if (v > (max - digit) / 10) return 0; /* v * 10 + digit would exceed max */
    v = v * 10 + digit;
  }
  *value = v;
  return i;
}

/* <N>, <N>-part<M> or <N>p<M>, the whole of s[0..len). */
static int parse_name(const char *s, size_t len, struct diskseq_path *out) {
  uint64_t diskseq, partition = 0;
  size_t used = parse_decimal(s, len, UINT64_MAX, &diskseq);
  if (used == 0) return 0;
  s += used;
  len -= used;
  if (len > 0) {
    size_t sep;
    if (len > 5 && memcmp(s, "-part", 5) == 0) sep = 5;
    else if (s[0] == 'p') sep = 1;
    else return 0;
    used = parse_decimal(s + sep, len - sep, UINT32_MAX, &partition);
    if (used == 0 || used != len - sep) return 0;
  }
  out->diskseq = diskseq;
  out->partition = (uint32_t)partition;
  return 1;
}

int diskseq_path_match(const char *path, struct diskseq_path *out) {
  size_t depth = 0; /* prefix components matched so far */
  const char *p = path;

  if (path == NULL || path[0] != '/') return 0;
  for (;;) {
    const char *start;
    size_t len;
    while (*p == '/') p++;
    start = p;
    while (*p != '\0' && *p != '/') p++;
    len = (size_t)(p - start);
    if (len == 0) return 0; /* the path ended before the name */
    if (len == 1 && start[0] == '.') continue;
    if (len == 2 && start[0] == '.' && start[1] == '.') {
      if (depth > 0) depth--;
      continue;
    }
    if (depth < PREFIX_DEPTH) {
      if (!component_is(start, len, prefix[depth])) return 0;
      depth++;
      continue;
    }
    /* The name: it must be the last component. Anything after it ("42/", "42/.",
       "42/..") needs 42 to be a directory, which a block device is not: leave such
       paths to libc, which fails them. */
    if (*p != '\0') return 0;
    return parse_name(start, len, out);
  }
}

int diskseq_path_format(const struct diskseq_path *p, char *buf, size_t size) {
  if (p->partition == 0)
    return snprintf(buf, size, "/dev/disk/by-diskseq/%" PRIu64, p->diskseq);
  return snprintf(buf, size, "/dev/disk/by-diskseq/%" PRIu64 "-part%" PRIu32, p->diskseq,
                  p->partition);
}
