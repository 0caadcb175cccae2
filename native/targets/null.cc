// null target: completes every request without touching data, and is the smallest complete target
// (docs/targets.md walks through it). It measures the engine itself: ring, commands, zero-copy
// registration, with no store in the way. No options, no files, no per-tag state.
#include "../queue_thread.h"

namespace ublk {

namespace {

int null_init(TargetDevice &, const TargetArgs &, std::string &) { return 0; }

void null_deinit(TargetDevice &) {}

void null_queue_io(QueueThread &q, unsigned tag) {
  const io_desc &d = q.desc(tag);
  // Reads return whatever the buffer holds, writes go nowhere; flush, discard and write-zeroes
  // have nothing to do. Each reports its bytes, as a store that did the work would.
  const int bytes = desc_op(&d) == kOpFlush ? 0 : (int)(d.nr_sectors << 9);
  q.complete_without_data(tag, bytes);
}

// null submits no SQEs of its own.
void null_io_done(QueueThread &q, const TargetCqe &c) { q.complete(c.tag, c.res); }

}  // namespace

extern const TargetOps null_target = {
    "null",
    {kAllDataModes, nullptr, /*flush*/ true, /*discard*/ true, /*write_zeroes*/ true, /*fua*/ true},
    null_init,
    null_deinit,
    null_queue_io,
    null_io_done,
    nullptr,  // init_queue
    nullptr,  // deinit_queue
    nullptr,  // data_done
    nullptr,  // handle_event
    nullptr,  // pass_done
    nullptr,  // probe
    nullptr,  // counters
};

}  // namespace ublk
