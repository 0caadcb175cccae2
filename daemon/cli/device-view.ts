// What `list` shows about a device, gathered from the kernel (GET_DEV_INFO, GET_PARAMS), our state
// file and /proc; `add`, `recover` and `upgrade` print the device they made the same way.

import * as fs from 'node:fs';
import type { NativeBinding } from '../../shared/binding';
import { friendlyError, getBinding, errnoCode } from '../addon/load-binding';
import { StateStore, listKernelDeviceIds, kernelDeviceExists, pidAlive, type DeviceState } from '../state-store';
import { formatDevice, parseCpuList, type ListEntry } from '../list-format';
import { requireControl } from '../checks';

/** CPUs a thread may run on, from /proc (sched_getaffinity without a syscall binding). */
export function readAffinity(pid: number, tid: number): number[] | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const m = /^Cpus_allowed_list:\s*(.*)$/m.exec(status);
    return m ? parseCpuList(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface ListDeps {
  binding: () => NativeBinding;
  store: StateStore;
  kernelIds: () => number[];
  deviceExists: (devId: number) => boolean;
  readAffinity: (pid: number, tid: number) => number[] | undefined;
  pidAlive: (pid: number) => boolean;
  out: (text: string) => void;
  warn: (text: string) => void;
  checkControl: () => void;
}

export function defaultListDeps(): ListDeps {
  return {
    binding: getBinding,
    store: new StateStore(),
    kernelIds: () => listKernelDeviceIds(),
    deviceExists: kernelDeviceExists,
    readAffinity,
    pidAlive,
    out: (t) => process.stdout.write(t),
    warn: (t) => process.stderr.write(`ublk-ts: ${t}\n`),
    checkControl: () => requireControl(),
  };
}

/** Everything `list` shows about one device. Throws (friendly) when the device does not exist. */
export async function gatherEntry(devId: number, deps: Pick<ListDeps, 'binding' | 'store' | 'readAffinity' | 'pidAlive' | 'warn'>): Promise<ListEntry> {
  const b = deps.binding();
  let info;
  try {
    info = await b.getDevInfo(devId);
  } catch (err) {
    throw friendlyError(err, { devId });
  }
  let params;
  try {
    params = await b.getParams(devId);
  } catch (err) {
    // A device between ADD_DEV and SET_PARAMS has none; show what there is.
    if (errnoCode(err) === 'ENODEV') throw friendlyError(err, { devId });
  }
  let state: DeviceState | undefined;
  try {
    state = deps.store.read(devId);
  } catch (err) {
    deps.warn(`device ${devId}: ${(err as Error).message}`);
  }
  // The id may have been reused by another server since our file was written.
  if (state && info.ublksrvPid > 0 && state.pid !== info.ublksrvPid) {
    deps.warn(`device ${devId}: state file names server pid ${state.pid}, the kernel says ${info.ublksrvPid}: ignoring the file`);
    state = undefined;
  }
  const queues = state?.tids.map((tid) => ({
    tid,
    affinity: state && deps.pidAlive(state.pid) ? deps.readAffinity(state.pid, tid) : undefined,
  }));
  return { info, params, state, queues };
}

/** Prints a device like `list -n ID` does. */
export async function printDevice(devId: number, out: (t: string) => void = (t) => process.stdout.write(t)): Promise<void> {
  const deps = defaultListDeps();
  out(formatDevice(await gatherEntry(devId, deps)));
}
