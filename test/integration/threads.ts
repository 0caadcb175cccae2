// The queue threads of a device's server, read from /proc: names (ublkN-qQ, or ublkN-qQ.W with
// several threads per queue), CPU time and the CPUs they may run on.
import * as fs from 'node:fs';
import { parseCpuList } from '../../daemon/list-format';
import { readAffinity } from '../../daemon/cli/device-view';

/**
 * The threads of process `pid` serving a queue of device `id`: its server's pid comes from
 * `serverPid` (fault-helpers.ts, the kernel's answer), an in-process server's is process.pid.
 */
export function queueThreadsOf(pid: number, id: number): Array<{ tid: number; name: string }> {
  const out: Array<{ tid: number; name: string }> = [];
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    let name: string;
    try {
      name = fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
    } catch {
      continue; // a thread that ended meanwhile (a libuv worker, say)
    }
    if (name.startsWith(`ublk${id}-q`)) out.push({ tid: Number(t), name });
  }
  return out;
}

/** utime + stime, in clock ticks, of each queue thread of device `id` in process `pid`, by name. */
export function threadCpuTicks(pid: number, id: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const { tid, name } of queueThreadsOf(pid, id)) {
    const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // fields after the ")" closing the name: state is field 3, utime 14, stime 15
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(name, Number(f[11]) + Number(f[12]));
  }
  return out;
}

/** The CPUs thread `tid` of process `pid` may run on: what `list` shows (its reader). */
export function cpusAllowed(pid: number, tid: number): number[] {
  const cpus = readAffinity(pid, tid);
  if (!cpus) throw new Error(`no Cpus_allowed_list for thread ${tid} of process ${pid}`);
  return cpus;
}

/** The CPUs the block layer maps to hardware queue `q` of /dev/ublkb`id` (the kernel's own map). */
export function queueCpus(id: number, q: number): number[] {
  return parseCpuList(fs.readFileSync(`/sys/block/ublkb${id}/mq/${q}/cpu_list`, 'utf8'));
}
