/*
 * The floor of the broker benchmark: the least a broker can do per open and still speak
 * diskseqd's wire contract. Single-threaded, epoll, blocking syscalls on the one thread.
 *
 *   c-broker [--hop] SOCKET DISKSEQ DEVPATH
 *
 * Listens on SOCKET (AF_UNIX SOCK_SEQPACKET) and answers each OpenRequest for DISKSEQ by:
 * open(DEVPATH) with the requested access, fstat, LOOP_GET_STATUS64 (loop devices),
 * BLKGETDISKSEQ, BLKGETSIZE64; checks block device, bound, diskseq; sends one Opened
 * response with the fd in SCM_RIGHTS; closes its copy. Any other diskseq gets NOT_FOUND, a
 * failed check STALE, a failed open the errno. No policy, no log, no sysfs read, no second
 * probe, no index: what diskseqd does beyond this is what the ratio measures. Prints
 * "ready" once listening; exits on SIGTERM.
 *
 * --hop: the same work, but the open and its checks run on a worker thread, as diskseqd
 * runs them so that a hung device blocks only its own thread: the event loop thread hands
 * the request over (mutex, condition variable), the worker opens and checks, and hands the
 * result back (an eventfd in the loop's epoll set), and the loop thread sends. Its figures
 * are the floor of any broker that keeps hung devices off its event loop, on this machine:
 * what the hand-off itself costs, without JavaScript.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "diskseqd.pb-c.h"

#ifndef BLKGETDISKSEQ
#define BLKGETDISKSEQ _IOR(0x12, 128, __u64)
#endif

static uint64_t served_diskseq;
static const char *dev_path;
static const char *dev_name;

static void send_response(int sock, Diskseqd__V1__Response *response, int fd) {
  uint8_t packet[1024];
  size_t len = diskseqd__v1__response__pack(response, packet);
  struct iovec iov = { packet, len };
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (fd >= 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  /* The client reads each answer before it asks again: a full buffer is its problem. */
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) perror("c-broker: sendmsg");
}

static void send_error(int sock, uint64_t id, Diskseqd__V1__ErrorCode code, const char *message, int os_errno) {
  Diskseqd__V1__Response response = DISKSEQD__V1__RESPONSE__INIT;
  Diskseqd__V1__Error error = DISKSEQD__V1__ERROR__INIT;
  error.code = code;
  error.message = (char *)message;
  error.os_errno = os_errno;
  response.id = id;
  response.body_case = DISKSEQD__V1__RESPONSE__BODY_ERROR;
  response.error = &error;
  send_response(sock, &response, -1);
}

/* What a checked open came to: the fd and what the response says, or an error. */
struct outcome {
  int fd; /* -1 when refused */
  Diskseqd__V1__ErrorCode code;
  const char *message;
  int os_errno;
  struct stat st;
  uint64_t diskseq, size;
};

/* open + fstat + LOOP_GET_STATUS64 + BLKGETDISKSEQ + BLKGETSIZE64 and the checks: the work
 * that may block on a device. */
static void open_checked(const Diskseqd__V1__OpenRequest *open_request, struct outcome *out) {
  static const int access_flags[] = { O_RDONLY, O_RDWR, O_WRONLY };
  struct loop_info64 info;
  int flags;

  memset(out, 0, sizeof *out);
  out->fd = -1;
  if (open_request->diskseq != served_diskseq || open_request->partition != 0) {
    out->code = DISKSEQD__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND;
    out->message = "no such disk";
    return;
  }
  flags = access_flags[open_request->access <= 2 ? open_request->access : 0];
  if (open_request->exclusive) flags |= O_EXCL;
  int fd = open(dev_path, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
  if (fd < 0) {
    out->code = DISKSEQD__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    out->message = "open failed";
    out->os_errno = errno;
    return;
  }
  /* Binding before diskseq: an unbound loop's fd is not pinned. */
  if (fstat(fd, &out->st) != 0 || !S_ISBLK(out->st.st_mode) ||
      (major(out->st.st_rdev) == 7 && ioctl(fd, LOOP_GET_STATUS64, &info) != 0) ||
      ioctl(fd, BLKGETDISKSEQ, &out->diskseq) != 0 || out->diskseq != served_diskseq ||
      ioctl(fd, BLKGETSIZE64, &out->size) != 0 || out->size == 0) {
    close(fd);
    out->code = DISKSEQD__V1__ERROR_CODE__ERROR_CODE_STALE;
    out->message = "does not verify";
    return;
  }
  out->fd = fd;
}

/* Sends what open_checked came to, and closes the broker's copy of the fd. */
static void answer(int sock, uint64_t id, const struct outcome *out) {
  if (out->fd < 0) {
    send_error(sock, id, out->code, out->message, out->os_errno);
    return;
  }
  Diskseqd__V1__Response response = DISKSEQD__V1__RESPONSE__INIT;
  Diskseqd__V1__Opened opened = DISKSEQD__V1__OPENED__INIT;
  Diskseqd__V1__Device device = DISKSEQD__V1__DEVICE__INIT;
  device.diskseq = out->diskseq;
  device.name = (char *)dev_name;
  device.major = major(out->st.st_rdev);
  device.minor = minor(out->st.st_rdev);
  device.size_bytes = out->size;
  opened.device = &device;
  response.id = id;
  response.body_case = DISKSEQD__V1__RESPONSE__BODY_OPENED;
  response.opened = &opened;
  send_response(sock, &response, out->fd);
  close(out->fd);
}

/* --hop: one request on its way to the worker and back. The benchmark's client reads every
 * answer before it closes, so sock is still its connection when the answer goes. */
struct job {
  struct job *next;
  int sock;
  uint64_t id;
  Diskseqd__V1__OpenRequest request; /* the scalar fields are all open_checked reads */
  struct outcome out;
};

static int hop;
static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jobs_cv = PTHREAD_COND_INITIALIZER;
static struct job *todo, *done; /* LIFO lists: one request in flight per connection here */
static int done_event = -1;

static void *worker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&jobs_mu);
  for (;;) {
    while (todo == NULL) pthread_cond_wait(&jobs_cv, &jobs_mu);
    struct job *job = todo;
    todo = job->next;
    pthread_mutex_unlock(&jobs_mu);
    open_checked(&job->request, &job->out);
    pthread_mutex_lock(&jobs_mu);
    int first = done == NULL;
    job->next = done;
    done = job;
    if (first) {
      uint64_t one = 1;
      if (write(done_event, &one, sizeof one) != sizeof one) perror("c-broker: eventfd");
    }
  }
  return NULL;
}

