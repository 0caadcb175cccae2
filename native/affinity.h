// Which CPUs a queue thread runs on. The block layer maps every CPU to one hardware queue
// (GET_QUEUE_AFFINITY tells which CPUs map to queue q); the thread serving that queue is bound
// to those CPUs, and by default to one of them, as ublksrv binds its queue threads. A thread
// the scheduler may move follows whoever wakes it: the submitting application's CPU, where it
// then competes with the application, and its ring's and tags' memory leaves the cache it was in.
#pragma once

#include <sched.h>

#include <linux/types.h>

namespace ublk {

enum class Affinity {
  None,    // the scheduler decides (no call at all)
  Queue,   // every CPU the block layer maps to the queue
  OneCpu,  // one CPU of those, a different one per thread where there are enough
};

// The CPUs blk-mq maps to queue `q_id` of device `dev_id` (GET_QUEUE_AFFINITY), limited to the
// CPUs this process may run on (a cpuset cgroup may allow fewer; if it allows none of them, all it
// allows). 0 or -errno.
int queue_cpus(__u32 dev_id, unsigned q_id, cpu_set_t *out);

// The set one thread is bound to: all of `queue` for Queue; for OneCpu its `pick`-th CPU
// (modulo their number), so that threads given consecutive picks land on different CPUs.
cpu_set_t thread_cpus(const cpu_set_t &queue, Affinity a, unsigned pick);

}  // namespace ublk
