// One hardware queue of a ublk device: its own thread, its own io_uring, its descriptor array.
//
// Per tag the loop is FETCH -> (target handles the request) -> COMMIT_AND_FETCH, all on this
// thread's ring, together with the target's own I/O on the backing file; in batch mode the same
// with commands that carry many tags each (queue_batch.cc). Everything a request
// needs is allocated before the queue reports ready; the per-I/O path allocates nothing, makes
// no JavaScript call and no syscall beyond the ring's own io_uring_enter (the loop target adds a
// futimens per clock tick, not per I/O, and an io_uring_enter per write: see target_loop.cc).
#pragma once

#include <liburing.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "affinity.h"
#include "stats.h"
#include "ublk_cmd.h"

namespace ublk {

// How request data moves between the block layer and the backing file, fastest last.
enum class DataMode { Copy, UserCopy, ZcAuto, ZcExplicit };

struct TargetOps;

struct DeviceConfig {
  __u32 dev_id = 0;
  unsigned nr_queues = 1;
  unsigned depth = 128;
  unsigned max_io_buf_bytes = 512 * 1024;
  DataMode mode = DataMode::Copy;
  const TargetOps *target = nullptr;
  int ublkc_fd = -1;    // registered file 0 on every queue ring
  int backing_fd = -1;  // registered file 1 (loop); -1 for targets without a file
  __u64 offset_bytes = 0;
  bool read_only = false;
  // UBLK_F_BATCH_IO: tags delivered and committed in batches (PREP / FETCH / COMMIT_IO_CMDS)
  // instead of one FETCH / COMMIT_AND_FETCH per tag. Orthogonal to the data mode.
  bool batch = false;
  // Threads (each with its own ring) serving one queue, tags split between them: thread w owns
  // tags w, w + n, w + 2n... Needs per-I/O daemons (UBLK_F_PER_IO_DAEMON, Linux 6.16): before
  // that, every command of a queue had to come from one task. Lets the work of one queue (for a
  // loop disk on a RAM-backed file, mostly the kernel copying the data) use more than one CPU
  // even when the block layer sends all I/O to one queue. Not with batch (the kernel drops
  // PER_IO_DAEMON there: a batch command carries tags of the whole queue).
  unsigned threads_per_queue = 1;
  // Where queue threads run (affinity.h); `ublk-ts add` asks for OneCpu unless told otherwise.
  Affinity affinity = Affinity::None;
  void *target_data = nullptr;  // the target's device-wide state: made by init, freed by deinit
};

// user_data layout of every SQE this engine submits: what it is, and for which tag.
enum class Kind : uint8_t {
  UblkCmd = 0,     // FETCH / COMMIT_AND_FETCH
  DataRw = 1,      // backing-file read/write carrying request data (all data modes)
  UcCopy = 2,      // user copy: the pread/pwrite on /dev/ublkcN
  RegBuf = 3,      // zero copy: REGISTER_IO_BUF (its CQE only shows up on failure)
  UnregBuf = 4,    // zero copy: UNREGISTER_IO_BUF
  TargetOther = 5, // flush, discard, write-zeroes: handled by the target's io_done
  Wake = 6,        // the eventfd that wakes the loop for stop
  BatchCmd = 7,    // batch mode: PREP / FETCH / COMMIT_IO_CMDS; the "tag" says which (BatchOp)
};

// A BatchCmd's user_data tag: the BatchOp in bits 0-1, the element count above.
enum BatchOp : unsigned { kBatchFetch = 0, kBatchPrep = 1, kBatchCommit = 2 };
inline unsigned batch_op_of(unsigned ud_tag) { return ud_tag & 3; }

// Registered files of every queue ring.
constexpr int kFixedUblkc = 0;
constexpr int kFixedBacking = 1;

inline size_t page_round(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return (n + page - 1) / page * page;
}

inline __u64 make_user_data(Kind k, unsigned tag) { return ((__u64)k << 56) | tag; }
inline Kind user_data_kind(__u64 ud) { return (Kind)(ud >> 56); }
inline unsigned user_data_tag(__u64 ud) { return (unsigned)(ud & 0xffff); }

// State of one tag. Plain data, preallocated for the queue's depth.
struct IoSlot {
  uint8_t *buf = nullptr;  // copy and user-copy modes: the request's bytes
  uint64_t start_ns = 0;   // when the request reached us, for the latency histogram
  __u64 file_off = 0;      // where the data goes in the backing file
  __u32 len = 0;           // request bytes
  __u32 done = 0;          // bytes already moved (short read/write resume)
  __s32 error = 0;         // first error seen, -errno
  __u16 pending = 0;       // CQEs still expected before the request can complete
  bool write = false;
  bool fua = false;
  bool uc_second = false;  // user copy: the first of the two steps is done
  bool manual_reg = false; // zero copy: this request registers its buffer explicitly
  bool busy = false;       // between FETCH completion and COMMIT
};

class Queue {
 public:
  // `worker` of cfg.threads_per_queue: which share of the queue's tags this thread serves.
  Queue(const DeviceConfig &cfg, unsigned q_id, unsigned worker = 0);
  ~Queue();
  Queue(const Queue &) = delete;
  Queue &operator=(const Queue &) = delete;

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
  // or after a grace period. Forced: as soon as in-flight backing I/O drained.
  void request_stop(bool force);
  void join();

