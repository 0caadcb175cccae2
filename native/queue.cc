#include "queue.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "pkru.h"
#include "target.h"

namespace ublk {

namespace {

uint64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

unsigned pow2_at_least(unsigned n) {
  unsigned p = 1;
  while (p < n) p <<= 1;
  return p;
}

// How long a graceful stop waits for the kernel to abort our commands before leaving anyway
// (closing the ring cancels whatever is left).
constexpr uint64_t kStopGraceNs = 5ULL * 1000000000ULL;

// Completions handled per pass of the loop before the next submit (see Queue::loop): all of
// them. UBLK_TS_CQES_PER_PASS=N bounds it, for measurements (0: no bound, the default).
constexpr unsigned kCqesPerPass = ~0u;

unsigned cqes_per_pass_from_env() {
  const char *v = getenv("UBLK_TS_CQES_PER_PASS");
  if (!v || !*v) return kCqesPerPass;
  char *end = nullptr;
  unsigned long n = strtoul(v, &end, 10);
  if (*end) return kCqesPerPass;
  return n == 0 ? ~0u : (unsigned)n;
}

// Tests only: UBLK_TS_TEST_AUTO_BUF_MISS=N asks the kernel (AUTO_BUF_REG) to install the pages of
// every Nth tag at a buffer-table index past the end of the table. The kernel's registration then
// fails, and its FALLBACK path (NEED_REG_BUF, the server registers by hand) is exercised on the
// real driver (test/integration/zc-fallback.test.ts). Unset or 0: every tag at its own index.
unsigned auto_buf_miss_from_env() {
  const char *v = getenv("UBLK_TS_TEST_AUTO_BUF_MISS");
  if (!v || !*v) return 0;
  char *end = nullptr;
  unsigned long n = strtoul(v, &end, 10);
  return *end ? 0 : (unsigned)n;
}

}  // namespace

Queue::Queue(const DeviceConfig &cfg, unsigned q_id, unsigned worker)
    : cfg_(cfg),
      q_id_(q_id),
      worker_(worker),
      cqes_per_pass_(cqes_per_pass_from_env()),
      auto_buf_miss_every_(auto_buf_miss_from_env()) {
  // Created here, not on the queue thread, so request_stop() never races with its creation.
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
}

Queue::~Queue() {
  request_stop(true);
  join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Queue::start(std::function<void(int, const std::string &)> ready,
                  std::function<void(int, const std::string &)> exited) {
  thread_ = std::thread([this, ready, exited] {
    tid_.store((int)syscall(SYS_gettid));
    char name[16];  // the kernel keeps 15 characters
    if (cfg_.threads_per_queue > 1) snprintf(name, sizeof(name), "ublk%u-q%u.%u", cfg_.dev_id, q_id_, worker_);
    else snprintf(name, sizeof(name), "ublk%u-q%u", cfg_.dev_id, q_id_);
    pthread_setname_np(pthread_self(), name);
    reset_thread_pkru();  // see pkru.h: Node's PKRU would be rewritten on every context switch

    std::string why;
    int ret = 0;
    if (bind_ && sched_setaffinity(0, sizeof(cpus_), &cpus_) < 0) {
      ret = -errno;
      why = "binding the queue thread to its CPUs (sched_setaffinity)";
    }
    if (ret == 0) ret = setup(why);
    ready(ret, why);
    if (ret != 0) {
      teardown();
      return;
    }
    int err = 0;
    std::string msg;
    loop();
    if (loop_err_ != 0) {
      err = loop_err_;
      msg = loop_msg_;
    }
    teardown();
    // The queue thread's one call into JavaScript, counted so tests can see it is the only one.
    QueueCounters::bump(counters_.js_calls);
    exited(err, msg);
  });
}

void Queue::request_stop(bool force) {
  if (force) force_stop_.store(true);
  stop_requested_.store(true);
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t r = write(wake_fd_, &one, sizeof(one));
    (void)r;
  }
}

void Queue::join() {
  if (thread_.joinable()) thread_.join();
}

// ---- setup, on the queue thread ---------------------------------------------------------------

int Queue::setup(std::string &why) {
  const unsigned depth = cfg_.depth;
  // Between two submits every tag queues at most four SQEs (register, rw, unregister, commit),
  // plus the wake read: the SQ never fills, so get_sqe() never has to split a linked chain.
  unsigned entries = pow2_at_least(depth * 4 + 8);

  // The fastest setup first; older kernels reject the newer flags with EINVAL.
  const unsigned flag_sets[] = {
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int ret = -EINVAL;
  for (unsigned flags : flag_sets) {
    ret = io_uring_queue_init(entries, &ring_, flags);
    if (ret != -EINVAL) break;
  }
  if (ret < 0) {
    why = "io_uring_queue_init";
    return ret;
  }
  ring_ok_ = true;
  // Every io_uring_enter then names the ring by its registered index: no fdget/fdput of the ring
  // file, which in a multi-threaded process (Node's) is an atomic reference count per enter. Not
  // measurable in the TCG guest (within its noise, 2026-12-02); optional: older kernels refuse it.
  io_uring_register_ring_fd(&ring_);

  int fds[2] = {cfg_.ublkc_fd, cfg_.backing_fd};
  ret = io_uring_register_files(&ring_, fds, 2);
  if (ret < 0) {
    why = "io_uring_register_files";
    return ret;
  }

  if (cfg_.mode == DataMode::ZcAuto || cfg_.mode == DataMode::ZcExplicit) {
    // Buffer-table slot `tag` receives the request's pages (auto or by REGISTER_IO_BUF).
    ret = io_uring_register_buffers_sparse(&ring_, depth);
    if (ret < 0) {
      why = "io_uring_register_buffers_sparse";
      return ret;
    }
  }

  descs_len_ = page_round(depth * sizeof(io_desc));
  off_t off = (off_t)(kCmdBufOffset + q_id_ * page_round(kMaxQueueDepth * sizeof(io_desc)));
  void *m = mmap(nullptr, descs_len_, PROT_READ, MAP_SHARED | MAP_POPULATE, cfg_.ublkc_fd, off);
  if (m == MAP_FAILED) {
    why = "mmap of the descriptor array";
    return -errno;
  }
  descs_ = (io_desc *)m;

  slots_ = new (std::nothrow) IoSlot[depth];
  arrived_ = new (std::nothrow) unsigned[depth];
  if (!slots_ || !arrived_) {
    why = "allocating tags";
    return -ENOMEM;
  }
  if (cfg_.mode == DataMode::Copy || cfg_.mode == DataMode::UserCopy) {
    // One buffer per tag this thread serves, page aligned for O_DIRECT; anonymous memory is only
    // backed once used.
    const unsigned n = cfg_.threads_per_queue;
    const unsigned owned = (depth - worker_ + n - 1) / n;
    bufs_len_ = (size_t)owned * cfg_.max_io_buf_bytes;
    void *b = mmap(nullptr, bufs_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) {
      why = "allocating I/O buffers";
      return -errno;
    }
    bufs_ = (uint8_t *)b;
    for (unsigned t = worker_, i = 0; t < depth; t += n, i++)
      slots_[t].buf = bufs_ + (size_t)i * cfg_.max_io_buf_bytes;
  }

  if (wake_fd_ < 0) {
    why = "eventfd";
    return -EMFILE;
  }
  arm_wake();

  if (cfg_.batch) {
    ret = batch_setup(why);
    if (ret < 0) return ret;
  } else {
    // With per-I/O daemons the first FETCH of a tag makes this thread its server.
    for (unsigned t = worker_; t < depth; t += cfg_.threads_per_queue) queue_fetch(t, false, 0);
  }
  ret = io_uring_submit(&ring_);
  if (ret < 0) {
    why = cfg_.batch ? "submitting PREP_IO_CMDS" : "submitting FETCH";
    return ret;
  }
  // A FETCH or PREP the kernel refuses (bad flags, wrong task) fails at once: catch it before
  // START_DEV.
  struct io_uring_cqe *cqe;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    int res = cqe->res;
    unsigned cqe_flags = cqe->flags;
    Kind kind = user_data_kind(cqe->user_data);
    unsigned ud_tag = user_data_tag(cqe->user_data);
    io_uring_cqe_seen(&ring_, cqe);
    if (kind == Kind::UblkCmd && res < 0) {
      why = "FETCH_REQ";
      return res;
    }
    if (kind == Kind::BatchCmd) {
      if (res < 0) {
        why = batch_op_of(ud_tag) == kBatchPrep ? "PREP_IO_CMDS" : "FETCH_IO_CMDS";
        return res;
      }
      on_batch_cqe(ud_tag, res, cqe_flags);
    }
  }
  start_arrived();
  if (stop_requested_.load()) {
    why = "stopped during setup";
    return -ECANCELED;
  }
  return 0;
}

void Queue::teardown() {
  // Closing the ring cancels every command still owned by the kernel.
  if (ring_ok_) {
    io_uring_queue_exit(&ring_);
    ring_ok_ = false;
  }
  batch_teardown();
  if (descs_) munmap(descs_, descs_len_);
  descs_ = nullptr;
  if (bufs_) munmap(bufs_, bufs_len_);
  bufs_ = nullptr;
  delete[] slots_;
  slots_ = nullptr;
  delete[] arrived_;
  arrived_ = nullptr;
}

// ---- the loop ---------------------------------------------------------------------------------

void Queue::loop() {
  uint64_t deadline = 0;
  for (;;) {
    // Once the kernel aborted a command (STOP_DEV, or QUIESCE_DEV for a live upgrade) it hands
    // out no more requests. We are done when every request we hold is committed: a command
    // re-fetched by that last COMMIT_AND_FETCH may never come back (after QUIESCE_DEV nothing
    // aborts it), and closing the ring cancels it.
    bool drained = stopping_ && busy_ == 0 && data_inflight_ == 0;
    if (drained) {
      flush_commits();
      io_uring_submit(&ring_);  // the last commits
      break;
    }
    if (stop_requested_.load()) {
      if (force_stop_.load() && data_inflight_ == 0) break;
      uint64_t now = now_ns();
      if (!deadline) deadline = now + kStopGraceNs;
      if (now > deadline && data_inflight_ == 0) break;
    }

    struct io_uring_cqe *cqe = nullptr;
    int ret;
    flush_commits();
    if (stop_requested_.load()) {
      struct __kernel_timespec ts = {0, 100 * 1000 * 1000};
      ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    } else {
      ret = io_uring_submit_and_wait(&ring_, 1);
    }
    if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY && ret != -EAGAIN) {
      loop_err_ = ret;
      loop_msg_ = "io_uring_submit_and_wait";
      break;
    }

    // Every completion of this pass first, then the backing I/O of the requests that arrived in
    // it (start_arrived): the SQ then holds this pass's commits ahead of its new backing I/O.
    // A backing file whose I/O completes inside io_uring_enter (a filesystem on a RAM disk or
    // pmem, page-cache hits) copies the data of each SQE during the submit, in SQ order; with
    // new backing I/O queued as each request arrived, the commits behind it waited for those
    // copies, and fio saw its completions late and in bursts. An earlier fix bounded the pass to
    // 8 completions (128k seq write 0.68x -> 1.17x the kernel loop, 2026-11); measured in the
    // VM since (ext4 on brd, QD32, queue thread on CPU 0, 4 interleaved rounds in one boot, x the
    // kernel loop): bounded 0.78x / 0.80x on 128k read / write, 0.86x / 0.80x on 4k random read
    // / write; unbounded 0.87x / 0.90x, 0.82x / 0.87x; unbounded with commits first 0.91x /
    // 0.90x, 0.91x / 0.91x (bench/README.md, "Commits before new backing I/O").
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      on_cqe(cqe);
      if (++seen == cqes_per_pass_) break;
    }
    io_uring_cq_advance(&ring_, seen);
    flush_commits();  // batch mode: its COMMIT_IO_CMDS, too, ahead of the new backing I/O
    start_arrived();
  }
}

