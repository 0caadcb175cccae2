#include "queue_thread.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "pkru.h"

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

// Empty fixed-file slots on every ring, for files a target adds on one thread (add_file).
constexpr unsigned kSpareFiles = 8;

}  // namespace

QueueThread::QueueThread(const DeviceConfig &cfg, TargetDevice &tdev, unsigned q_id, unsigned worker)
    : cfg_(cfg), tdev_(tdev), ops_(cfg.target), q_id_(q_id), worker_(worker), index_(q_id * cfg.threads_per_queue + worker) {
  // Created here, not on the queue thread, so request_stop() never races with its creation.
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
}

QueueThread::~QueueThread() {
  request_stop(true);
  join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void QueueThread::start(std::function<void(int, const std::string &)> ready,
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

void QueueThread::request_stop(bool force) {
  if (force) force_stop_.store(true);
  stop_requested_.store(true);
  wake();
}

void QueueThread::join() {
  if (thread_.joinable()) thread_.join();
  if (!here_) return;
  if (pthread_equal(pthread_self(), here_thread_)) {
    // the event loop's own thread (a cleanup hook, a finalizer): nothing else will run the loop
    if (here_done_) return;
    loop();
    finish_here();
    return;
  }
  std::unique_lock<std::mutex> l(here_mu_);
  here_cv_.wait(l, [this] { return here_done_; });
}

int QueueThread::start_here(std::function<void(int, const std::string &)> exited, std::string &why) {
  here_ = true;
  here_thread_ = pthread_self();
  tid_.store((int)syscall(SYS_gettid));
  here_exited_ = std::move(exited);
  int ret = setup(why);
  if (ret < 0) {
    teardown();
    std::lock_guard<std::mutex> l(here_mu_);
    here_done_ = true;  // nothing to join; `exited` is not called for a queue that never started
    here_cv_.notify_all();
  }
  return ret;
}

void QueueThread::pass_here() {
  if (here_done_ || in_pass_) return;
  in_pass_ = true;
  const bool go_on = !loop_over() && pass(false) && !loop_over();
  in_pass_ = false;
  if (!go_on) finish_here();
}

// The loop of a queue served on the event loop ended: stop watching the ring before it closes.
void QueueThread::finish_here() {
  if (here_done_) return;
  if (watch_) watch_->stop();
  watch_.reset();
  teardown();
  const int err = loop_err_;
  const std::string msg = err ? loop_msg_ : std::string();
  {
    std::lock_guard<std::mutex> l(here_mu_);
    here_done_ = true;
    here_cv_.notify_all();
  }
  QueueCounters::bump(counters_.js_calls);  // the "queue ended" event, counted as for a thread (start())
  if (here_exited_) here_exited_(err, msg);
}

// ---- setup, on the queue thread ---------------------------------------------------------------

int QueueThread::setup(std::string &why) {
  const unsigned depth = cfg_.depth;
  // Between two submits every tag queues at most four SQEs (register, rw, unregister, commit),
  // plus the wake read and what the target adds: the SQ never fills in practice, and get_sqe()
  // submits early if it does.
  unsigned entries = pow2_at_least(depth * 4 + 8);

  // The fastest setup first; older kernels reject the newer flags with EINVAL. A ring watched by
  // an event loop (epoll) must see completions posted while its thread sleeps there: the kernel
  // runs their task work at once (a notify signal), not only inside io_uring_enter as with
  // DEFER_TASKRUN, or at the thread's next system call as with COOP_TASKRUN.
  const unsigned thread_flags[] = {
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  const unsigned here_flags[] = {IORING_SETUP_SINGLE_ISSUER, 0, 0};
  int ret = -EINVAL;
  for (unsigned flags : here_ ? here_flags : thread_flags) {
    ret = io_uring_queue_init(entries, &ring_, flags);
    if (ret != -EINVAL) break;
  }
  if (ret < 0) {
    why = "io_uring_queue_init";
    return ret;
  }
  ring_ok_ = true;
  // Every io_uring_enter then names the ring by its registered index: no fdget/fdput of the ring
  // file, which in a multi-threaded process (Node's) is an atomic reference count per enter.
  // Optional: older kernels refuse it.
  io_uring_register_ring_fd(&ring_);

  // /dev/ublkcN, the target's files, and empty slots for files of this thread only (add_file).
  files_.clear();
  files_.reserve(1 + tdev_.files.size() + kSpareFiles);
  files_.push_back(cfg_.ublkc_fd);
  for (int fd : tdev_.files) files_.push_back(fd);
  for (unsigned i = 0; i < kSpareFiles; i++) files_.push_back(-1);
  ret = io_uring_register_files(&ring_, files_.data(), (unsigned)files_.size());
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
  mbox_.reserve(depth);
  mbox_taken_.reserve(depth);
  if (cfg_.mode == DataMode::Copy || cfg_.mode == DataMode::UserCopy) {
    // One buffer per tag this thread serves, page aligned for O_DIRECT; anonymous memory is only
    // backed once used (NORESERVE: depth x largest request can be GiBs, mostly never touched), and
    // not copied into children the server process forks (a child's commit charge would count it:
    // with 4 queues of 4096 tags Node's spawn failed with ENOMEM).
    const unsigned n = cfg_.threads_per_queue;
    const unsigned owned = (depth - worker_ + n - 1) / n;
    bufs_len_ = (size_t)owned * cfg_.max_io_buf_bytes;
    void *b = mmap(nullptr, bufs_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b == MAP_FAILED) {
      why = "allocating I/O buffers";
      return -errno;
    }
    madvise(b, bufs_len_, MADV_DONTFORK);
    bufs_ = (uint8_t *)b;
    for (unsigned t = worker_, i = 0; t < depth; t += n, i++)
      slots_[t].buf = bufs_ + (size_t)i * cfg_.max_io_buf_bytes;
    bufs_region_ = std::make_shared<SharedRegion>(b, bufs_len_, [](void *p, size_t len) { munmap(p, len); });
    expose("buffers", bufs_region_);
  }
  if (tdev_.tag_bytes > 0) {
    tag_stride_ = (tdev_.tag_bytes + 15) / 16 * 16;
    tag_mem_ = new (std::nothrow) uint8_t[tag_stride_ * depth]();
    if (!tag_mem_) {
      why = "allocating the target's per-tag state";
      return -ENOMEM;
    }
  }

  if (wake_fd_ < 0) {
    why = "eventfd";
    return -EMFILE;
  }
  arm_wake();

  if (ops_->init_queue) {
    ret = ops_->init_queue(*this, why);
    if (ret < 0) {
      if (why.empty()) why = std::string(ops_->name) + " target: per-queue setup";
      return ret;
    }
    target_queue_ready_ = true;
  }

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
  // START_DEV. Anything else that completed already is handled as the loop would.
  struct io_uring_cqe *cqe;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    const struct io_uring_cqe c = *cqe;
    io_uring_cqe_seen(&ring_, cqe);
    Kind kind = user_data_kind(c.user_data);
    unsigned ud_tag = user_data_tag(c.user_data);
    if (kind == Kind::UblkCmd && c.res < 0) {
      why = "FETCH_REQ";
      return c.res;
    }
    if (kind == Kind::BatchCmd && c.res < 0) {
      why = batch_op_of(ud_tag) == kBatchPrep ? "PREP_IO_CMDS" : "FETCH_IO_CMDS";
      return c.res;
    }
    on_cqe(&c);
  }
  start_arrived();
  if (ops_->pass_done) ops_->pass_done(*this);
  if (stop_requested_.load()) {
    why = "stopped during setup";
    return -ECANCELED;
  }
  return 0;
}

void QueueThread::teardown() {
  // Closing the ring cancels every command still owned by the kernel.
  if (ring_ok_) {
    io_uring_queue_exit(&ring_);
    ring_ok_ = false;
  }
  if (target_queue_ready_ && ops_->deinit_queue) ops_->deinit_queue(*this);
  target_queue_ready_ = false;
  batch_teardown();
  if (descs_) munmap(descs_, descs_len_);
  descs_ = nullptr;
  // the tag buffers go when JavaScript lets go of them too (SharedRegion)
  bufs_region_.reset();
  bufs_ = nullptr;
  {
    std::lock_guard<std::mutex> l(exposed_mu_);
    exposed_.clear();
  }
  delete[] slots_;
  slots_ = nullptr;
  delete[] arrived_;
  arrived_ = nullptr;
  delete[] tag_mem_;
  tag_mem_ = nullptr;
}

int QueueThread::add_file(int fd) {
  for (size_t i = 1 + tdev_.files.size(); i < files_.size(); i++) {
    if (files_[i] != -1) continue;
    int ret = io_uring_register_files_update(&ring_, (unsigned)i, &fd, 1);
    if (ret < 0) return ret;
    files_[i] = fd;
    return (int)i;
  }
  return -EMFILE;
}

int QueueThread::replace_file(int fixed, int fd) {
  if (fixed < kFixedTargetFiles || (size_t)fixed >= files_.size()) return -EINVAL;
  int ret = io_uring_register_files_update(&ring_, (unsigned)fixed, &fd, 1);
  if (ret < 0) return ret;
  files_[(size_t)fixed] = fd;
  return 0;
}

// ---- the loop ---------------------------------------------------------------------------------

void QueueThread::loop() {
  while (!loop_over() && pass(true)) {
  }
}

// Whether the loop is over. Once the kernel aborted a command (STOP_DEV, or QUIESCE_DEV for a live
// upgrade) it hands out no more requests: we are done when every request we hold is committed (a
// command re-fetched by that last COMMIT_AND_FETCH may never come back: after QUIESCE_DEV nothing
// aborts it, and closing the ring cancels it). The last commits are submitted here.
bool QueueThread::loop_over() {
  if (abandon_) return true;  // closing the ring cancels what is left; the kernel keeps the requests
  if (stopping_ && busy_ == 0 && data_inflight_ == 0) {
    flush_commits();
    io_uring_submit(&ring_);
    return true;
  }
  if (stop_requested_.load()) {
    if (force_stop_.load() && data_inflight_ == 0) return true;
    const uint64_t now = now_ns();
    if (!stop_deadline_) stop_deadline_ = now + kStopGraceNs;
    if (now > stop_deadline_ && data_inflight_ == 0) return true;
  }
  return false;
}

// One pass: submits what is queued, waits for a completion (`wait`; else takes only what is
// there), handles every completion. false when the ring failed (loop_err_ says why).
bool QueueThread::pass(bool wait) {
  struct io_uring_cqe *cqe = nullptr;
  int ret;
  flush_commits();
  if (!wait) {
    ret = io_uring_submit(&ring_);
  } else if (stop_requested_.load()) {
    struct __kernel_timespec ts = {0, 100 * 1000 * 1000};
    ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  } else if (polling()) {
    // enters the kernel for the task work that posts completions (DEFER_TASKRUN), never sleeps
    ret = io_uring_submit_and_get_events(&ring_);
  } else {
    ret = io_uring_submit_and_wait(&ring_, 1);
  }
  if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY && ret != -EAGAIN) {
    loop_err_ = ret;
    loop_msg_ = "io_uring_submit_and_wait";
    return false;
  }

  // Every completion of this pass first, then the target I/O of the requests that arrived in
  // it (start_arrived): the SQ then holds this pass's commits ahead of the new requests' I/O.
  // A store that does its work inside io_uring_enter (a filesystem on a RAM disk, page-cache
  // hits) would otherwise make the commits wait behind those copies (bench/README.md,
  // "Commits before new backing I/O").
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    on_cqe(cqe);
    seen++;
  }
  io_uring_cq_advance(&ring_, seen);
  flush_commits();  // batch mode: its COMMIT_IO_CMDS, too, ahead of the new I/O
  start_arrived();
  if (ops_->pass_done) ops_->pass_done(*this);
  if (!wait) {
    // nothing waits for the next pass: what the pass queued goes out now
    flush_commits();
    io_uring_submit(&ring_);
  }
  // counted from the pass's end: the time its requests took (a JavaScript target's) is not polling
  if (seen > 0 && cfg_.busy_poll_us > 0) poll_until_ = now_ns() + cfg_.busy_poll_us * 1000ull;
  return true;
}

