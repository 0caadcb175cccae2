// The options of `ublk-ts add`, declared once, and the one validator that turns what the user
// gave (command line now, a config file later) into an AddSpec. Spellings follow ublksrv's `ublk
// add` where it has the option (users' scripts carry them), with the dashed forms accepted too.
//
// This module is loaded on every CLI start: keep it free of heavy imports.

import * as path from 'node:path';
import type { TargetKind } from './native/binding-types';
import { UsageError } from './errors';

export type ZeroCopyMode = 'off' | 'auto' | 'explicit';

/**
 * Where queue threads run: `cpu` binds each to one CPU of those the block layer maps to its queue
 * (as ublksrv does), `queue` to all of them, `none` leaves it to the scheduler.
 */
export type QueueAffinity = 'cpu' | 'queue' | 'none';
export const QUEUE_AFFINITIES: readonly QueueAffinity[] = ['cpu', 'queue', 'none'];

/** A validated `add` request: everything the per-device server needs, also kept for recovery. */
export interface AddSpec {
  target: TargetKind;
  /** -1 lets the kernel choose */
  devId: number;
  nrQueues: number;
  depth: number;
  logicalBlockSize: number;
  maxIoBufBytes: number;
  /** 'auto': AUTO_BUF_REG when the kernel has it, else REGISTER_IO_BUF; 'explicit': always the latter */
  zeroCopy: ZeroCopyMode;
  userCopy: boolean;
  /**
   * UBLK_F_BATCH_IO (Linux 7.0): requests fetched and committed in batches instead of one command
   * per request. Absent in state files written before the option existed.
   */
  batchIo?: boolean;
  /**
   * Threads serving each queue, its tags split between them (UBLK_F_PER_IO_DAEMON, Linux 6.16).
   * Absent in state files written before the option existed: 1.
   */
  threadsPerQueue?: number;
  /** Absent in state files written before the option existed: the default. */
  affinity?: QueueAffinity;
  /** loop: absolute path of the backing file or block device */
  file?: string;
  /** loop: page-cache I/O instead of O_DIRECT */
  bufferedIo: boolean;
  /** loop: where the disk starts in the file, in 512-byte sectors */
  offsetSectors: number;
  /** disk size in bytes; loop default: file size - offset, null default: 250 GiB */
  sizeBytes?: number;
  recovery: boolean;
  recoveryReissue: boolean;
  recoveryFailIo: boolean;
  foreground: boolean;
  readOnly: boolean;
  /**
   * I/O scheduler set on /dev/ublkbN once it exists; 'kernel' leaves the kernel's choice. Absent in
   * state files written before the option existed.
   */
  ioScheduler?: string;
}

export type AddOptionKey =
  | 'type'
  | 'file'
  | 'number'
  | 'queues'
  | 'depth'
  | 'logicalBlockSize'
  | 'zerocopy'
  | 'zcMode'
  | 'usercopy'
  | 'batchIo'
  | 'threadsPerQueue'
  | 'affinity'
  | 'maxIoBufBytes'
  | 'bufferedIo'
  | 'offset'
  | 'size'
  | 'recovery'
  | 'recoveryReissue'
  | 'recoveryFailIo'
  | 'foreground'
  | 'readOnly'
  | 'ioScheduler';

/** What the user gave, by option key: strings from the command line, or JSON values from a file. */
export type RawAddOptions = Partial<Record<AddOptionKey, string | number | boolean>> & Record<string, unknown>;

export interface AddOptionDecl {
  key: AddOptionKey;
  /** e.g. "-t" */
  short?: string;
  /** the spelling shown in help, e.g. "--type" */
  long: string;
  /** other accepted long spellings (hidden in help) */
  aliases?: string[];
  /** value placeholder, e.g. "<loop|null>"; absent for on/off switches */
  arg?: string;
  description: string;
}

export const DEFAULTS = {
  devId: -1,
  nrQueues: 1,
  depth: 128,
  logicalBlockSize: 512,
  maxIoBufBytes: 512 * 1024,
  nullSizeBytes: 250 * 1024 * 1024 * 1024,
  threadsPerQueue: 1,
  // A queue thread the scheduler may move gets pulled next to whoever wakes it, the application
  // submitting I/O, and then shares that CPU with it; ublksrv binds its queue threads to one CPU.
  affinity: 'cpu' as QueueAffinity,
  // As the kernel's loop driver picks for itself: the server and the backing store do their own
  // queueing, and mq-deadline in front of them put every dispatch through kblockd (4k random
  // reads at depth 32 in the test VM: 3.3k IOPS with mq-deadline, 8.9k with none).
  ioScheduler: 'none',
} as const;

