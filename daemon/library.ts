// ublk-ts as a library: `import { createDevice } from 'ublk-ts'` serves a BlockTarget written in
// TypeScript or JavaScript as /dev/ublkbN from the caller's own process (root needed, as for every
// ublk disk). The device is the js target's (targets/js.ts), with the common add options.
//
//   const disk = await createDevice({ size: 1 << 30, read(off, len, into) {...}, write(off, data) {...} });
//   console.log(disk.path);   // "/dev/ublkb0"
//   await disk.stop();

import { UsageError } from '../shared/errors';
import { createLogger, nullLogger, type Log } from '../shared/log';
import type { RawOptions } from '../shared/options';
import type { BlockTarget } from '../targets/js-api';
import { getBinding } from './addon/load-binding';
import { requireControl, requireRoot } from './checks';
import { DeviceServer } from './device-server';
import { checkAddOptions } from './spec';
import { StateStore } from './state-store';

export type { BlockError, BlockTarget, BlockTargetFactory } from '../targets/js-api';

/** The common options of `ublk-ts add` (same names as in config files), and the js target's. */
export interface DeviceOptions {
  /** /dev/ublkbID; -1 (default) lets the kernel choose */
  id?: number;
  queues?: number;
  depth?: number;
  maxIoBufBytes?: number | string;
  readOnly?: boolean;
  affinity?: 'cpu' | 'queue' | 'none';
  /** µs a queue polls its ring after a pass with work before it sleeps (default 0: sleeps at once) */
  busyPoll?: number;
  ioScheduler?: string;
  /** a request not settled after this many seconds fails with ETIMEDOUT (default 30; 0: never) */
  ioTimeout?: number;
  /** where the device's events go (pino-like: info/warn/error); default: nowhere, or JSON lines with `log: true` */
  log?: Log | boolean;
}

export interface BlockDevice {
  devId: number;
  /** "/dev/ublkbN" */
  path: string;
  /** Stops and deletes the disk (the target's close() is called once its queues are gone). */
  stop(): Promise<void>;
}

/** Serves `target` as a new ublk disk; resolves once the disk is live. */
export async function createDevice(target: BlockTarget, options: DeviceOptions = {}): Promise<BlockDevice> {
  const { log: logOpt, ...rest } = options;
  const raw: RawOptions = { ...rest, target: 'js' };
  const r = checkAddOptions(raw, { source: 'file', cwd: process.cwd(), label: (k) => `options.${k}` });
  if (!r.spec) throw new UsageError(r.problems);
  requireRoot();
  requireControl();
  const log: Log = logOpt === true ? createLogger() : logOpt ? logOpt : nullLogger;
  const ds = new DeviceServer(r.spec, { binding: getBinding(), store: new StateStore(), log, targetInstance: target });
  const state = await ds.start();
  return {
    devId: state.devId,
    path: `/dev/ublkb${state.devId}`,
    stop: () => ds.stop('stopped by its program'),
  };
}
