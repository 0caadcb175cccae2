// `ublk-ts recover -n ID [-t TYPE TARGET-OPTIONS]`: give a QUIESCED (or FAIL_IO) disk, whose server
// died with -r 1, a new server. Like add, the work happens in a fresh detached server process (it
// must own /dev/ublkcN for the rest of the disk's life); this command waits for its verdict.
// Scripts written for ublksrv pass the target again (`recover -t loop -f FILE -n N`): accepted, and
// checked against what the disk was added with.

import { UsageError } from '../../../shared/errors';
import type { RawOptions } from '../../../shared/options';
import { friendlyError, getBinding } from '../../addon/load-binding';
import { parseDevIdArg, requireOwnDevice, type OwnDeviceDeps } from '../../checks';
import { checkRecoverable, recheckSavedSpec } from '../../recovery-checks';
import { checkSameTarget } from '../../spec';
import { runInForeground } from '../../server/foreground';
import { spawnServer } from '../../server/spawn';
import { printDevice } from '../device-view';

export interface RecoverOptions {
  number?: string;
  foreground?: boolean;
  /** -t and the target's options, by key, as the command line gave them */
  target?: RawOptions;
  cwd?: string;
}

export async function runRecover(opts: RecoverOptions, deps: OwnDeviceDeps = {}): Promise<number> {
  const devId = parseDevIdArg(opts.number);
  if (devId === undefined) throw new UsageError('recover needs -n/--number ID');
  const store = requireOwnDevice(devId, 'recover', deps);
  if (opts.target && Object.values(opts.target).some((v) => v !== undefined)) {
    const saved = recheckSavedSpec(store.read(devId)?.spec, devId, store.fileFor(devId));
    checkSameTarget(opts.target, saved, devId, opts.cwd ?? process.cwd());
  }
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
  if (opts.foreground) return runInForeground({ action: 'recover', devId }, (id) => printDevice(id));
  await spawnServer({ action: 'recover', devId }, { store });
  await printDevice(devId);
  return 0;
}
