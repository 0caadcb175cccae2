// The null target: no backing store; reads return the buffer as it is, writes go nowhere. The
// smallest complete target (docs/targets.md walks through it); 250 GiB by default, like ublksrv's.

import { UsageError } from '../shared/errors';
import { ATTR } from '../shared/kernel';
import { kinds } from '../shared/options';
import { basicParams, defineTarget } from '../shared/target';

const DEFAULT_SIZE = 250 * 2 ** 30;

function sizeProblems(size: number, lbs: number, label: string): string[] {
  return size % lbs === 0 ? [] : [`${label} ${size} is not a multiple of the logical block size ${lbs}`];
}

export const nullTarget = defineTarget({
  name: 'null',
  summary: 'a disk that completes every I/O without data (measures the framework)',
  options: {
    size: {
      cli: { long: '--size', arg: '<bytes>' },
      description: 'disk size in bytes, K/M/G/T suffixes allowed (default: 250G)',
      kind: kinds.bytes(1, Number.MAX_SAFE_INTEGER, undefined, 'must be a whole number of bytes greater than 0 (K, M, G, T suffixes allowed)'),
      default: DEFAULT_SIZE,
    },
  },
  capabilities: { dataModes: ['copy', 'user_copy', 'zc_auto', 'zc_explicit'], flush: true, discard: true, writeZeroes: true, fua: true },

  check: (o, common, label) => sizeProblems(o.size, common.logicalBlockSize, label('size')),

  resources: () => [],

  validate: () => [],

  describe(o, common) {
    const p = sizeProblems(o.size, common.logicalBlockSize, '--size');
    if (p.length > 0) throw new UsageError(p);
    return {
      serve: { name: 'null', options: {} },
      readOnly: common.readOnly,
      params: { basic: basicParams(common, o.size, ATTR.VOLATILE_CACHE | (common.readOnly ? ATTR.READ_ONLY : 0)) },
      json: { name: 'null', type: 0, dev_size: o.size },
      sizeBytes: o.size,
      notes: [],
    };
  },
});
