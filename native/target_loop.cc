// loop target: the disk is a file (or block device), `offset_bytes` into it.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "target.h"

namespace ublk {

namespace {

// Why the loop target stamps the backing file's mtime itself.
//
// io_uring first tries every backing write with IOCB_NOWAIT, inline on the queue thread. A write
// that must update the file's mtime/ctime cannot do that without blocking (ext4 and xfs start a
// journal transaction), so the filesystem answers -EAGAIN and io_uring hands the write to an
// io-wq worker thread. The timestamp has the kernel's coarse clock granularity (one tick, 1-10
// ms), so the first write of every tick needs an update, and so does every other write submitted
// before a worker got to it: on ext4 that punted ~60% of 128 KiB writes (measured with kretprobes
// on kiocb_modified in the VM, 2026-11-22), each paying a thread hand-off. The kernel's loop
// driver never sees this: it writes from its own worker, where blocking is allowed.
//
// So before the first write of each tick the queue thread sets mtime (and so ctime) to "now"
// itself, with one futimens(); the writes of that tick then find their timestamps current and
// complete inline. The file ends up with the same timestamps the writes would have given it. The
// clock is CLOCK_REALTIME_COARSE, read from the vDSO: the clock file timestamps come from. One
// queue per tick makes the call (a compare-and-swap on the tick across queues).
//
// The stamp only holds until the next tick, and io_uring issues the SQEs of one submit one after
// the other: on a backing store that copies inline (a RAM disk, pmem, the page cache) each write
// takes its copy time, so the later writes of a batch of eight still met a new tick (~11% of
// 128 KiB writes punted, 2026-12-02). Submitting each write right after its stamp check (one
// io_uring_enter per write) brought punts under 1% there. On a disk that completes by interrupt
// a batch is issued in microseconds and seldom meets a new tick, and submitting each write alone
// costs what batching saves, a system call and a device notification per write (ext4 on a virtio
// disk, 128 KiB QD32 writes, 4 interleaved rounds in each of two boots: 0.83x / 0.82x the kernel
// loop submitting each, 0.96x / 0.92x batched; on ext4 on brd batched lost, 0.76x against 0.83x;
// 2026-12-03). So the loop watches: the first kProbeWrites writes of every kProbePeriod are
// submitted alone, and if most of them completed inside their own submit the backing copies
// inline and the rest of the period's writes go alone too; if not, they are batched. (Watching
// again every period: writes into holes of a sparse file are handed to io-wq while the blocks are
// allocated and look asynchronous, and a file does not stay sparse.)
// UBLK_TS_NO_MTIME_STAMP=1 turns the stamp off; UBLK_TS_WRITE_SUBMIT_EACH=0 / =1 never / always
// submits a write alone (for measuring what they save).
constexpr uint64_t kProbeWrites = 64;
constexpr uint64_t kProbePeriod = 4096;

struct LoopState {
  std::atomic<int64_t> stamped_tick{-1};
  std::atomic<bool> stamp{false};
  // While stamping (above): whether writes go alone, and whether the queues watch to decide it
  // (false when UBLK_TS_WRITE_SUBMIT_EACH fixed it). Shared by the device's queues: the writes so
  // far, and how many of this period's watched ones completed inline.
  bool watch = true;
  std::atomic<bool> alone{true};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> probe_inline{0};
};

// One write, just prepared: submits it alone or leaves it to the loop's next submit.
void submit_write(Queue &q, unsigned tag, LoopState &st) {
  if (st.watch) {
    const uint64_t n = st.writes.fetch_add(1, std::memory_order_relaxed) % kProbePeriod;
    if (n < kProbeWrites) {
      // Queues watching at once may blur a period's count; the next period corrects it.
      if (n == 0) st.probe_inline.store(0, std::memory_order_relaxed);
      if (q.submit_now_completed_inline(tag)) st.probe_inline.fetch_add(1, std::memory_order_relaxed);
      if (n == kProbeWrites - 1) st.alone.store(st.probe_inline.load(std::memory_order_relaxed) * 2 >= kProbeWrites, std::memory_order_relaxed);
      return;
    }
  }
  if (st.alone.load(std::memory_order_relaxed)) q.submit_now();
}

int64_t ns_of(const struct timespec &ts) { return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec; }

// Returns whether the loop stamps (false: the writes update the timestamps themselves).
bool stamp_mtime_once_per_tick(LoopState &st, int backing_fd) {
  if (!st.stamp.load(std::memory_order_relaxed)) return false;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  const int64_t now = ns_of(ts);
  int64_t seen = st.stamped_tick.load(std::memory_order_relaxed);
  if (seen == now || !st.stamped_tick.compare_exchange_strong(seen, now, std::memory_order_relaxed)) return true;
  const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  // Not allowed (a file we may write but do not own) or not supported: writes stamp themselves.
  if (futimens(backing_fd, times) < 0) {
    st.stamp.store(false, std::memory_order_relaxed);
    return false;
  }
  return true;
}

int loop_init(DeviceConfig &cfg, const TargetOpts &opts, std::string &why) {
  int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (opts.direct_io) flags |= O_DIRECT;
  int fd = open(opts.backing_path.c_str(), flags);
  if (fd < 0 && errno == EINVAL && opts.direct_io) {
    why = "the backing file's filesystem does not support O_DIRECT; use --buffered_io";
    return -EINVAL;
  }
  if (fd < 0) {
    why = "open " + opts.backing_path;
    return -errno;
  }
  cfg.backing_fd = fd;
  cfg.read_only = opts.read_only;
  auto *st = new LoopState();
  struct stat sb;
  const char *off = getenv("UBLK_TS_NO_MTIME_STAMP");
  // Only regular files carry the timestamps writes update; a block device's are not the point.
  st->stamp = !opts.read_only && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && !(off && *off && strcmp(off, "0") != 0);
  const char *each = getenv("UBLK_TS_WRITE_SUBMIT_EACH");
  if (each && (strcmp(each, "0") == 0 || strcmp(each, "1") == 0)) {
    st->watch = false;
    st->alone = each[0] == '1';
  }
  cfg.target_data = st;
  return 0;
}

void loop_deinit(DeviceConfig &cfg) {
  if (cfg.backing_fd >= 0) close(cfg.backing_fd);
  cfg.backing_fd = -1;
  delete static_cast<LoopState *>(cfg.target_data);
  cfg.target_data = nullptr;
}

void loop_queue_io(Queue &q, unsigned tag) {
  const io_desc &d = q.desc(tag);
  const DeviceConfig &cfg = q.config();
  const __u64 off = cfg.offset_bytes + (d.start_sector << 9);
  const __u32 len = d.nr_sectors << 9;
  const unsigned op = desc_op(&d);

  if (cfg.read_only && op != kOpRead && op != kOpFlush) {
    q.complete(tag, -EROFS);
    return;
  }
  switch (op) {
    case kOpRead:
      q.start_data_rw(tag, false, off, len, false);
      return;
    case kOpWrite: {
      auto &st = *static_cast<LoopState *>(cfg.target_data);
      const bool stamped = stamp_mtime_once_per_tick(st, cfg.backing_fd);
      q.start_data_rw(tag, true, off, len, (d.op_flags & kIoFFua) != 0);
      if (stamped) submit_write(q, tag, st);
      return;
    }
    case kOpFlush: {
      struct io_uring_sqe *sqe = q.get_target_sqe(tag);
      io_uring_prep_fsync(sqe, 1, IORING_FSYNC_DATASYNC);
      sqe->flags = IOSQE_FIXED_FILE;
      return;
    }
    case kOpDiscard:
    case kOpWriteZeroes: {
      // Punching a hole both discards and reads back as zeros; NOUNMAP asks to keep the blocks
      // allocated, which only ZERO_RANGE does.
      int mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
      if (op == kOpWriteZeroes && (d.op_flags & kIoFNoUnmap)) mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE;
      struct io_uring_sqe *sqe = q.get_target_sqe(tag);
      io_uring_prep_fallocate(sqe, 1, mode, (off_t)off, (off_t)len);
      sqe->flags = IOSQE_FIXED_FILE;
      // Remember the op for a retry without ZERO_RANGE (tmpfs and some filesystems lack it).
      q.slot(tag).write = (mode & FALLOC_FL_ZERO_RANGE) != 0;
      q.slot(tag).file_off = off;
      q.slot(tag).len = len;
      return;
    }
    default:
      q.complete(tag, -EOPNOTSUPP);
      return;
  }
}

void loop_io_done(Queue &q, unsigned tag, int res) {
  const io_desc &d = q.desc(tag);
  const unsigned op = desc_op(&d);
  IoSlot &s = q.slot(tag);
  if (res == -EAGAIN) {  // retry the same operation
    loop_queue_io(q, tag);
    return;
  }
  if ((op == kOpWriteZeroes) && s.write && res == -EOPNOTSUPP) {
    // No ZERO_RANGE here: a punched hole reads back as zeros, which is what the caller needs.
    s.write = false;
    struct io_uring_sqe *sqe = q.get_target_sqe(tag);
    io_uring_prep_fallocate(sqe, 1, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, (off_t)s.file_off, (off_t)s.len);
    sqe->flags = IOSQE_FIXED_FILE;
    return;
  }
  if (res < 0) {
    q.complete(tag, res);
    return;
  }
  // Flush, discard and write-zeroes report bytes handled for the statistics.
  q.complete(tag, (op == kOpFlush) ? 0 : (int)(d.nr_sectors << 9));
}

}  // namespace

const TargetOps loop_target_ops = {
    "loop", loop_init, loop_queue_io, loop_io_done, loop_deinit,
};

}  // namespace ublk
