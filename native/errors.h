// Errors shaped like Node's fs errors (code, errno, syscall) and argument checks.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace diskseqd {

/** The symbolic name of an errno value ("ENXIO"), or "E<number>" when unknown. */
std::string ErrnoName(int err);

/**
 * An Error whose message reads like Node's ("ENXIO: No such device or address,
 * ioctl(LOOP_GET_STATUS64)") with code, errno (positive) and syscall set; path, when given,
 * is appended to the message and set as `path`.
 */
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                       const std::string& path = std::string());

/** Throws ErrnoError as a pending JS exception (no C++ exceptions in this addon). */
void ThrowErrno(Napi::Env env, int err, const std::string& syscall,
                const std::string& path = std::string());

// Argument readers: each returns false after throwing a TypeError/RangeError.

/** A non-negative int32 such as an fd. */
bool ArgFd(const Napi::CallbackInfo& info, size_t i, int* out);
/** Any int32 (flags, sendFd which may be -1). */
bool ArgInt(const Napi::CallbackInfo& info, size_t i, int32_t* out);
/** A non-negative safe integer (offsets, sizes). */
bool ArgUint64(const Napi::CallbackInfo& info, size_t i, uint64_t* out);
bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, bool* out);
/** A BigInt in [0, 2^64) (a diskseq). */
bool ArgBigUint64(const Napi::CallbackInfo& info, size_t i, uint64_t* out);
/** A Buffer or other Uint8Array: its data pointer and length. */
bool ArgBytes(const Napi::CallbackInfo& info, size_t i, uint8_t** data, size_t* length);

}  // namespace diskseqd
