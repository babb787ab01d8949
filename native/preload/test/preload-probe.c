/*
 * Test program for the LD_PRELOAD shim, built by test/preload-*.test.ts with cc and run
 * with and without LD_PRELOAD. It calls the interposed libc functions the way tools do
 * and prints what it saw as one JSON object, so the tests compare against the kernel's
 * own answers instead of trusting this program.
 *
 *   preload-probe open PATH FLAG...     one open(2); FLAG: rdonly wronly rdwr creat excl
 *                                        trunc directory cloexec path nonblock direct
 *                                        sync dsync append tmpfile accmode
 *   preload-probe at DIR REL FLAG...   openat(fd of DIR, or "-" for AT_FDCWD, REL)
 *   preload-probe cwd DIR REL FLAG...  chdir(DIR), then open(REL)
 *   preload-probe inspect PATH          the stat, access, readlink, realpath, fopen,
 *                                        freopen and xattr families, errno preservation,
 *                                        lowest-fd rule
 *   preload-probe threads PATH N ITERS  N threads x ITERS open+verify+read+close, with
 *                                        stat calls interleaved
 *   preload-probe fork PATH N           N forked children open while a thread opens
 *   preload-probe bench PATH ITERS [verify]
 *                                        times ITERS open+close (verify: + BLKGETDISKSEQ
 *                                        and fstat, the in-process open+verify) in ns
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef BLKGETDISKSEQ
#define BLKGETDISKSEQ _IOR(0x12, 128, __u64)
#endif

/* Entry points that binaries built against glibc < 2.33 call. */
int __xstat(int ver, const char *path, struct stat *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
int __xstat64(int ver, const char *path, struct stat64 *buf);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);

static const struct { const char *name; int flag; } flag_names[] = {
  { "rdonly", O_RDONLY }, { "wronly", O_WRONLY }, { "rdwr", O_RDWR }, { "creat", O_CREAT },
  { "excl", O_EXCL }, { "trunc", O_TRUNC }, { "directory", O_DIRECTORY },
  { "cloexec", O_CLOEXEC }, { "path", O_PATH }, { "nonblock", O_NONBLOCK },
  { "direct", O_DIRECT }, { "sync", O_SYNC }, { "dsync", O_DSYNC }, { "append", O_APPEND },
  { "tmpfile", O_TMPFILE }, { "accmode", O_ACCMODE },
};

static void json_str(const char *key, const char *value) {
  printf("\"%s\":", key);
  if (value == NULL) { printf("null,"); return; }
  putchar('"');
  for (const char *c = value; *c; c++) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
    else putchar(*c);
  }
  printf("\",");
}

static void hex(const unsigned char *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
  out[2 * n] = '\0';
}

/* {"errno":E,"mode":M,"rdev":[maj,min]} for one stat-like call. */
static void stat_result(const char *key, int rc, int err, mode_t mode, dev_t rdev) {
  if (rc == 0)
    printf("\"%s\":{\"errno\":0,\"mode\":%u,\"rdev\":[%u,%u]},", key, (unsigned)mode,
           major(rdev), minor(rdev));
  else
    printf("\"%s\":{\"errno\":%d},", key, err);
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;) if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the DIR's own fd */
}

/* Sockets at fd 3 and up (a test runner's stdio may itself be socketpairs). */
static int count_sockets(void) {
  char link[64], target[128];
  int n = 0;
  for (int fd = 3; fd < 1024; fd++) {
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len > 0) { target[len] = '\0'; if (strncmp(target, "socket:", 7) == 0) n++; }
  }
  return n;
}

/* open(2) flags from FLAG words; -1 (after a message) for an unknown one. */
static int parse_flags(int argc, char **argv) {
  int flags = 0;
  for (int i = 0; i < argc; i++) {
    size_t j;
    for (j = 0; j < sizeof flag_names / sizeof flag_names[0]; j++)
      if (strcmp(argv[i], flag_names[j].name) == 0) { flags |= flag_names[j].flag; break; }
    if (j == sizeof flag_names / sizeof flag_names[0]) { fprintf(stderr, "unknown flag %s\n", argv[i]); return -1; }
  }
  return flags;
}

