// AF_UNIX SOCK_SEQPACKET sockets: one packet per message, fds in SCM_RIGHTS, peer credentials.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "outq-bracket.h"

namespace diskseqd {

namespace {

/** How many fds one recv can take; more are discarded by the kernel (MSG_CTRUNC). */
constexpr size_t kMaxRecvFds = 8;

/** Fills addr from path; false (with ENAMETOOLONG thrown) if it does not fit sun_path. */
bool UnixAddress(Napi::Env env, const std::string& path, const char* syscall,
                 sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) {  // keep room for the terminating NUL
    ThrowErrno(env, ENAMETOOLONG, syscall, path);
    return false;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

/**
 * Finishes a blocking connect that EINTR interrupted: the kernel goes on connecting, so
 * wait for writability and read the outcome from SO_ERROR. Returns 0 or an errno.
 */
int FinishInterruptedConnect(int fd) {
  pollfd pfd = {fd, POLLOUT, 0};
  while (poll(&pfd, 1, -1) < 0) {
    if (errno != EINTR) return errno;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

Napi::Value ListenSeqpacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int32_t backlog;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &backlog)) return env.Undefined();
  sockaddr_un addr;
  if (!UnixAddress(env, path, "bind", &addr)) return env.Undefined();
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return env.Undefined();
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind", path);
    return env.Undefined();
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "listen", path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int listen_fd;
  if (!ArgFd(info, 0, &listen_fd)) return env.Undefined();
  int fd;
  do {
    fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, errno, "accept4");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value ConnectSeqpacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  bool nonblocking;
  if (!ArgString(info, 0, &path) || !ArgBool(info, 1, &nonblocking)) return env.Undefined();
  sockaddr_un addr;
  if (!UnixAddress(env, path, "connect", &addr)) return env.Undefined();
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return env.Undefined();
  }
  int err = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    err = errno == EINTR ? FinishInterruptedConnect(fd) : errno;
  }
  if (err != 0) {
    close(fd);
    ThrowErrno(env, err, "connect", path);
    return env.Undefined();
  }
  if (nonblocking) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      err = errno;
      close(fd);
      ThrowErrno(env, err, "fcntl(F_SETFL)");
      return env.Undefined();
    }
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  if (!ArgFd(info, 0, &fd) || !ArgBytes(info, 1, &data, &length)) return env.Undefined();

  iovec iov = {data, length};
  // Room for SCM_CREDENTIALS too: with SO_PASSCRED set, the kernel puts it first.
  union {
    cmsghdr align;
    char buffer[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(kMaxRecvFds * sizeof(int))];
  } control;
  std::memset(&control, 0, sizeof control);
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buffer;
  msg.msg_controllen = sizeof control.buffer;

  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, errno, "recvmsg");
    return env.Undefined();
  }

  // Collect the fds first so that none can be forgotten if building the result fails.
  std::vector<int> fds;
  bool credentials = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) credentials = true;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int received;
      std::memcpy(&received, p + i * sizeof(int), sizeof(int));  // CMSG_DATA may be unaligned
      fds.push_back(received);
    }
  }

  Napi::Object result = Napi::Object::New(env);
  Napi::Array fd_array = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) {
    fd_array.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  }
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  result.Set("truncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_TRUNC) != 0));
  result.Set("controlTruncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_CTRUNC) != 0));
  result.Set("fds", fd_array);
  result.Set("credentials", Napi::Boolean::New(env, credentials));
  if (env.IsExceptionPending()) {
    // The caller will never learn these fds: they are ours to close.
    for (int received : fds) close(received);
    return env.Undefined();
  }
  return result;
}

/**
 * One non-blocking sendmsg of data with send_fd (when >= 0) in SCM_RIGHTS. Returns 1 when
 * sent, 0 on EAGAIN, -1 with errno set on any other failure.
 */
int SendPacket(int fd, uint8_t* data, size_t length, int send_fd) {
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
  if (n >= 0) return 1;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
}

Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  int32_t send_fd;
  if (!ArgFd(info, 0, &fd) || !ArgBytes(info, 1, &data, &length) ||
      !ArgInt(info, 2, &send_fd)) {
    return env.Undefined();
  }
  int sent = SendPacket(fd, data, length, send_fd);
  if (sent < 0) {
    ThrowErrno(env, errno, "sendmsg");
    return env.Undefined();
  }
  return Napi::Boolean::New(env, sent == 1);
}

