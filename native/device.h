// The native server of one device: /dev/ublkcN, its target and its queue threads.
// Every method that may block (start, join) runs off Node's main thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device_config.h"
#include "queue_thread.h"
#include "target.h"

namespace ublk {

class Device {
 public:
  // What the queue threads tell JavaScript, from their own threads: a queue ended, a target's log
  // line, a target's signal (QueueThread::report / signal).
  struct Events {
    std::function<void(unsigned q_id, int err, const std::string &msg)> exited;
    std::function<void(unsigned q_id, const char *level, const std::string &msg)> report;
    std::function<void(unsigned index, uint32_t value)> signal;
  };

  Device(const DeviceConfig &cfg, const TargetArgs &args);
  ~Device();

  // Opens /dev/ublkcN, sets the target up, starts every queue thread and waits until each has
  // FETCHed all its tags. On failure, everything started is undone before returning -errno.
  int start(std::vector<int> &tids, std::string &why, const Events &events);
  // A target served on the event loop (TargetOps::on_event_loop): start() makes its queues but
  // starts none; this, on the event loop's thread, sets each up there and hands its ring to
  // `watch` (native/ring_watch.h). On failure everything is undone, as for start().
  bool served_here() const { return cfg_.target->on_event_loop; }
  int start_here(std::vector<int> &tids, std::string &why,
                 const std::function<std::unique_ptr<QueueThread::Watch>(QueueThread &)> &watch);
  void request_stop(bool force);
  // Joins the queue threads and closes what start() opened. Idempotent.
  void join_and_close();

  // Calls `f` with the queues, which a stop on another thread does not free meanwhile (an empty
  // list once the device stopped). For JavaScript's reads of them (counters, memory, wake).
  void with_queues(const std::function<void(const std::vector<std::unique_ptr<QueueThread>> &)> &f);
  const DeviceConfig &config() const { return cfg_; }

 private:
  DeviceConfig cfg_;
  TargetArgs args_;
  TargetDevice tdev_;  // the queue threads hold references to cfg_ and tdev_
  std::vector<std::unique_ptr<QueueThread>> queues_;
  bool target_open_ = false;
  std::vector<std::function<void(int, const std::string &)>> here_exits_;  // start() -> start_here()
  std::mutex mu_;
  std::mutex queues_mu_;  // join_and_close's clear against with_queues

  void close_target();
  void undo_start();
  void queue_tids(std::vector<int> &tids) const;
};

// Every live device of this process, so the addon's cleanup hook can stop them all.
void register_device(Device *d);
void unregister_device(Device *d);
void stop_all_devices();

}  // namespace ublk