void Queue::arm_wake() {
  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof(wake_buf_), 0);
  sqe->user_data = make_user_data(Kind::Wake, 0);
}

struct io_uring_sqe *Queue::get_sqe() {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    io_uring_submit(&ring_);  // the SQ is sized for the worst case; this is only a safety valve
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

bool Queue::submit_now_completed_inline(unsigned tag) {
  // With DEFER_TASKRUN the completions of I/O that went to a device are posted only while this
  // thread waits in io_uring_enter, so a CQE that appears during a submit without waiting was
  // posted by the submit itself. (Without DEFER_TASKRUN, on kernels before 6.1, some may come
  // from elsewhere; the answer then leans to "inline", the side that costs system calls, not
  // io-wq hand-offs.)
  const unsigned before = io_uring_cq_ready(&ring_);
  io_uring_submit(&ring_);
  const __u64 want = make_user_data(Kind::DataRw, tag);
  unsigned head, i = 0;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    if (i++ >= before && cqe->user_data == want) return true;
  }
  return false;
}

struct io_uring_sqe *Queue::get_target_sqe(unsigned tag) {
  struct io_uring_sqe *sqe = get_sqe();
  data_inflight_++;
  // liburing's prep helpers leave user_data alone, so the caller may prep after this.
  sqe->user_data = make_user_data(Kind::TargetOther, tag);
  return sqe;
}

