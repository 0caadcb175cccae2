#include "device.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <set>
#include <thread>

namespace ublk {

Device::Device(const DeviceConfig &cfg, const TargetArgs &args) : cfg_(cfg), args_(args) {
  tdev_.cfg = &cfg_;
  register_device(this);
}

Device::~Device() {
  request_stop(true);
  join_and_close();
  unregister_device(this);
}

namespace {

// /dev/ublkcN appears when ADD_DEV returns on devtmpfs, but udev may still be renaming or
// chmod-ing it: retry briefly rather than fail a fresh device.
int open_char_dev(__u32 dev_id) {
  char path[64];
  snprintf(path, sizeof(path), "/dev/ublkc%u", dev_id);
  for (int i = 0; i < 300; i++) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno != ENOENT && errno != EACCES) return -errno;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -errno;
}

}  // namespace

int Device::start(std::vector<int> &tids, std::string &why, const Events &events) {
  auto on_exit = events.exited;
  std::lock_guard<std::mutex> lock(mu_);
  int fd = open_char_dev(cfg_.dev_id);
  if (fd < 0) {
    why = "open /dev/ublkc" + std::to_string(cfg_.dev_id);
    return fd;
  }
  cfg_.ublkc_fd = fd;

  int ret = cfg_.target->init(tdev_, args_, why);
  if (ret < 0) {
    if (why.empty()) why = std::string(cfg_.target->name) + " target: setup";
    close(cfg_.ublkc_fd);
    cfg_.ublkc_fd = -1;
    return ret;
  }
  target_open_ = true;
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    unsigned reported = 0;
    int err = 0;
    std::string why;
  };
  auto wait = std::make_shared<Wait>();
  // One exit report per queue: at the first thread that fails (the queue's tags it served are
  // gone, so the queue is as good as ended: the server stops or hands over, which ends the rest),
  // else when its last thread has ended.
  struct QueueExit {
    std::mutex mu;
    std::vector<unsigned> left;
    std::vector<bool> reported;
  };
  const unsigned per_queue = cfg_.threads_per_queue;
  auto exits = std::make_shared<QueueExit>();
  exits->left.assign(cfg_.nr_queues, per_queue);
  exits->reported.assign(cfg_.nr_queues, false);
  const unsigned nthreads = cfg_.nr_queues * per_queue;
  // Every queue's CPUs first: nothing is started if one cannot be had.
  std::vector<cpu_set_t> qcpus(cfg_.affinity == Affinity::None ? 0 : cfg_.nr_queues);
  for (unsigned q = 0; q < qcpus.size(); q++) {
    ret = queue_cpus(cfg_.dev_id, q, &qcpus[q]);
    if (ret < 0) {
      why = "queue " + std::to_string(q) + ": GET_QUEUE_AFFINITY (its CPUs, within those this process may use)";
      close_target();
      return ret;
    }
  }
  queues_.reserve(nthreads);  // no reallocation while a concurrent stop walks the list
  auto exited = [on_exit, exits](unsigned q) {
    return [on_exit, exits, q](int err, const std::string &msg) {
      {
        std::lock_guard<std::mutex> l(exits->mu);
        const bool last = --exits->left[q] == 0;
        if (exits->reported[q] || (err == 0 && !last)) return;
        exits->reported[q] = true;
      }
      on_exit(q, err, msg);
    };
  };
  for (unsigned q = 0; q < cfg_.nr_queues; q++) {
    for (unsigned w = 0; w < per_queue; w++) {
      queues_.emplace_back(new QueueThread(cfg_, tdev_, q, w));
      queues_.back()->on_report = events.report;
      queues_.back()->on_signal = events.signal;
      if (served_here()) {
        here_exits_.push_back(exited(q));  // set up on the event loop's thread (start_here)
        continue;
      }
      // One-queue disks of different ids, and the threads of one queue, start on different CPUs.
      if (!qcpus.empty()) queues_.back()->bind_to(thread_cpus(qcpus[q], cfg_.affinity, cfg_.dev_id + w));
      queues_.back()->start(
          [wait, q](int err, const std::string &what) {
            std::lock_guard<std::mutex> l(wait->mu);
            if (err < 0 && wait->err == 0) {
              wait->err = err;
              wait->why = "queue " + std::to_string(q) + ": " + what;
            }
            wait->reported++;
            wait->cv.notify_all();
          },
          exited(q));
    }
  }
  if (served_here()) return 0;
  {
    std::unique_lock<std::mutex> l(wait->mu);
    wait->cv.wait(l, [&] { return wait->reported == nthreads; });
  }
  if (wait->err < 0) {
    why = wait->why;
    undo_start();
    return wait->err;
  }
  queue_tids(tids);
  return 0;
}

