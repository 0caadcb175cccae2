// `ublk-ts list [-n ID] [--json]`: every ublk device the kernel has (ours or not), GET_DEV_INFO +
// GET_PARAMS each, merged with our state file when there is one; ublksrv's layout.

import * as fs from 'node:fs';
import type { NativeBinding } from '../native/binding-types';
import { friendlyError, getBinding, errnoCode } from '../native/load-binding';
import { StateStore, listKernelDeviceIds, kernelDeviceExists, pidAlive, type DeviceState } from '../state-store';
import { deviceJson, formatDevice, parseCpuList, type ListEntry } from '../list-format';
import { UblkError, UsageError } from '../errors';
import { LIMITS } from '../add-options';

export const CONTROL_PATH_DEFAULT = '/dev/ublk-control';

/** The control device; $UBLK_TS_CONTROL overrides it (tests, unusual /dev layouts). */
export function controlPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.UBLK_TS_CONTROL || CONTROL_PATH_DEFAULT;
}

/** Fails with the one thing to do when the driver is not loaded. */
export function requireControl(p: string = controlPath()): void {
  if (!fs.existsSync(p)) throw new UblkError(`${p} not found: load the driver with \`modprobe ublk_drv\``, { code: 'ENOENT' });
}

/** `-n ID` of list, del and recover: a whole number, 0 or more. */
export function parseDevIdArg(v: string | undefined, label = '-n/--number'): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) > LIMITS.maxDevId) {
    throw new UsageError(`${label} must be a whole number from 0 to ${LIMITS.maxDevId}, not ${JSON.stringify(v)}`);
  }
  return Number(v);
}

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

export interface ListOptions {
  number?: string;
  json?: boolean;
}

export async function runList(opts: ListOptions, partial: Partial<ListDeps> = {}): Promise<number> {
  const deps = { ...defaultListDeps(), ...partial };
  const one = parseDevIdArg(opts.number);
  deps.checkControl();

  const entries: ListEntry[] = [];
  if (one !== undefined) {
    entries.push(await gatherEntry(one, deps));
  } else {
    for (const id of deps.kernelIds()) {
      try {
        entries.push(await gatherEntry(id, deps));
      } catch (err) {
        // deleted while we were listing
        if (deps.deviceExists(id)) throw err;
      }
    }
    for (const e of deps.store.stale(deps.deviceExists)) {
      deps.warn(`stale state for device ${e.devId} (no such device in the kernel): remove it with \`ublk-ts del -n ${e.devId}\``);
    }
  }

  if (opts.json) deps.out(`${JSON.stringify(entries.map(deviceJson), null, 2)}\n`);
  else deps.out(entries.map(formatDevice).join(''));
  return 0;
}
