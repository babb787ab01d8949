// What the kernel holds for a connected unix socket: output the peer has not received
// (SIOCOUTQ), input not read yet (SIOCINQ), whether the peer hung up, the send buffer,
// SO_PASSCRED; and the fd limit the kernel applies to fds in flight. docs/design.md,
// "Limits", says how the daemon uses them.
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <cmath>

#include "addon.h"
#include "errors.h"

namespace diskseqd {

namespace {

/** The int a queue-size ioctl (SIOCOUTQ, SIOCINQ) reports for the socket fd of argument 0. */
Napi::Value QueuedBytes(const Napi::CallbackInfo& info, unsigned long request, const char* name) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  int queued = 0;
  if (ioctl(fd, request, &queued) != 0) {
    ThrowErrno(env, errno, name);
    return env.Undefined();
  }
  return Napi::Number::New(env, queued);
}

/**
 * SIOCOUTQ: bytes of packets this socket sent that the peer has not received yet (their
 * truesize, charged to our send buffer until the peer's recvmsg frees them; a peer that
 * closes frees them too).
 */
Napi::Value UnreceivedBytes(const Napi::CallbackInfo& info) {
  return QueuedBytes(info, SIOCOUTQ, "ioctl(SIOCOUTQ)");
}

/**
 * SIOCINQ: bytes waiting to be read on this socket (on a stream socket, every byte queued
 * and not yet read; on SEQPACKET, of every packet queued). For tests and diagnosis: what a
 * peer that does not read has been sent.
 */
Napi::Value UnreadBytes(const Napi::CallbackInfo& info) {
  return QueuedBytes(info, SIOCINQ, "ioctl(SIOCINQ)");
}

/** shutdown(SHUT_RDWR): the peer reads what is queued, then end-of-file; it can send no more. */
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  if (shutdown(fd, SHUT_RDWR) != 0 && errno != ENOTCONN) ThrowErrno(env, errno, "shutdown");
  return env.Undefined();
}

/**
 * Whether the peer has hung up: poll(2) without waiting reports POLLHUP once both
 * directions are shut down, which for a connection we have not shut down ourselves means
 * the peer closed its end (or shut down both ways).
 */
Napi::Value PeerHungUp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  pollfd pfd = {fd, POLLRDHUP, 0};
  int ready;
  do {
    ready = poll(&pfd, 1, 0);
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) {
    ThrowErrno(env, errno, "poll");
    return env.Undefined();
  }
  return Napi::Boolean::New(env, (pfd.revents & POLLHUP) != 0);
}

/**
 * Makes the send buffer at least `bytes` (as the kernel counts it: it doubles what
 * SO_SNDBUF asks for) and returns what it is then. A packet larger than the buffer fails
 * with EMSGSIZE, so it must stay above the largest response.
 */
Napi::Value EnsureSendBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int32_t bytes;
  if (!ArgFd(info, 0, &fd) || !ArgInt(info, 1, &bytes)) return env.Undefined();
  int size = 0;
  socklen_t length = sizeof size;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &length) != 0) {
    ThrowErrno(env, errno, "getsockopt(SO_SNDBUF)");
    return env.Undefined();
  }
  if (size >= bytes) return Napi::Number::New(env, size);
  int want = (bytes + 1) / 2;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) != 0) {
    ThrowErrno(env, errno, "setsockopt(SO_SNDBUF)");
    return env.Undefined();
  }
  length = sizeof size;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &length) != 0) {
    ThrowErrno(env, errno, "getsockopt(SO_SNDBUF)");
    return env.Undefined();
  }
  return Napi::Number::New(env, size);
}

/**
 * SO_PASSCRED: every packet received then carries SCM_CREDENTIALS, and end-of-file never
 * does, so a zero-length packet can be told from the peer's close.
 */
Napi::Value SetPassCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
    ThrowErrno(env, errno, "setsockopt(SO_PASSCRED)");
  }
  return env.Undefined();
}

/**
 * The soft RLIMIT_NOFILE (Infinity when unlimited). Without CAP_SYS_RESOURCE or
 * CAP_SYS_ADMIN, sendmsg with fds fails ETOOMANYREFS once the fds this user has in flight
 * exceed it.
 */
Napi::Value OpenFileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    ThrowErrno(env, errno, "getrlimit(RLIMIT_NOFILE)");
    return env.Undefined();
  }
  if (limit.rlim_cur == RLIM_INFINITY) return Napi::Number::New(env, INFINITY);
  return Napi::Number::New(env, static_cast<double>(limit.rlim_cur));
}

}  // namespace

void InitSocketState(Napi::Env env, Napi::Object exports) {
  exports.Set("unreceivedBytes", Napi::Function::New(env, UnreceivedBytes, "unreceivedBytes"));
  exports.Set("unreadBytes", Napi::Function::New(env, UnreadBytes, "unreadBytes"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("peerHungUp", Napi::Function::New(env, PeerHungUp, "peerHungUp"));
  exports.Set("ensureSendBuffer", Napi::Function::New(env, EnsureSendBuffer, "ensureSendBuffer"));
  exports.Set("setPassCredentials",
              Napi::Function::New(env, SetPassCredentials, "setPassCredentials"));
  exports.Set("openFileLimit", Napi::Function::New(env, OpenFileLimit, "openFileLimit"));
}

}  // namespace diskseqd