void Queue::on_cqe(const struct io_uring_cqe *cqe) {
  Kind kind = user_data_kind(cqe->user_data);
  unsigned tag = user_data_tag(cqe->user_data);
  switch (kind) {
    case Kind::UblkCmd:
      on_ublk_cmd(tag, cqe->res);
      break;
    case Kind::TargetOther:
      data_inflight_--;
      cfg_.target->io_done(*this, tag, cqe->res);
      break;
    case Kind::Wake:
      if (!stop_requested_.load()) arm_wake();
      break;
    case Kind::BatchCmd:
      on_batch_cqe(tag, cqe->res, cqe->flags);
      break;
    default:
      on_data_cqe(kind, tag, cqe->res);
      break;
  }
}

// ---- ublk commands ----------------------------------------------------------------------------

__u64 Queue::cmd_addr(unsigned tag) const {
  return cfg_.mode == DataMode::Copy ? (__u64)(uintptr_t)slots_[tag].buf : 0;
}

void Queue::queue_fetch(unsigned tag, bool commit, int result) {
  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, kFixedUblkc, nullptr, 0, 0);
  sqe->flags = IOSQE_FIXED_FILE;
  sqe->cmd_op = commit ? kIoCommitAndFetchReq : kIoFetchReq;
  if (cfg_.mode == DataMode::ZcAuto) {
    // The kernel installs the next request's pages at buffer index `tag` (auto_buf_index) before
    // the CQE; with FALLBACK a failed installation is reported through NEED_REG_BUF instead of
    // failing.
    sqe->addr = auto_buf_reg_addr(auto_buf_index(tag), kAutoBufRegFallback);
  }
  io_cmd *cmd = (io_cmd *)sqe->cmd;
  cmd->q_id = (__u16)q_id_;
  cmd->tag = (__u16)tag;
  cmd->result = result;
  cmd->addr = cmd_addr(tag);
  sqe->user_data = make_user_data(Kind::UblkCmd, tag);
  cmds_inflight_++;
}

