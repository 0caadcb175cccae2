// Deleting one device, for `ublk-ts del` and the service: ask the device's server to stop and delete
// it (SIGTERM) and wait for the device to disappear. When the server is gone (killed without recovery, crashed) or the
// device is not ours, do it here: STOP_DEV + DEL_DEV. A dead server must never make a disk
// undeletable.

import * as fs from 'node:fs';
import type { NativeBinding } from '../shared/binding';
import { UblkError } from '../shared/errors';
import { errnoCode, friendlyError, getBinding } from './addon/load-binding';
import { StateStore, listKernelDeviceIds, pidAlive, type DeviceState } from './state-store';
import { diskUsers } from './mount-ns';

export interface DelDeps {
  binding: () => NativeBinding;
  store: StateStore;
  kernelIds: () => number[];
  pidAlive: (pid: number) => boolean;
  /** is this pid a ublk-ts server (not a recycled pid)? */
  isOurServer: (pid: number) => boolean;
  kill: (pid: number, sig: NodeJS.Signals) => void;
  sleep: (ms: number) => Promise<void>;
  warn: (text: string) => void;
  /** how long to wait for the device to go after SIGTERM, and for DEL_DEV */
  timeoutMs: number;
  /** how long to wait for a foreign server to exit after STOP_DEV (ublksrv waits 3 s) */
  serverExitMs: number;
  pollMs: number;
  /**
   * What keeps the disk busy (mounts, stacked devices, swap), given its id and "major:minor";
   * del refuses while there is any. Default: mount-ns.ts diskUsers(); absent: not checked.
   */
  inUse?: (devId: number, devt?: string) => string[];
}

export function isUblkTsProcess(pid: number): boolean {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /server-main|ublk-ts/.test(cmd);
  } catch {
    return false;
  }
}

export function defaultDelDeps(): DelDeps {
  return {
    binding: getBinding,
    store: new StateStore(),
    kernelIds: () => listKernelDeviceIds(),
    pidAlive,
    isOurServer: isUblkTsProcess,
    kill: (pid, sig) => process.kill(pid, sig),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    warn: (t) => process.stderr.write(`ublk-ts: ${t}\n`),
    timeoutMs: 30_000,
    serverExitMs: 3_000,
    pollMs: 100,
    inUse: diskUsers,
  };
}

const gone = (err: unknown) => errnoCode(err) === 'ENODEV';

async function exists(b: NativeBinding, devId: number): Promise<boolean> {
  try {
    await b.getDevInfo(devId);
    return true;
  } catch (err) {
    if (gone(err)) return false;
    throw friendlyError(err, { devId });
  }
}

/** Resolves with the promise's value, or rejects with `onTimeout()` after `ms`. */
async function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((_, reject) => {
        t = setTimeout(() => reject(onTimeout()), ms);
      }),
    ]);
  } finally {
    if (t) clearTimeout(t);
  }
}

export type DelOutcome = 'stopped-by-server' | 'deleted' | 'stale-state-removed';

export async function deleteDevice(devId: number, deps: DelDeps): Promise<DelOutcome> {
  let state: DeviceState | undefined;
  let badState = false;
  try {
    state = deps.store.read(devId);
  } catch (err) {
    badState = true;
    deps.warn(`device ${devId}: ${(err as Error).message}`);
  }
  const b = deps.binding();

  let info;
  try {
    info = await b.getDevInfo(devId);
  } catch (err) {
    if (!gone(err)) throw friendlyError(err, { devId });
  }
  if (!info) {
    if (state || badState) {
      deps.store.remove(devId);
      return 'stale-state-removed';
    }
    throw new UblkError(`device ${devId} does not exist`, { errno: 19, code: 'ENODEV', op: 'del' });
  }

  // A mounted disk is not deleted under its filesystem: STOP_DEV would shut the filesystem down
  // with I/O errors (unwritten data lost), and DEL_DEV would then wait for the unmount anyway.
  if (deps.inUse) {
    const p = await b.getParams(devId).catch(() => undefined);
    const users = deps.inUse(devId, p?.devt ? `${p.devt.diskMajor}:${p.devt.diskMinor}` : undefined);
    if (users.length > 0) {
      throw new UblkError(
        `device ${devId} is in use (${users.join('; ')}): unmount it first; deleting it now would cut the ` +
          'filesystem off with I/O errors and lose what it has not written yet',
        { errno: 16, code: 'EBUSY', op: 'del' },
      );
    }
  }

  // A device of `ublk-ts serve`: SIGTERM would stop the whole service. STOP_DEV below instead;
  // the service sees the device's queues end, closes /dev/ublkcN and lets it go.
  const serviceRun = !!state?.service && state.pid === info.ublksrvPid && deps.pidAlive(state.pid);
  if (serviceRun && state) {
    deps.warn(
      `device ${devId} is "${state.service}" of the ublk-ts service (pid ${state.pid}): deleting it; ` +
        'remove it from the service\'s configuration, or a reload (SIGHUP) or restart brings it back',
    );
  }

  // Our server is alive: let it stop and delete its own device (it also removes its state).
  if (!serviceRun && state && state.pid === info.ublksrvPid && deps.pidAlive(state.pid) && deps.isOurServer(state.pid)) {
    deps.kill(state.pid, 'SIGTERM');
    const deadline = Date.now() + deps.timeoutMs;
    for (;;) {
      if (!(await exists(b, devId))) {
        deps.store.remove(devId);
        return 'stopped-by-server';
      }
      if (!deps.pidAlive(state.pid)) break; // it died without deleting: finish the job below
      if (Date.now() >= deadline) {
        throw new UblkError(
          `device ${devId} still exists ${Math.round(deps.timeoutMs / 1000)} s after SIGTERM to its server (pid ${state.pid}): ` +
            `is /dev/ublkb${devId} still open or mounted?`,
          { code: 'ETIMEDOUT', op: 'del' },
        );
      }
      await deps.sleep(deps.pollMs);
    }
  }

  // No live server of ours. STOP_DEV aborts the fetched commands so a foreign server's queues
  // leave; give that server a moment to close /dev/ublkcN, which DEL_DEV waits for.
  try {
    await b.stopDev(devId);
  } catch (err) {
    if (!gone(err)) throw friendlyError(err, { devId });
  }
  const foreign = info.ublksrvPid;
  if (!serviceRun && foreign > 0 && foreign !== process.pid && deps.pidAlive(foreign)) {
    const until = Date.now() + deps.serverExitMs;
    while (deps.pidAlive(foreign) && Date.now() < until) await deps.sleep(deps.pollMs);
  }
  try {
    await withTimeout(
      b.delDev(devId),
      deps.timeoutMs,
      () =>
        new UblkError(
          `DEL_DEV of device ${devId} did not finish within ${Math.round(deps.timeoutMs / 1000)} s: ` +
            `is /dev/ublkb${devId} still open or mounted, or its server (pid ${foreign}) still running?`,
          { code: 'ETIMEDOUT', op: 'DEL_DEV' },
        ),
    );
  } catch (err) {
    if (!gone(err)) throw friendlyError(err, { devId });
  }
  deps.store.remove(devId);
  return 'deleted';
}

