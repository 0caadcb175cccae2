// The null target: no backing store; reads return the buffer as is, writes are dropped.
// 250 GiB by default, like ublksrv's null target.

import { DEFAULTS, type AddSpec } from '../daemon/add-options';
import { UsageError } from '../daemon/errors';
import { ATTR, basicParams, type TargetDescription, type TargetDescriptor } from './index';

function problems(spec: AddSpec): string[] {
  const out: string[] = [];
  if (spec.file !== undefined) out.push('-f/--file is only for -t loop');
  if (spec.offsetSectors !== 0) out.push('-o/--offset is only for -t loop');
  if (spec.bufferedIo) out.push('--buffered_io is only for -t loop');
  const size = spec.sizeBytes ?? DEFAULTS.nullSizeBytes;
  if (size % spec.logicalBlockSize !== 0) {
    out.push(`--size ${size} is not a multiple of the logical block size ${spec.logicalBlockSize}`);
  }
  return out;
}

export const nullTarget: TargetDescriptor = {
  name: 'null',

  validate(spec) {
    return problems(spec);
  },

  describe(spec): TargetDescription {
    const p = problems(spec);
    if (p.length > 0) throw new UsageError(p);
    const size = spec.sizeBytes ?? DEFAULTS.nullSizeBytes;
    return {
      serve: { target: { name: 'null', options: {} }, readOnly: spec.readOnly },
      params: { basic: basicParams(spec, size, ATTR.VOLATILE_CACHE | (spec.readOnly ? ATTR.READ_ONLY : 0)) },
      json: { name: 'null', type: 0, dev_size: size },
      sizeBytes: size,
      readOnly: spec.readOnly,
      notes: [],
    };
  },
};
