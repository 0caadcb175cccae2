{
  "targets": [
    {
      "target_name": "ublk_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/ctrl.cc",
        "native/ctrl_bindings.cc",
        "native/queue_thread.cc",
        "native/queue_batch.cc",
        "native/ring_watch.cc",
        "native/data_path.cc",
        "native/pkru.cc",
        "native/device.cc",
        "native/affinity.cc",
        "native/server_bindings.cc",
        "native/target_args.cc",
        "native/target_registry.cc",
        "native/sd_notify.cc",
        "<!@(node -p \"require('fs').readdirSync('native/targets').filter(f => f.endsWith('.cc')).sort().map(f => 'native/targets/' + f).join(' ')\")"
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
