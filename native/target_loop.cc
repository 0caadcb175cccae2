// loop target: the disk is a file (or block device), `offset_bytes` into it.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "target.h"

namespace ublk {

namespace {

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
  return 0;
}

void loop_deinit(DeviceConfig &cfg) {
  if (cfg.backing_fd >= 0) close(cfg.backing_fd);
  cfg.backing_fd = -1;
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
    case kOpWrite:
      q.start_data_rw(tag, true, off, len, (d.op_flags & kIoFFua) != 0);
      return;
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