static void print_open(int fd, int err, int flags);

static int cmd_open(const char *path, int argc, char **argv) {
  int flags = parse_flags(argc, argv);
  if (flags < 0) return 2;
  errno = 0;
  int fd = open(path, flags, 0600);
  print_open(fd, errno, flags);
  return 0;
}

/* openat(DIR's fd, REL) with DIR opened O_PATH|O_DIRECTORY ("-": AT_FDCWD), or with
   `cwd`: chdir(DIR) and open(REL). Relative paths and directory fds reach the shim too. */
static int cmd_relative(int use_cwd, const char *dir, const char *rel, int argc, char **argv) {
  int flags = parse_flags(argc, argv), dirfd = AT_FDCWD, fd;
  if (flags < 0) return 2;
  if (use_cwd) {
    if (chdir(dir) != 0) { perror(dir); return 1; }
    errno = 0;
    fd = open(rel, flags, 0600);
  } else {
    if (strcmp(dir, "-") != 0 && (dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) { perror(dir); return 1; }
    errno = 0;
    fd = openat(dirfd, rel, flags, 0600);
  }
  print_open(fd, errno, flags);
  return 0;
}

static void print_open(int fd, int err, int flags) {
  printf("{");
  if (fd < 0) {
    printf("\"fd\":-1,\"errno\":%d,", err);
    json_str("error", strerror(err));
  } else {
    struct stat st;
    uint64_t seq = 0;
    unsigned char buf[16];
    char hexbuf[33] = "";
    int has_seq = ioctl(fd, BLKGETDISKSEQ, &seq) == 0;
    fstat(fd, &st);
    printf("\"fd\":%d,\"errno\":0,\"cloexec\":%s,\"fl\":%d,\"rdev\":[%u,%u],", fd,
           (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? "true" : "false", fcntl(fd, F_GETFL),
           major(st.st_rdev), minor(st.st_rdev));
    if (has_seq) printf("\"diskseq\":\"%llu\",", (unsigned long long)seq);
    if (!(flags & O_PATH) && (flags & O_ACCMODE) != O_WRONLY && pread(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf) {
      hex(buf, sizeof buf, hexbuf);
      json_str("head", hexbuf);
    }
  }
  printf("\"sockets\":%d}\n", count_sockets());
}

static int cmd_inspect(const char *path) {
  struct stat st;
  struct stat64 st64;
  struct statx stx;
  char resolved[PATH_MAX];
  char *r;
  int rc, fd;

  printf("{");
  errno = 0; rc = stat(path, &st); stat_result("stat", rc, errno, st.st_mode, st.st_rdev);
  errno = 0; rc = lstat(path, &st); stat_result("lstat", rc, errno, st.st_mode, st.st_rdev);
  errno = 0; rc = stat64(path, &st64); stat_result("stat64", rc, errno, st64.st_mode, st64.st_rdev);
  errno = 0; rc = fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW);
  stat_result("fstatat", rc, errno, st.st_mode, st.st_rdev);
  errno = 0; rc = statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx);
  stat_result("statx", rc, errno, stx.stx_mode, makedev(stx.stx_rdev_major, stx.stx_rdev_minor));
  errno = 0; rc = __xstat(1, path, &st); stat_result("xstat", rc, errno, st.st_mode, st.st_rdev);
  errno = 0; rc = __lxstat(1, path, &st); stat_result("lxstat", rc, errno, st.st_mode, st.st_rdev);
  errno = 0; rc = __fxstatat(1, AT_FDCWD, path, &st, 0);
  stat_result("fxstatat", rc, errno, st.st_mode, st.st_rdev);
  errno = 0; rc = __xstat64(1, path, &st64); stat_result("xstat64", rc, errno, st64.st_mode, st64.st_rdev);

  errno = 0; rc = access(path, F_OK); printf("\"accessF\":%d,", rc == 0 ? 0 : errno);
  errno = 0; rc = access(path, R_OK); printf("\"accessR\":%d,", rc == 0 ? 0 : errno);
  errno = 0; rc = access(path, R_OK | W_OK); printf("\"accessRW\":%d,", rc == 0 ? 0 : errno);
  errno = 0; rc = access(path, X_OK); printf("\"accessX\":%d,", rc == 0 ? 0 : errno);
  errno = 0; rc = faccessat(AT_FDCWD, path, R_OK, AT_EACCESS); printf("\"faccessat\":%d,", rc == 0 ? 0 : errno);

  errno = 0; rc = (int)readlink(path, resolved, sizeof resolved); printf("\"readlink\":%d,", rc >= 0 ? 0 : errno);
  errno = 0; rc = (int)readlinkat(AT_FDCWD, path, resolved, sizeof resolved); printf("\"readlinkat\":%d,", rc >= 0 ? 0 : errno);
  errno = 0; r = realpath(path, NULL); json_str("realpath", r); printf("\"realpathErrno\":%d,", r ? 0 : errno); free(r);
  errno = 0; r = realpath(path, resolved); json_str("realpathBuf", r);
  errno = 0; r = __realpath_chk(path, resolved, sizeof resolved); json_str("realpathChk", r);
  errno = 0; r = canonicalize_file_name(path); json_str("canonicalize", r); free(r);

  /* errno after success: unchanged, as with libc on a node */
  errno = 4321; rc = stat(path, &st); printf("\"errnoAfterStat\":%d,", rc == 0 ? errno : -1);
  errno = 4321; fd = open(path, O_RDONLY | O_CLOEXEC);
  printf("\"errnoAfterOpen\":%d,", fd >= 0 ? errno : -1);
  if (fd >= 0) close(fd);

  /* open(2) gives the lowest free fd: free fd 0 and reopen into it */
  {
    int saved_stdin = dup(0);
    close(0);
    fd = open(path, O_RDONLY);
    printf("\"lowestFd\":%d,", fd);
    if (fd >= 0 && fd != 0) close(fd);
    dup2(saved_stdin, 0);
    close(saved_stdin);
  }
  fd = open(path, O_RDONLY);
  printf("\"cloexecNotAsked\":%s,", fd >= 0 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC) ? "true" : "false");
  if (fd >= 0) close(fd);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  printf("\"cloexecAsked\":%s,", fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? "true" : "false");
  if (fd >= 0) close(fd);
  errno = 0; fd = open(path, O_RDONLY | O_CREAT | O_EXCL, 0600); printf("\"creatExcl\":%d,", fd >= 0 ? 0 : errno);
  if (fd >= 0) close(fd);
  errno = 0; fd = open(path, O_RDONLY | O_DIRECTORY); printf("\"directory\":%d,", fd >= 0 ? 0 : errno);
  if (fd >= 0) close(fd);
  errno = 0; fd = open(path, O_RDONLY | O_CREAT | O_TRUNC, 0600);
  printf("\"creatTrunc\":%d,", fd >= 0 ? 0 : errno);
  if (fd >= 0) close(fd);

  {
    FILE *f = fopen(path, "re");
    unsigned char buf[16];
    char hexbuf[33] = "";
    if (f && fread(buf, 1, sizeof buf, f) == sizeof buf) hex(buf, sizeof buf, hexbuf);
    json_str("fopenHead", f ? hexbuf : NULL);
    printf("\"fopenCloexec\":%s,", f && (fcntl(fileno(f), F_GETFD) & FD_CLOEXEC) ? "true" : "false");
    if (f) fclose(f);
    errno = 0; f = fopen(path, "wx"); printf("\"fopenWx\":%d,", f ? 0 : errno);
    if (f) fclose(f);
  }
  {
    FILE *s = fopen("/dev/null", "r");
    FILE *f = s ? freopen(path, "r", s) : NULL;
    unsigned char buf[16];
    char hexbuf[33] = "";
    if (f && fread(buf, 1, sizeof buf, f) == sizeof buf) hex(buf, sizeof buf, hexbuf);
    json_str("freopenHead", f ? hexbuf : NULL);
    if (f) fclose(f);
  }
  {
    char list[4096];
    ssize_t n;
    errno = 0; n = listxattr(path, list, sizeof list);
    printf("\"listxattr\":%d,", n >= 0 ? (int)n : -errno);
    errno = 0; n = llistxattr(path, list, sizeof list);
    printf("\"llistxattr\":%d,", n >= 0 ? (int)n : -errno);
    errno = 0; n = getxattr(path, "system.posix_acl_access", list, sizeof list);
    printf("\"getxattrAcl\":%d,", n >= 0 ? (int)n : -errno);
    errno = 0; n = lgetxattr(path, "security.selinux", list, sizeof list);
    printf("\"lgetxattrSelinux\":%d,", n >= 0 ? (int)n : -errno);
  }
  printf("\"fds\":%d,\"sockets\":%d}\n", count_fds(), count_sockets());
  return 0;
}

