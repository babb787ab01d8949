/*
 * fuse-stall: a FUSE filesystem of one read-only file that can be told to stop answering,
 * for tests and benchmarks that need a device which hangs for real (docs/design.md, "Known
 * kernel limits": a loop device backed by a file on a silent FUSE mount hangs its openers).
 *
 *   fuse-stall MOUNTPOINT SIZE_BYTES
 *
 * Mounts itself at MOUNTPOINT with mount(2) (root only; no libfuse, no fusermount) and
 * serves /disk.img: SIZE_BYTES bytes, each byte its offset modulo 251, opened with
 * FOPEN_DIRECT_IO so every read reaches this process. Prints "ready" on stdout once
 * mounted. On SIGUSR1 it stops answering anything (it keeps reading requests and drops
 * them) and prints "stalled": from then on every request, a read of the file as much as a
 * close (FLUSH) of an fd on it, blocks in the kernel until this process dies, which aborts
 * the connection and fails what was waiting. The caller unmounts MOUNTPOINT.
 *
 * Speaks the raw /dev/fuse protocol (linux/fuse.h): INIT, LOOKUP, GETATTR, OPEN, READ,
 * FLUSH, RELEASE, STATFS; everything else is answered ENOSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FILE_NAME "disk.img"
#define FILE_NODE 2
#define MAX_WRITE (128 * 1024)

static volatile sig_atomic_t stalled = 0;
static uint64_t file_size;
static int fuse_fd;

static void on_usr1(int sig) {
  static const char said[] = "stalled\n";
  (void)sig;
  if (!stalled) (void)!write(STDOUT_FILENO, said, sizeof said - 1); /* async-signal-safe */
  stalled = 1;
}

static void reply(uint64_t unique, int error, const void *payload, size_t len) {
  struct fuse_out_header out = { .len = sizeof out + (error ? 0 : len), .error = -error, .unique = unique };
  struct iovec iov[2] = { { &out, sizeof out }, { (void *)payload, error ? 0 : len } };
  if (stalled) return; /* the test may have stalled us while this request was in hand */
  if (writev(fuse_fd, iov, 2) < 0 && errno != ENOENT) perror("fuse-stall: writev"); /* ENOENT: interrupted */
}

static void fill_attr(struct fuse_attr *attr, uint64_t node) {
  memset(attr, 0, sizeof *attr);
  attr->ino = node;
  attr->nlink = 1;
  attr->blksize = 4096;
  if (node == FUSE_ROOT_ID) {
    attr->mode = S_IFDIR | 0755;
    attr->nlink = 2;
  } else {
    attr->mode = S_IFREG | 0444;
    attr->size = file_size;
    attr->blocks = (file_size + 511) / 512;
  }
}

static void handle(const struct fuse_in_header *in, const char *body) {
  switch (in->opcode) {
  case FUSE_INIT: {
    const struct fuse_init_in *init = (const void *)body;
    struct fuse_init_out out = { .major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION };
    if (init->major != FUSE_KERNEL_VERSION) {
      fprintf(stderr, "fuse-stall: kernel speaks FUSE %u\n", init->major);
      exit(1);
    }
    out.max_readahead = init->max_readahead;
    out.max_write = MAX_WRITE;
    out.max_background = 16;
    out.congestion_threshold = 12;
    out.time_gran = 1;
    reply(in->unique, 0, &out, sizeof out);
    return;
  }
  case FUSE_LOOKUP: {
    struct fuse_entry_out out = { 0 };
    if (in->nodeid != FUSE_ROOT_ID || strcmp(body, FILE_NAME) != 0) {
      reply(in->unique, ENOENT, NULL, 0);
      return;
    }
    out.nodeid = FILE_NODE;
    out.entry_valid = 3600;
    out.attr_valid = 3600;
    fill_attr(&out.attr, FILE_NODE);
    reply(in->unique, 0, &out, sizeof out);
    return;
  }
  case FUSE_GETATTR: {
    struct fuse_attr_out out = { .attr_valid = 3600 };
    fill_attr(&out.attr, in->nodeid);
    reply(in->unique, 0, &out, sizeof out);
    return;
  }
  case FUSE_OPEN: {
    struct fuse_open_out out = { .fh = 1, .open_flags = FOPEN_DIRECT_IO };
    if (in->nodeid != FILE_NODE) {
      reply(in->unique, EISDIR, NULL, 0);
      return;
    }
    reply(in->unique, 0, &out, sizeof out);
    return;
  }
  case FUSE_READ: {
    const struct fuse_read_in *read_in = (const void *)body;
    static unsigned char data[MAX_WRITE];
    uint64_t offset = read_in->offset;
    size_t n = read_in->size > sizeof data ? sizeof data : read_in->size;
    if (offset >= file_size) n = 0;
    else if (n > file_size - offset) n = (size_t)(file_size - offset);
    for (size_t i = 0; i < n; i++) data[i] = (unsigned char)((offset + i) % 251);
    reply(in->unique, 0, data, n);
    return;
  }
  case FUSE_STATFS: {
    struct fuse_statfs_out out = { .st = { .bsize = 4096, .frsize = 4096, .namelen = 255 } };
    reply(in->unique, 0, &out, sizeof out);
    return;
  }
  case FUSE_FLUSH:
  case FUSE_RELEASE:
  case FUSE_RELEASEDIR:
  case FUSE_DESTROY:
    reply(in->unique, 0, NULL, 0);
    return;
  case FUSE_FORGET:
  case FUSE_BATCH_FORGET:
  case FUSE_INTERRUPT:
    return; /* no reply expected (an INTERRUPT may go unanswered) */
  default:
    reply(in->unique, ENOSYS, NULL, 0);
  }
}

int main(int argc, char **argv) {
  static char buffer[MAX_WRITE + 4096 + 8192];
  char options[128];
  struct sigaction sa = { .sa_handler = on_usr1 };

  if (argc != 3) {
    fprintf(stderr, "usage: fuse-stall MOUNTPOINT SIZE_BYTES\n");
    return 2;
  }
  file_size = strtoull(argv[2], NULL, 10);
  sigaction(SIGUSR1, &sa, NULL);
  fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) {
    perror("fuse-stall: /dev/fuse");
    return 1;
  }
  snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fuse_fd);
  if (mount("fuse-stall", argv[1], "fuse.fuse-stall", MS_NOSUID | MS_NODEV | MS_RDONLY, options) != 0) {
    perror("fuse-stall: mount");
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    ssize_t n = read(fuse_fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      if (errno == ENODEV) return 0; /* unmounted */
      perror("fuse-stall: read");
      return 1;
    }
    if (stalled) continue; /* silent: the request is never answered */
    if ((size_t)n < sizeof(struct fuse_in_header)) continue;
    handle((const struct fuse_in_header *)buffer, buffer + sizeof(struct fuse_in_header));
  }
}
