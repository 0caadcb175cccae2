// `list` output: the text layout of ublksrv's `ublk list` (users' scripts parse it), and a JSON
// form. Pure functions: the command gathers the facts, this file only formats them.
//
//   dev id N: nr_hw_queues Q queue_depth D block size B dev_capacity S      (S in 512-byte sectors)
//   \tmax rq size X daemon pid P state S
//   \tflags 0x.. [ NAME NAME ]
//   \tublkc: M:m ublkb: M:m owner: U:G
//   \tqueue i: tid T affinity(0 1 )        only with a state file, as ublksrv needs its json
//   \ttarget {json, keys sorted}           idem; ours adds "zero_copy" and "data_mode"

import type { CtrlDevInfo, DataMode, UblkParams } from '../shared/binding';
import type { DeviceState } from './state-store';
import { flagNames, hex, stateName } from '../shared/kernel';
import { modeFromFlags, zeroCopyLabel } from './features';

export { stateName } from '../shared/kernel';

export interface QueueView {
  tid: number;
  /** CPUs the queue thread may run on; undefined when unknown (thread gone) */
  affinity?: number[];
}

export interface ListEntry {
  info: CtrlDevInfo;
  /** from GET_PARAMS; undefined when the device has none yet */
  params?: UblkParams;
  /** our state file, when the device was created by ublk-ts */
  state?: DeviceState;
  /** one per hardware queue, when known */
  queues?: QueueView[];
}

/** JSON with sorted keys and no spaces, as nlohmann::json::dump() writes ublksrv's target line. */
export function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson(o[k])}`).join(',')}}`;
  }
  if (typeof v === 'bigint') return v.toString();
  return JSON.stringify(v) ?? 'null';
}

/** The data mode: from our state when we have it, else from the device's flags. */
export function dataModeOf(e: ListEntry): DataMode {
  return e.state?.mode ?? modeFromFlags(e.info.flags);
}

/** The target JSON as shown: the target's own keys plus the data path in use. */
export function targetJson(e: ListEntry): Record<string, unknown> | undefined {
  if (!e.state) return undefined;
  const mode = dataModeOf(e);
  return { ...e.state.target, zero_copy: zeroCopyLabel(mode), data_mode: mode };
}

export function formatDevice(e: ListEntry): string {
  const { info, params } = e;
  const basic = params?.basic;
  const devt = params?.devt;
  const blockSize = basic ? 2 ** basic.logicalBsShift : 0;
  const capacity = basic ? basic.devSectors.toString() : '0';
  const names = flagNames(info.flags, 'list');
  const lines = [
    `dev id ${info.devId}: nr_hw_queues ${info.nrHwQueues} queue_depth ${info.queueDepth} block size ${blockSize} dev_capacity ${capacity}`,
    `\tmax rq size ${info.maxIoBufBytes} daemon pid ${info.ublksrvPid} state ${stateName(info.state)}`,
    `\tflags ${hex(info.flags)} [${names.map((n) => ` ${n}`).join('')} ]`,
    `\tublkc: ${devt?.charMajor ?? 0}:${devt?.charMinor ?? 0} ublkb: ${devt?.diskMajor ?? 0}:${devt?.diskMinor ?? 0} owner: ${info.ownerUid}:${info.ownerGid}`,
  ];
  const tj = targetJson(e);
  if (tj) {
    for (let q = 0; q < info.nrHwQueues; q++) {
      const qv = e.queues?.[q] ?? { tid: e.state?.tids[q] ?? 0 };
      const aff = qv.affinity ? qv.affinity.map((c) => `${c} `).join('') : '';
      lines.push(`\tqueue ${q}: tid ${qv.tid} affinity(${aff})`);
    }
    lines.push(`\ttarget ${sortedJson(tj)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The JSON form of one device (`list --json`). */
export function deviceJson(e: ListEntry): Record<string, unknown> {
  const { info, params } = e;
  const basic = params?.basic;
  const devt = params?.devt;
  const mode = dataModeOf(e);
  return {
    dev_id: info.devId,
    nr_hw_queues: info.nrHwQueues,
    queue_depth: info.queueDepth,
    block_size: basic ? 2 ** basic.logicalBsShift : 0,
    dev_capacity: basic ? Number(basic.devSectors) : 0,
    dev_size: basic ? Number(basic.devSectors) * 512 : 0,
    max_rq_size: info.maxIoBufBytes,
    daemon_pid: info.ublksrvPid,
    state: stateName(info.state),
    flags: hex(info.flags),
    flag_names: flagNames(info.flags),
    ublkc: devt ? `${devt.charMajor}:${devt.charMinor}` : null,
    ublkb: devt ? `${devt.diskMajor}:${devt.diskMinor}` : null,
    owner: { uid: info.ownerUid, gid: info.ownerGid },
    data_mode: mode,
    zero_copy: zeroCopyLabel(mode),
    queues: e.state
      ? Array.from({ length: info.nrHwQueues }, (_, q) => {
          const qv = e.queues?.[q] ?? { tid: e.state?.tids[q] ?? 0 };
          return { qid: q, tid: qv.tid, affinity: qv.affinity ?? null };
        })
      : null,
    // threads serving each queue (--threads-per-queue; `tid` above is the first of them): the
    // text layout is ublksrv's and has no place for it
    threads_per_queue: e.state ? e.state.spec.threadsPerQueue : null,
    // --busy-poll, µs (0: off); a state file from before it had none
    busy_poll_us: e.state ? (e.state.spec.busyPoll ?? 0) : null,
    target: targetJson(e) ?? null,
    managed: e.state !== undefined,
  };
}

/** Expands a cpu list such as "0-3,8,10-11" (Cpus_allowed_list in /proc/PID/task/TID/status). */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out;
}
