// One error shape for everything the addon reports to JavaScript: a message naming the ublk
// command or syscall, plus errno/code/op properties that TypeScript maps to user-facing text.
#pragma once

#include <napi.h>
#include <string>

namespace ublk {

// Symbolic errno name ("ENOENT") for the error's `code`, like Node's own system errors.
const char *errno_name(int err);

Napi::Error make_error(Napi::Env env, const std::string &op, int err, const std::string &detail = "");

}  // namespace ublk