struct worker {
  const char *path;
  int iters, index;
  uint64_t expected;
  unsigned char head[512];
  int opens, failures;
  char error[160];
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < w->iters; i++) {
    unsigned char buf[512];
    uint64_t seq = 0;
    struct stat st;
    int fd = open(w->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      w->failures++;
      snprintf(w->error, sizeof w->error, "open: %s", strerror(errno));
      continue;
    }
    w->opens++;
    if (ioctl(fd, BLKGETDISKSEQ, &seq) != 0 || seq != w->expected ||
        pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || memcmp(buf, w->head, sizeof buf) != 0) {
      w->failures++;
      snprintf(w->error, sizeof w->error, "wrong device or content (diskseq %llu)", (unsigned long long)seq);
    }
    close(fd);
    if ((i + w->index) % 4 == 0 && stat(w->path, &st) != 0) {
      w->failures++;
      snprintf(w->error, sizeof w->error, "stat: %s", strerror(errno));
    }
  }
  return NULL;
}

static int reference(const char *path, uint64_t *seq, unsigned char *head) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) { printf("{\"error\":\"reference open: %s\"}\n", strerror(errno)); return -1; }
  int ok = ioctl(fd, BLKGETDISKSEQ, seq) == 0 && pread(fd, head, 512, 0) == 512;
  close(fd);
  if (!ok) { printf("{\"error\":\"reference read failed\"}\n"); return -1; }
  return 0;
}

