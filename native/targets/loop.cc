// loop target: the disk is a file or a block device, `offset` bytes into it. The only native code
// that knows about file offsets. Options (targets/loop.ts): path, directIo, offset, readOnly,
// writeSubmit ("auto" | "alone" | "batched"), mtimeStamp.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "../queue_thread.h"

namespace ublk {

namespace {

// Why the loop target stamps the backing file's mtime itself, and submits some writes alone:
// a write that must update the file's timestamps cannot complete without blocking, so io_uring
// hands it to an io-wq worker; stamping once per clock tick keeps the writes of that tick inline.
// On a store that copies inline (a RAM disk) a batch of writes can outlast the tick, so writes
// are submitted alone there; on a disk that completes by interrupt batching is cheaper. The loop
// watches which case it is in: the first kProbeWrites writes of every kProbePeriod go alone, and
// if most completed inside their own submit the rest of the period's writes go alone too.
// Measurements and history: bench/README.md, "The loop target's backing writes".
constexpr uint64_t kProbeWrites = 64;
constexpr uint64_t kProbePeriod = 4096;

enum class WriteSubmit { Auto, Alone, Batched };

struct LoopState {
  int fd = -1;
  uint64_t offset = 0;
  std::atomic<int64_t> stamped_tick{-1};
  std::atomic<bool> stamp{false};
  // While stamping: whether writes go alone, and whether the queues watch to decide it (false
  // when the writeSubmit option fixed it). Shared by the device's queues: the writes so far, and
  // how many of this period's watched ones completed inline.
  bool watch = true;
  std::atomic<bool> alone{true};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> probe_inline{0};
};

// What one tag remembers between its submit and its completion.
struct LoopTag {
  uint64_t off;
  uint32_t len;
  bool zero_range;  // a write-zeroes sent as FALLOC_FL_ZERO_RANGE (retried as a punched hole)
};

enum LoopOp : unsigned { kOpSync = 0, kOpFallocate = 1 };

LoopState &state(QueueThread &q) { return *static_cast<LoopState *>(q.target_device().data); }

// One write, just prepared: submits it alone or leaves it to the loop's next submit.
void submit_write(QueueThread &q, unsigned tag, LoopState &st) {
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
bool stamp_mtime_once_per_tick(LoopState &st) {
  if (!st.stamp.load(std::memory_order_relaxed)) return false;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);  // the clock file timestamps come from
  const int64_t now = ns_of(ts);
  int64_t seen = st.stamped_tick.load(std::memory_order_relaxed);
  if (seen == now || !st.stamped_tick.compare_exchange_strong(seen, now, std::memory_order_relaxed)) return true;
  const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  // Not allowed (a file we may write but do not own) or not supported: writes stamp themselves.
  if (futimens(st.fd, times) < 0) {
    st.stamp.store(false, std::memory_order_relaxed);
    return false;
  }
  return true;
}

int loop_init(TargetDevice &dev, const TargetArgs &args, std::string &why) {
  std::string path, write_submit = "auto";
  bool direct_io = true, read_only = false, mtime_stamp = true;
  uint64_t offset = 0;
  if (!args.str("path", &path, why, true) || !args.flag("directIo", &direct_io, why) ||
      !args.flag("readOnly", &read_only, why) || !args.u64("offset", &offset, why) ||
      !args.str("writeSubmit", &write_submit, why) || !args.flag("mtimeStamp", &mtime_stamp, why))
    return -EINVAL;
  if (write_submit != "auto" && write_submit != "alone" && write_submit != "batched") {
    why = "loop option writeSubmit must be auto, alone or batched, not " + write_submit;
    return -EINVAL;
  }
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (direct_io) flags |= O_DIRECT;
  int fd = open(path.c_str(), flags);
  if (fd < 0 && errno == EINVAL && direct_io) {
    why = "the backing file's filesystem does not support O_DIRECT; use --buffered_io";
    return -EINVAL;
  }
  if (fd < 0) {
    why = "open " + path;
    return -errno;
  }
  auto *st = new LoopState();
  st->fd = fd;
  st->offset = offset;
  struct stat sb;
  // Only regular files carry the timestamps writes update; a block device's are not the point.
  st->stamp = mtime_stamp && !read_only && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
  if (write_submit != "auto") {
    st->watch = false;
    st->alone = write_submit == "alone";
  }
  dev.files.push_back(fd);
  dev.tag_bytes = sizeof(LoopTag);
  dev.data = st;
  return 0;
}

void loop_deinit(TargetDevice &dev) {
  auto *st = static_cast<LoopState *>(dev.data);
  if (st && st->fd >= 0) close(st->fd);
  delete st;
  dev.data = nullptr;
  dev.files.clear();
}

void prep_fallocate(QueueThread &q, unsigned tag, int mode) {
  const LoopTag &t = q.tag_state<LoopTag>(tag);
  struct io_uring_sqe *sqe = q.target_sqe(tag, kOpFallocate);
  io_uring_prep_fallocate(sqe, QueueThread::target_file(0), mode, (off_t)t.off, (off_t)t.len);
  sqe->flags |= IOSQE_FIXED_FILE;
}

void loop_queue_io(QueueThread &q, unsigned tag) {
  const io_desc &d = q.desc(tag);
  LoopState &st = state(q);
  const uint64_t off = st.offset + (d.start_sector << 9);
  const uint32_t len = d.nr_sectors << 9;
  const unsigned op = desc_op(&d);

  DataIo io;
  io.file = QueueThread::target_file(0);
  io.offset = off;
  io.len = len;
  switch (op) {
    case kOpRead:
      q.start_data(tag, io);
      return;
    case kOpWrite: {
      const bool stamped = stamp_mtime_once_per_tick(st);
      io.to_file = true;
      if (d.op_flags & kIoFFua) io.rw_flags = RWF_DSYNC;
      q.start_data(tag, io);
      if (stamped) submit_write(q, tag, st);
      return;
    }
    case kOpFlush: {
      struct io_uring_sqe *sqe = q.target_sqe(tag, kOpSync);
      io_uring_prep_fsync(sqe, QueueThread::target_file(0), IORING_FSYNC_DATASYNC);
      sqe->flags |= IOSQE_FIXED_FILE;
      return;
    }
    default: {  // discard, write-zeroes (the engine lets through only what caps says we serve)
      // Punching a hole both discards and reads back as zeros; NOUNMAP asks to keep the blocks
      // allocated, which only ZERO_RANGE does.
      LoopTag &t = q.tag_state<LoopTag>(tag);
      t.off = off;
      t.len = len;
      t.zero_range = op == kOpWriteZeroes && (d.op_flags & kIoFNoUnmap);
      prep_fallocate(q, tag, FALLOC_FL_KEEP_SIZE | (t.zero_range ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE));
      return;
    }
  }
}

void loop_io_done(QueueThread &q, const TargetCqe &c) {
  const unsigned tag = c.tag;
  LoopTag &t = q.tag_state<LoopTag>(tag);
  if (c.res == -EAGAIN) {  // retry the same operation
    loop_queue_io(q, tag);
    return;
  }
  if (c.op == kOpFallocate && t.zero_range && c.res == -EOPNOTSUPP) {
    // No ZERO_RANGE here (tmpfs and some filesystems): a punched hole reads back as zeros.
    t.zero_range = false;
    prep_fallocate(q, tag, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE);
    return;
  }
  if (c.res < 0) {
    q.complete(tag, c.res);
    return;
  }
  // Discard and write-zeroes report the bytes handled, for the statistics; a flush none.
  q.complete(tag, c.op == kOpSync ? 0 : (int)t.len);
}

}  // namespace

extern const TargetOps loop_target = {
    "loop",
    {kAllDataModes, nullptr, /*flush*/ true, /*discard*/ true, /*write_zeroes*/ true, /*fua*/ true},
    loop_init,
    loop_deinit,
    loop_queue_io,
    loop_io_done,
    nullptr,  // init_queue
    nullptr,  // deinit_queue
    nullptr,  // data_done
    nullptr,  // handle_event
    nullptr,  // pass_done
    nullptr,  // probe
    nullptr,  // counters
};

}  // namespace ublk
