// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (a path, or '@' for an
// abstract socket). Used for READY=1 once every device is LIVE, STOPPING=1, STATUS= and WATCHDOG=1.
#include <napi.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "errors.h"

namespace ublk {

namespace {

// Returns 1 when sent, 0 when there is no NOTIFY_SOCKET, -errno on failure.
int sd_notify_send(const std::string &state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return 0;
  size_t plen = strlen(path);
  struct sockaddr_un sa;
  if (plen >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) return -EINVAL;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  int err = n < 0 ? -errno : 1;
  close(fd);
  return err;
}

Napi::Value SdNotify(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "sdNotify(state) needs a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int r = sd_notify_send(info[0].As<Napi::String>().Utf8Value());
  if (r < 0) {
    make_error(env, "sd_notify", -r).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, r == 1);
}

}  // namespace

void init_sd_notify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
}

}  // namespace ublk
