/*
 * Recognising /dev/disk/by-diskseq/ paths (see path-match.h). Runs on every path the
 * interposed functions see, so the common cases must stay cheap: an absolute path without
 * the text "by-diskseq" costs one strstr, a relative one a scan for its last component.
 *
 * Why the whole path is normalised, and why relative paths and directory fds are looked
 * at: with a stale udev link /dev/disk/by-diskseq/N -> ../../loop2 present, any spelling
 * that reaches it and is passed to libc opens whatever loop2 is now. A path the shim does
 * not serve must therefore never reach libc if it resolves into that directory.
 */
#include "path-match.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NAMESPACE_DIR "/dev/disk/by-diskseq"
#define DIR_NAME "by-diskseq"
static const char *const prefix[] = { "dev", "disk", DIR_NAME };
#define PREFIX_DEPTH (sizeof prefix / sizeof prefix[0])
/* Components kept while normalising; a longer path is left alone (PATH_MAX bounds real ones). */
#define MAX_COMPONENTS 512

struct component {
  const char *start;
  size_t len;
};

/* A path split into components with "." dropped and ".." applied lexically. */
struct normalised {
  struct component parts[MAX_COMPONENTS];
  size_t count;
  size_t up;       /* relative paths: ".." left over above the start */
  int must_be_dir; /* a trailing "/", "/." or "/..": the target must be a directory */
};

static int component_is(const struct component *c, const char *want) {
  return strlen(want) == c->len && memcmp(c->start, want, c->len) == 0;
}

