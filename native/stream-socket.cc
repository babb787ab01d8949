// AF_UNIX SOCK_STREAM sockets for the Varlink front-end: listen and connect, partial
// writes with at most one fd riding on the first byte written (tracked through SIOCOUTQ
// on the daemon's side), and the socket kind of an inherited fd. Reading uses recv() of socket.cc (recvmsg works the same on a stream).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "addon.h"
#include "errors.h"
#include "outq-bracket.h"

namespace diskseqd {

namespace {

bool StreamAddress(Napi::Env env, const std::string& path, const char* syscall, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) {
    ThrowErrno(env, ENAMETOOLONG, syscall, path);
    return false;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

Napi::Value ListenStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int32_t backlog;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &backlog)) return env.Undefined();
  sockaddr_un addr;
  if (!StreamAddress(env, path, "bind", &addr)) return env.Undefined();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return env.Undefined();
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind", path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

/**
 * Blocking connect of a new SOCK_STREAM socket (EINTR finished by polling for
 * writability); set non-blocking afterwards when asked. For clients, tests and the
 * "is a live process serving that path" check.
 */
Napi::Value ConnectStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bool nonblocking;
  if (!ArgString(info, 0, &path) || !ArgBool(info, 1, &nonblocking)) return env.Undefined();
  sockaddr_un addr;
  if (!StreamAddress(env, path, "connect", &addr)) return env.Undefined();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return env.Undefined();
  }
  int err = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    err = errno;
    if (err == EINTR) {
      pollfd pfd = {fd, POLLOUT, 0};
      while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
      }
      socklen_t len = sizeof err;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
  }
  if (err == 0 && nonblocking) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) err = errno;
  }
  if (err != 0) {
    close(fd);
    ThrowErrno(env, err, "connect", path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

/**
 * One sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of length bytes, with send_fd in SCM_RIGHTS
 * when >= 0. Returns the bytes written (the fd went with them when at least one was), 0 on
 * EAGAIN (nothing sent), or -1 with errno set. Never closes send_fd.
 */
ssize_t WriteStream(int fd, uint8_t* data, size_t length, int send_fd) {
  iovec iov = {data, length};
  union {
    cmsghdr align;
    char buffer[CMSG_SPACE(sizeof(int))];
  } control;
  std::memset(&control, 0, sizeof control);
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (send_fd >= 0) {
    msg.msg_control = control.buffer;
    msg.msg_controllen = sizeof control.buffer;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &send_fd, sizeof send_fd);
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  return n;
}

/** The arguments both stream sends share: fd, data, offset (below its length), sendFd. */
bool StreamSendArgs(const Napi::CallbackInfo& info, int* fd, uint8_t** data, size_t* length, int32_t* send_fd) {
  uint64_t offset;
  size_t total;
  if (!ArgFd(info, 0, fd) || !ArgBytes(info, 1, data, &total) || !ArgUint64(info, 2, &offset) ||
      !ArgInt(info, 3, send_fd)) {
    return false;
  }
  if (offset >= total) {
    Napi::RangeError::New(info.Env(), "offset must be below the data's length").ThrowAsJavaScriptException();
    return false;
  }
  *data += offset;
  *length = static_cast<size_t>(total - offset);
  return true;
}

/**
 * sendStream(fd, data, offset, sendFd): WriteStream of data[offset..]. Returns the bytes
 * written, or 0 on EAGAIN (nothing sent, sendFd still the caller's). Throws on other
 * errors. Never closes sendFd.
 */
Napi::Value SendStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  int32_t send_fd;
  if (!StreamSendArgs(info, &fd, &data, &length, &send_fd)) return env.Undefined();
  ssize_t n = WriteStream(fd, data, length, send_fd);
  if (n < 0) {
    ThrowErrno(env, errno, "sendmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

/**
 * sendStreamTracked(fd, data, offset, sendFd, outq): sendStream bracketed by two SIOCOUTQ
 * reads, stored in outq (8 bytes) as two int32 in host order. On a unix stream socket every
 * sendmsg makes skbs of its own, the fd on the first, each charged at its truesize to our
 * send buffer until the peer has read all of it: the difference is this write's cost, or
 * less if the peer read something in between (docs/design.md, "Limits: fds in flight").
 */
Napi::Value SendStreamTracked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  int32_t send_fd;
  uint8_t* out;
  size_t out_length;
  if (!StreamSendArgs(info, &fd, &data, &length, &send_fd) || !ArgBytes(info, 4, &out, &out_length)) {
    return env.Undefined();
  }
  if (out_length < 2 * sizeof(int32_t)) {
    Napi::RangeError::New(env, "argument 4 must hold two int32").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ssize_t n = SendWithOutq(env, fd, out, [&] { return WriteStream(fd, data, length, send_fd); });
  if (n < 0) return env.Undefined();
  return Napi::Number::New(env, static_cast<double>(n));
}

/** socketKind(fd): { domain, type, listening } from SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN. */
Napi::Value SocketKind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  int values[3];
  const int options[3] = {SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN};
  const char* names[3] = {"getsockopt(SO_DOMAIN)", "getsockopt(SO_TYPE)", "getsockopt(SO_ACCEPTCONN)"};
  for (int i = 0; i < 3; i++) {
    socklen_t len = sizeof values[i];
    if (getsockopt(fd, SOL_SOCKET, options[i], &values[i], &len) != 0) {
      ThrowErrno(env, errno, names[i]);
      return env.Undefined();
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("domain", Napi::Number::New(env, values[0]));
  result.Set("type", Napi::Number::New(env, values[1]));
  result.Set("listening", Napi::Boolean::New(env, values[2] != 0));
  return result;
}

}  // namespace

void InitStreamSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listenStream", Napi::Function::New(env, ListenStream, "listenStream"));
  exports.Set("connectStream", Napi::Function::New(env, ConnectStream, "connectStream"));
  exports.Set("sendStream", Napi::Function::New(env, SendStream, "sendStream"));
  exports.Set("sendStreamTracked", Napi::Function::New(env, SendStreamTracked, "sendStreamTracked"));
  exports.Set("socketKind", Napi::Function::New(env, SocketKind, "socketKind"));
  Napi::Object kinds = Napi::Object::New(env);
  kinds.Set("AF_UNIX", Napi::Number::New(env, AF_UNIX));
  kinds.Set("SOCK_STREAM", Napi::Number::New(env, SOCK_STREAM));
  kinds.Set("SOCK_SEQPACKET", Napi::Number::New(env, SOCK_SEQPACKET));
  exports.Set("socketConstants", kinds);
}

}  // namespace diskseqd
