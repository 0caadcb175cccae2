// Target descriptors: what each target checks before a device is created and how it describes
// the disk (queue-thread options, ublk_params, the JSON shown by `list` and kept for recovery).
// The data path of each target is native code; these files only decide.

import * as fs from 'node:fs';
import type { ServeOptions, TargetKind, UblkParams } from '../daemon/native/binding-types';
import type { AddSpec } from '../daemon/add-options';
import { loopTarget } from './loop';
import { nullTarget } from './null';

/** What a file is, as far as a target cares. */
export interface FileFacts {
  kind: 'file' | 'directory' | 'block' | 'other';
  /** bytes (regular files; 0 for block devices, whose size comes from sysfs) */
  size: number;
  major: number;
  minor: number;
  /** the device the file lives on (st_dev); 0:0 when unknown. For O_DIRECT alignment. */
  fsMajor?: number;
  fsMinor?: number;
}

/** The file-system access targets need; tests pass a fake. */
export interface TargetFs {
  /** throws an error with `code` (ENOENT...) */
  stat(p: string): FileFacts;
  /** undefined when `p` opens (read-write when `writable`), else the errno name */
  tryOpen(p: string, writable: boolean): string | undefined;
  /** a small text file (sysfs), or undefined when it cannot be read */
  readText(p: string): string | undefined;
}

/** Options for the native server that the target decides. */
export type ServePart = Pick<ServeOptions, 'target' | 'readOnly'>;

export interface TargetDescription {
  serve: ServePart;
  params: UblkParams;
  /** list's "target" line and recovery data: flat JSON, ublksrv's keys where it has them */
  json: Record<string, string | number>;
  /** bytes the disk exposes */
  sizeBytes: number;
  readOnly: boolean;
  /** things worth logging (e.g. "opened read-only: not writable") */
  notes: string[];
}

export interface TargetDescriptor {
  name: TargetKind;
  /** Every problem with the spec for this target, as one-line messages; empty when usable. */
  validate(spec: AddSpec, fs?: TargetFs): string[];
  /** Throws UsageError when validate() would report problems. */
  describe(spec: AddSpec, fs?: TargetFs): TargetDescription;
}

// Linux dev_t layout (glibc's gnu_dev_major/minor), from a bigint st_rdev.
function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

export const realFs: TargetFs = {
  stat(p) {
    const st = fs.statSync(p, { bigint: true });
    const kind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isBlockDevice() ? 'block' : 'other';
    return {
      kind,
      size: Number(st.size),
      major: devMajor(st.rdev),
      minor: devMinor(st.rdev),
      fsMajor: devMajor(st.dev),
      fsMinor: devMinor(st.dev),
    };
  },
  tryOpen(p, writable) {
    try {
      fs.closeSync(fs.openSync(p, writable ? 'r+' : 'r'));
      return undefined;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? 'EIO';
    }
  },
  readText(p) {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return undefined;
    }
  },
};

// A function, not a table built at load time: loop.ts and null.ts import helpers from this file,
// so whichever module loads first must not need the other's exports yet.
export function getTarget(name: TargetKind): TargetDescriptor {
  return name === 'loop' ? loopTarget : nullTarget;
}

/** log2 of a power of two. */
function shiftOf(n: number): number {
  return Math.log2(n) | 0;
}

/** UBLK_ATTR_* */
export const ATTR = { READ_ONLY: 1, ROTATIONAL: 2, VOLATILE_CACHE: 4, FUA: 8 } as const;

/**
 * The basic parameters every target sets the same way: the disk's size; the logical block size
 * from the spec, which is also the minimum I/O; a physical block and optimal I/O of 4 KiB (the
 * physical block never below the logical one); the largest request the spec allows. `attrs`
 * (UBLK_ATTR_*) is the target's own.
 */
export function basicParams(spec: Pick<AddSpec, 'logicalBlockSize' | 'maxIoBufBytes'>, sizeBytes: number, attrs: number): UblkParams['basic'] {
  const lbsShift = shiftOf(spec.logicalBlockSize);
  return {
    attrs,
    logicalBsShift: lbsShift,
    physicalBsShift: Math.max(12, lbsShift),
    ioOptShift: 12,
    ioMinShift: lbsShift,
    maxSectors: spec.maxIoBufBytes >>> 9,
    chunkSectors: 0,
    devSectors: BigInt(sizeBytes) >> 9n,
    virtBoundaryMask: 0n,
  };
}
