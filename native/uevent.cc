// The kernel's uevent netlink socket (no udev on the target machines).
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "addon.h"
#include "errors.h"

namespace diskseqd {

namespace {

/** The multicast group the kernel sends uevents to (udev's is 2). */
constexpr uint32_t kKernelUeventGroup = 1;

Napi::Value OpenUeventSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t rcvbuf;
  if (!ArgInt(info, 0, &rcvbuf)) return env.Undefined();
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket(AF_NETLINK)");
    return env.Undefined();
  }
  if (rcvbuf > 0) {
    // SO_RCVBUFFORCE passes rmem_max but needs CAP_NET_ADMIN; otherwise take what we may.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0) {
      int err = errno;
      close(fd);
      ThrowErrno(env, err, "setsockopt(SO_RCVBUF)");
      return env.Undefined();
    }
  }
  sockaddr_nl addr = {};
  addr.nl_family = AF_NETLINK;
  addr.nl_pid = 0;  // let the kernel pick our port id
  addr.nl_groups = kKernelUeventGroup;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind(AF_NETLINK)");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value RecvUevent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  if (!ArgFd(info, 0, &fd) || !ArgBytes(info, 1, &data, &length)) return env.Undefined();
  iovec iov = {data, length};
  sockaddr_nl sender = {};
  msghdr msg = {};
  msg.msg_name = &sender;
  msg.msg_namelen = sizeof sender;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    // ENOBUFS: the kernel dropped events; the caller must rescan sysfs.
    ThrowErrno(env, errno, "recvmsg");
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  result.Set("senderPid", Napi::Number::New(env, sender.nl_pid));
  result.Set("truncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_TRUNC) != 0));
  return result;
}

}  // namespace

void InitUevent(Napi::Env env, Napi::Object exports) {
  exports.Set("openUeventSocket", Napi::Function::New(env, OpenUeventSocket, "openUeventSocket"));
  exports.Set("recvUevent", Napi::Function::New(env, RecvUevent, "recvUevent"));
}

}  // namespace diskseqd
