#include "errors.h"

#include <cstring>

namespace ublk {

const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(EAGAIN) E(ENOMEM)
    E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE)
    E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(ERANGE) E(ENOSYS) E(EOPNOTSUPP)
    E(ETIMEDOUT) E(ECANCELED) E(EOVERFLOW)
#undef E
    default: return "EUNKNOWN";
  }
}

Napi::Error make_error(Napi::Env env, const std::string &op, int err, const std::string &detail) {
  if (err < 0) err = -err;
  std::string msg = op + " failed: " + std::strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Value().Set("errno", Napi::Number::New(env, err));
  e.Value().Set("code", Napi::String::New(env, errno_name(err)));
  e.Value().Set("op", Napi::String::New(env, op));
  return e;
}

}  // namespace ublk
