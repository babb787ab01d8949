// errno -> name table and Node-style error construction.
#include "errors.h"

#include <cerrno>
#include <cmath>
#include <cstring>

namespace diskseqd {

namespace {

struct ErrnoEntry {
  int value;
  const char* name;
};

// The errnos a block device, socket or netlink caller can meet; others fall back to E<n>.
#define E(x) {x, #x}
const ErrnoEntry kErrnoNames[] = {
    E(EPERM),        E(ENOENT),      E(ESRCH),        E(EINTR),        E(EIO),
    E(ENXIO),        E(E2BIG),       E(ENOEXEC),      E(EBADF),        E(ECHILD),
    E(EAGAIN),       E(ENOMEM),      E(EACCES),       E(EFAULT),       E(ENOTBLK),
    E(EBUSY),        E(EEXIST),      E(EXDEV),        E(ENODEV),       E(ENOTDIR),
    E(EISDIR),       E(EINVAL),      E(ENFILE),       E(EMFILE),       E(ENOTTY),
    E(ETXTBSY),      E(EFBIG),       E(ENOSPC),       E(ESPIPE),       E(EROFS),
    E(EMLINK),       E(EPIPE),       E(EDOM),         E(ERANGE),       E(EDEADLK),
    E(ENAMETOOLONG), E(ENOLCK),      E(ENOSYS),       E(ENOTEMPTY),    E(ELOOP),
    E(ENOMSG),       E(EIDRM),       E(ENODATA),      E(ETIME),        E(ENOLINK),
    E(EPROTO),       E(EBADMSG),     E(EOVERFLOW),    E(EBADFD),       E(EILSEQ),
    E(ENOTSOCK),     E(EDESTADDRREQ), E(EMSGSIZE),    E(EPROTOTYPE),   E(ENOPROTOOPT),
    E(EPROTONOSUPPORT), E(ESOCKTNOSUPPORT), E(EOPNOTSUPP), E(EPFNOSUPPORT),
    E(EAFNOSUPPORT), E(EADDRINUSE),  E(EADDRNOTAVAIL), E(ENETDOWN),   E(ENETUNREACH),
    E(ENETRESET),    E(ECONNABORTED), E(ECONNRESET),  E(ENOBUFS),      E(EISCONN),
    E(ENOTCONN),     E(ESHUTDOWN),   E(ETIMEDOUT),    E(ECONNREFUSED), E(EHOSTDOWN),
    E(EHOSTUNREACH), E(EALREADY),    E(EINPROGRESS),  E(ESTALE),       E(EDQUOT),
    E(ECANCELED),    E(EOWNERDEAD),  E(ENOTRECOVERABLE), E(ENOMEDIUM), E(EMEDIUMTYPE),
};
#undef E

bool ThrowType(const Napi::CallbackInfo& info, size_t i, const char* what) {
  std::string message = "argument " + std::to_string(i) + " must be " + what;
  Napi::TypeError::New(info.Env(), message).ThrowAsJavaScriptException();
  return false;
}

}  // namespace

std::string ErrnoName(int err) {
  for (const ErrnoEntry& entry : kErrnoNames) {
    if (entry.value == err) return entry.name;
  }
  return "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                       const std::string& path) {
  char buffer[256];
  // GNU strerror_r: returns a pointer that may or may not be buffer.
  const char* description = strerror_r(err, buffer, sizeof buffer);
  std::string code = ErrnoName(err);
  std::string message = code + ": " + description + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) error.Set("path", Napi::String::New(env, path));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& path) {
  ErrnoError(env, err, syscall, path).ThrowAsJavaScriptException();
}

bool ArgInt(const Napi::CallbackInfo& info, size_t i, int32_t* out) {
  if (info.Length() <= i || !info[i].IsNumber()) return ThrowType(info, i, "a number");
  double value = info[i].As<Napi::Number>().DoubleValue();
  if (std::trunc(value) != value || value < INT32_MIN || value > INT32_MAX) {
    return ThrowType(info, i, "an int32");
  }
  *out = static_cast<int32_t>(value);
  return true;
}

bool ArgFd(const Napi::CallbackInfo& info, size_t i, int* out) {
  int32_t value;
  if (!ArgInt(info, i, &value)) return false;
  if (value < 0) return ThrowType(info, i, "a non-negative fd");
  *out = value;
  return true;
}

bool ArgUint64(const Napi::CallbackInfo& info, size_t i, uint64_t* out) {
  if (info.Length() <= i || !info[i].IsNumber()) return ThrowType(info, i, "a number");
  double value = info[i].As<Napi::Number>().DoubleValue();
  if (std::trunc(value) != value || value < 0 || value > 9007199254740991.0) {
    return ThrowType(info, i, "a non-negative safe integer");
  }
  *out = static_cast<uint64_t>(value);
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (info.Length() <= i || !info[i].IsString()) return ThrowType(info, i, "a string");
  *out = info[i].As<Napi::String>().Utf8Value();
  // A NUL inside would silently shorten the path the kernel sees.
  if (out->find('\0') != std::string::npos) return ThrowType(info, i, "a string without NUL");
  return true;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, bool* out) {
  if (info.Length() <= i || !info[i].IsBoolean()) return ThrowType(info, i, "a boolean");
  *out = info[i].As<Napi::Boolean>().Value();
  return true;
}

bool ArgBigUint64(const Napi::CallbackInfo& info, size_t i, uint64_t* out) {
  if (info.Length() <= i || !info[i].IsBigInt()) return ThrowType(info, i, "a BigInt");
  bool lossless = false;
  *out = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) return ThrowType(info, i, "a BigInt in [0, 2^64)");
  return true;
}

bool ArgBytes(const Napi::CallbackInfo& info, size_t i, uint8_t** data, size_t* length) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    return ThrowType(info, i, "a Buffer or Uint8Array");
  }
  Napi::Uint8Array bytes = info[i].As<Napi::Uint8Array>();
  *data = bytes.Data();
  *length = bytes.ByteLength();
  return true;
}

}  // namespace diskseqd
