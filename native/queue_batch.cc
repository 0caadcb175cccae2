// Batch mode of a queue (UBLK_F_BATCH_IO, Linux 7.0): how tags reach the server and how requests
// are committed, when the device was added with --batch-io.
//
// Per-tag mode costs one URING_CMD per request in each direction: the kernel completes a FETCH
// (or COMMIT_AND_FETCH) command per request through task work, and the server sends one
// COMMIT_AND_FETCH per request. Batch mode replaces both:
//   - PREP_IO_CMDS, once at setup: every tag, with its buffer (copy) or buffer index (auto zero
//     copy), becomes ready for requests.
//   - FETCH_IO_CMDS, multishot: each completion carries the tags of any number of new requests,
//     2 bytes each, written into a buffer this queue provides (a one-entry provided-buffer ring
//     consumed piecewise: each completion continues where the last one stopped). When the buffer
//     is used up the command ends; the loop hands the buffer back and fetches again.
//   - COMMIT_IO_CMDS: the results of every request completed in a loop pass, in one command sent
//     right before the next submit. A committed tag takes its next request without a new fetch.
// The data path (target, data modes, buffer table) is the same in both modes.
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "queue_thread.h"

namespace ublk {

int QueueThread::batch_setup(std::string &why) {
  const unsigned depth = cfg_.depth;
  // Elements carry a buffer address only where the kernel copies (copy mode); with AUTO_BUF_REG
  // they name the buffer-table index, and a failed automatic registration falls back to
  // NEED_REG_BUF (registered by hand, as in per-tag mode).
  batch_flags_ = 0;
  if (cfg_.mode == DataMode::Copy) batch_flags_ |= kBatchFHasBufAddr;
  if (cfg_.mode == DataMode::ZcAuto) batch_flags_ |= kBatchFAutoBufRegFallback;
  elem_bytes_ = sizeof(batch_elem) + ((batch_flags_ & kBatchFHasBufAddr) ? sizeof(__u64) : 0);

  const size_t commit_len = page_round((size_t)depth * elem_bytes_);
  fetch_buf_len_ = (unsigned)page_round((size_t)depth * sizeof(__u16));
  const size_t ring_len = page_round(sizeof(struct io_uring_buf));
  batch_mem_len_ = 2 * commit_len + fetch_buf_len_ + ring_len;
  void *m = mmap(nullptr, batch_mem_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) {
    batch_mem_ = nullptr;
    why = "allocating batch buffers";
    return -errno;
  }
  batch_mem_ = (uint8_t *)m;
  commit_bufs_[0] = batch_mem_;
  commit_bufs_[1] = batch_mem_ + commit_len;
  fetch_buf_ = batch_mem_ + 2 * commit_len;
  fetch_ring_ = (struct io_uring_buf_ring *)(fetch_buf_ + fetch_buf_len_);

  // One provided buffer (group 0) for the fetch command's tags, consumed incrementally.
  io_uring_buf_ring_init(fetch_ring_);
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = (__u64)(uintptr_t)fetch_ring_;
  reg.ring_entries = 1;
  reg.bgid = 0;
  reg.pad = kPbufRingInc;  // the `flags` field of newer headers
  int ret = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (ret < 0) {
    why = "registering the fetch buffer ring (needs Linux 6.12 for incremental buffers)";
    return ret;
  }

  // PREP: every tag at once; its element array is the first commit buffer, free again as soon as
  // the command was issued (the kernel copies the elements in).
  for (unsigned t = 0; t < depth; t++) put_batch_elem(commit_bufs_[0], t, t, 0);
  prep_batch_cmd(kIoPrepIoCmds, commit_bufs_[0], depth, kBatchPrep);
  commit_cur_ = 1;
  commit_count_ = 0;
  queue_batch_fetch();
  return 0;
}

// Element `i` of a PREP or COMMIT array: the tag, its buffer-table index (AUTO_BUF_REG: the same
// as the tag, as in per-tag mode; see auto_buf_index), the result, and in copy mode the tag's buffer.
void QueueThread::put_batch_elem(uint8_t *array, unsigned i, unsigned tag, int result) {
  batch_elem *e = (batch_elem *)(array + (size_t)i * elem_bytes_);
  e->tag = (__u16)tag;
  e->buf_index = auto_buf_index(tag);
  e->result = result;
  if (batch_flags_ & kBatchFHasBufAddr) {
    __u64 addr = (__u64)(uintptr_t)slots_[tag].buf;
    memcpy(e + 1, &addr, sizeof(addr));
  }
}

void QueueThread::batch_teardown() {
  // The ring is gone (its exit dropped the buffer ring registration): only memory is left.
  if (batch_mem_) munmap(batch_mem_, batch_mem_len_);
  batch_mem_ = nullptr;
  fetch_ring_ = nullptr;
  fetch_buf_ = nullptr;
  commit_bufs_[0] = commit_bufs_[1] = nullptr;
}

void QueueThread::prep_batch_cmd(unsigned op, void *elems, unsigned nr, BatchOp which) {
  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, kFixedUblkc, elems, nr * elem_bytes_, 0);
  sqe->flags = IOSQE_FIXED_FILE;
  sqe->cmd_op = op;
  batch_io *h = (batch_io *)sqe->cmd;
  memset(h, 0, sizeof(*h));
  h->q_id = (__u16)q_id_;
  h->flags = batch_flags_;
  h->nr_elem = (__u16)nr;
  h->elem_bytes = (__u8)elem_bytes_;
  // The element count rides along (tag bits 2-15) so a short COMMIT result can be recognised.
  sqe->user_data = make_user_data(Kind::BatchCmd, (unsigned)which | (nr << 2));
  cmds_inflight_++;
}

