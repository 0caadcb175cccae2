// Checks before a recovery, shared by `ublk-ts recover` (to fail fast, before a server process is
// started) and the server's DeviceServer.recover():
// - the kernel's view: the device was added with USER_RECOVERY and is waiting (QUIESCED/FAIL_IO);
// - the saved spec goes through the same validator as the command line: a damaged or edited state
//   file must not reach the native code with a relative path, a negative offset or a size the
//   target never agreed to.

import * as path from 'node:path';
import { validateAddOptions, type AddSpec, type RawAddOptions } from './add-options';
import { UblkError, describeError } from './errors';
import type { CtrlDevInfo } from './native/binding-types';
import { UBLK_F } from './features';
import { stateName } from './list-format';

const UBLK_S_DEV_QUIESCED = 2;
const UBLK_S_DEV_FAIL_IO = 3;

/** Throws (EINVAL) unless the device is waiting for a new server. */
export function checkRecoverable(info: CtrlDevInfo): void {
  const devId = info.devId;
  if (!(info.flags & UBLK_F.USER_RECOVERY)) {
    throw new UblkError(`device ${devId} was not added with -r 1: it cannot be recovered`, { code: 'EINVAL', op: 'recover' });
  }
  if (info.state !== UBLK_S_DEV_QUIESCED && info.state !== UBLK_S_DEV_FAIL_IO) {
    throw new UblkError(`device ${devId} is ${stateName(info.state)}, not QUIESCED or FAIL_IO: there is nothing to recover`, {
      code: 'EINVAL',
      op: 'recover',
    });
  }
}

/** The spec as the options `add` would have been given for it. */
export function specToRaw(spec: AddSpec): RawAddOptions {
  const raw: RawAddOptions = {
    type: spec.target,
    number: spec.devId,
    queues: spec.nrQueues,
    depth: spec.depth,
    logicalBlockSize: spec.logicalBlockSize,
    maxIoBufBytes: spec.maxIoBufBytes,
    recovery: spec.recovery ? 1 : 0,
    ...(spec.recoveryReissue ? { recoveryReissue: 1 } : {}),
    ...(spec.recoveryFailIo ? { recoveryFailIo: 1 } : {}),
  };
  if (spec.zeroCopy !== 'off' && spec.zeroCopy !== undefined) {
    raw.zerocopy = true;
    raw.zcMode = spec.zeroCopy;
  }
  if (spec.userCopy) raw.usercopy = true;
  if (spec.batchIo) raw.batchIo = true;
  if (spec.threadsPerQueue !== undefined && spec.threadsPerQueue !== 1) raw.threadsPerQueue = spec.threadsPerQueue;
  if (spec.affinity !== undefined) raw.affinity = spec.affinity;
  if (spec.file !== undefined) raw.file = spec.file;
  if (spec.bufferedIo) raw.bufferedIo = true;
  if (spec.offsetSectors !== 0) raw.offset = spec.offsetSectors;
  if (spec.sizeBytes !== undefined) raw.size = spec.sizeBytes;
  if (spec.readOnly) raw.readOnly = true;
  if (spec.ioScheduler !== undefined) raw.ioScheduler = spec.ioScheduler;
  return raw;
}

/**
 * Re-validates a saved spec for device `devId`; returns the validated copy (the device id set).
 * Throws UblkError (EINVAL) naming the state file's problems.
 */
export function recheckSavedSpec(spec: unknown, devId: number, file: string): AddSpec {
  const bad = (why: string) =>
    new UblkError(`the state file ${file} of device ${devId} is not usable: ${why}; delete the device with \`ublk-ts del -n ${devId}\``, {
      code: 'EINVAL',
      op: 'recover',
    });
  const s = spec as Partial<AddSpec> | null;
  if (!s || typeof s !== 'object') throw bad('no device spec');
  if (s.file !== undefined && (typeof s.file !== 'string' || !path.isAbsolute(s.file))) {
    throw bad(`the backing file ${JSON.stringify(s.file)} is not an absolute path`);
  }
  for (const k of ['recovery', 'recoveryReissue', 'recoveryFailIo', 'bufferedIo', 'readOnly', 'userCopy', 'batchIo', 'foreground'] as const) {
    if (s[k] !== undefined && typeof s[k] !== 'boolean') throw bad(`${k} is not true or false`);
  }
  let checked: AddSpec;
  try {
    checked = validateAddOptions(specToRaw({ ...(s as AddSpec), devId }), { cwd: '/' });
  } catch (err) {
    throw bad(describeError(err));
  }
  return { ...checked, devId, foreground: false };
}
