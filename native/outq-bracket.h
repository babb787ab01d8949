// A send bracketed by two SIOCOUTQ reads, for sendTracked (SEQPACKET) and
// sendStreamTracked (Varlink's stream sockets): how the daemon learns what one send cost in
// its send buffer (docs/design.md, "Limits: fds in flight").
#pragma once

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include <napi.h>

#include "errors.h"

namespace diskseqd {

/**
 * Reads SIOCOUTQ, runs send() (a sendmsg: > 0 when something went, 0 on EAGAIN, < 0 with
 * errno set), reads SIOCOUTQ again when something went, and stores both readings in out
 * (at least 8 bytes) as two int32 in host order. Returns send's result, or -1 with a JS
 * exception pending (the first ioctl failing means send never ran).
 */
template <typename Send>
ssize_t SendWithOutq(Napi::Env env, int fd, uint8_t* out, Send send) {
  int32_t queued[2] = {0, 0};
  if (ioctl(fd, SIOCOUTQ, &queued[0]) != 0) {
    ThrowErrno(env, errno, "ioctl(SIOCOUTQ)");
    return -1;
  }
  ssize_t n = send();
  if (n < 0) {
    ThrowErrno(env, errno, "sendmsg");
    return -1;
  }
  queued[1] = queued[0];
  if (n > 0 && ioctl(fd, SIOCOUTQ, &queued[1]) != 0) {
    ThrowErrno(env, errno, "ioctl(SIOCOUTQ)");
    return -1;
  }
  std::memcpy(out, queued, sizeof queued);
  return n;
}

}  // namespace diskseqd
