// Watches the ring of a queue served on Node's event loop (TargetOps::on_event_loop): a pass of the
// queue's loop each time the ring has completions, every turn of the loop while the queue busy
// polls (QueueThread::polling: the loop then does not sleep), and every 100 ms while a stop is
// due (a graceful stop's grace period ends without a completion to say so).
#pragma once

#include <uv.h>

#include <memory>

#include "queue_thread.h"

namespace ublk {

// nullptr when libuv cannot watch the ring's fd
std::unique_ptr<QueueThread::Watch> watch_ring(uv_loop_t *loop, QueueThread &q);

}  // namespace ublk
