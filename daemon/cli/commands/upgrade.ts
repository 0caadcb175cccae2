// `ublk-ts upgrade -n ID`: live upgrade. Replaces a LIVE disk's server with a new one (the
// ublk-ts now installed) without the disk going away: QUIESCE_DEV makes the kernel stop handing
// requests to the old server, which drains, closes /dev/ublkcN and exits, leaving the disk
// QUIESCED (I/O waits, a mounted filesystem notices nothing); then the same path as `recover`
// starts the new server. Needs a disk added with -r 1 on a kernel with UBLK_F_QUIESCE (6.16).

import { UblkError, UsageError } from '../../../shared/errors';
import { pidAlive } from '../../state-store';
import { parseDevIdArg, requireOwnDevice, type OwnDeviceDeps } from '../../checks';
import { printDevice } from '../device-view';
import { spawnServer } from '../../server/spawn';
import type { CtrlDevInfo } from '../../../shared/binding';
import { errnoCode, friendlyError, getBinding } from '../../addon/load-binding';
import { DEV_STATE, stateName, UBLK_F } from '../../../shared/kernel';

export interface UpgradeOptions {
  number?: string;
  /** seconds to wait for the old server to let go (QUIESCE_DEV, then its exit) */
  timeout?: string;
}

export interface UpgradeDeps extends OwnDeviceDeps {
  /** starts the new server (default: the detached server of `recover`) */
  startServer?: (devId: number) => Promise<void>;
  processAlive?: (pid: number) => boolean;
  sleep?: (ms: number) => Promise<void>;
  warn?: (line: string) => void;
  print?: (devId: number) => Promise<void>;
}

/** Throws unless the device can be upgraded live. */
export function checkUpgradable(info: CtrlDevInfo): void {
  const devId = info.devId;
  if (!(info.flags & UBLK_F.USER_RECOVERY)) {
    throw new UblkError(`device ${devId} was not added with -r 1: its server cannot be replaced while it runs`, {
      code: 'EINVAL',
      op: 'upgrade',
    });
  }
  if (info.state !== DEV_STATE.LIVE) {
    const hint = info.state === DEV_STATE.QUIESCED || info.state === DEV_STATE.FAIL_IO ? `: its server is gone, use \`ublk-ts recover -n ${devId}\`` : '';
    throw new UblkError(`device ${devId} is ${stateName(info.state)}, not LIVE${hint}`, { code: 'EINVAL', op: 'upgrade' });
  }
  if (!(info.flags & UBLK_F.QUIESCE)) {
    throw new UblkError(
      `device ${devId} was added without UBLK_F_QUIESCE (this kernel's driver lacks it before Linux 6.16): ` +
        'it cannot be upgraded live; stop I/O and use del + add, or kill its server and `recover`',
      { code: 'ENOTSUP', op: 'upgrade' },
    );
  }
  // QUIESCE_DEV of a batch device cancels its queues with force_abort set, so the requests in
  // flight at that moment fail with EIO (README.md, "Failures": the measurement on Linux 7.3.4).
  if (info.flags & UBLK_F.BATCH_IO) {
    throw new UblkError(
      `device ${devId} uses batch I/O (--batch-io): the kernel fails the I/O in flight when it quiesces a batch device, ` +
        'so it is not upgraded live; stop I/O, then del + add',
      { code: 'ENOTSUP', op: 'upgrade' },
    );
  }
}

export async function runUpgrade(opts: UpgradeOptions, deps: UpgradeDeps = {}): Promise<number> {
  const devId = parseDevIdArg(opts.number);
  if (devId === undefined) throw new UsageError('upgrade needs -n/--number ID');
  let timeoutS = 30;
  if (opts.timeout !== undefined) {
    if (!/^\d+$/.test(opts.timeout) || Number(opts.timeout) < 1 || Number(opts.timeout) > 3600) {
      throw new UsageError(`--timeout must be a whole number of seconds from 1 to 3600, not "${opts.timeout}"`);
    }
    timeoutS = Number(opts.timeout);
  }
  const store = requireOwnDevice(devId, 'upgrade', deps);
  const binding = deps.binding ?? getBinding();
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const isAlive = deps.processAlive ?? pidAlive;
  const warn = deps.warn ?? ((l: string) => process.stderr.write(`${l}\n`));
  const info = await binding.getDevInfo(devId).catch((err: unknown) => {
    throw friendlyError(err, { devId });
  });
  checkUpgradable(info);
  if (info.flags & UBLK_F.USER_RECOVERY_FAIL_IO) {
    warn(`ublk-ts: device ${devId} was added with -e 1: I/O fails (EIO) while the servers change over`);
  }
  const oldPid = info.ublksrvPid;

  try {
    await binding.quiesceDev(devId, timeoutS * 1000);
  } catch (err) {
    if (errnoCode(err) === 'EBUSY') {
      throw new UblkError(
        `QUIESCE_DEV of device ${devId}: every tag of some queue stayed busy for ${timeoutS} s (is its server, pid ${oldPid}, stuck?); ` +
          'the device keeps running with its old server',
        { code: 'EBUSY', op: 'QUIESCE_DEV', cause: err },
      );
    }
    throw friendlyError(err, { devId });
  }

  // The old server drains, hands the device over and exits; the disk then waits QUIESCED.
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const now = await binding.getDevInfo(devId).catch(() => undefined);
    const waiting = now && (now.state === DEV_STATE.QUIESCED || now.state === DEV_STATE.FAIL_IO);
    if (waiting && !(oldPid > 0 && isAlive(oldPid))) break;
    if (!now || now.state === 0) {
      throw new UblkError(`device ${devId} went away during the upgrade (state ${now ? 'DEAD' : 'gone'})`, { code: 'ENODEV', op: 'upgrade' });
    }
    if (Date.now() > deadline) {
      throw new UblkError(
        `device ${devId} is quiesced but its old server (pid ${oldPid}) has not let go after ${timeoutS} s ` +
          `(state ${stateName(now.state)}); once it exits, \`ublk-ts recover -n ${devId}\` starts the new one`,
        { code: 'ETIMEDOUT', op: 'upgrade' },
      );
    }
    await sleep(50);
  }

  try {
    await (deps.startServer ?? ((id: number) => spawnServer({ action: 'recover', devId: id }, { store })))(devId);
  } catch (err) {
    const e = err as Error;
    e.message = `${e.message} (device ${devId} stays QUIESCED: \`ublk-ts recover -n ${devId}\` retries)`;
    throw e;
  }
  await (deps.print ?? ((id: number) => printDevice(id)))(devId);
  return 0;
}
