// How a device entry of a config file maps onto `ublk-ts add`'s options (daemon/add-options.ts):
// one line per field, keyed by the option it feeds, so the compiler insists on a line for every
// new add option. The JSON Schema (schema.ts) and the loader's type checks (load-config.ts) are
// both built from this table; the value checks are add-options' own validateAddOptions.

import { ADD_OPTIONS, LIMITS, QUEUE_AFFINITIES, type AddOptionKey, type RawAddOptions } from '../daemon/add-options';

/** JSON types a field accepts. `bytes`: a whole number, or a string with a K/M/G/T suffix. */
export type FieldType = 'string' | 'integer' | 'boolean' | 'bytes' | 'zeroCopy';

export interface DeviceField {
  /** the key in the config file */
  name: string;
  type: FieldType;
  /** allowed values, for the schema (the validator checks them too) */
  enum?: readonly (string | number)[];
  minimum?: number;
  maximum?: number;
}

/**
 * Every add option but the two a config file has no use for: `foreground` (a service is always in
 * the foreground) and `zcMode` (folded into `zeroCopy`: false | true | "auto" | "explicit").
 */
export const DEVICE_FIELDS: Readonly<Record<Exclude<AddOptionKey, 'foreground' | 'zcMode'>, DeviceField>> = {
  type: { name: 'target', type: 'string', enum: ['loop', 'null'] },
  file: { name: 'file', type: 'string' },
  number: { name: 'id', type: 'integer', minimum: -1, maximum: LIMITS.maxDevId },
  queues: { name: 'queues', type: 'integer', minimum: 1, maximum: LIMITS.maxQueues },
  depth: { name: 'depth', type: 'integer', minimum: 1, maximum: LIMITS.maxDepth },
  logicalBlockSize: { name: 'logicalBlockSize', type: 'integer', enum: LIMITS.logicalBlockSizes },
  zerocopy: { name: 'zeroCopy', type: 'zeroCopy' },
  usercopy: { name: 'userCopy', type: 'boolean' },
  batchIo: { name: 'batchIo', type: 'boolean' },
  threadsPerQueue: { name: 'threadsPerQueue', type: 'integer', minimum: 1, maximum: LIMITS.maxThreadsPerQueue },
  affinity: { name: 'affinity', type: 'string', enum: QUEUE_AFFINITIES },
  maxIoBufBytes: { name: 'maxIoBufBytes', type: 'bytes' },
  bufferedIo: { name: 'bufferedIo', type: 'boolean' },
  offset: { name: 'offset', type: 'integer', minimum: 0 },
  size: { name: 'size', type: 'bytes' },
  recovery: { name: 'recovery', type: 'boolean' },
  recoveryReissue: { name: 'recoveryReissue', type: 'boolean' },
  recoveryFailIo: { name: 'recoveryFailIo', type: 'boolean' },
  readOnly: { name: 'readOnly', type: 'boolean' },
  ioScheduler: { name: 'ioScheduler', type: 'string' },
};

/** Fields of a device entry that are not add options. */
export const NAME_FIELD = 'name';

export type FieldKey = keyof typeof DEVICE_FIELDS;
export const FIELD_KEYS = Object.keys(DEVICE_FIELDS) as FieldKey[];

/** Config name → option key; zcMode answers to zeroCopy too (messages about it name that field). */
export function configNameOf(key: AddOptionKey): string {
  if (key === 'zcMode') return DEVICE_FIELDS.zerocopy.name;
  if (key === 'foreground') return 'foreground';
  return DEVICE_FIELDS[key].name;
}

export function fieldByConfigName(name: string): FieldKey | undefined {
  return FIELD_KEYS.find((k) => DEVICE_FIELDS[k].name === name);
}

/** The add option's help text, reused as the schema's description. */
export function describeField(key: FieldKey): string {
  const d = ADD_OPTIONS.find((o) => o.key === key)?.description ?? '';
  if (key === 'zerocopy') {
    return 'zero copy: false, true or "auto" (AUTO_BUF_REG when the kernel has it, else REGISTER_IO_BUF), "explicit" (always REGISTER_IO_BUF); needs Linux 6.15';
  }
  if (key === 'number') return 'device id: /dev/ublkbID; -1 lets the kernel choose (default: -1)';
  if (key === 'type') return 'target type (required): loop or null';
  if (key === 'file') return 'loop: backing file or block device; a relative path is relative to the config file';
  return d;
}

/** Does `v` have the JSON type `type` asks for? (Values are checked by validateAddOptions.) */
export function hasType(type: FieldType, v: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'bytes':
      return (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'string';
    case 'zeroCopy':
      return typeof v === 'boolean' || v === 'auto' || v === 'explicit';
  }
}

export function typeName(type: FieldType): string {
  switch (type) {
    case 'bytes':
      return 'a whole number of bytes or a string such as "512K"';
    case 'zeroCopy':
      return 'true, false, "auto" or "explicit"';
    case 'integer':
      return 'a whole number';
    default:
      return `a ${type}`;
  }
}

/** One field's config value as add-options' raw input (zeroCopy becomes two options). */
export function toRaw(key: FieldKey, v: unknown, raw: RawAddOptions): void {
  if (key === 'zerocopy') {
    if (v === false) return;
    raw.zerocopy = true;
    if (v === 'auto' || v === 'explicit') raw.zcMode = v;
    return;
  }
  raw[key] = v as string | number | boolean;
}
