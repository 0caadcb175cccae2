// TargetArgs: a target's options as JavaScript gave them, read by its init (target.h).
#include <cmath>

#include "target.h"

namespace ublk {

const TargetArgs::Value *TargetArgs::find(const char *k, Value::Type t, std::string &why, bool required, bool *ok) const {
  static const char *const kTypeNames[] = {"a string", "a number", "a boolean", "a list of numbers"};
  *ok = true;
  auto it = values_.find(k);
  if (it == values_.end()) {
    if (required) {
      why = std::string("target option ") + k + " is missing";
      *ok = false;
    }
    return nullptr;
  }
  if (it->second.type != t) {
    why = std::string("target option ") + k + " must be " + kTypeNames[t];
    *ok = false;
    return nullptr;
  }
  return &it->second;
}

bool TargetArgs::str(const char *k, std::string *out, std::string &why, bool required) const {
  bool ok;
  if (const Value *v = find(k, Value::String, why, required, &ok)) *out = v->s;
  return ok;
}

namespace {
bool whole(double n) { return n >= 0 && n <= 9007199254740991.0 && std::floor(n) == n; }
}  // namespace

bool TargetArgs::u64(const char *k, uint64_t *out, std::string &why, bool required) const {
  bool ok;
  const Value *v = find(k, Value::Number, why, required, &ok);
  if (!v) return ok;
  if (!whole(v->n)) {
    why = std::string("target option ") + k + " must be a whole number from 0 to 2^53";
    return false;
  }
  *out = (uint64_t)v->n;
  return true;
}

bool TargetArgs::flag(const char *k, bool *out, std::string &why) const {
  bool ok;
  if (const Value *v = find(k, Value::Bool, why, false, &ok)) *out = v->b;
  return ok;
}

bool TargetArgs::numbers(const char *k, std::vector<uint64_t> *out, std::string &why, bool required) const {
  bool ok;
  const Value *v = find(k, Value::Numbers, why, required, &ok);
  if (!v) return ok;
  out->clear();
  for (double n : v->list) {
    if (!whole(n)) {
      why = std::string("target option ") + k + " must hold whole numbers";
      return false;
    }
    out->push_back((uint64_t)n);
  }
  return true;
}

}  // namespace ublk
