// What a target is on the TypeScript side: one descriptor (targets/<name>.ts) declares its
// options, its capabilities and the files it holds, checks what the user gave, and describes the
// disk (kernel parameters, the native target's options, list's JSON). Its data path is native
// (native/targets/<name>.cc); docs/targets.md walks through both halves with null as the example.

import * as fs from 'node:fs';
import type { DataMode, NativeServer, TargetOptions, UblkParams } from './binding';
import type { Log } from './log';
import type { CommonSpec } from './add-options';
import type { OptionGroup, ValuesOf } from './options';

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

/** What the kernel can send a target, and how its data may move. The native table says the same. */
export interface TargetCapabilities {
  /** the data modes it can serve; a target that must see the bytes has no zero copy */
  dataModes: readonly DataMode[];
  /** why it has no zero copy (or no user copy), for the message that refuses -z / --usercopy */
  whyNot?: string;
  flush: boolean;
  discard: boolean;
  writeZeroes: boolean;
  fua: boolean;
}

/** Something a target holds that another disk might hold too (a backing file, a socket path). */
export interface TargetResource {
  /** what it is, for messages: "backing file" */
  what: string;
  /** absolute path */
  path: string;
  /** written through this disk: two disks writing one file corrupt it */
  exclusive: boolean;
}

export interface TargetDescription {
  /** the native target: its name, and the options its init reads */
  serve: { name: string; options: TargetOptions };
  /** writes fail with EROFS (the user asked, or the store cannot be written) */
  readOnly: boolean;
  params: UblkParams;
  /** list's "target" line and recovery data: flat JSON, ublksrv's keys where it has them */
  json: Record<string, string | number>;
  /** bytes the disk exposes */
  sizeBytes: number;
  /** things worth logging (e.g. "opened read-only: not writable") */
  notes: string[];
  /** at most this many queues (an NBD server without multi-connection: one); the spec asks for more */
  maxQueues?: number;
  /** a key of `json` to hold the number of queues the kernel accepted (nbd: its connections) */
  queuesKey?: string;
  /** what the target keeps for attach() and release() (the js target: the user's object) */
  runtime?: unknown;
}

/** What describe() may use besides the spec: the file system, and its native half's probe. */
export interface DescribeContext {
  fs?: TargetFs;
  /** TargetOps::probe of the native target (binding.probeTarget): what it learns of its store */
  probe?: (options: TargetOptions) => Promise<Record<string, unknown>>;
  /** an object a library caller hands over for the target to serve (the js target's BlockTarget) */
  instance?: unknown;
}

/** What attach() gets: the device as the kernel made it, and where to log. */
export interface AttachContext {
  devId: () => number;
  /** queue threads: queues × threads per queue */
  threads: number;
  maxIoBufBytes: number;
  log: Log;
}

/** A target's spec part: its options' values, tagged with its name. */
export type TargetPart<G extends OptionGroup = OptionGroup> = { kind: string } & ValuesOf<G>;

export interface TargetDescriptor<G extends OptionGroup = OptionGroup> {
  /** `-t NAME`; also the native target's name */
  name: string;
  /** one line for help: "a file or block device" */
  summary: string;
  /** its options: command-line flags, config-file fields, schema, help, checks (options.ts) */
  options: G;
  /** options of its group that must be given */
  required?: ReadonlyArray<keyof G & string>;
  capabilities: TargetCapabilities;
  /**
   * Checks across its options and the common ones that need no system access; every problem,
   * each naming its option through `label`.
   */
  check?(o: ValuesOf<G>, common: CommonSpec, label: (key: string) => string): string[];
  /** The files and paths it holds (the mount namespace keeps them; `add` refuses a clash). */
  resources(o: ValuesOf<G>, common: CommonSpec): TargetResource[];
  /**
   * Checks the target against the system (files, servers) and describes the disk. Throws
   * UsageError listing every problem.
   */
  describe(o: ValuesOf<G>, common: CommonSpec, ctx?: DescribeContext): TargetDescription | Promise<TargetDescription>;
  /** The problems describe() would throw, without building anything (for `add` before it spawns). */
  validate(o: ValuesOf<G>, common: CommonSpec, fs?: TargetFs): string[];
  /**
   * A target with a JavaScript side: once the queue threads are up and before the disk goes live,
   * it starts serving (the js target's dispatcher on the native server's signals and memory).
   */
  attach?(server: NativeServer, d: TargetDescription, ctx: AttachContext): void | Promise<void>;
  /** ... and once the queue threads are gone (the device stopped, or left for recover), it lets go. */
  release?(d: TargetDescription): void | Promise<void>;
}

/** Any target, whatever its options (the registry's list). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTarget = TargetDescriptor<any>;

/** Declares a descriptor with its option group's types checked. */
export function defineTarget<G extends OptionGroup>(d: TargetDescriptor<G>): TargetDescriptor<G> {
  return d;
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

/** log2 of a power of two. */
function shiftOf(n: number): number {
  return Math.log2(n) | 0;
}

/**
 * The basic parameters every target sets the same way: the disk's size; the logical block size
 * from the spec, which is also the minimum I/O; a physical block and optimal I/O of 4 KiB (the
 * physical block never below the logical one); the largest request the spec allows. `attrs`
 * (UBLK_ATTR_*) is the target's own.
 */
export function basicParams(common: { logicalBlockSize: number; maxIoBufBytes: number }, sizeBytes: number, attrs: number): UblkParams['basic'] {
  const lbsShift = shiftOf(common.logicalBlockSize);
  return {
    attrs,
    logicalBsShift: lbsShift,
    physicalBsShift: Math.max(12, lbsShift),
    ioOptShift: 12,
    ioMinShift: lbsShift,
    maxSectors: common.maxIoBufBytes >>> 9,
    chunkSectors: 0,
    devSectors: BigInt(sizeBytes) >> 9n,
    virtBoundaryMask: 0n,
  };
}
