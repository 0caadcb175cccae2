#include "affinity.h"

#include <cerrno>

#include "ctrl.h"

namespace ublk {

int queue_cpus(__u32 dev_id, unsigned q_id, cpu_set_t *out) {
  cpu_set_t mapped;
  CPU_ZERO(&mapped);
  int ret = ctrl_get_queue_affinity(dev_id, q_id, &mapped);
  if (ret < 0) return ret;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0) return -errno;
  CPU_AND(out, &mapped, &allowed);
  // A cpuset that allows none of the queue's CPUs (a container given CPUs 0-1 of a 4-queue disk
  // on 4 CPUs): the thread cannot run where its I/O is submitted anyway; any allowed CPU will do.
  if (CPU_COUNT(out) == 0) *out = allowed;
  return 0;
}

cpu_set_t thread_cpus(const cpu_set_t &queue, Affinity a, unsigned pick) {
  if (a != Affinity::OneCpu) return queue;
  const int n = CPU_COUNT(&queue);
  cpu_set_t one;
  CPU_ZERO(&one);
  if (n == 0) return one;
  int want = (int)(pick % (unsigned)n);
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &queue)) continue;
    if (want-- == 0) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  return one;
}

}  // namespace ublk
