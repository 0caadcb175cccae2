// One thread serving (its share of the tags of) one hardware queue of a ublk device: its own
// std::thread, its own io_uring, the queue's descriptor array. A target whose requests go to
// JavaScript (TargetOps::on_event_loop) has its queues served on Node's main thread instead: the
// same loop, one pass each time the ring has completions (start_here / pass_here), so a request
// crosses no thread on its way to JavaScript and back.
//
// Per tag the loop is FETCH -> (target handles the request) -> COMMIT_AND_FETCH, all on this
// thread's ring, together with the target's own I/O; in batch mode the same with commands that
// carry many tags each (queue_batch.cc). The data modes live in data_path.cc. Everything a
// request needs is allocated before the thread reports ready; the per-I/O path allocates nothing,
// makes no JavaScript call and no syscall beyond the ring's own io_uring_enter (a target may add
// its own: the loop target's mtime stamp, see targets/loop.cc).
#pragma once

#include <liburing.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "device_config.h"
#include "stats.h"
#include "target.h"
#include "ublk_cmd.h"

namespace ublk {

// user_data of every SQE this engine submits: what it is, for which tag, and for the target's own
// SQEs its operation and sub-index (so one request may have several SQEs in flight).
//   bits 56-63 Kind | 40-55 target sub-index | 32-39 target op | 0-15 tag (kNoTag: no tag)
enum class Kind : uint8_t {
  UblkCmd = 0,   // FETCH / COMMIT_AND_FETCH
  DataRw = 1,    // file read/write carrying request data (all data modes)
  UcCopy = 2,    // user copy: the pread/pwrite on /dev/ublkcN
  RegBuf = 3,    // zero copy: REGISTER_IO_BUF (its CQE only shows up on failure)
  UnregBuf = 4,  // zero copy: UNREGISTER_IO_BUF
  Target = 5,    // the target's own SQEs (target_sqe): handled by its io_done
  Wake = 6,      // the eventfd read that wakes the loop (stop, posted completions, target events)
  BatchCmd = 7,  // batch mode: PREP / FETCH / COMMIT_IO_CMDS; the "tag" says which (BatchOp)
};

// A BatchCmd's user_data tag: the BatchOp in bits 0-1, the element count above.
enum BatchOp : unsigned { kBatchFetch = 0, kBatchPrep = 1, kBatchCommit = 2 };
inline unsigned batch_op_of(unsigned ud_tag) { return ud_tag & 3; }

constexpr unsigned kNoTag = 0xffff;

inline __u64 make_user_data(Kind k, unsigned tag, unsigned op = 0, unsigned sub = 0) {
  return ((__u64)k << 56) | ((__u64)(sub & 0xffff) << 40) | ((__u64)(op & 0xff) << 32) | (tag & 0xffff);
}
inline Kind user_data_kind(__u64 ud) { return (Kind)(ud >> 56); }
inline unsigned user_data_tag(__u64 ud) { return (unsigned)(ud & 0xffff); }
inline unsigned user_data_op(__u64 ud) { return (unsigned)((ud >> 32) & 0xff); }
inline unsigned user_data_sub(__u64 ud) { return (unsigned)((ud >> 40) & 0xffff); }

// The op of a DataRw SQE that sends a DataIo's prefix (its CQE is not the data's).
constexpr unsigned kOpPrefix = 1;
// The op of a DataRw SQE that is a SEND_ZC: counted twice in pending (its result and its
// notification); a result without IORING_CQE_F_MORE means no notification follows.
constexpr unsigned kOpSendZc = 2;

// /dev/ublkcN is fixed file 0 on every queue ring; the target's files follow.
constexpr int kFixedUblkc = 0;
constexpr int kFixedTargetFiles = 1;

inline size_t page_round(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return (n + page - 1) / page * page;
}

// The engine's state of one tag. Plain data, preallocated for the queue's depth.
struct IoSlot {
  uint8_t *buf = nullptr;  // copy and user-copy modes: the request's bytes
  uint64_t start_ns = 0;   // when the request reached us, for the latency histogram
  DataIo io;               // the data movement under way (start_data)
  struct iovec iov[2];     // socket, copy mode: the prefix and the data, for one SENDMSG
  struct msghdr msg;
  bool prefix_in_data = false;  // that SENDMSG carries the prefix: its result counts it too
  __u32 done = 0;          // bytes already moved (short read/write resume)
  __s32 error = 0;         // first error seen, -errno
  __u16 pending = 0;       // CQEs still expected before the data movement ends
  bool uc_second = false;  // user copy: the first of the two steps is done
  bool manual_reg = false; // zero copy: this request registers its buffer explicitly
  bool busy = false;       // between FETCH completion and COMMIT
};

class QueueThread {
 public:
  // `worker` of cfg.threads_per_queue: which share of the queue's tags this thread serves.
  QueueThread(const DeviceConfig &cfg, TargetDevice &tdev, unsigned q_id, unsigned worker = 0);
  ~QueueThread();
  QueueThread(const QueueThread &) = delete;
  QueueThread &operator=(const QueueThread &) = delete;

