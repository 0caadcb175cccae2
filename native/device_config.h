// What the engine needs to serve one device, decided in TypeScript (ServeOptions) and fixed for the
// device's life. Nothing here names a target: the target's own options go to its init (target.h).
#pragma once

#include <linux/types.h>

#include "affinity.h"
#include "data_mode.h"

namespace ublk {

struct TargetOps;

// Faults a test can ask for through the programmatic API (ServeOptions.testFaults), never from
// the command line or a config file. 0: off.
struct TestFaults {
  // AUTO_BUF_REG: every Nth tag asks for a buffer-table index past the end of the table, so the
  // kernel's registration fails and its FALLBACK path (NEED_REG_BUF) runs on the real driver.
  unsigned auto_buf_miss_every = 0;
};

struct DeviceConfig {
  __u32 dev_id = 0;
  unsigned nr_queues = 1;
  unsigned depth = 128;
  unsigned max_io_buf_bytes = 512 * 1024;
  DataMode mode = DataMode::Copy;
  const TargetOps *target = nullptr;
  int ublkc_fd = -1;  // registered file 0 on every queue ring
  // Writes, discards and write-zeroes fail with -EROFS before the target sees them.
  bool read_only = false;
  // UBLK_F_BATCH_IO: tags delivered and committed in batches (PREP / FETCH / COMMIT_IO_CMDS)
  // instead of one FETCH / COMMIT_AND_FETCH per tag. Orthogonal to the data mode.
  bool batch = false;
  // Threads (each with its own ring) serving one queue, tags split between them: thread w owns
  // tags w, w + n, w + 2n... Needs per-I/O daemons (UBLK_F_PER_IO_DAEMON, Linux 6.16). Not with
  // batch (a batch command carries tags of the whole queue).
  unsigned threads_per_queue = 1;
  // Where queue threads run (affinity.h); `ublk-ts add` asks for OneCpu unless told otherwise.
  Affinity affinity = Affinity::None;
  // After a pass of its ring that had work, a queue polls the ring this long before it sleeps
  // (a queue thread: io_uring_enter without waiting; on the event loop: an idle handle), so a
  // request that follows within it is seen without a wake-up. 0: sleep at once.
  unsigned busy_poll_us = 0;
  TestFaults faults;
};

}  // namespace ublk