static int cmd_threads(const char *path, int n, int iters) {
  struct worker *w = calloc((size_t)n, sizeof *w);
  pthread_t *tid = calloc((size_t)n, sizeof *tid);
  uint64_t seq;
  unsigned char head[512];
  int fds_before, opens = 0, failures = 0;
  const char *error = "";
  if (reference(path, &seq, head) != 0) return 1;
  fds_before = count_fds();
  for (int i = 0; i < n; i++) {
    w[i] = (struct worker){ .path = path, .iters = iters, .index = i, .expected = seq };
    memcpy(w[i].head, head, sizeof head);
    pthread_create(&tid[i], NULL, worker_main, &w[i]);
  }
  for (int i = 0; i < n; i++) {
    pthread_join(tid[i], NULL);
    opens += w[i].opens;
    failures += w[i].failures;
    if (w[i].error[0]) error = w[i].error;
  }
  printf("{\"diskseq\":\"%llu\",\"opens\":%d,\"failures\":%d,\"fdsBefore\":%d,\"fdsAfter\":%d,",
         (unsigned long long)seq, opens, failures, fds_before, count_fds());
  json_str("error", error);
  printf("\"sockets\":%d}\n", count_sockets());
  return 0;
}

static int cmd_fork(const char *path, int n) {
  struct worker w = { .path = path, .iters = 200 };
  pthread_t tid;
  uint64_t seq;
  int ok = 0, failed = 0, sockets_before;
  if (reference(path, &seq, w.head) != 0) return 1;
  w.expected = seq;
  sockets_before = count_sockets();
  /* A thread keeps opening (and so connecting) while the main thread forks: a child may
     be born in the middle of a shim call in that thread and must still work. */
  pthread_create(&tid, NULL, worker_main, &w);
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      unsigned char buf[512];
      uint64_t child_seq = 0;
      int fd = open(path, O_RDONLY);
      if (fd < 0) _exit(10);
      if (ioctl(fd, BLKGETDISKSEQ, &child_seq) != 0 || child_seq != seq) _exit(11);
      if (pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || memcmp(buf, w.head, sizeof buf)) _exit(12);
      close(fd);
      _exit(0);
    }
    int status;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else failed++;
  }
  pthread_join(tid, NULL);
  printf("{\"diskseq\":\"%llu\",\"children\":%d,\"childFailures\":%d,\"threadOpens\":%d,"
         "\"threadFailures\":%d,\"socketsBefore\":%d,\"socketsAfter\":%d,",
         (unsigned long long)seq, ok, failed, w.opens, w.failures, sockets_before, count_sockets());
  json_str("error", w.error);
  printf("\"done\":true}\n");
  return 0;
}