void Queue::on_ublk_cmd(unsigned tag, int res) {
  cmds_inflight_--;
  if (res == kIoResOk) {
    start_request(tag);
    return;
  }
  // ABORT: the device is stopping (or the server is being replaced). Anything else means the
  // kernel refused a command of ours; either way this tag is not fetched again.
  on_command_refused(res, "COMMIT_AND_FETCH_REQ");
}

// A request arrived at `tag` (its descriptor is filled): account for it, and note it for the
// target.
void Queue::start_request(unsigned tag) {
  IoSlot &s = slots_[tag];
  s.busy = true;
  busy_++;
  s.start_ns = now_ns();
  QueueCounters::bump(counters_.inflight);
  if (auto_reg_missed(tag)) QueueCounters::bump(counters_.zc_fallback_regs);
  // Started after the pass's commits are queued (see loop()). A tag comes back only after its
  // commit is submitted, so at most one entry per tag; the check is a safety net.
  if (n_arrived_ == cfg_.depth) {
    cfg_.target->queue_io(*this, tag);
    return;
  }
  arrived_[n_arrived_++] = tag;
}

// Hands the requests noted by start_request() to the target, in arrival order.
void Queue::start_arrived() {
  for (unsigned i = 0; i < n_arrived_; i++) cfg_.target->queue_io(*this, arrived_[i]);
  n_arrived_ = 0;
}

