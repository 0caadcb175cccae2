// The data path: the one place that knows the data modes. A target names a file, an offset and a
// length (DataIo); this moves the request's bytes, fastest way first:
//   zero copy, auto (AUTO_BUF_REG): the kernel put the request's pages at buffer index `tag`
//     before handing it over; one READ_FIXED / WRITE_FIXED per request;
//   zero copy, explicit (REGISTER_IO_BUF): register -> READ/WRITE_FIXED -> unregister, hard-linked
//     (also for an AUTO_BUF_REG request the kernel could not register: NEED_REG_BUF);
//   user copy: the server preads / pwrites /dev/ublkcN itself, through the tag's buffer;
//   copy: the kernel copied the request's bytes into (or will copy them out of) the tag's buffer.
// A socket (DataIo::socket) takes sends and receives instead of writes and reads; the rest is the
// same.
#include <cerrno>

#include "queue_thread.h"

namespace ublk {

__u16 QueueThread::auto_buf_index(unsigned tag) const {
  // The table has `depth` slots (setup): index `depth` is past its end (TestFaults).
  const unsigned every = cfg_.faults.auto_buf_miss_every;
  if (every && tag % every == 0) return (__u16)cfg_.depth;
  return (__u16)tag;
}

// AUTO_BUF_REG with FALLBACK: the kernel could not install this request's pages (NEED_REG_BUF).
bool QueueThread::auto_reg_missed(unsigned tag) const {
  return cfg_.mode == DataMode::ZcAuto && (descs_[tag].op_flags & kIoFNeedRegBuf);
}

bool QueueThread::need_manual_reg(unsigned tag) const {
  return cfg_.mode == DataMode::ZcExplicit || auto_reg_missed(tag);
}

void QueueThread::start_data(unsigned tag, const DataIo &io) {
  IoSlot &s = slots_[tag];
  s.io = io;
  s.done = 0;
  s.error = 0;
  s.uc_second = false;
  s.manual_reg = need_manual_reg(tag);
  submit_data_step(tag);
}

// REGISTER_IO_BUF / UNREGISTER_IO_BUF of request `tag` at buffer-table index `tag`.
void QueueThread::prep_buf_cmd(struct io_uring_sqe *sqe, bool reg, unsigned tag) {
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

void QueueThread::complete_without_data(unsigned tag, int result) {
  const unsigned op = desc_op(&descs_[tag]);
  const bool has_pages = op == kOpRead || op == kOpWrite;  // only these can be registered
  if (cfg_.mode != DataMode::ZcExplicit || !has_pages) {
    complete(tag, result);
    return;
  }
  IoSlot &s = slots_[tag];
  s.io = DataIo{};
  s.io.len = result > 0 ? (uint32_t)result : 0;
  s.done = s.io.len;  // nothing to move: register + unregister only
  s.error = result < 0 ? result : 0;
  s.uc_second = true;
  s.manual_reg = true;
  prep_buf_cmd(get_sqe(), true, tag);
  prep_buf_cmd(get_sqe(), false, tag);
  s.pending = 1;
  data_inflight_ += 1;
}

// A socket transfer: one step, whole (MSG_WAITALL), in the chain the caller may have started.
//   copy:        SENDMSG(prefix + buffer) or SEND_ZC(buffer) after SEND(prefix) / RECV(buffer)
//   zero copy:   [SEND(prefix)] -> [REGISTER] -> SEND_ZC(pages) / READ_FIXED(pages) -> [UNREGISTER]
// The prefix goes first so that a failed prefix cancels the rest of the chain before anything is
// registered; a registered buffer is always released (hard links).
void QueueThread::submit_socket_step(unsigned tag) {
  IoSlot &s = slots_[tag];
  const DataIo &io = s.io;
  const __u32 left = io.len - s.done;
  const bool zc = cfg_.mode == DataMode::ZcAuto || cfg_.mode == DataMode::ZcExplicit;
  const bool prefix = io.prefix_len > 0 && s.done == 0 && io.to_file;
  const int send_flags = MSG_WAITALL | MSG_NOSIGNAL | (io.more ? MSG_MORE : 0);
  struct io_uring_sqe *last = nullptr;
  s.pending = 0;
  s.prefix_in_data = false;

  if (prefix && (zc || io.send_zc || left == 0)) {
    struct io_uring_sqe *p = get_sqe();
    io_uring_prep_send(p, io.file, io.prefix, io.prefix_len, send_flags | (left ? MSG_MORE : 0));
    p->flags = IOSQE_FIXED_FILE | (left || io.link_out ? IOSQE_IO_LINK : 0);
    p->user_data = make_user_data(Kind::DataRw, tag, kOpPrefix);  // its bytes are not the request's
    s.pending++;
    last = p;
  }
  if (left > 0) {
    if (zc && s.manual_reg) prep_buf_cmd(get_sqe(), true, tag);
    struct io_uring_sqe *d = get_sqe();
    if (zc && io.to_file) {
      io_uring_prep_send_zc_fixed(d, io.file, (void *)(uintptr_t)s.done, left, send_flags, 0, tag);
      s.pending++;  // and its notification
    } else if (zc) {
      io_uring_prep_read_fixed(d, io.file, (void *)(uintptr_t)s.done, left, 0, (int)tag);
    } else if (io.to_file && prefix && !io.send_zc) {
      s.iov[0] = {const_cast<void *>(io.prefix), io.prefix_len};
      s.iov[1] = {s.buf, left};
      s.msg = {};
      s.msg.msg_iov = s.iov;
      s.msg.msg_iovlen = 2;
      io_uring_prep_sendmsg(d, io.file, &s.msg, send_flags);
      s.prefix_in_data = true;
    } else if (io.to_file && io.send_zc) {
      io_uring_prep_send_zc(d, io.file, s.buf + s.done, left, send_flags, 0);
      s.pending++;  // and its notification
    } else if (io.to_file) {
      io_uring_prep_send(d, io.file, s.buf + s.done, left, send_flags);
    } else {
      io_uring_prep_recv(d, io.file, s.buf + s.done, left, MSG_WAITALL);
    }
    d->flags = IOSQE_FIXED_FILE | (zc && s.manual_reg ? IOSQE_IO_HARDLINK : 0);
    d->user_data = make_user_data(Kind::DataRw, tag, d->opcode == IORING_OP_SEND_ZC ? kOpSendZc : 0);
    s.pending++;
    last = d;
    if (zc && s.manual_reg) {
      last = get_sqe();
      prep_buf_cmd(last, false, tag);
      s.pending++;
    }
  }
  if (last && io.link_out) last->flags |= IOSQE_IO_LINK;
  data_inflight_ += s.pending;
}

// Submits the next piece of a request's data movement, resuming after `done` bytes.
void QueueThread::submit_data_step(unsigned tag) {
  IoSlot &s = slots_[tag];
  const DataIo &io = s.io;
  if (io.socket) {
    submit_socket_step(tag);
    return;
  }
  const __u32 left = io.len - s.done;
  const __u64 file_off = io.offset + s.done;

  if (cfg_.mode == DataMode::Copy || cfg_.mode == DataMode::UserCopy) {
    struct io_uring_sqe *sqe = get_sqe();
    // User copy moves the data in two steps through the tag's buffer: a request whose bytes go
    // to the file is first read out of /dev/ublkcN, then written; the other way round otherwise.
    bool uc_step = cfg_.mode == DataMode::UserCopy && (io.to_file != s.uc_second);
    if (uc_step) {
      __u64 off = user_copy_offset(q_id_, tag, s.done);
      if (io.to_file) io_uring_prep_read(sqe, kFixedUblkc, s.buf + s.done, left, off);
      else io_uring_prep_write(sqe, kFixedUblkc, s.buf + s.done, left, off);
      sqe->flags = IOSQE_FIXED_FILE;
      sqe->user_data = make_user_data(Kind::UcCopy, tag);
    } else {
      if (io.to_file) io_uring_prep_write(sqe, io.file, s.buf + s.done, left, file_off);
      else io_uring_prep_read(sqe, io.file, s.buf + s.done, left, file_off);
      sqe->rw_flags = io.rw_flags;
      sqe->flags = IOSQE_FIXED_FILE;
      sqe->user_data = make_user_data(Kind::DataRw, tag);
    }
    s.pending = 1;
    data_inflight_ += 1;
    return;
  }

  // Zero copy: the request's pages sit at buffer index `tag`; the fixed-buffer "address" is the
  // byte offset into the request.
  if (s.manual_reg) prep_buf_cmd(get_sqe(), true, tag);

  struct io_uring_sqe *rw = get_sqe();
  void *addr = (void *)(uintptr_t)s.done;
  if (io.to_file) io_uring_prep_write_fixed(rw, io.file, addr, left, file_off, (int)tag);
  else io_uring_prep_read_fixed(rw, io.file, addr, left, file_off, (int)tag);
  rw->rw_flags = io.rw_flags;
  rw->flags = IOSQE_FIXED_FILE | (s.manual_reg ? IOSQE_IO_HARDLINK : 0);
  rw->user_data = make_user_data(Kind::DataRw, tag);
  s.pending = 1;

  if (s.manual_reg) {
    prep_buf_cmd(get_sqe(), false, tag);
    s.pending = 2;
  }
  data_inflight_ += s.pending;
}

void QueueThread::on_data_cqe(Kind kind, unsigned tag, int res, unsigned op, unsigned cqe_flags) {
  IoSlot &s = slots_[tag];
  auto fail = [&s](int err) {
    if (s.error == 0) s.error = err;
  };
  if (kind == Kind::RegBuf) {
    // Only failures produce this CQE (CQE_SKIP_SUCCESS); it was not counted as pending.
    if (res < 0) fail(res);
    return;
  }
  // SEND_ZC counts twice: its result, and the notification (F_NOTIF) after which the pages are
  // ours again; a result without F_MORE (it failed before sending) has no notification to come.
  const bool notif = cqe_flags & IORING_CQE_F_NOTIF;
  const unsigned ends = op == kOpSendZc && !notif && !(cqe_flags & IORING_CQE_F_MORE) ? 2 : 1;
  data_inflight_ -= ends;
  s.pending -= ends;
  const __u32 left = s.io.len - s.done;
  if (notif) {
    // nothing to count: the result came before
  } else if (kind == Kind::UnregBuf) {
    if (res < 0) fail(res);
  } else if (res < 0) {
    fail(res);
  } else if (op == kOpPrefix) {
    if ((unsigned)res < s.io.prefix_len) fail(-EPIPE);
  } else {
    __u32 got = (__u32)res;
    if (s.prefix_in_data) got = got >= s.io.prefix_len ? got - s.io.prefix_len : 0;
    if (got == 0 && left > 0) {
      // end of file inside the disk (the backing file shrank under us), or the peer closed
      fail(-EIO);
    } else {
      s.done += got;
      // a socket's stream has lost its framing when a send stops short
      if (s.io.socket && s.io.to_file && s.done < s.io.len) fail(-EPIPE);
    }
  }
  if (s.pending > 0) return;  // the rest of this step: its unregister, a notification

  if (s.error == -EAGAIN && !s.io.socket) {
    s.error = 0;
    submit_data_step(tag);
    return;
  }
  if (s.error < 0) {
    data_finished(tag, s.error);
    return;
  }
  if (s.done < s.io.len) {  // short read or write: move the rest
    submit_data_step(tag);
    return;
  }
  if (cfg_.mode == DataMode::UserCopy && !s.uc_second) {
    s.uc_second = true;
    s.done = 0;
    submit_data_step(tag);
    return;
  }
  data_finished(tag, (int)s.io.len);
}

void QueueThread::data_finished(unsigned tag, int result) {
  if (slots_[tag].io.then_target && ops_->data_done) ops_->data_done(*this, tag, result);
  else complete(tag, result);
}

}  // namespace ublk