static int compare_ns(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmd_bench(const char *path, int iters, int verify) {
  uint64_t *ns = calloc((size_t)iters, sizeof *ns), total = 0;
  for (int i = 0; i < iters; i++) {
    uint64_t start = now_ns(), seq;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { printf("{\"error\":\"open: %s\"}\n", strerror(errno)); return 1; }
    if (verify && (ioctl(fd, BLKGETDISKSEQ, &seq) != 0 || fstat(fd, &st) != 0)) {
      printf("{\"error\":\"verify failed\"}\n");
      return 1;
    }
    close(fd);
    ns[i] = now_ns() - start;
    total += ns[i];
  }
  qsort(ns, (size_t)iters, sizeof *ns, compare_ns);
  printf("{\"iters\":%d,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"mean\":%llu}\n", iters,
         (unsigned long long)ns[iters / 2], (unsigned long long)ns[iters * 9 / 10],
         (unsigned long long)ns[iters * 99 / 100], (unsigned long long)(total / (uint64_t)iters));
  free(ns);
  return 0;
}

int main(int argc, char **argv) {
  if ((argc == 4 || argc == 5) && strcmp(argv[1], "bench") == 0)
    return cmd_bench(argv[2], atoi(argv[3]), argc == 5 && strcmp(argv[4], "verify") == 0);
  if (argc >= 3 && strcmp(argv[1], "open") == 0) return cmd_open(argv[2], argc - 3, argv + 3);
  if (argc >= 4 && strcmp(argv[1], "at") == 0) return cmd_relative(0, argv[2], argv[3], argc - 4, argv + 4);
  if (argc >= 4 && strcmp(argv[1], "cwd") == 0) return cmd_relative(1, argv[2], argv[3], argc - 4, argv + 4);
  if (argc == 3 && strcmp(argv[1], "inspect") == 0) return cmd_inspect(argv[2]);
  if (argc == 5 && strcmp(argv[1], "threads") == 0) return cmd_threads(argv[2], atoi(argv[3]), atoi(argv[4]));
  if (argc == 4 && strcmp(argv[1], "fork") == 0) return cmd_fork(argv[2], atoi(argv[3]));
  fprintf(stderr, "usage: see the comment at the top of preload-probe.c\n");
  return 2;
}
