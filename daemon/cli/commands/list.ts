// `ublk-ts list [-n ID] [--json]`: every ublk device the kernel has (ours or not), GET_DEV_INFO +
// GET_PARAMS each, merged with our state file when there is one; ublksrv's layout.

import { deviceJson, formatDevice, type ListEntry } from '../../list-format';
import { parseDevIdArg } from '../../checks';
import { defaultListDeps, gatherEntry, type ListDeps } from '../device-view';

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
