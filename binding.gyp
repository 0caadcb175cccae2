{
  "targets": [
    {
      "target_name": "ublk_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/ctrl.cc",
        "native/ctrl_bindings.cc",
        "native/queue.cc",
        "native/pkru.cc",
        "native/queue_batch.cc",
        "native/device.cc",
        "native/affinity.cc",
        "native/server_bindings.cc",
        "native/target_loop.cc",
        "native/target_null.cc",
        "native/sd_notify.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter", "<!@(pkg-config --cflags liburing)"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "libraries": ["<!@(pkg-config --libs liburing)", "-lpthread"]
    }
  ]
}