void Queue::on_command_refused(int res, const char *what) {
  stopping_ = true;
  if (res != kIoResAbort && loop_err_ == 0 && !stop_requested_.load()) {
    loop_err_ = res;
    loop_msg_ = what;
  }
}

void Queue::complete(unsigned tag, int result) {
  IoSlot &s = slots_[tag];
  const io_desc &d = descs_[tag];
  unsigned op = stat_index(desc_op(&d));
  uint64_t lat_us = (now_ns() - s.start_ns) / 1000;
  counters_.record(op, result > 0 ? (uint64_t)result : 0, result < 0, lat_us);
  counters_.inflight.store(counters_.inflight.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  s.busy = false;
  busy_--;
  if (!cfg_.batch) {
    queue_fetch(tag, true, result);
    return;
  }
  // Batch mode: one element of the next COMMIT_IO_CMDS. At most `depth` accumulate between two
  // flushes (a tag completes once per request, and gets no new one before it is committed).
  put_batch_elem(commit_bufs_[commit_cur_], commit_count_++, tag, result);
}

// ---- the data path: the one place that knows the data modes ----------------------------------

__u16 Queue::auto_buf_index(unsigned tag) const {
  // The table has `depth` slots (setup): index `depth` is past its end.
  if (auto_buf_miss_every_ && tag % auto_buf_miss_every_ == 0) return (__u16)cfg_.depth;
  return (__u16)tag;
}

// AUTO_BUF_REG with FALLBACK: the kernel could not install this request's pages (NEED_REG_BUF).
bool Queue::auto_reg_missed(unsigned tag) const {
  return cfg_.mode == DataMode::ZcAuto && (descs_[tag].op_flags & kIoFNeedRegBuf);
}

bool Queue::need_manual_reg(unsigned tag) const {
  return cfg_.mode == DataMode::ZcExplicit || auto_reg_missed(tag);
}

void Queue::start_data_rw(unsigned tag, bool write, __u64 file_off, __u32 len, bool fua) {
  IoSlot &s = slots_[tag];
  s.write = write;
  s.fua = fua;
  s.file_off = file_off;
  s.len = len;
  s.done = 0;
  s.error = 0;
  s.uc_second = false;
  s.manual_reg = need_manual_reg(tag);
  submit_data_step(tag);
}

// REGISTER_IO_BUF / UNREGISTER_IO_BUF of request `tag` at buffer-table index `tag`.
void Queue::prep_buf_cmd(struct io_uring_sqe *sqe, bool reg, unsigned tag) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, kFixedUblkc, nullptr, 0, 0);
  sqe->cmd_op = reg ? kIoRegisterIoBuf : kIoUnregisterIoBuf;
  // HARDLINK: the unregister must run even if the I/O fails, or the request never completes;
  // a successful register produces no CQE.
  sqe->flags = IOSQE_FIXED_FILE | (reg ? IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS : 0);
  io_cmd *c = (io_cmd *)sqe->cmd;
  c->q_id = (__u16)q_id_;
  c->tag = (__u16)tag;
  c->addr = tag;
  sqe->user_data = make_user_data(reg ? Kind::RegBuf : Kind::UnregBuf, tag);
}

void Queue::start_zc_touch(unsigned tag, __u32 len) {
  IoSlot &s = slots_[tag];
  s.len = len;
  s.done = len;  // nothing to move: register + unregister only
  s.error = 0;
  s.uc_second = true;
  s.manual_reg = true;
  prep_buf_cmd(get_sqe(), true, tag);
  prep_buf_cmd(get_sqe(), false, tag);
  s.pending = 1;
  data_inflight_ += 1;
}