  // Before start(): the CPUs the thread binds itself to when it starts (else the scheduler's).
  void bind_to(const cpu_set_t &cpus) {
    cpus_ = cpus;
    bind_ = true;
  }
  // Starts the thread; `ready` is called once from it with 0 or -errno after setup and the first
  // FETCH of every tag, `exited` once when the loop ends (0 for a stop, -errno for a failure).
  void start(std::function<void(int, const std::string &)> ready,
             std::function<void(int, const std::string &)> exited);
  // Asks the loop to end. Graceful: after the kernel aborted every fetched command (STOP_DEV),
  // or after a grace period. Forced: as soon as in-flight target I/O drained.
  void request_stop(bool force);
  // Waits until the loop ended. On the event loop's own thread (a queue served there) it runs
  // the rest of the loop itself, blocking.
  void join();

  // ---- a queue served on an event loop (TargetOps::on_event_loop), all on that loop's thread ---
  // What watches the ring for it (native/ring_watch.cc): stopped before the ring closes.
  struct Watch {
    virtual ~Watch() = default;
    virtual void stop() = 0;
  };
  // Sets the queue up on the calling thread (which becomes the queue's server) and FETCHes its
  // tags: 0 or -errno with `why` (nothing is left: the ring is gone). `exited` as for start().
  int start_here(std::function<void(int, const std::string &)> exited, std::string &why);
  // After start_here: who watches the ring (owned here, stopped when the loop ends).
  void watch_with(std::unique_ptr<Watch> w) { watch_ = std::move(w); }
  int ring_fd() const { return ring_.ring_fd; }
  // The ring has completions (or a stop is due): one pass without waiting; ends the loop when it
  // is over (watch stopped, ring closed, `exited` called).
  void pass_here();
  bool stop_requested() const { return stop_requested_.load(); }
  // Busy polling (DeviceConfig::busy_poll_us): a pass had work less than that long ago, and the
  // loop is not ending. Its watch keeps passing without sleeping while this holds.
  bool polling() const;

  unsigned worker() const { return worker_; }
  int tid() const { return tid_.load(); }
  const QueueCounters &counters() const { return counters_; }

  // ---- for targets (target.h; every call on this thread unless marked thread-safe) ----------
  unsigned queue_id() const { return q_id_; }
  const DeviceConfig &config() const { return cfg_; }
  const TargetDevice &target_device() const { return tdev_; }
  const io_desc &desc(unsigned tag) const { return descs_[tag]; }
  // Whether request `tag` is this thread's now (handed over, not yet completed).
  bool holds(unsigned tag) const { return tag < cfg_.depth && slots_[tag].busy; }
  // The target's scratch for `tag` (TargetDevice::tag_bytes, zeroed at start).
  void *tag_data(unsigned tag) { return tag_mem_ + (size_t)tag * tag_stride_; }
  template <class T>
  T &tag_state(unsigned tag) { return *static_cast<T *>(tag_data(tag)); }
  // The target's state for this thread (init_queue sets it, deinit_queue frees it).
  void *target_queue_data = nullptr;
  // Copy and user-copy modes: the tag's buffer (max_io_buf_bytes), where the request's bytes are
  // (a WRITE) or go (a READ); nullptr in the zero-copy modes. For a target that must see the bytes.
  uint8_t *tag_buffer(unsigned tag) { return slots_[tag].buf; }
  // Fixed-file index of TargetDevice::files[i].
  static int target_file(unsigned i) { return kFixedTargetFiles + (int)i; }
  // In init_queue: registers `fd` on this thread's ring only; returns its fixed-file index.
  int add_file(int fd);
  // Puts `fd` at fixed-file index `fixed` of this ring (a reconnected socket); 0 or -errno.
  int replace_file(int fixed, int fd);