export const LIMITS = {
  /** dev ids are char-device minors: below 1 << MINORBITS */
  maxDevId: (1 << 20) - 1,
  maxQueues: 64,
  maxDepth: 4096,
  /** more threads than CPUs only adds switching; 64 covers large machines */
  maxThreadsPerQueue: 64,
  logicalBlockSizes: [512, 1024, 2048, 4096] as readonly number[],
  maxIoBufBytes: 32 * 1024 * 1024,
  ioBufAlign: 4096,
} as const;

export const ADD_OPTIONS: readonly AddOptionDecl[] = [
  { key: 'type', short: '-t', long: '--type', arg: '<loop|null>', description: 'target type (required)' },
  { key: 'file', short: '-f', long: '--file', arg: '<file>', description: 'loop: backing file or block device' },
  {
    key: 'number',
    short: '-n',
    long: '--number',
    arg: '<id>',
    description: 'device id, -1 lets the kernel choose (default: -1)',
  },
  { key: 'queues', short: '-q', long: '--queues', arg: '<nq>', description: 'hardware queues, 1-64 (default: 1)' },
  { key: 'depth', short: '-d', long: '--depth', arg: '<depth>', description: 'queue depth, 1-4096 (default: 128)' },
  {
    key: 'logicalBlockSize',
    short: '-b',
    long: '--logical-block-size',
    aliases: ['--logical_block_size'],
    arg: '<bytes>',
    description: 'logical block size: 512, 1024, 2048 or 4096 (default: 512)',
  },
  {
    key: 'zerocopy',
    short: '-z',
    long: '--zerocopy',
    aliases: ['--zero-copy', '--zero_copy'],
    description: 'zero copy (needs Linux 6.15; automatic buffer registration from 6.16)',
  },
  {
    key: 'zcMode',
    long: '--zc-mode',
    aliases: ['--zc_mode'],
    arg: '<auto|explicit>',
    description: 'with -z: auto uses AUTO_BUF_REG when the kernel has it, explicit always REGISTER_IO_BUF (default: auto)',
  },
  {
    key: 'usercopy',
    long: '--usercopy',
    aliases: ['--user-copy', '--user_copy'],
    description: 'copy data with pread/pwrite on /dev/ublkcN (needs Linux 6.5)',
  },
  {
    key: 'batchIo',
    long: '--batch-io',
    aliases: ['--batch_io'],
    description: 'fetch and commit requests in batches, one command for many (needs Linux 7.0)',
  },
  {
    key: 'threadsPerQueue',
    long: '--threads-per-queue',
    aliases: ['--threads_per_queue'],
    arg: '<n>',
    description:
      'threads serving each queue, its tags split between them, so one queue can use several CPUs (needs Linux 6.16; not with --batch-io; default: 1)',
  },
  {
    key: 'affinity',
    long: '--affinity',
    arg: '<cpu|queue|none>',
    description:
      "where queue threads run: cpu binds each to one of the CPUs the kernel maps to its queue (as ublksrv does), queue to all of them, none leaves it to the scheduler (default: cpu)",
  },
  {
    key: 'maxIoBufBytes',
    long: '--max_io_buf_bytes',
    aliases: ['--max-io-buf-bytes'],
    arg: '<bytes>',
    description: 'largest request, a multiple of 4096 up to 32 MiB (default: 524288)',
  },
  {
    key: 'bufferedIo',
    long: '--buffered_io',
    aliases: ['--buffered-io'],
    description: 'loop: use the page cache instead of O_DIRECT',
  },
  {
    key: 'offset',
    short: '-o',
    long: '--offset',
    arg: '<sectors>',
    description: 'loop: where the disk starts in the file, in 512-byte sectors (default: 0)',
  },
  {
    key: 'size',
    long: '--size',
    arg: '<bytes>',
    description: 'disk size in bytes, K/M/G/T suffixes allowed (default: loop: file size - offset, null: 250G)',
  },
  {
    key: 'recovery',
    short: '-r',
    long: '--recovery',
    aliases: ['--user_recovery', '--user-recovery'],
    arg: '<0|1>',
    description: 'keep the disk (QUIESCED) when the server dies, for `recover` (needs Linux 6.1)',
  },
  {
    key: 'recoveryReissue',
    short: '-i',
    long: '--recovery-reissue',
    aliases: ['--user_recovery_reissue', '--user-recovery-reissue'],
    arg: '<0|1>',
    description: 'with -r 1: re-issue in-flight I/O to the recovered server',
  },
  {
    key: 'recoveryFailIo',
    short: '-e',
    long: '--recovery-fail-io',
    aliases: ['--user_recovery_fail_io', '--user-recovery-fail-io'],
    arg: '<0|1>',
    description: 'with -r 1: fail I/O while no server runs (needs Linux 6.13)',
  },
  { key: 'foreground', long: '--foreground', description: 'serve in this process until SIGTERM/SIGINT' },
  { key: 'readOnly', long: '--read-only', aliases: ['--read_only'], description: 'expose a read-only disk' },
  {
    key: 'ioScheduler',
    long: '--io-scheduler',
    aliases: ['--io_scheduler'],
    arg: '<name|kernel>',
    description: "I/O scheduler of the disk: none, mq-deadline, kyber, bfq, or kernel to keep the kernel's choice (default: none, as the kernel's loop driver)",
  },
];