// Submits the next piece of a request's data movement, resuming after `done` bytes.
void Queue::submit_data_step(unsigned tag) {
  IoSlot &s = slots_[tag];
  const __u32 left = s.len - s.done;

  if (cfg_.mode == DataMode::Copy || cfg_.mode == DataMode::UserCopy) {
    struct io_uring_sqe *sqe = get_sqe();
    // User copy moves the data in two steps through the tag's buffer: a WRITE request is first
    // read out of /dev/ublkcN, then written to the file; a READ request goes the other way.
    bool uc_step = cfg_.mode == DataMode::UserCopy && (s.write != s.uc_second);
    if (uc_step) {
      __u64 off = user_copy_offset(q_id_, tag, s.done);
      if (s.write) io_uring_prep_read(sqe, kFixedUblkc, s.buf + s.done, left, off);
      else io_uring_prep_write(sqe, kFixedUblkc, s.buf + s.done, left, off);
      sqe->user_data = make_user_data(Kind::UcCopy, tag);
    } else {
      __u64 off = s.file_off + s.done;
      if (s.write) io_uring_prep_write(sqe, kFixedBacking, s.buf + s.done, left, off);
      else io_uring_prep_read(sqe, kFixedBacking, s.buf + s.done, left, off);
      if (s.write && s.fua) sqe->rw_flags = RWF_DSYNC;
      sqe->user_data = make_user_data(Kind::DataRw, tag);
    }
    sqe->flags = IOSQE_FIXED_FILE;
    s.pending = 1;
    data_inflight_ += 1;
    return;
  }

  // Zero copy: the request's pages sit at buffer index `tag`; the fixed-buffer "address" is the
  // byte offset into the request.
  if (s.manual_reg) prep_buf_cmd(get_sqe(), true, tag);

  struct io_uring_sqe *rw = get_sqe();
  void *addr = (void *)(uintptr_t)s.done;
  __u64 off = s.file_off + s.done;
  if (s.write) io_uring_prep_write_fixed(rw, kFixedBacking, addr, left, off, (int)tag);
  else io_uring_prep_read_fixed(rw, kFixedBacking, addr, left, off, (int)tag);
  if (s.write && s.fua) rw->rw_flags = RWF_DSYNC;
  rw->flags = IOSQE_FIXED_FILE | (s.manual_reg ? IOSQE_IO_HARDLINK : 0);
  rw->user_data = make_user_data(Kind::DataRw, tag);
  s.pending = 1;

  if (s.manual_reg) {
    prep_buf_cmd(get_sqe(), false, tag);
    s.pending = 2;
  }
  data_inflight_ += s.pending;
}

void Queue::on_data_cqe(Kind kind, unsigned tag, int res) {
  IoSlot &s = slots_[tag];
  if (kind == Kind::RegBuf) {
    // Only failures produce this CQE (CQE_SKIP_SUCCESS); it was not counted as pending.
    if (res < 0 && s.error == 0) s.error = res;
    return;
  }
  data_inflight_--;
  s.pending--;
  if (kind == Kind::UnregBuf) {
    if (res < 0 && s.error == 0) s.error = res;
  } else if (res < 0) {
    if (s.error == 0) s.error = res;
  } else if (res == 0 && s.done < s.len) {
    // End of file inside the disk: the backing file shrank under us.
    if (s.error == 0) s.error = -EIO;
  } else {
    s.done += (__u32)res;
  }
  if (s.pending > 0) return;  // zero copy: wait for the unregister

  if (s.error == -EAGAIN) {
    s.error = 0;
    submit_data_step(tag);
    return;
  }
  if (s.error < 0) {
    complete(tag, s.error);
    return;
  }
  if (s.done < s.len) {  // short read or write: move the rest
    submit_data_step(tag);
    return;
  }
  if (cfg_.mode == DataMode::UserCopy && !s.uc_second) {
    s.uc_second = true;
    s.done = 0;
    submit_data_step(tag);
    return;
  }
  complete(tag, (int)s.len);
}

}  // namespace ublk