/**
 * Send, bracketed by two SIOCOUTQ reads: out (8 bytes) gets the bytes the peer had not yet
 * received before and after the sendmsg, as two int32 in host order. Their difference is
 * what this packet costs in the send buffer (its truesize) unless the peer received
 * something in between, which only makes it smaller.
 */
Napi::Value SendTracked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  int32_t send_fd;
  uint8_t* out;
  size_t out_length;
  if (!ArgFd(info, 0, &fd) || !ArgBytes(info, 1, &data, &length) ||
      !ArgInt(info, 2, &send_fd) || !ArgBytes(info, 3, &out, &out_length)) {
    return env.Undefined();
  }
  if (out_length < 2 * sizeof(int32_t)) {
    Napi::RangeError::New(env, "argument 3 must hold two int32").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ssize_t sent = SendWithOutq(env, fd, out, [&] { return SendPacket(fd, data, length, send_fd); });
  if (sent < 0) return env.Undefined();
  return Napi::Boolean::New(env, sent == 1);
}

Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  ucred cred = {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(SO_PEERCRED)");
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  result.Set("pid", Napi::Number::New(env, cred.pid));
  return result;
}

Napi::Value PeerGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      break;
    }
    // ERANGE: the kernel stored the size it needs in len.
    if (errno != ERANGE || len <= groups.size() * sizeof(gid_t)) {
      ThrowErrno(env, errno, "getsockopt(SO_PEERGROUPS)");
      return env.Undefined();
    }
    groups.resize(len / sizeof(gid_t));
  }
  Napi::Array result = Napi::Array::New(env, groups.size());
  for (size_t i = 0; i < groups.size(); i++) {
    result.Set(static_cast<uint32_t>(i), Napi::Number::New(env, groups[i]));
  }
  return result;
}

/** getsockopt of an int option; false after throwing. */
bool SockoptInt(Napi::Env env, int fd, int option, const char* syscall, int* out) {
  socklen_t len = sizeof *out;
  if (getsockopt(fd, SOL_SOCKET, option, out, &len) != 0) {
    ThrowErrno(env, errno, syscall);
    return false;
  }
  return true;
}

Napi::Value IsListeningSeqpacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  int domain, type, accepting;
  if (!SockoptInt(env, fd, SO_DOMAIN, "getsockopt(SO_DOMAIN)", &domain) ||
      !SockoptInt(env, fd, SO_TYPE, "getsockopt(SO_TYPE)", &type) ||
      !SockoptInt(env, fd, SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)", &accepting)) {
    return env.Undefined();
  }
  return Napi::Boolean::New(env, domain == AF_UNIX && type == SOCK_SEQPACKET && accepting != 0);
}

Napi::Value SetNonblockCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return env.Undefined();
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    int err = errno;
    ThrowErrno(env, err, flags < 0 ? "fcntl(F_GETFL)" : "fcntl(F_SETFL)");
    return env.Undefined();
  }
  int fd_flags = fcntl(fd, F_GETFD);
  if (fd_flags < 0 || fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) != 0) {
    int err = errno;
    ThrowErrno(env, err, fd_flags < 0 ? "fcntl(F_GETFD)" : "fcntl(F_SETFD)");
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listenSeqpacket", Napi::Function::New(env, ListenSeqpacket, "listenSeqpacket"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("connectSeqpacket",
              Napi::Function::New(env, ConnectSeqpacket, "connectSeqpacket"));
  exports.Set("recv", Napi::Function::New(env, Recv, "recv"));
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("sendTracked", Napi::Function::New(env, SendTracked, "sendTracked"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("peerGroups", Napi::Function::New(env, PeerGroups, "peerGroups"));
  exports.Set("isListeningSeqpacket",
              Napi::Function::New(env, IsListeningSeqpacket, "isListeningSeqpacket"));
  exports.Set("setNonblockCloexec",
              Napi::Function::New(env, SetNonblockCloexec, "setNonblockCloexec"));
}

}  // namespace diskseqd
