// A target is a small table of operations, one file each (target_loop.cc, target_null.cc).
// The queue engine owns the ring, the tags and the data path; a target only decides what each
// request means for its backing store.
#pragma once

#include <string>

#include "queue.h"

namespace ublk {

struct TargetOpts {
  std::string backing_path;
  bool direct_io = true;
  bool read_only = false;
};

struct TargetOps {
  const char *name;
  // Once per device, before any queue starts: open the backing store into cfg.backing_fd.
  int (*init)(DeviceConfig &cfg, const TargetOpts &opts, std::string &why);
  // On the queue thread for every fetched request: submit SQEs or complete at once.
  void (*queue_io)(Queue &q, unsigned tag);
  // On the queue thread for each CQE of kind TargetOther the target submitted.
  void (*io_done)(Queue &q, unsigned tag, int res);
  // Once per device, after every queue thread ended.
  void (*deinit)(DeviceConfig &cfg);
};

extern const TargetOps loop_target_ops;
extern const TargetOps null_target_ops;

const TargetOps *find_target(const std::string &name);

}  // namespace ublk
