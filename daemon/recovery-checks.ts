// Checks before a recovery, shared by `ublk-ts recover` (to fail fast, before a server process is
// started) and the server's DeviceServer.recover():
// - the kernel's view: the device was added with USER_RECOVERY and is waiting (QUIESCED/FAIL_IO);
// - the saved spec goes through the same validator as the command line: a damaged or edited state
//   file must not reach the native code with a relative path, a negative offset or a size the
//   target never agreed to.

import type { CtrlDevInfo } from '../shared/binding';
import { UblkError } from '../shared/errors';
import { DEV_STATE, stateName, UBLK_F } from '../shared/kernel';
import { show } from '../shared/options';
import { migrateSpec, reviveSpec, type AddSpec } from './spec';

/** Throws (EINVAL) unless the device is waiting for a new server. */
export function checkRecoverable(info: CtrlDevInfo): void {
  const devId = info.devId;
  if (!(info.flags & UBLK_F.USER_RECOVERY)) {
    throw new UblkError(`device ${devId} was not added with -r 1: it cannot be recovered`, { code: 'EINVAL', op: 'recover' });
  }
  if (info.state !== DEV_STATE.QUIESCED && info.state !== DEV_STATE.FAIL_IO) {
    throw new UblkError(`device ${devId} is ${stateName(info.state)}, not QUIESCED or FAIL_IO: there is nothing to recover`, {
      code: 'EINVAL',
      op: 'recover',
    });
  }
}

/**
 * Re-validates a saved spec for device `devId`; returns the validated copy (the device id set).
 * Throws UblkError (EINVAL) naming the state file's problems: a value that does not check, or one
 * that checks only once changed (a relative path made absolute) was not written by ublk-ts.
 */
export function recheckSavedSpec(spec: unknown, devId: number, file: string): AddSpec {
  const bad = (why: string) =>
    new UblkError(`the state file ${file} of device ${devId} is not usable: ${why}; delete the device with \`ublk-ts del -n ${devId}\``, {
      code: 'EINVAL',
      op: 'recover',
    });
  if (!spec || typeof spec !== 'object') throw bad('no device spec');
  const { spec: checked, problems } = reviveSpec(spec);
  if (!checked) throw bad(problems.join('; '));
  const saved = migrateSpec(spec as Record<string, unknown>).target as Record<string, unknown>;
  for (const [k, v] of Object.entries(saved)) {
    const now = (checked.target as Record<string, unknown>)[k];
    if (JSON.stringify(v) !== JSON.stringify(now)) throw bad(`target.${k} ${show(v)} is not as ublk-ts writes it (${show(now)})`);
  }
  return { ...checked, id: devId };
}
