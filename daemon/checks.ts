// Checks the commands share before they touch the kernel: root, the driver, a device id argument,
// and a state file of ours for the device a command acts on.

import type { NativeBinding } from '../shared/binding';
import { UblkError, UsageError } from '../shared/errors';
import { CONTROL_PATH } from '../shared/kernel';
import { LIMITS } from '../shared/add-options';
import { getBinding } from './addon/load-binding';
import { StateStore } from './state-store';

export function requireRoot(euid: number | undefined = process.geteuid?.()): void {
  if (euid !== 0) throw new UblkError('must be run as root', { code: 'EPERM' });
}

/** Fails with the one thing to do when the driver is not loaded (the addon looks). */
export function requireControl(binding: () => NativeBinding = getBinding): void {
  if (!binding().controlPresent()) {
    throw new UblkError(`${CONTROL_PATH} not found: load the driver with \`modprobe ublk_drv\``, { code: 'ENOENT' });
  }
}

/** `-n ID` of list, del, recover and upgrade: a whole number, 0 or more. */
export function parseDevIdArg(v: string | undefined, label = '-n/--number'): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) > LIMITS.maxDevId) {
    throw new UsageError(`${label} must be a whole number from 0 to ${LIMITS.maxDevId}, not ${JSON.stringify(v)}`);
  }
  return Number(v);
}

export interface OwnDeviceDeps {
  euid?: number;
  store?: StateStore;
  binding?: NativeBinding;
  checkControl?: () => void;
}

/**
 * The checks `recover` and `upgrade` share before asking the kernel anything: root, the driver,
 * and a state file of ours for the device (the new server is started from it). Returns the store.
 */
export function requireOwnDevice(devId: number, op: 'recover' | 'upgrade', deps: OwnDeviceDeps): StateStore {
  requireRoot('euid' in deps ? deps.euid : process.geteuid?.());
  (deps.checkControl ?? (() => requireControl(deps.binding ? () => deps.binding as NativeBinding : getBinding)))();
  const store = deps.store ?? new StateStore();
  if (!store.read(devId)) {
    throw new UblkError(`no ublk-ts state for device ${devId}: only devices added by ublk-ts can be ${op === 'recover' ? 'recovered' : 'upgraded'}`, {
      code: 'ENOENT',
      op,
    });
  }
  return store;
}