/* Loop thread, --hop: the worker finished these; send their answers. */
static void deliver(void) {
  uint64_t count;
  if (read(done_event, &count, sizeof count) < 0 && errno != EAGAIN) perror("c-broker: eventfd");
  pthread_mutex_lock(&jobs_mu);
  struct job *list = done;
  done = NULL;
  pthread_mutex_unlock(&jobs_mu);
  while (list != NULL) {
    struct job *next = list->next;
    answer(list->sock, list->id, &list->out);
    free(list);
    list = next;
  }
}

static void serve_open(int sock, uint64_t id, const Diskseqd__V1__OpenRequest *open_request) {
  if (hop) {
    struct job *job = calloc(1, sizeof *job);
    if (job == NULL) abort();
    job->sock = sock;
    job->id = id;
    job->request = *open_request;
    pthread_mutex_lock(&jobs_mu);
    job->next = todo;
    todo = job;
    pthread_cond_signal(&jobs_cv);
    pthread_mutex_unlock(&jobs_mu);
    return;
  }
  struct outcome out;
  open_checked(open_request, &out);
  answer(sock, id, &out);
}

/* One readable connection: every waiting packet. Returns 0 when it should be closed. */
static int serve(int sock) {
  uint8_t packet[4096];
  for (;;) {
    ssize_t n = recv(sock, packet, sizeof packet, MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0) return 0;
    Diskseqd__V1__Request *request = diskseqd__v1__request__unpack(NULL, (size_t)n, packet);
    if (request == NULL) return 0; /* a protocol violation costs the connection */
    if (request->body_case == DISKSEQD__V1__REQUEST__BODY_OPEN) {
      serve_open(sock, request->id, request->open);
    } else {
      send_error(sock, request->id, DISKSEQD__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED, "open only", 0);
    }
    diskseqd__v1__request__free_unpacked(request, NULL);
  }
}

int main(int argc, char **argv) {
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct epoll_event event = { .events = EPOLLIN }, ready[64];
  int listener, epoll;

  hop = argc > 1 && strcmp(argv[1], "--hop") == 0;
  argv += hop;
  argc -= hop;
  if (argc != 4 || strlen(argv[1]) >= sizeof addr.sun_path) {
    fprintf(stderr, "usage: c-broker [--hop] SOCKET DISKSEQ DEVPATH\n");
    return 2;
  }
  served_diskseq = strtoull(argv[2], NULL, 10);
  dev_path = argv[3];
  dev_name = strrchr(dev_path, '/') ? strrchr(dev_path, '/') + 1 : dev_path;
  strcpy(addr.sun_path, argv[1]);
  listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 128) != 0) {
    perror("c-broker: listen");
    return 1;
  }
  epoll = epoll_create1(EPOLL_CLOEXEC);
  event.data.fd = listener;
  epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
  if (hop) {
    pthread_t thread;
    done_event = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event wake = { .events = EPOLLIN, .data.fd = done_event };
    if (done_event < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, done_event, &wake) != 0 || pthread_create(&thread, NULL, worker, NULL) != 0) {
      perror("c-broker: worker");
      return 1;
    }
  }
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int count = epoll_wait(epoll, ready, 64, -1);
    for (int i = 0; i < count; i++) {
      int fd = ready[i].data.fd;
      if (fd == done_event) {
        deliver();
      } else if (fd == listener) {
        int sock;
        while ((sock = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          struct epoll_event conn = { .events = EPOLLIN, .data.fd = sock };
          epoll_ctl(epoll, EPOLL_CTL_ADD, sock, &conn);
        }
      } else if (!serve(fd)) {
        close(fd); /* also leaves the epoll set */
      }
    }
  }
}
