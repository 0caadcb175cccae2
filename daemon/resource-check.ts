// The shared-resource rule (shared/resources.ts) applied to the devices this machine already has:
// `add` checks before it starts a server, and every device server again before ADD_DEV.

import { UblkError } from '../shared/errors';
import { resourceClashes, type ResourceHolder } from '../shared/resources';
import { holderOf, reviveSpec, type AddSpec } from './spec';
import { kernelDeviceExists, StateStore } from './state-store';

/** The devices of our state files that still exist, as resource holders ("device N"). */
export function holdersInUse(store: StateStore, exceptId = -1, exists: (id: number) => boolean = kernelDeviceExists): ResourceHolder[] {
  const out: ResourceHolder[] = [];
  let entries;
  try {
    entries = store.list();
  } catch {
    return out; // no readable run directory: no device of ours to clash with (and no state to write)
  }
  for (const e of entries) {
    if (!e.state || e.devId === exceptId || !exists(e.devId)) continue;
    const { spec } = reviveSpec(e.state.spec);
    if (spec) out.push(holderOf(spec, `device ${e.devId} (/dev/ublkb${e.devId})`));
  }
  return out;
}

/** Throws (EBUSY) naming each clash of `spec` with a device that is already there. */
export function checkResources(spec: AddSpec, store: StateStore, exceptId = -1, exists?: (id: number) => boolean): void {
  const clashes = resourceClashes(holderOf(spec, 'the new disk'), holdersInUse(store, exceptId, exists));
  if (clashes.length > 0) throw new UblkError(clashes.join('; '), { code: 'EBUSY', op: 'add' });
}
