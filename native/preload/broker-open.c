/*
 * One open through diskseqd (see broker-open.h). The connection lives only for the call:
 * a program may close or dup2 over any fd number behind the shim's back, and a socket
 * kept open would leak into its children.
 */
#include "broker-open.h"
#include "real-libc.h"
#include "diskseqd.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef BLKGETDISKSEQ
#define BLKGETDISKSEQ _IOR(0x12, 128, __u64)
#endif

#define DEFAULT_SOCKET "/run/diskseqd.sock"
#define REQUEST_ID 1
#define RESPONSE_BUFFER (64 * 1024) /* the wire contract's maximum Response */
#define MAX_FDS 8                   /* room to receive (and close) a misbehaving surplus */
#define REPLY_TIMEOUT_SEC 60

void preload_debug(const char *fmt, ...) {
  char line[512];
  int len;
  va_list ap;
  int saved = errno;
  if (!preload_debug_enabled()) return;
  len = snprintf(line, sizeof line, "diskseq-preload[%d]: ", (int)getpid());
  va_start(ap, fmt);
  len += vsnprintf(line + len, sizeof line - (size_t)len - 1, fmt, ap);
  va_end(ap);
  if (len > (int)sizeof line - 2) len = (int)sizeof line - 2;
  line[len++] = '\n';
  (void)!write(STDERR_FILENO, line, (size_t)len);
  errno = saved;
}

static void close_keep_errno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

static void close_all(const int *fds, int count) {
  for (int i = 0; i < count; i++) close_keep_errno(fds[i]);
}

/* Connects a new SOCK_SEQPACKET|SOCK_CLOEXEC socket to the daemon; fd or -errno. */
static int connect_daemon(void) {
  const char *path = secure_getenv("DISKSEQD_SOCKET");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct timeval timeout = { .tv_sec = REPLY_TIMEOUT_SEC };
  int sock;

  if (path == NULL || path[0] == '\0') path = DEFAULT_SOCKET;
  if (strlen(path) >= sizeof addr.sun_path) {
    preload_debug("socket path too long: %s", path);
    return -EACCES;
  }
  strcpy(addr.sun_path, path);
  for (;;) {
    sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0) return -errno; /* EMFILE, ENFILE, ENOMEM: the caller's own limits */
    /* Bounded waits: a wedged daemon fails the call with ETIMEDOUT instead of hanging
       every tool. SO_SNDTIMEO also bounds connect() on a full backlog. */
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0) return sock;
    int err = errno;
    close(sock);
    if (err == EINTR) continue; /* a half-done connect cannot be resumed: start over */
    preload_debug("cannot reach diskseqd at %s: %s", path, strerror(err));
    return -EACCES; /* fail closed, never a fallback to the racy path */
  }
}

static int send_request(int sock, const struct diskseq_path *dp, const struct broker_request *r) {
  Diskseqd__V1__OpenRequest open = DISKSEQD__V1__OPEN_REQUEST__INIT;
  Diskseqd__V1__Request request = DISKSEQD__V1__REQUEST__INIT;
  uint8_t packet[256]; /* an OpenRequest without `expect` packs into < 64 bytes */
  size_t len;
  ssize_t sent;

  open.diskseq = dp->diskseq;
  open.partition = dp->partition;
  open.access = (Diskseqd__V1__Access)r->access;
  open.exclusive = r->exclusive != 0;
  open.direct = r->direct != 0;
  open.nonblock = r->nonblock != 0;
  open.sync = r->sync != 0;
  open.dsync = r->dsync != 0;
  request.id = REQUEST_ID;
  request.body_case = DISKSEQD__V1__REQUEST__BODY_OPEN;
  request.open = &open;
  if (diskseqd__v1__request__get_packed_size(&request) > sizeof packet) return -EINVAL;
  len = diskseqd__v1__request__pack(&request, packet);
  do sent = send(sock, packet, len, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent == (ssize_t)len) return 0;
  preload_debug("sending the request failed: %s", sent < 0 ? strerror(errno) : "short send");
  if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -ETIMEDOUT;
  return -EACCES;
}

/* ErrorCode -> errno, as proto/diskseqd.proto documents it for the shim. */
static int errno_for(const Diskseqd__V1__Error *error) {
  switch (error->code) {
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND: return ENOENT;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_STALE: return ENOENT;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED: return EACCES;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_BUSY: return EBUSY;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_TIMEOUT: return ETIMEDOUT;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT: return EINVAL;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_EXPECTATION_FAILED: return ENOENT;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_RESOURCE_EXHAUSTED: return EAGAIN;
  case DISKSEQD__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED: return EPROTO;
  default:
    return error->os_errno > 0 && error->os_errno < 4096 ? error->os_errno : EIO;
  }
}

/* Reads a small sysfs file with raw system calls (the shim's own open is interposed). */
static ssize_t read_sysfs(const char *path, char *buf, size_t size) {
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  if (fd < 0) return -errno;
  do n = read(fd, buf, size - 1);
  while (n < 0 && errno == EINTR);
  close_keep_errno(fd);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return n;
}

/*
 * The partition number of block device `rdev` from /sys/dev/block/MAJ:MIN/partition: 0
 * for a whole disk (no such file, but the device is there), -1 when sysfs cannot say.
 * Read after the fd arrived: an open partition cannot be deleted, so the answer holds.
 */
