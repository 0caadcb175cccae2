// null target: completes every request without touching data. It measures the framework itself
// (ring, commands, zero-copy registration) with no backing store in the way.
#include "target.h"

namespace ublk {

namespace {

int null_init(DeviceConfig &cfg, const TargetOpts &, std::string &) {
  cfg.backing_fd = -1;
  return 0;
}

void null_deinit(DeviceConfig &) {}

void null_queue_io(Queue &q, unsigned tag) {
  const io_desc &d = q.desc(tag);
  const unsigned op = desc_op(&d);
  const __u32 len = d.nr_sectors << 9;
  if (op == kOpRead || op == kOpWrite) {
    // Explicit zero copy still registers and unregisters the pages, so the path is measured.
    if (q.config().mode == DataMode::ZcExplicit) {
      q.start_zc_touch(tag, len);
      return;
    }
    q.complete(tag, (int)len);
    return;
  }
  q.complete(tag, op == kOpFlush ? 0 : (int)len);
}

void null_io_done(Queue &q, unsigned tag, int res) { q.complete(tag, res); }

}  // namespace

const TargetOps null_target_ops = {
    "null", null_init, null_queue_io, null_io_done, null_deinit,
};

const TargetOps *find_target(const std::string &name) {
  if (name == "loop") return &loop_target_ops;
  if (name == "null") return &null_target_ops;
  return nullptr;
}

}  // namespace ublk
