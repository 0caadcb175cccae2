#include "ctrl.h"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <cstring>

namespace ublk {

namespace {

// One short-lived SQE128 ring per command: control commands are rare, and a private ring keeps
// every call independent of the others (they run concurrently on libuv's worker threads).
int send(unsigned op, const ctrl_cmd &cmd) {
  int fd = open(kControlPath, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -errno;

  struct io_uring ring;
  int ret = io_uring_queue_init(4, &ring, IORING_SETUP_SQE128);
  if (ret < 0) {
    close(fd);
    return ret;
  }

  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  // SQE128: the slot is twice sizeof(*sqe); the compiler cannot know that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
  std::memset(static_cast<void *>(sqe), 0, 128);
#pragma GCC diagnostic pop
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd;
  sqe->cmd_op = op;
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));

  ret = io_uring_submit(&ring);
  if (ret >= 0) {
    struct io_uring_cqe *cqe;
    do {
      ret = io_uring_wait_cqe(&ring, &cqe);
    } while (ret == -EINTR);
    if (ret == 0) {
      ret = cqe->res;
      io_uring_cqe_seen(&ring, cqe);
    }
  }
  io_uring_queue_exit(&ring);
  close(fd);
  return ret;
}

ctrl_cmd cmd_for(__u32 dev_id) {
  ctrl_cmd c;
  std::memset(&c, 0, sizeof(c));
  c.dev_id = dev_id;
  c.queue_id = 0xffff;
  return c;
}

}  // namespace

int ctrl_get_features(__u64 *features) {
  ctrl_cmd c = cmd_for(~0U);
  c.addr = (__u64)(uintptr_t)features;
  c.len = sizeof(*features);
  return send(kCmdGetFeatures, c);
}

int ctrl_add_dev(ctrl_dev_info *info) {
  // The kernel insists that the id in the command and in the payload agree.
  ctrl_cmd c = cmd_for(info->dev_id);
  c.addr = (__u64)(uintptr_t)info;
  c.len = sizeof(*info);
  return send(kCmdAddDev, c);
}

int ctrl_del_dev(__u32 dev_id) { return send(kCmdDelDev, cmd_for(dev_id)); }

int ctrl_start_dev(__u32 dev_id, __s32 pid) {
  ctrl_cmd c = cmd_for(dev_id);
  c.data[0] = (__u64)pid;  // reported back as ublksrv_pid
  return send(kCmdStartDev, c);
}

int ctrl_stop_dev(__u32 dev_id) { return send(kCmdStopDev, cmd_for(dev_id)); }

int ctrl_set_params(__u32 dev_id, const params *p) {
  ctrl_cmd c = cmd_for(dev_id);
  c.addr = (__u64)(uintptr_t)p;
  c.len = sizeof(*p);
  return send(kCmdSetParams, c);
}

int ctrl_get_params(__u32 dev_id, params *p) {
  std::memset(p, 0, sizeof(*p));
  p->len = sizeof(*p);
  ctrl_cmd c = cmd_for(dev_id);
  c.addr = (__u64)(uintptr_t)p;
  c.len = sizeof(*p);
  return send(kCmdGetParams, c);
}

int ctrl_get_dev_info(__u32 dev_id, ctrl_dev_info *info) {
  std::memset(info, 0, sizeof(*info));
  ctrl_cmd c = cmd_for(dev_id);
  c.addr = (__u64)(uintptr_t)info;
  c.len = sizeof(*info);
  return send(kCmdGetDevInfo, c);
}

int ctrl_get_queue_affinity(__u32 dev_id, unsigned q_id, cpu_set_t *cpus) {
  ctrl_cmd c = cmd_for(dev_id);
  c.data[0] = q_id;
  c.addr = (__u64)(uintptr_t)cpus;
  c.len = sizeof(*cpus);  // the kernel copies min(len, its cpumask size)
  return send(kCmdGetQueueAffinity, c);
}

int ctrl_start_user_recovery(__u32 dev_id) { return send(kCmdStartUserRecovery, cmd_for(dev_id)); }

int ctrl_end_user_recovery(__u32 dev_id, __s32 pid) {
  ctrl_cmd c = cmd_for(dev_id);
  c.data[0] = (__u64)pid;
  return send(kCmdEndUserRecovery, c);
}

int ctrl_quiesce_dev(__u32 dev_id, __u32 timeout_ms) {
  ctrl_cmd c = cmd_for(dev_id);
  c.data[0] = timeout_ms;  // 0 would wait forever
  return send(kCmdQuiesceDev, c);
}

}  // namespace ublk