int Device::start_here(std::vector<int> &tids, std::string &why,
                       const std::function<std::unique_ptr<QueueThread::Watch>(QueueThread &)> &watch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cfg_.ublkc_fd < 0) {  // a stop came between start() and this
    why = "stopped while starting";
    return -ECANCELED;
  }
  int ret = 0;
  for (size_t i = 0; i < queues_.size() && ret == 0; i++) {
    QueueThread &q = *queues_[i];
    std::string what;
    ret = q.start_here(here_exits_[i], what);
    if (ret < 0) {
      why = "queue " + std::to_string(q.queue_id()) + ": " + what;
      break;
    }
    std::unique_ptr<QueueThread::Watch> w = watch(q);
    if (!w) {
      ret = -EIO;
      why = "queue " + std::to_string(q.queue_id()) + ": watching its ring on the event loop";
      q.request_stop(true);
      q.join();
      break;
    }
    q.watch_with(std::move(w));
  }
  here_exits_.clear();
  if (ret < 0) {
    undo_start();  // on this thread: each queue ends its loop here
    return ret;
  }
  queue_tids(tids);
  return 0;
}

// A start that failed: every queue stopped at once and gone, then the target and /dev/ublkcN.
void Device::undo_start() {
  for (auto &q : queues_) q->request_stop(true);
  for (auto &q : queues_) q->join();
  queues_.clear();
  close_target();
}

// One thread id per queue (its first thread), as `list` shows them.
void Device::queue_tids(std::vector<int> &tids) const {
  for (auto &q : queues_)
    if (q->worker() == 0) tids.push_back(q->tid());
}

// What a failed start or a stop undoes, once the queues (if any) are gone. Idempotent.
void Device::close_target() {
  if (target_open_) cfg_.target->deinit(tdev_);
  target_open_ = false;
  if (cfg_.ublkc_fd >= 0) close(cfg_.ublkc_fd);
  cfg_.ublkc_fd = -1;
}

void Device::request_stop(bool force) {
  // Not under mu_: start() holds it while waiting for the queues, and a stop must reach them.
  // queues_ only changes under mu_ in start() / start_here() before they return, and in
  // join_and_close().
  for (auto &q : queues_) q->request_stop(force);
}

void Device::join_and_close() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto &q : queues_) q->join();
  // The queues (and their rings) go before the char device closes: DEL_DEV waits for both. Under
  // queues_mu_: JavaScript may be reading them (with_queues: a scrape, a late wake) meanwhile.
  {
    std::lock_guard<std::mutex> l(queues_mu_);
    queues_.clear();
  }
  close_target();
}

void Device::with_queues(const std::function<void(const std::vector<std::unique_ptr<QueueThread>> &)> &f) {
  std::lock_guard<std::mutex> l(queues_mu_);
  f(queues_);
}

namespace {
std::mutex g_devices_mu;
std::set<Device *> g_devices;
}  // namespace

void register_device(Device *d) {
  std::lock_guard<std::mutex> l(g_devices_mu);
  g_devices.insert(d);
}

void unregister_device(Device *d) {
  std::lock_guard<std::mutex> l(g_devices_mu);
  g_devices.erase(d);
}

void stop_all_devices() {
  std::set<Device *> all;
  {
    std::lock_guard<std::mutex> l(g_devices_mu);
    all = g_devices;
  }
  for (Device *d : all) d->request_stop(true);
  for (Device *d : all) d->join_and_close();
}

}  // namespace ublk