/** "-t/--type" for messages. */
export function optionLabel(key: AddOptionKey): string {
  const d = ADD_OPTIONS.find((o) => o.key === key);
  if (!d) return key;
  return d.short ? `${d.short}/${d.long}` : d.long;
}

export interface ValidateEnv {
  /** to make a relative --file absolute (the server runs detached, from another directory) */
  cwd: string;
  /** how messages name an option; default optionLabel ("-q/--queues"); config files pass their JSON path */
  label?: (key: AddOptionKey) => string;
}

const SIZE_SUFFIX: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** A whole decimal number with nothing after it, or undefined. */
function wholeNumber(v: unknown, allowNegative = false): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && (allowNegative || v >= 0) ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const re = allowNegative ? /^-?\d+$/ : /^\d+$/;
  if (!re.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Bytes: a whole number with an optional binary suffix (K, M, G, T, also KiB, KB). */
function byteCount(v: unknown): number | undefined {
  if (typeof v === 'number') return wholeNumber(v);
  if (typeof v !== 'string') return undefined;
  const m = /^(\d+)\s*(?:([kmgt])(?:i?b)?)?$/i.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * (m[2] ? SIZE_SUFFIX[m[2].toLowerCase()] : 1);
  return Number.isSafeInteger(n) ? n : undefined;
}

function flag(v: unknown): boolean | undefined {
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return undefined;
}

const KNOWN_KEYS = new Set<string>(ADD_OPTIONS.map((o) => o.key));

/**
 * Checks everything that can be checked without touching the system and returns the AddSpec;
 * throws one UsageError listing every problem found. (The backing file is checked by the target,
 * targets/*.ts.)
 */
export function validateAddOptions(raw: RawAddOptions, env: ValidateEnv): AddSpec {
  const problems: string[] = [];
  // a config file names its fields by their JSON path instead of the command-line spelling
  const label = env.label ?? optionLabel;
  const tLoop = env.label ? `${label('type')} "loop"` : '-t loop';
  const given = (k: AddOptionKey) => raw[k] !== undefined;

  for (const k of Object.keys(raw)) {
    if (!KNOWN_KEYS.has(k) && raw[k] !== undefined) problems.push(`unknown option "${k}"`);
  }

  // -t
  let target: TargetKind | undefined;
  if (!given('type')) problems.push(`${label('type')} is required (loop or null)`);
  else if (raw.type === 'loop' || raw.type === 'null') target = raw.type;
  else problems.push(`${label('type')} must be loop or null, not ${show(raw.type)}`);

  const ranged = (key: AddOptionKey, lo: number, hi: number, def: number): number => {
    if (!given(key)) return def;
    const n = wholeNumber(raw[key], lo < 0);
    if (n === undefined || n < lo || n > hi) {
      problems.push(`${label(key)} must be a whole number from ${lo} to ${hi}, not ${show(raw[key])}`);
      return def;
    }
    return n;
  };
  const devId = ranged('number', -1, LIMITS.maxDevId, DEFAULTS.devId);
  const nrQueues = ranged('queues', 1, LIMITS.maxQueues, DEFAULTS.nrQueues);
  const depth = ranged('depth', 1, LIMITS.maxDepth, DEFAULTS.depth);
  // every thread needs at least one tag of its queue
  const threadsPerQueue = ranged('threadsPerQueue', 1, Math.min(LIMITS.maxThreadsPerQueue, depth), DEFAULTS.threadsPerQueue);

  let logicalBlockSize: number = DEFAULTS.logicalBlockSize;
  if (given('logicalBlockSize')) {
    const n = wholeNumber(raw.logicalBlockSize);
    if (n === undefined || !LIMITS.logicalBlockSizes.includes(n)) {
      problems.push(`${label('logicalBlockSize')} must be 512, 1024, 2048 or 4096, not ${show(raw.logicalBlockSize)}`);
    } else logicalBlockSize = n;
  }

  let maxIoBufBytes: number = DEFAULTS.maxIoBufBytes;
  if (given('maxIoBufBytes')) {
    const n = byteCount(raw.maxIoBufBytes);
    if (n === undefined || n < LIMITS.ioBufAlign || n > LIMITS.maxIoBufBytes || n % LIMITS.ioBufAlign !== 0) {
      problems.push(
        `${label('maxIoBufBytes')} must be a multiple of 4096 from 4096 to 33554432 (32 MiB), not ${show(raw.maxIoBufBytes)}`,
      );
    } else maxIoBufBytes = n;
  }

  // switches
  const switches: Partial<Record<AddOptionKey, boolean>> = {};
  for (const key of ['zerocopy', 'usercopy', 'batchIo', 'bufferedIo', 'foreground', 'readOnly'] as const) {
    const b = flag(raw[key]);
    if (b === undefined) problems.push(`${label(key)} is a switch and takes no value, not ${show(raw[key])}`);
    switches[key] = b ?? false;
  }
  const zerocopy = switches.zerocopy === true;
  const userCopy = switches.usercopy === true;

  // zero copy
  let zeroCopy: ZeroCopyMode = zerocopy ? 'auto' : 'off';
  if (given('zcMode')) {
    if (raw.zcMode !== 'auto' && raw.zcMode !== 'explicit') {
      problems.push(`${label('zcMode')} must be auto or explicit, not ${show(raw.zcMode)}`);
    } else if (!zerocopy) {
      problems.push(`${label('zcMode')} needs ${label('zerocopy')}`);
    } else zeroCopy = raw.zcMode;
  }
  if (zerocopy && userCopy) {
    problems.push(`${label('zerocopy')} and ${label('usercopy')} cannot be used together`);
  }
  // a batch command carries tags of the whole queue: the kernel has no per-I/O daemons with it
  if (switches.batchIo && threadsPerQueue > 1) {
    problems.push(`${label('threadsPerQueue')} above 1 cannot be used with ${label('batchIo')}`);
  }

  // recovery: none, r, r+i, r+e (ublksrv lets -i 1 / -e 1 imply -r 1; an explicit -r 0 contradicts)
  const zeroOne = (key: AddOptionKey): boolean | undefined => {
    if (!given(key)) return undefined;
    const v = raw[key];
    if (v === 0 || v === '0' || v === false) return false;
    if (v === 1 || v === '1' || v === true) return true;
    problems.push(`${label(key)} must be 0 or 1, not ${show(v)}`);
    return undefined;
  };
  const r = zeroOne('recovery');
  const reissue = zeroOne('recoveryReissue') === true;
  const failIo = zeroOne('recoveryFailIo') === true;
  if (reissue && failIo) {
    problems.push(`${label('recoveryReissue')} and ${label('recoveryFailIo')} cannot both be 1`);
  }
  if (r === false && (reissue || failIo)) {
    problems.push(`${label(reissue ? 'recoveryReissue' : 'recoveryFailIo')} 1 needs ${label('recovery')} 1`);
  }
  const recovery = r === true || reissue || failIo;

  // target-specific
  let file: string | undefined;
  if (given('file')) {
    if (typeof raw.file !== 'string' || raw.file === '') {
      problems.push(`${label('file')} needs a path`);
    } else file = path.resolve(env.cwd, raw.file);
  }
  if (target === 'loop' && !given('file')) problems.push(`${tLoop} needs ${label('file')} FILE`);
  if (target === 'null') {
    if (given('file')) problems.push(`${label('file')} is only for ${tLoop}`);
    if (given('offset')) problems.push(`${label('offset')} is only for ${tLoop}`);
    if (switches.bufferedIo) problems.push(`${label('bufferedIo')} is only for ${tLoop}`);
  }

  let offsetSectors = 0;
  if (given('offset')) {
    const n = wholeNumber(raw.offset);
    if (n === undefined || n * 512 > Number.MAX_SAFE_INTEGER) {
      problems.push(`${label('offset')} must be a whole number of 512-byte sectors, not ${show(raw.offset)}`);
    } else {
      offsetSectors = n;
      // O_DIRECT needs every file offset aligned to the logical block size
      if (target === 'loop' && !switches.bufferedIo && (n * 512) % logicalBlockSize !== 0) {
        problems.push(
          `${label('offset')} ${n} sectors (${n * 512} bytes) is not a multiple of the logical block size ${logicalBlockSize}; align it or use ${label('bufferedIo')}`,
        );
      }
    }
  }

  let sizeBytes: number | undefined;
  if (given('size')) {
    const n = byteCount(raw.size);
    if (n === undefined || n <= 0) {
      problems.push(
        `${label('size')} must be a whole number of bytes greater than 0 (K, M, G, T suffixes allowed), not ${show(raw.size)}`,
      );
    } else if (n % logicalBlockSize !== 0) {
      problems.push(`${label('size')} ${n} is not a multiple of the logical block size ${logicalBlockSize}`);
    } else sizeBytes = n;
  }

  let affinity: QueueAffinity = DEFAULTS.affinity;
  if (given('affinity')) {
    if (!QUEUE_AFFINITIES.includes(raw.affinity as QueueAffinity)) {
      problems.push(`${label('affinity')} must be cpu, queue or none, not ${show(raw.affinity)}`);
    } else affinity = raw.affinity as QueueAffinity;
  }

  let ioScheduler: string = DEFAULTS.ioScheduler;
  if (given('ioScheduler')) {
    // a sysfs elevator name; whether this kernel has it is known once the disk exists
    if (typeof raw.ioScheduler !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(raw.ioScheduler)) {
      problems.push(`${label('ioScheduler')} must be a scheduler name (none, mq-deadline, kyber, bfq) or kernel, not ${show(raw.ioScheduler)}`);
    } else ioScheduler = raw.ioScheduler;
  }

  if (problems.length > 0 || target === undefined) throw new UsageError(problems);

  // no undefined members: the spec goes through JSON (spawn argument, state file) unchanged
  return {
    target,
    devId,
    nrQueues,
    depth,
    logicalBlockSize,
    maxIoBufBytes,
    zeroCopy,
    userCopy,
    batchIo: switches.batchIo === true,
    threadsPerQueue,
    affinity,
    ...(file !== undefined ? { file } : {}),
    bufferedIo: switches.bufferedIo === true,
    offsetSectors,
    ...(sizeBytes !== undefined ? { sizeBytes } : {}),
    recovery,
    recoveryReissue: reissue,
    recoveryFailIo: failIo,
    foreground: switches.foreground === true,
    readOnly: switches.readOnly === true,
    ioScheduler,
  };
}

/** Checks a spec read back from a state file or a spawn argument (it was validated once already). */
export function isAddSpec(v: unknown): v is AddSpec {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return (
    (s.target === 'loop' || s.target === 'null') &&
    typeof s.devId === 'number' &&
    typeof s.nrQueues === 'number' &&
    typeof s.depth === 'number' &&
    typeof s.logicalBlockSize === 'number' &&
    typeof s.maxIoBufBytes === 'number' &&
    (s.zeroCopy === 'off' || s.zeroCopy === 'auto' || s.zeroCopy === 'explicit') &&
    typeof s.userCopy === 'boolean' &&
    (s.affinity === undefined || QUEUE_AFFINITIES.includes(s.affinity as QueueAffinity))
  );
}
