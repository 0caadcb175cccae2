// The native server of one device: /dev/ublkcN, the target's backing store and the queues.
// Every method that may block (start, join) runs off Node's main thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "queue.h"
#include "target.h"

namespace ublk {

class Device {
 public:
  using ExitFn = std::function<void(unsigned q_id, int err, const std::string &msg)>;

  Device(const DeviceConfig &cfg, const TargetOpts &topts);
  ~Device();

  // Opens /dev/ublkcN and the backing store, starts every queue and waits until each has
  // FETCHed all its tags. On failure, everything started is undone before returning -errno.
  int start(std::vector<int> &tids, std::string &why, ExitFn on_exit);
  void request_stop(bool force);
  // Joins the queue threads and closes what start() opened. Idempotent.
  void join_and_close();

  const std::vector<std::unique_ptr<Queue>> &queues() const { return queues_; }
  const DeviceConfig &config() const { return cfg_; }

 private:
  DeviceConfig cfg_;
  TargetOpts topts_;
  std::vector<std::unique_ptr<Queue>> queues_;
  bool target_open_ = false;
  std::mutex mu_;
};

// Every live device of this process, so the addon's cleanup hook can stop them all.
void register_device(Device *d);
void unregister_device(Device *d);
void stop_all_devices();

}  // namespace ublk
