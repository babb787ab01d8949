// A checksum of a byte buffer, for telling a damaged file from the one that was written.
#include <cstdint>
#include <cstring>

#include "addon.h"
#include "errors.h"

namespace diskseqd {

namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t Read64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

uint32_t Read32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

uint64_t Round(uint64_t acc, uint64_t input) { return Rotl(acc + input * kPrime2, 31) * kPrime1; }

uint64_t Merge(uint64_t acc, uint64_t lane) { return (acc ^ Round(0, lane)) * kPrime1 + kPrime4; }

/**
 * checksum(bytes): XXH64 (seed 0), as a BigInt. Not a defence against anyone who can write
 * the file (they could write a matching sum): the code cache it guards is the daemon's own,
 * in a directory only it may write to. It catches a file that is not what the daemon wrote,
 * which V8 itself would not notice: a release build checks a code cache's length and
 * versions, not its checksum (--verify-snapshot-checksum is off). XXH64 rather than FNV-1a:
 * four independent lanes of eight bytes each, where FNV-1a's one multiply per byte in a
 * chain took ~0.33 ms of every start over the 280 KB cache, this ~0.05 ms. In C++ because
 * JavaScript would spend milliseconds on it before anything is compiled.
 */
Napi::Value Checksum(const Napi::CallbackInfo& info) {
  uint8_t* data;
  size_t length;
  if (!ArgBytes(info, 0, &data, &length)) return info.Env().Undefined();
  const uint8_t* p = data;
  const uint8_t* const end = data + length;
  uint64_t hash;
  if (length >= 32) {
    uint64_t v1 = kPrime1 + kPrime2, v2 = kPrime2, v3 = 0, v4 = 0 - kPrime1;
    for (; p + 32 <= end; p += 32) {
      v1 = Round(v1, Read64(p));
      v2 = Round(v2, Read64(p + 8));
      v3 = Round(v3, Read64(p + 16));
      v4 = Round(v4, Read64(p + 24));
    }
    hash = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    hash = Merge(Merge(Merge(Merge(hash, v1), v2), v3), v4);
  } else {
    hash = kPrime5;
  }
  hash += length;
  for (; p + 8 <= end; p += 8) hash = Rotl(hash ^ Round(0, Read64(p)), 27) * kPrime1 + kPrime4;
  if (p + 4 <= end) {
    hash = Rotl(hash ^ (uint64_t{Read32(p)} * kPrime1), 23) * kPrime2 + kPrime3;
    p += 4;
  }
  for (; p < end; p++) hash = Rotl(hash ^ (*p * kPrime5), 11) * kPrime1;
  hash ^= hash >> 33;
  hash *= kPrime2;
  hash ^= hash >> 29;
  hash *= kPrime3;
  hash ^= hash >> 32;
  return Napi::BigInt::New(info.Env(), hash);
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("checksum", Napi::Function::New(env, Checksum, "checksum"));
}

}  // namespace diskseqd
