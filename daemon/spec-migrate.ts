// State files written by ublk-ts 0.1 (state version 1) kept the add spec flat, with other names.
// Kept apart from spec.ts so that reading a state file (`list`) loads no option machinery.

/**
 * A spec as ublk-ts 0.1 wrote it (state version 1: flat target fields, other names), in today's
 * shape; a spec in today's shape is returned as it is. A live upgrade reads the old server's file.
 */
export function migrateSpec(v: Record<string, unknown>): Record<string, unknown> {
  if (typeof v.target !== 'string') return v;
  const {
    target,
    devId,
    nrQueues,
    file,
    bufferedIo,
    offsetSectors,
    sizeBytes,
    foreground: _f,
    ...rest
  } = v as Record<string, unknown>;
  const part: Record<string, unknown> = { kind: target };
  if (target === 'loop') Object.assign(part, { file, bufferedIo: bufferedIo === true, offset: offsetSectors ?? 0 });
  if (sizeBytes !== undefined) part.size = sizeBytes;
  return { ...rest, id: devId, queues: nrQueues, target: part };
}