bool QueueThread::polling() const {
  return poll_until_ != 0 && !here_done_ && !stop_requested_.load() && now_ns() < poll_until_;
}

void QueueThread::arm_wake() {
  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof(wake_buf_), 0);
  sqe->user_data = make_user_data(Kind::Wake, 0);
}

void QueueThread::wake() {
  if (wake_fd_ < 0 || wake_pending_.exchange(true)) return;
  uint64_t one = 1;
  ssize_t r = write(wake_fd_, &one, sizeof(one));
  (void)r;
}

void QueueThread::post_completion(unsigned tag, int result) {
  {
    std::lock_guard<std::mutex> l(mbox_mu_);
    mbox_.emplace_back(tag, result);
  }
  wake();
}

void QueueThread::expose(const std::string &name, std::shared_ptr<SharedRegion> region) {
  std::lock_guard<std::mutex> l(exposed_mu_);
  exposed_.emplace_back(name, std::move(region));
}

std::vector<std::pair<std::string, std::shared_ptr<SharedRegion>>> QueueThread::exposed() {
  std::lock_guard<std::mutex> l(exposed_mu_);
  return exposed_;
}

void QueueThread::report(const char *level, const std::string &message) {
  if (on_report) on_report(q_id_, level, message);
}

void QueueThread::wake_target() {
  if (here_) {
    if (here_done_ || !ops_->handle_event) return;
    ops_->handle_event(*this);
    flush_commits();
    io_uring_submit(&ring_);
    // the last request of a stopping queue: the loop ends now (inside a pass, when that pass ends)
    if (!in_pass_ && stopping_ && busy_ == 0 && data_inflight_ == 0) pass_here();
    return;
  }
  target_woken_.store(true);
  wake();
}