void QueueThread::queue_batch_fetch() {
  // Hand the (whole) tag buffer back to the ring, then start a new multishot fetch into it.
  io_uring_buf_ring_add(fetch_ring_, fetch_buf_, fetch_buf_len_, 0, io_uring_buf_ring_mask(1), 0);
  io_uring_buf_ring_advance(fetch_ring_, 1);
  fetch_off_ = 0;

  struct io_uring_sqe *sqe = get_sqe();
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, kFixedUblkc, nullptr, 0, 0);
  sqe->flags = IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->cmd_op = kIoFetchIoCmds;
  sqe->uring_cmd_flags = kUringCmdMultishot;
  sqe->buf_group = 0;
  batch_io *h = (batch_io *)sqe->cmd;
  memset(h, 0, sizeof(*h));
  h->q_id = (__u16)q_id_;
  h->nr_elem = (__u16)(fetch_buf_len_ / sizeof(__u16));
  h->elem_bytes = sizeof(__u16);
  sqe->user_data = make_user_data(Kind::BatchCmd, kBatchFetch);
  cmds_inflight_++;
}

void QueueThread::flush_commits() {
  if (!cfg_.batch || commit_count_ == 0) return;
  prep_batch_cmd(kIoCommitIoCmds, commit_bufs_[commit_cur_], commit_count_, kBatchCommit);
  // The kernel reads the elements while the next submit issues the command; the other buffer
  // fills meanwhile. The loop flushes at most twice between two submits (at the end of a pass,
  // then right before its submit-and-wait), so a buffer is reused only after that submit.
  commit_cur_ ^= 1;
  commit_count_ = 0;
}

void QueueThread::on_batch_cqe(unsigned ud_tag, int res, unsigned cqe_flags) {
  const unsigned which = batch_op_of(ud_tag), nr = ud_tag >> 2;
  switch (which) {
    case kBatchFetch: {
      if (res > 0) {
        const unsigned end = fetch_off_ + (unsigned)res;
        for (unsigned off = fetch_off_; off + sizeof(__u16) <= end && off + sizeof(__u16) <= fetch_buf_len_; off += sizeof(__u16)) {
          __u16 tag;
          memcpy(&tag, fetch_buf_ + off, sizeof(tag));
          // A tag out of range or one we still hold breaks the protocol: stop, loudly, rather
          // than leave that request unanswered.
          if (tag >= cfg_.depth || slots_[tag].busy) {
            on_command_refused(-EPROTO, "FETCH_IO_CMDS (a tag not ours to take)");
            continue;
          }
          start_request(tag);
        }
        fetch_off_ = end;
      }
      if (cqe_flags & IORING_CQE_F_MORE) return;
      cmds_inflight_--;
      // The command ended: its buffer is used up (ENOBUFS, or a last completion without MORE):
      // fetch again, unless the kernel aborted it (the device is stopping) or refused it.
      if (res >= 0 || res == -ENOBUFS) {
        if (!stopping_) queue_batch_fetch();
        return;
      }
      on_command_refused(res, "FETCH_IO_CMDS");
      return;
    }
    case kBatchPrep:
      cmds_inflight_--;
      if (res < 0) on_command_refused(res, "PREP_IO_CMDS");
      return;
    case kBatchCommit:
      cmds_inflight_--;
      // The result is the bytes of elements handled. Short means the kernel refused an element
      // (a tag we do not own: a bug of ours) and left the rest uncommitted: stop, loudly.
      if (res < 0) on_command_refused(res, "COMMIT_IO_CMDS");
      else if ((unsigned)res < nr * elem_bytes_) on_command_refused(-EPROTO, "COMMIT_IO_CMDS (partial)");
      return;
    default:
      return;
  }
}

}  // namespace ublk
