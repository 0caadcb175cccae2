// `ublk-ts del -n ID | -a`: stop and delete one disk or every one (daemon/delete-device.ts does the
// work, also for the service).

import { describeError, UsageError, type UblkError } from '../../../shared/errors';
import { defaultDelDeps, deleteDevice, type DelDeps } from '../../delete-device';
import { parseDevIdArg, requireControl } from '../../checks';

export interface DelOptions {
  number?: string;
  all?: boolean;
}

export async function runDel(opts: DelOptions, partial: Partial<DelDeps & { checkControl: () => void }> = {}): Promise<number> {
  const deps = { ...defaultDelDeps(), checkControl: () => requireControl(), ...partial };
  const one = parseDevIdArg(opts.number);
  if (one === undefined && !opts.all) throw new UsageError('del needs -n/--number ID or -a/--all');
  if (one !== undefined && opts.all) throw new UsageError('del takes -n/--number ID or -a/--all, not both');
  deps.checkControl();

  if (one !== undefined) {
    await deleteDevice(one, deps);
    return 0;
  }
  const ids = new Set<number>(deps.kernelIds());
  for (const e of deps.store.list()) ids.add(e.devId);
  let failed = 0;
  for (const id of [...ids].sort((a, b) => a - b)) {
    try {
      await deleteDevice(id, deps);
    } catch (err) {
      if ((err as UblkError).code === 'ENODEV') continue; // went away meanwhile
      failed++;
      deps.warn(`device ${id}: ${describeError(err)}`);
    }
  }
  return failed > 0 ? 1 : 0;
}