  // An SQE whose CQE goes to the target's io_done with (tag, op, sub). With a tag, the request
  // stays in flight until the target completes it; kNoTag for I/O of no request (a receive
  // loop, metadata), which a stop does not wait for (closing the ring cancels it).
  struct io_uring_sqe *target_sqe(unsigned tag, unsigned op = 0, unsigned sub = 0);
  // Moves request `tag`'s data to or from a target file in the device's data mode; completes the
  // request with its length when all bytes moved (or with the error), or hands over to the
  // target's data_done when io.then_target.
  void start_data(unsigned tag, const DataIo &io);
  // Completes a request whose data the target does not move (null): in explicit zero copy the
  // pages are still registered and released first, as the kernel does in auto mode.
  void complete_without_data(unsigned tag, int result);
  // Ends a request: result is bytes or -errno. Sends COMMIT_AND_FETCH, or in batch mode adds it
  // to the next COMMIT_IO_CMDS (sent right before the loop's next submit).
  void complete(unsigned tag, int result);
  // Hands every SQE prepared so far to the kernel now, without waiting for completions.
  void submit_now() { io_uring_submit(&ring_); }
  // The same, and tells whether request `tag`'s file I/O (start_data) completed inside that
  // submit: the store did the work on this thread (a RAM disk, the page cache) instead of later,
  // by interrupt.
  bool submit_now_completed_inline(unsigned tag);
  // Thread-safe, from any thread: completes request `tag` (which this thread handed to the
  // target) on this thread's ring. Wakes the ring through its eventfd, once per batch.
  void post_completion(unsigned tag, int result);
  // Thread-safe: wakes this thread, which then calls the target's handle_event. On a queue served
  // on the event loop (called from there): handle_event at once, and what it completed is sent.
  void wake_target();
  // Adds to the target's counter `i` (TargetOps::counters), read when metrics are scraped.
  void count(unsigned i, uint64_t n = 1) { QueueCounters::bump(counters_.target[i], n); }
  // Ends this queue thread with an error that the device server acts on (it stops the device, or
  // with -r 1 leaves it QUIESCED for `recover`): nothing more is fetched, and the loop ends once
  // the requests it holds are completed, or at once with `abandon` (the kernel keeps them: with
  // -r 1 -i 1 it hands them to the next server).
  void fail(int err, const std::string &why, bool abandon = false);
  // Thread-safe: a line for the server's log (a connection lost, a reconnect): a rare event, sent
  // to JavaScript without waiting. `level` is "info", "warn" or "error".
  void report(const char *level, const std::string &message);
  // Thread-safe: wakes JavaScript with `value` (NativeServer.onTargetSignal), without waiting; for
  // a target that hands work to JavaScript, once per pass, not per request.
  void signal(uint32_t value) {
    if (on_signal) on_signal(index_, value);
  }
  // In init_queue: shares `region` with JavaScript under `name` (NativeServer.memory); the engine
  // shares the tag buffers of the copy modes as "buffers" (tag t at t * max_io_buf_bytes).
  void expose(const std::string &name, std::shared_ptr<SharedRegion> region);
  // Thread-safe: what this thread shares (read by the binding once the thread is ready).
  std::vector<std::pair<std::string, std::shared_ptr<SharedRegion>>> exposed();
  // This thread's place among its device's threads (queue * threads_per_queue + worker).
  unsigned index() const { return index_; }

  // Where report() and signal() go (set by Device before start).
  std::function<void(unsigned q_id, const char *level, const std::string &msg)> on_report;
  std::function<void(unsigned index, uint32_t value)> on_signal;

 private:
  int setup(std::string &why);
  void loop();
  bool loop_over();
  bool pass(bool wait);
  void finish_here();
  void teardown();
  void queue_fetch(unsigned tag, bool commit, int result);
  void on_cqe(const struct io_uring_cqe *cqe);
  void on_ublk_cmd(unsigned tag, int res);
  void on_wake();
  void wake();
  void start_request(unsigned tag);
  void start_arrived();
  void dispatch(unsigned tag);
  void on_command_refused(int res, const char *what);
  // batch mode (see DeviceConfig::batch)
  int batch_setup(std::string &why);
  void batch_teardown();
  void queue_batch_fetch();
  void prep_batch_cmd(unsigned op, void *elems, unsigned nr, BatchOp which);
  void flush_commits();
  void put_batch_elem(uint8_t *array, unsigned i, unsigned tag, int result);
  void on_batch_cqe(unsigned ud_tag, int res, unsigned cqe_flags);
  // the data path (data_path.cc)
  void on_data_cqe(Kind kind, unsigned tag, int res, unsigned op, unsigned cqe_flags);
  void submit_socket_step(unsigned tag);
  void submit_data_step(unsigned tag);
  void data_finished(unsigned tag, int result);
  void prep_buf_cmd(struct io_uring_sqe *sqe, bool reg, unsigned tag);
  void arm_wake();
  struct io_uring_sqe *get_sqe();
  __u64 cmd_addr(unsigned tag) const;
  bool auto_reg_missed(unsigned tag) const;
  bool need_manual_reg(unsigned tag) const;
  __u16 auto_buf_index(unsigned tag) const;

