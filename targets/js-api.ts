// What a disk written in TypeScript (or JavaScript) implements: the public contract of `-t js` and
// of `createDevice()`. Published with the package's types (`import type { BlockTarget } from
// 'ublk-ts'`).

/** A block device in JavaScript. Every method may return a promise; a rejection fails the request. */
export interface BlockTarget {
  /** bytes the disk has: a multiple of blockSize */
  readonly size: number;
  /** the disk's logical block size: 512 (default), 1024, 2048 or 4096 */
  readonly blockSize?: number;
  /** a disk nothing can write to (writes fail with EROFS before they reach write()) */
  readonly readOnly?: boolean;
  /**
   * Fill `into` (exactly `length` bytes, a view of the request's own memory: write into it, do not
   * keep it) with the disk's bytes at `offset`.
   */
  read(offset: number, length: number, into: Buffer): Promise<void> | void;
  /** Store `data` (a view of the request's own memory, valid until this settles) at `offset`. */
  write(offset: number, data: Buffer): Promise<void> | void;
  /** Make what was written durable (a disk with a write cache asks for it). Absent: nothing to do. */
  flush?(): Promise<void> | void;
  /** Forget `length` bytes at `offset` (they may read back as anything, zeros by preference). */
  discard?(offset: number, length: number): Promise<void> | void;
  /** Make `length` bytes at `offset` read back as zeros. */
  writeZeroes?(offset: number, length: number): Promise<void> | void;
  /** The disk is going away: let go of what it holds. */
  close?(): Promise<void> | void;
}

/**
 * What a `-t js --module FILE` module exports as default: a function that makes the target from the
 * `--set key=value` options (or the target object itself).
 */
export type BlockTargetFactory = (options: Record<string, string>) => BlockTarget | Promise<BlockTarget>;

/**
 * An error a handler throws may say which errno the request fails with: `errno` (a number, sign
 * ignored) or `code` (an errno name, "ENOSPC"). Anything else fails it with EIO.
 */
export interface BlockError extends Error {
  errno?: number;
  code?: string;
}
