{
  "targets": [
    {
      "target_name": "diskseqd",
      "sources": [
        "native/addon.cc",
        "native/checksum.cc",
        "native/device.cc",
        "native/errors.cc",
        "native/jobs.cc",
        "native/loop.cc",
        "native/open-verify.cc",
        "native/poller.cc",
        "native/probe.cc",
        "native/process-memory.cc",
        "native/socket.cc",
        "native/stream-socket.cc",
        "native/socket-state.cc",
        "native/uevent.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS",
                  "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
