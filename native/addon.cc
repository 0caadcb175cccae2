// Module entry: wires the control plane, the device server and sd_notify into one object that
// matches NativeBinding (daemon/native/binding-types.ts).
#include <liburing.h>
#include <napi.h>

#include <string>

#include "device.h"

namespace ublk {
void init_ctrl_bindings(Napi::Env env, Napi::Object exports);
void init_server_bindings(Napi::Env env, Napi::Object exports);
void init_sd_notify(Napi::Env env, Napi::Object exports);
}  // namespace ublk

namespace {

Napi::Value Versions(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("addon", "0.1.0");
#ifdef IO_URING_VERSION_MAJOR
  o.Set("liburing", std::to_string(IO_URING_VERSION_MAJOR) + "." + std::to_string(IO_URING_VERSION_MINOR));
#else
  o.Set("liburing", "2.3 or older");
#endif
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("versions", Napi::Function::New(env, Versions, "versions"));
  ublk::init_ctrl_bindings(env, exports);
  ublk::init_server_bindings(env, exports);
  ublk::init_sd_notify(env, exports);
  // When Node tears down (exit, worker end), no queue thread may outlive the addon's code.
  env.AddCleanupHook([] { ublk::stop_all_devices(); });
  return exports;
}

}  // namespace

NODE_API_MODULE(ublk_native, Init)
