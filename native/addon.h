// Each file registers its own exports; addon.cc calls these from Init.
#pragma once

#include <napi.h>

namespace diskseqd {

/** openDevice, probeFd, probeFdSync, closeAsync, close, mknodBlock, constants. */
void InitDevice(Napi::Env env, Napi::Object exports);
class JobPool;
/** openVerified: the open-and-verify job (open-verify.cc). */
void InitOpenVerify(Napi::Env env, Napi::Object exports, JobPool* pool);
/** SEQPACKET sockets: listen/accept/connect, recv/send with SCM_RIGHTS, peer credentials. */
void InitSocket(Napi::Env env, Napi::Object exports);
/** Stream sockets (Varlink): listen/connect, partial sends with an fd on the first byte. */
void InitStreamSocket(Napi::Env env, Napi::Object exports);
/** What the kernel holds for a connected socket (SIOCOUTQ, hang-up, buffers) and RLIMIT_NOFILE. */
void InitSocketState(Napi::Env env, Napi::Object exports);
/** The kernel uevent netlink socket. */
void InitUevent(Napi::Env env, Napi::Object exports);
/** The Poller class (uv_poll on this environment's loop). */
void InitPoller(Napi::Env env, Napi::Object exports);
/** trimMalloc: the process's free malloc pages back to the kernel. */
void InitProcessMemory(Napi::Env env, Napi::Object exports);
/** checksum: FNV-1a of a buffer (the code cache's check). */
void InitChecksum(Napi::Env env, Napi::Object exports);
/** Loop device helpers for tests and benchmarks. */
void InitLoop(Napi::Env env, Napi::Object exports);

}  // namespace diskseqd