/* Splits and normalises `path`; 0 when it has more than MAX_COMPONENTS components. */
static int normalise(const char *path, struct normalised *n) {
  const char *p = path;
  int absolute = path[0] == '/';
  n->count = n->up = 0;
  n->must_be_dir = 0;
  for (;;) {
    const char *start;
    size_t len;
    while (*p == '/') p++;
    if (*p == '\0') {
      if (p > path && p[-1] == '/') n->must_be_dir = 1;
      return 1;
    }
    start = p;
    while (*p != '\0' && *p != '/') p++;
    len = (size_t)(p - start);
    n->must_be_dir = 0;
    if (len == 1 && start[0] == '.') {
      n->must_be_dir = 1;
      continue;
    }
    if (len == 2 && start[0] == '.' && start[1] == '.') {
      n->must_be_dir = 1;
      if (n->count > 0) n->count--;
      else if (!absolute) n->up++; /* at "/", ".." stays at "/" */
      continue;
    }
    if (n->count == MAX_COMPONENTS) return 0;
    n->parts[n->count].start = start;
    n->parts[n->count].len = len;
    n->count++;
  }
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

/*
 * `name` inside /dev/disk/by-diskseq, followed by `below` more components: a name the
 * shim serves, or a refusal (never libc: the directory may hold stale udev links).
 */
static enum diskseq_path_kind inside(const struct component *name, size_t below, int must_be_dir,
                                     struct diskseq_path *out, int *err) {
  struct diskseq_path parsed;
  int served = parse_name(name->start, name->len, &parsed);
  if (served && below == 0 && !must_be_dir) {
    *out = parsed;
    return DISKSEQ_PATH_SERVE;
  }
  *err = served ? ENOTDIR : ENOENT; /* a disk is no directory; other names do not exist */
  return DISKSEQ_PATH_REFUSE;
}

/* stat of a directory by path below dirfd, with raw system calls: no interposed function. */
static int stat_dir(int dirfd, const char *path, struct stat *st) {
  int fd = (int)syscall(SYS_openat, dirfd, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int rc;
  if (fd < 0) return -1;
  rc = fstat(fd, st);
  close(fd);
  return rc;
}

/* Whether directory `path` below dirfd is /dev/disk/by-diskseq (same device and inode). */
static int is_namespace_dir(int dirfd, const char *path) {
  struct stat dir, ns;
  int saved = errno, same;
  same = stat_dir(dirfd, path, &dir) == 0 && stat_dir(AT_FDCWD, NAMESPACE_DIR, &ns) == 0 &&
         dir.st_dev == ns.st_dev && dir.st_ino == ns.st_ino;
  errno = saved;
  return same;
}

/* Writes `up` ".." and parts[0..count) as a relative or absolute path; 0 if too long. */
static int join_dir(const struct normalised *n, size_t count, int absolute, char *buf, size_t size) {
  size_t used = 0;
  if (absolute) buf[used++] = '/';
  else if (n->up == 0 && count == 0) buf[used++] = '.';
  for (size_t i = 0; i < n->up + count; i++) {
    const char *s = i < n->up ? ".." : n->parts[i - n->up].start;
    size_t len = i < n->up ? 2 : n->parts[i - n->up].len;
    if (used + len + 2 > size) return 0;
    if (used > 0 && buf[used - 1] != '/') buf[used++] = '/';
    memcpy(buf + used, s, len);
    used += len;
  }
  buf[used] = '\0';
  return 1;
}

static enum diskseq_path_kind classify_absolute(const struct normalised *n, struct diskseq_path *out, int *err) {
  char dir[PATH_MAX];
  size_t i;
  for (i = 0; i < n->count && i < PREFIX_DEPTH; i++)
    if (!component_is(&n->parts[i], prefix[i])) break;
  if (i == PREFIX_DEPTH) {
    if (n->count == PREFIX_DEPTH) return DISKSEQ_PATH_OTHER; /* the directory itself */
    return inside(&n->parts[PREFIX_DEPTH], n->count - PREFIX_DEPTH - 1, n->must_be_dir, out, err);
  }
  if (i == n->count) return DISKSEQ_PATH_OTHER; /* "/", "/dev", "/dev/disk" */
  /* Elsewhere, but in a directory called by-diskseq: is it the real one (a symlink)? */
  if (n->count < 2 || !component_is(&n->parts[n->count - 2], DIR_NAME)) return DISKSEQ_PATH_OTHER;
  if (!join_dir(n, n->count - 1, 1, dir, sizeof dir) || !is_namespace_dir(AT_FDCWD, dir)) return DISKSEQ_PATH_OTHER;
  return inside(&n->parts[n->count - 1], 0, n->must_be_dir, out, err);
}

static enum diskseq_path_kind classify_relative(int dirfd, const struct normalised *n, struct diskseq_path *out, int *err) {
  char dir[PATH_MAX];
  const struct component *last;
  int candidate = 0;
  if (n->count == 0) return DISKSEQ_PATH_OTHER; /* dirfd itself or above it: a directory */
  last = &n->parts[n->count - 1];
  /* Cheap filter: udev's names there start with a digit, and any spelling through the
     directory's own name is looked at. */
  if (last->start[0] >= '0' && last->start[0] <= '9') candidate = 1;
  for (size_t i = 0; !candidate && i < n->count; i++) candidate = component_is(&n->parts[i], DIR_NAME);
  if (!candidate) return DISKSEQ_PATH_OTHER;
  if (!join_dir(n, n->count - 1, 0, dir, sizeof dir) || !is_namespace_dir(dirfd, dir)) return DISKSEQ_PATH_OTHER;
  return inside(last, 0, n->must_be_dir, out, err);
}

/* The relative paths classify_relative could accept: a component starting with a digit,
   or the directory's name. One pass, no normalising, for every other relative path. */
static int may_be_relative_name(const char *path) {
  if (path[0] >= '0' && path[0] <= '9') return 1;
  for (const char *p = path; (p = strchr(p, '/')) != NULL; p++)
    if (p[1] >= '0' && p[1] <= '9') return 1;
  return strstr(path, DIR_NAME) != NULL;
}

enum diskseq_path_kind diskseq_path_classify(int dirfd, const char *path, struct diskseq_path *out, int *err) {
  struct normalised n;
  if (path == NULL || path[0] == '\0') return DISKSEQ_PATH_OTHER;
  if (path[0] == '/') {
    /* Every spelling that reaches the directory lexically contains its name. */
    if (strstr(path, DIR_NAME) == NULL) return DISKSEQ_PATH_OTHER;
    if (!normalise(path, &n)) return DISKSEQ_PATH_OTHER;
    return classify_absolute(&n, out, err);
  }
  if (!may_be_relative_name(path) || !normalise(path, &n)) return DISKSEQ_PATH_OTHER;
  return classify_relative(dirfd, &n, out, err);
}

int diskseq_path_format(const struct diskseq_path *p, char *buf, size_t size) {
  if (p->partition == 0)
    return snprintf(buf, size, "/dev/disk/by-diskseq/%" PRIu64, p->diskseq);
  return snprintf(buf, size, "/dev/disk/by-diskseq/%" PRIu64 "-part%" PRIu32, p->diskseq,
                  p->partition);
}
