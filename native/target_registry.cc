// Every target the engine can serve, in one list: a new target adds its file under targets/ and
// one line here (and its TypeScript descriptor in targets/registry.ts).
#include "target.h"

namespace ublk {

extern const TargetOps loop_target;
extern const TargetOps null_target;
extern const TargetOps nbd_target;
extern const TargetOps js_target;

namespace {
const TargetOps *const kTargets[] = {
    &loop_target,
    &null_target,
    &nbd_target,
    &js_target,
};
}  // namespace

const TargetOps *find_target(const std::string &name) {
  for (const TargetOps *t : kTargets)
    if (name == t->name) return t;
  return nullptr;
}

std::vector<const TargetOps *> all_targets() { return {std::begin(kTargets), std::end(kTargets)}; }

}  // namespace ublk