static int64_t partition_of(dev_t rdev) {
  char path[96], text[32], *end;
  unsigned long long number;
  ssize_t n;
  snprintf(path, sizeof path, "/sys/dev/block/%u:%u/partition", major(rdev), minor(rdev));
  n = read_sysfs(path, text, sizeof text);
  if (n == -ENOENT) {
    /* A whole disk, if sysfs knows the device at all (no file read: a lookup is enough). */
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/dev", major(rdev), minor(rdev));
    return syscall(SYS_faccessat, AT_FDCWD, path, F_OK) == 0 ? 0 : -1;
  }
  if (n <= 0 || text[0] < '1' || text[0] > '9') return -1;
  errno = 0;
  number = strtoull(text, &end, 10);
  if (errno != 0 || (*end != '\n' && *end != '\0') || number > UINT32_MAX) return -1;
  return (int64_t)number;
}

/*
 * Receives the one response packet; on an Opened answer returns the single fd it carried,
 * else -errno. All other received fds are closed.
 */
static int receive_response(int sock, const struct diskseq_path *dp) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
  } control;
  int fds[MAX_FDS];
  int nfds = 0, result;
  struct iovec iov;
  struct msghdr msg = { 0 };
  ssize_t n;
  Diskseqd__V1__Response *response;
  uint8_t *buffer = malloc(RESPONSE_BUFFER);

  if (buffer == NULL) return -ENOMEM;
  iov.iov_base = buffer;
  iov.iov_len = RESPONSE_BUFFER;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  /* MSG_CMSG_CLOEXEC: the fd is never, even for an instant, inheritable by a concurrent
     fork+exec in another thread. */
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    free(buffer);
    preload_debug("receiving the response failed: %s", strerror(err));
    return err == EAGAIN || err == EWOULDBLOCK ? -ETIMEDOUT : -EACCES;
  }
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count && nfds < MAX_FDS; i++)
      memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (n == 0 && nfds == 0) {
    free(buffer);
    preload_debug("diskseqd closed the connection without an answer");
    return -EACCES;
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    free(buffer);
    close_all(fds, nfds);
    preload_debug("truncated response (flags 0x%x, %d fds)", (unsigned)msg.msg_flags, nfds);
    /* Control data truncated with no fd installed at all: the kernel could not give this
       process a new fd (RLIMIT_NOFILE) - what open() itself would report as EMFILE. */
    if (!(msg.msg_flags & MSG_TRUNC) && nfds == 0) return -EMFILE;
    return -EPROTO;
  }
  response = diskseqd__v1__response__unpack(NULL, (size_t)n, buffer);
  free(buffer);
  if (response == NULL || response->id != REQUEST_ID) {
    preload_debug("undecodable response or wrong id");
    result = -EPROTO;
  } else if (response->body_case == DISKSEQD__V1__RESPONSE__BODY_ERROR && response->error) {
    result = -errno_for(response->error);
    /* The ErrorCode's name without its prefix, as diskseq-open and the client library say it. */
    const ProtobufCEnumValue *code = protobuf_c_enum_descriptor_get_value(
        &diskseqd__v1__error_code__descriptor, (int)response->error->code);
    char unknown[24];
    snprintf(unknown, sizeof unknown, "code %d", (int)response->error->code);
    preload_debug("diskseqd refused %" PRIu64 " partition %" PRIu32 ": %s (%s)", dp->diskseq, dp->partition,
                  code != NULL && strncmp(code->name, "ERROR_CODE_", 11) == 0 ? code->name + 11 : unknown,
                  response->error->message ? response->error->message : "");
  } else if (response->body_case != DISKSEQD__V1__RESPONSE__BODY_OPENED || nfds != 1 ||
             response->opened == NULL || response->opened->device == NULL ||
             response->opened->device->diskseq != dp->diskseq ||
             response->opened->device->partition != dp->partition) {
    preload_debug("unexpected response (body %d, %d fds)", (int)response->body_case, nfds);
    result = -EPROTO;
  } else {
    const Diskseqd__V1__Device *device = response->opened->device;
    struct stat st;
    uint64_t seq = 0;
    result = fds[0];
    nfds = 0; /* fds[0] is ours to return now */
    /* The daemon verified the fd; re-check the identity on it here, in the process that
       will use it, like the client library does: the diskseq, the dev_t the daemon
       described, and - since BLKGETDISKSEQ on a partition answers for its disk - the
       partition number sysfs gives that dev_t. */
    if (ioctl(result, BLKGETDISKSEQ, &seq) != 0 || seq != dp->diskseq ||
        fstat(result, &st) != 0 || !S_ISBLK(st.st_mode) ||
        st.st_rdev != makedev(device->major, device->minor)) {
      preload_debug("received fd is not diskseq %" PRIu64 " (it reports %" PRIu64 ")",
                    dp->diskseq, seq);
      close_keep_errno(result);
      result = -ENOENT;
    } else if (partition_of(st.st_rdev) != (int64_t)dp->partition) {
      preload_debug("received fd (%u:%u) is not partition %" PRIu32 " of diskseq %" PRIu64,
                    major(st.st_rdev), minor(st.st_rdev), dp->partition, dp->diskseq);
      close_keep_errno(result);
      result = -ENOENT;
    }
  }
  close_all(fds, nfds);
  if (response) diskseqd__v1__response__free_unpacked(response, NULL);
  return result;
}

int broker_open(const struct diskseq_path *dp, const struct broker_request *req, int cloexec) {
  int sock = connect_daemon(), fd, low;
  if (sock < 0) return sock;
  fd = send_request(sock, dp, req); /* 0 or -errno */
  if (fd == 0) fd = receive_response(sock, dp);
  close(sock);
  if (fd < 0) return fd;
  /* open(2) returns the lowest free fd number and some programs count on it (close(0)
     then open() as the new stdin): move the fd down into the slot the socket freed. The
     duplicate also carries the requested close-on-exec flag. */
  low = fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
  if (low >= 0) {
    close(fd);
    return low;
  }
  if (!cloexec && fcntl(fd, F_SETFD, 0) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}
