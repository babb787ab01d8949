/*
 * The client of the broker benchmark, the same program against diskseqd and against the C
 * floor (c-broker.c), so that the ratio measures the brokers and nothing else.
 *
 *   c-client SOCKET DISKSEQ CONNECTIONS OPENS [WARMUP]
 *
 * Opens CONNECTIONS connections, one thread each, and sends OPENS open requests for
 * DISKSEQ in all (read-only, whole disk), one in flight per connection: send, receive the
 * Opened response and its fd, check the fd (block device, BLKGETDISKSEQ = DISKSEQ), close
 * it. Each connection first makes WARMUP opens (default 500) that are not counted. Prints
 * one JSON line: {"opens":N,"seconds":S,"opensPerSecond":R,"p50Us":..,"p99Us":..} with the
 * latency of each open (request sent -> fd checked) over all connections. Any failure
 * exits 1 with a message: a benchmark of failing opens is worthless.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "diskseqd.pb-c.h"

#ifndef BLKGETDISKSEQ
#define BLKGETDISKSEQ _IOR(0x12, 128, __u64)
#endif

struct connection {
  pthread_t thread;
  int sock;
  uint64_t diskseq;
  long opens, warmup;
  double *latencies; /* microseconds, one per counted open */
};

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "c-client: %s\n", what);
  exit(1);
}

/* One open round trip; dies on anything but a verified fd. */
static void open_once(struct connection *c, uint64_t id) {
  Diskseqd__V1__Request request = DISKSEQD__V1__REQUEST__INIT;
  Diskseqd__V1__OpenRequest open_request = DISKSEQD__V1__OPEN_REQUEST__INIT;
  uint8_t out[128], in[65536];
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(8 * sizeof(int))];
  } control;
  struct iovec iov = { in, sizeof in };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  struct stat st;
  uint64_t seen = 0;
  int fd = -1;

  open_request.diskseq = c->diskseq;
  request.id = id;
  request.body_case = DISKSEQD__V1__REQUEST__BODY_OPEN;
  request.open = &open_request;
  size_t len = diskseqd__v1__request__pack(&request, out);
  if (send(c->sock, out, len, MSG_NOSIGNAL) != (ssize_t)len) die("send failed");
  ssize_t n = recvmsg(c->sock, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) die("connection closed");
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h != NULL; h = CMSG_NXTHDR(&msg, h)) {
    if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS && h->cmsg_len == CMSG_LEN(sizeof(int))) {
      memcpy(&fd, CMSG_DATA(h), sizeof fd);
    }
  }
  Diskseqd__V1__Response *response = diskseqd__v1__response__unpack(NULL, (size_t)n, in);
  if (response == NULL || response->id != id) die("undecodable response or wrong id");
  if (response->body_case != DISKSEQD__V1__RESPONSE__BODY_OPENED || fd < 0) {
    fprintf(stderr, "c-client: open refused: %s\n",
            response->body_case == DISKSEQD__V1__RESPONSE__BODY_ERROR && response->error->message ? response->error->message : "?");
    exit(1);
  }
  if (fstat(fd, &st) != 0 || !S_ISBLK(st.st_mode) || ioctl(fd, BLKGETDISKSEQ, &seen) != 0 || seen != c->diskseq) {
    die("the fd received is not the disk asked for");
  }
  close(fd);
  diskseqd__v1__response__free_unpacked(response, NULL);
}

static void *run(void *arg) {
  struct connection *c = arg;
  uint64_t id = 1;
  for (long i = 0; i < c->warmup; i++) open_once(c, id++);
  for (long i = 0; i < c->opens; i++) {
    double t0 = now_us();
    open_once(c, id++);
    c->latencies[i] = now_us() - t0;
  }
  return NULL;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (argc < 5 || strlen(argv[1]) >= sizeof addr.sun_path) {
    fprintf(stderr, "usage: c-client SOCKET DISKSEQ CONNECTIONS OPENS [WARMUP]\n");
    return 2;
  }
  strcpy(addr.sun_path, argv[1]);
  uint64_t diskseq = strtoull(argv[2], NULL, 10);
  int connections = atoi(argv[3]);
  long total = atol(argv[4]);
  long warmup = argc > 5 ? atol(argv[5]) : 500;
  if (connections < 1 || total < connections) die("need at least one open per connection");

  struct connection *c = calloc((size_t)connections, sizeof *c);
  double *latencies = calloc((size_t)total, sizeof *latencies);
  long offset = 0;
  for (int i = 0; i < connections; i++) {
    c[i].sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c[i].sock < 0 || connect(c[i].sock, (struct sockaddr *)&addr, sizeof addr) != 0) die("cannot connect");
    c[i].diskseq = diskseq;
    c[i].warmup = warmup;
    c[i].opens = total / connections + (i < total % connections);
    c[i].latencies = latencies + offset;
    offset += c[i].opens;
  }
  /* Warm-up on every connection first, then the measured opens all start together. */
  for (int i = 0; i < connections; i++) {
    struct connection w = c[i];
    w.opens = 0;
    run(&w);
    c[i].warmup = 0;
  }
  double t0 = now_us();
  for (int i = 0; i < connections; i++) {
    if (pthread_create(&c[i].thread, NULL, run, &c[i]) != 0) die("pthread_create");
  }
  for (int i = 0; i < connections; i++) pthread_join(c[i].thread, NULL);
  double seconds = (now_us() - t0) / 1e6;
  qsort(latencies, (size_t)total, sizeof *latencies, by_value);
  printf("{\"opens\":%ld,\"seconds\":%.6f,\"opensPerSecond\":%.1f,\"p50Us\":%.2f,\"p99Us\":%.2f}\n", total, seconds,
         total / seconds, latencies[total / 2], latencies[(long)(total * 0.99)]);
  return 0;
}
