// A checksum of a byte buffer, for telling a damaged file from the one that was written.
#include <cstdint>

#include "addon.h"
#include "errors.h"

namespace diskseqd {

namespace {

/**
 * checksum(bytes): FNV-1a, 64 bits, as a BigInt. Not a defence against anyone who can
 * write the file (they could write a matching sum): the code cache it guards is the
 * daemon's own, in a directory only it may write to. It catches a file that is not what the
 * daemon wrote, which V8 itself would not notice: a release build checks a code cache's
 * length and versions, not its checksum (--verify-snapshot-checksum is off). In C++ because
 * JavaScript would spend milliseconds on a few hundred KiB before anything is compiled.
 */
Napi::Value Checksum(const Napi::CallbackInfo& info) {
  uint8_t* data;
  size_t length;
  if (!ArgBytes(info, 0, &data, &length)) return info.Env().Undefined();
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < length; i++) {
    hash ^= data[i];
    hash *= 0x100000001b3ULL;
  }
  return Napi::BigInt::New(info.Env(), hash);
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("checksum", Napi::Function::New(env, Checksum, "checksum"));
}

}  // namespace diskseqd
