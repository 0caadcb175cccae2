// The one rule for what disks may share (used by `add`, by a config's devices, and by every
// device server before ADD_DEV): two disks may name the same file only when neither writes it, or
// when both say it is shared on purpose (--shared). Two writers with two page views of one file
// is silent corruption waiting to happen.

import type { TargetResource } from './target';

export interface ResourceHolder {
  /** how messages name the other disk: "device 3", "devices[1] of /etc/ublk-ts/a.json" */
  name: string;
  resources: readonly TargetResource[];
  /** added with --shared */
  shared: boolean;
}

/** One message per resource of `a` that clashes with one of `others`. */
export function resourceClashes(a: ResourceHolder, others: readonly ResourceHolder[], label: (r: TargetResource) => string = (r) => `${r.what} ${r.path}`): string[] {
  const out: string[] = [];
  for (const r of a.resources) {
    for (const b of others) {
      const r2 = b.resources.find((x) => x.path === r.path);
      if (!r2 || !(r.exclusive || r2.exclusive) || (a.shared && b.shared)) continue;
      out.push(
        `${label(r)} is also the ${r2.what} of ${b.name}: two disks that write one file corrupt it (only read-only disks, or disks that all say --shared, may share one)`,
      );
    }
  }
  return out;
}
