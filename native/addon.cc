// Module entry point: collects the exports of each part of the addon.
#include "addon.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  diskseqd::InitDevice(env, exports);
  diskseqd::InitSocket(env, exports);
  diskseqd::InitStreamSocket(env, exports);
  diskseqd::InitSocketState(env, exports);
  diskseqd::InitUevent(env, exports);
  diskseqd::InitPoller(env, exports);
  diskseqd::InitProcessMemory(env, exports);
  diskseqd::InitChecksum(env, exports);
  diskseqd::InitLoop(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(diskseqd, Init)