  unsigned id() const { return q_id_; }
  unsigned worker() const { return worker_; }
  int tid() const { return tid_.load(); }
  const QueueCounters &counters() const { return counters_; }

  // ---- used by targets ----
  const DeviceConfig &config() const { return cfg_; }
  const io_desc &desc(unsigned tag) const { return descs_[tag]; }
  IoSlot &slot(unsigned tag) { return slots_[tag]; }
  struct io_uring_sqe *get_sqe();
  // An SQE for the target's own work (flush, discard...): its CQE goes to the target's io_done.
  struct io_uring_sqe *get_target_sqe(unsigned tag);
  // Moves a READ/WRITE request's data to or from the backing file (registered file 1) in the
  // device's data mode; completes the request when all bytes moved or on error.
  void start_data_rw(unsigned tag, bool write, __u64 file_off, __u32 len, bool fua);
  // Zero copy without a backing file (null target): register and unregister the buffer.
  void start_zc_touch(unsigned tag, __u32 len);
  // Hands every SQE prepared so far to the kernel now, without waiting for completions.
  void submit_now() { io_uring_submit(&ring_); }
  // The same, and tells whether request `tag`'s backing read or write completed inside that
  // submit: the backing store did the work on this thread (a RAM disk, pmem, the page cache)
  // instead of later, by interrupt.
  bool submit_now_completed_inline(unsigned tag);
  // Ends a request: result is bytes or -errno. Sends COMMIT_AND_FETCH, or in batch mode adds it
  // to the next COMMIT_IO_CMDS (sent right before the loop's next submit).
  void complete(unsigned tag, int result);

 private:
  int setup(std::string &why);
  void loop();
  void teardown();
  void queue_fetch(unsigned tag, bool commit, int result);
  void on_cqe(const struct io_uring_cqe *cqe);
  void on_ublk_cmd(unsigned tag, int res);
  void start_request(unsigned tag);
  void start_arrived();
  void on_command_refused(int res, const char *what);
  // batch mode (see DeviceConfig::batch)
  int batch_setup(std::string &why);
  void batch_teardown();
  void queue_batch_fetch();
  void prep_batch_cmd(unsigned op, void *elems, unsigned nr, BatchOp which);
  void flush_commits();
  void put_batch_elem(uint8_t *array, unsigned i, unsigned tag, int result);
  void on_batch_cqe(unsigned ud_tag, int res, unsigned cqe_flags);
  void on_data_cqe(Kind kind, unsigned tag, int res);
  void submit_data_step(unsigned tag);
  void prep_buf_cmd(struct io_uring_sqe *sqe, bool reg, unsigned tag);
  void arm_wake();
  __u64 cmd_addr(unsigned tag) const;
  bool auto_reg_missed(unsigned tag) const;
  bool need_manual_reg(unsigned tag) const;
  __u16 auto_buf_index(unsigned tag) const;

  DeviceConfig cfg_;
  unsigned q_id_;
  unsigned worker_;  // this thread's tags: worker_, worker_ + threads_per_queue, ...
  unsigned cqes_per_pass_;  // completions per loop pass before the next submit
  unsigned auto_buf_miss_every_;  // tests only: see auto_buf_miss_from_env() in queue.cc
  unsigned *arrived_ = nullptr;  // requests of this pass not yet handed to the target (loop()); depth entries
  unsigned n_arrived_ = 0;
  std::thread thread_;
  std::atomic<int> tid_{0};
  cpu_set_t cpus_{};
  bool bind_ = false;
  struct io_uring ring_ {};
  bool ring_ok_ = false;
  io_desc *descs_ = nullptr;
  size_t descs_len_ = 0;
  IoSlot *slots_ = nullptr;
  uint8_t *bufs_ = nullptr;
  size_t bufs_len_ = 0;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;

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
  unsigned data_inflight_ = 0;  // backing-file and buffer-table SQEs not yet completed
  unsigned busy_ = 0;           // requests handed to us and not yet committed
  bool stopping_ = false;       // the kernel aborted a command: no more fetches
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> force_stop_{false};
  int loop_err_ = 0;  // why the loop ended on its own, -errno
  std::string loop_msg_;
  QueueCounters counters_;
};

}  // namespace ublk