  const DeviceConfig &cfg_;
  TargetDevice &tdev_;
  const TargetOps *ops_;
  unsigned q_id_;
  unsigned worker_;  // this thread's tags: worker_, worker_ + threads_per_queue, ...
  unsigned index_;
  std::mutex exposed_mu_;
  std::vector<std::pair<std::string, std::shared_ptr<SharedRegion>>> exposed_;
  std::shared_ptr<SharedRegion> bufs_region_;  // owns bufs_ (JavaScript may still hold it)
  unsigned *arrived_ = nullptr;  // requests of this pass not yet handed to the target (loop()); depth entries
  unsigned n_arrived_ = 0;
  std::thread thread_;
  std::atomic<int> tid_{0};
  cpu_set_t cpus_{};
  bool bind_ = false;
  struct io_uring ring_ {};
  bool ring_ok_ = false;
  std::vector<int> files_;  // this ring's registered files, in fixed-index order
  io_desc *descs_ = nullptr;
  size_t descs_len_ = 0;
  IoSlot *slots_ = nullptr;
  uint8_t *bufs_ = nullptr;
  size_t bufs_len_ = 0;
  uint8_t *tag_mem_ = nullptr;
  size_t tag_stride_ = 0;
  bool target_queue_ready_ = false;  // init_queue succeeded: deinit_queue is owed

  // The eventfd behind stop, posted completions and wake_target, read on the ring. A writer
  // writes only when no wake is pending yet (wake_pending_), so a batch costs one syscall.
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> target_woken_{false};
  // post_completion's mailbox: at most one entry per tag (a tag is posted once per request), so
  // `depth` entries never grow; swapped out whole by the queue thread.
  std::mutex mbox_mu_;
  std::vector<std::pair<unsigned, int>> mbox_, mbox_taken_;

  // batch mode: two commit arrays (one filling while the other's COMMIT is being submitted), the
  // buffer the multishot fetch writes tags into, and its one-entry provided-buffer ring.
  uint8_t *batch_mem_ = nullptr;
  size_t batch_mem_len_ = 0;
  uint8_t *commit_bufs_[2] = {nullptr, nullptr};
  unsigned commit_cur_ = 0;
  unsigned commit_count_ = 0;
  unsigned elem_bytes_ = 8;
  __u16 batch_flags_ = 0;
  uint8_t *fetch_buf_ = nullptr;
  unsigned fetch_buf_len_ = 0;
  unsigned fetch_off_ = 0;  // where the next fetch completion's tags start in fetch_buf_
  struct io_uring_buf_ring *fetch_ring_ = nullptr;

  unsigned cmds_inflight_ = 0;  // FETCH / COMMIT commands owned by the kernel
  unsigned data_inflight_ = 0;  // SQEs of requests (data, buffer table, target) not yet completed
  unsigned busy_ = 0;           // requests handed to us and not yet committed
  bool stopping_ = false;       // the kernel aborted a command: no more fetches
  bool abandon_ = false;        // fail(..., true): leave without completing what we hold
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> force_stop_{false};
  uint64_t stop_deadline_ = 0;  // a graceful stop leaves anyway after this (now_ns)
  uint64_t poll_until_ = 0;     // busy polling: the last pass with work ended this + busy_poll_us (now_ns)
  int loop_err_ = 0;  // why the loop ended on its own, -errno
  std::string loop_msg_;
  QueueCounters counters_;

  // served on an event loop (start_here): its thread, the ring's watch, and the end of the loop
  // for a join() from another thread
  bool here_ = false;
  bool in_pass_ = false;
  pthread_t here_thread_{};
  std::unique_ptr<Watch> watch_;
  std::function<void(int, const std::string &)> here_exited_;
  std::mutex here_mu_;
  std::condition_variable here_cv_;
  bool here_done_ = false;
};

}  // namespace ublk