// The eventfd was written: by a stop, a posted completion or wake_target. Cleared before the
// mailbox is read, so a post that comes after the read wakes the ring again.
void QueueThread::on_wake() {
  wake_pending_.store(false);
  {
    std::lock_guard<std::mutex> l(mbox_mu_);
    mbox_taken_.swap(mbox_);
  }
  for (const auto &e : mbox_taken_) {
    if (e.first < cfg_.depth && slots_[e.first].busy) complete(e.first, e.second);
  }
  mbox_taken_.clear();
  if (target_woken_.exchange(false) && ops_->handle_event) ops_->handle_event(*this);
  arm_wake();
}

struct io_uring_sqe *QueueThread::get_sqe() {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    io_uring_submit(&ring_);  // the SQ is sized for the worst case; this is only a safety valve
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

bool QueueThread::submit_now_completed_inline(unsigned tag) {
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

struct io_uring_sqe *QueueThread::target_sqe(unsigned tag, unsigned op, unsigned sub) {
  struct io_uring_sqe *sqe = get_sqe();
  if (tag != kNoTag) data_inflight_++;
  // liburing's prep helpers leave user_data alone, so the caller may prep after this.
  sqe->user_data = make_user_data(Kind::Target, tag, op, sub);
  return sqe;
}

void QueueThread::on_cqe(const struct io_uring_cqe *cqe) {
  const Kind kind = user_data_kind(cqe->user_data);
  const unsigned tag = user_data_tag(cqe->user_data);
  switch (kind) {
    case Kind::UblkCmd:
      on_ublk_cmd(tag, cqe->res);
      break;
    case Kind::Target: {
      if (tag != kNoTag) data_inflight_--;
      const TargetCqe c{tag, user_data_op(cqe->user_data), user_data_sub(cqe->user_data), cqe->res, cqe->flags};
      ops_->io_done(*this, c);
      break;
    }
    case Kind::Wake:
      on_wake();
      break;
    case Kind::BatchCmd:
      on_batch_cqe(tag, cqe->res, cqe->flags);
      break;
    default:
      on_data_cqe(kind, tag, cqe->res, user_data_op(cqe->user_data), cqe->flags);
      break;
  }
}

// ---- ublk commands ----------------------------------------------------------------------------

__u64 QueueThread::cmd_addr(unsigned tag) const {
  return cfg_.mode == DataMode::Copy ? (__u64)(uintptr_t)slots_[tag].buf : 0;
}

void QueueThread::queue_fetch(unsigned tag, bool commit, int result) {
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

void QueueThread::on_ublk_cmd(unsigned tag, int res) {
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
void QueueThread::start_request(unsigned tag) {
  IoSlot &s = slots_[tag];
  s.busy = true;
  busy_++;
  s.start_ns = now_ns();
  QueueCounters::bump(counters_.inflight);
  if (auto_reg_missed(tag)) QueueCounters::bump(counters_.zc_fallback_regs);
  // Started after the pass's commits are queued (see loop()). A tag comes back only after its
  // commit is submitted, so at most one entry per tag; the check is a safety net.
  if (n_arrived_ == cfg_.depth) {
    dispatch(tag);
    return;
  }
  arrived_[n_arrived_++] = tag;
}

// Hands the requests noted by start_request() to the target, in arrival order.
void QueueThread::start_arrived() {
  for (unsigned i = 0; i < n_arrived_; i++) dispatch(arrived_[i]);
  n_arrived_ = 0;
}

// What every target would check, checked once here: a kind of request the target does not serve
// fails with EOPNOTSUPP, a change to a read-only disk with EROFS.
void QueueThread::dispatch(unsigned tag) {
  const unsigned op = desc_op(&descs_[tag]);
  const TargetCaps &caps = ops_->caps;
  bool served;
  switch (op) {
    case kOpRead: served = true; break;
    case kOpWrite: served = true; break;
    case kOpFlush: served = caps.flush; break;
    case kOpDiscard: served = caps.discard; break;
    case kOpWriteZeroes: served = caps.write_zeroes; break;
    default: served = false; break;
  }
  const bool changes = op == kOpWrite || op == kOpDiscard || op == kOpWriteZeroes;
  if (cfg_.read_only && changes) complete(tag, -EROFS);
  else if (!served) complete(tag, -EOPNOTSUPP);
  else ops_->queue_io(*this, tag);
}

void QueueThread::fail(int err, const std::string &why, bool abandon) {
  stopping_ = true;
  abandon_ = abandon_ || abandon;
  if (loop_err_ == 0) {
    loop_err_ = err < 0 ? err : -EIO;
    loop_msg_ = why;
  }
}

void QueueThread::on_command_refused(int res, const char *what) {
  stopping_ = true;
  if (res != kIoResAbort && loop_err_ == 0 && !stop_requested_.load()) {
    loop_err_ = res;
    loop_msg_ = what;
  }
}

void QueueThread::complete(unsigned tag, int result) {
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

}  // namespace ublk
