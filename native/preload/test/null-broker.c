/*
 * Bench and test helper, not a daemon: the cheapest possible broker, to separate the
 * shim's own cost from the daemon's (bench/preload-open.ts), and a daemon that lies
 * consistently for the tests of the shim's own re-check (test/preload-recheck.test.ts).
 * It opens one device once, then answers every connection's OpenRequest with an Opened
 * response carrying that fd (SCM_RIGHTS passes a new reference each time), described as
 * DISKSEQ and PARTITION with the device's own dev_t, and closes the connection. No
 * policy, no verification, no log: never use it for anything else.
 *
 *   null-broker SOCKET DEVICE DISKSEQ PARTITION
 */
#define _GNU_SOURCE
#include "diskseqd.pb-c.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  int listener, device;
  if (argc != 5 || strlen(argv[1]) >= sizeof addr.sun_path) {
    fprintf(stderr, "usage: null-broker SOCKET DEVICE DISKSEQ PARTITION\n");
    return 2;
  }
  device = open(argv[2], O_RDONLY | O_CLOEXEC);
  if (device < 0 || fstat(device, &st) != 0) { perror(argv[2]); return 1; }
  strcpy(addr.sun_path, argv[1]);
  listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 128) != 0) {
    perror("bind/listen");
    return 1;
  }
  for (;;) {
    uint8_t in[4096], out[256];
    int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) continue;
    ssize_t n = recv(conn, in, sizeof in, 0);
    Diskseqd__V1__Request *request = n > 0 ? diskseqd__v1__request__unpack(NULL, (size_t)n, in) : NULL;
    if (request != NULL) {
      Diskseqd__V1__Device dev = DISKSEQD__V1__DEVICE__INIT;
      Diskseqd__V1__Opened opened = DISKSEQD__V1__OPENED__INIT;
      Diskseqd__V1__Response response = DISKSEQD__V1__RESPONSE__INIT;
      union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
      struct iovec iov;
      struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
      struct cmsghdr *c;
      dev.diskseq = strtoull(argv[3], NULL, 10);
      dev.partition = (uint32_t)strtoul(argv[4], NULL, 10);
      dev.major = major(st.st_rdev);
      dev.minor = minor(st.st_rdev);
      opened.device = &dev;
      response.id = request->id;
      response.body_case = DISKSEQD__V1__RESPONSE__BODY_OPENED;
      response.opened = &opened;
      iov.iov_base = out;
      iov.iov_len = diskseqd__v1__response__pack(&response, out);
      c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &device, sizeof device);
      sendmsg(conn, &msg, MSG_NOSIGNAL);
      diskseqd__v1__request__free_unpacked(request, NULL);
    }
    close(conn);
  }
}
