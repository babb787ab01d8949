// Placeholder so the skeleton builds; the real addon replaces this file.
#include <napi.h>
static Napi::Object Init(Napi::Env env, Napi::Object exports) { return exports; }
NODE_API_MODULE(diskseqd, Init)
