// `ublk-ts recover -n ID`: give a QUIESCED (or FAIL_IO) disk, whose server died with -r 1, a new
// server. Like add, the work happens in a fresh detached server process (it must own
// /dev/ublkcN for the rest of the disk's life); this command waits for its verdict.

import { UblkError, UsageError } from '../errors';
import { StateStore } from '../state-store';
import { parseDevIdArg, requireControl } from './list';
import { printDevice, requireRoot, runInForeground, spawnServer } from './add';
import type { NativeBinding } from '../native/binding-types';
import { friendlyError, getBinding } from '../native/load-binding';
import { checkRecoverable } from '../recovery-checks';

export interface RecoverOptions {
  number?: string;
  foreground?: boolean;
}

export interface RecoverDeps {
  euid?: number;
  store?: StateStore;
  binding?: NativeBinding;
  checkControl?: () => void;
}

/**
 * The checks `recover` and `upgrade` share before asking the kernel anything: root, the driver,
 * and a state file of ours for the device (the new server is started from it). Returns the store.
 */
export function requireOwnDevice(devId: number, op: 'recover' | 'upgrade', deps: RecoverDeps): StateStore {
  requireRoot('euid' in deps ? deps.euid : process.geteuid?.());
  (deps.checkControl ?? (() => requireControl()))();
  const store = deps.store ?? new StateStore();
  if (!store.read(devId)) {
    throw new UblkError(`no ublk-ts state for device ${devId}: only devices added by ublk-ts can be ${op === 'recover' ? 'recovered' : 'upgraded'}`, {
      code: 'ENOENT',
      op,
    });
  }
  return store;
}

export async function runRecover(opts: RecoverOptions, deps: RecoverDeps = {}): Promise<number> {
  const devId = parseDevIdArg(opts.number);
  if (devId === undefined) throw new UsageError('recover needs -n/--number ID');
  const store = requireOwnDevice(devId, 'recover', deps);
  // Fail fast, before a server process is started: the kernel must be waiting for a new server.
  // (The server checks again: the state may change in between.)
  const binding = deps.binding ?? getBinding();
  let info;
  try {
    info = await binding.getDevInfo(devId);
  } catch (err) {
    throw friendlyError(err, { devId });
  }
  checkRecoverable(info);
  if (opts.foreground) return runInForeground({ action: 'recover', devId });
  await spawnServer({ action: 'recover', devId }, { store });
  await printDevice(devId);
  return 0;
}
