// Control plane: commands to /dev/ublk-control. Each call is synchronous and may block for a long
// time (START_DEV waits for every FETCH, DEL_DEV for the last reference), so the JavaScript
// bindings in ctrl_bindings.cc run them on worker threads and hand back promises.
#pragma once

#include <sched.h>

#include "ublk_cmd.h"

namespace ublk {

constexpr const char *kControlPath = "/dev/ublk-control";

// Each returns 0 (or the command's non-negative result) on success, -errno on failure.
int ctrl_get_features(__u64 *features);
int ctrl_add_dev(ctrl_dev_info *info);  // info->dev_id: wanted id or -1; kernel writes back
int ctrl_del_dev(__u32 dev_id);
int ctrl_start_dev(__u32 dev_id, __s32 pid);
int ctrl_stop_dev(__u32 dev_id);
int ctrl_set_params(__u32 dev_id, const params *p);
int ctrl_get_params(__u32 dev_id, params *p);
int ctrl_get_dev_info(__u32 dev_id, ctrl_dev_info *info);
// The CPUs the block layer maps to queue q_id (blk-mq's map, fixed at ADD_DEV).
int ctrl_get_queue_affinity(__u32 dev_id, unsigned q_id, cpu_set_t *cpus);
int ctrl_start_user_recovery(__u32 dev_id);
int ctrl_end_user_recovery(__u32 dev_id, __s32 pid);
// Live upgrade (UBLK_F_QUIESCE, needs USER_RECOVERY): the kernel stops handing out requests and
// aborts every idle FETCH once each queue has one, so the server can drain and leave; the disk
// then waits QUIESCED for a new server. -EBUSY when some queue had no idle tag within timeout_ms.
int ctrl_quiesce_dev(__u32 dev_id, __u32 timeout_ms);

}  // namespace ublk
