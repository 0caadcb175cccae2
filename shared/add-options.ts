// The options every `add` has, whatever its target, declared once (options.ts says what one
// declaration gives). Spellings follow ublksrv's `ublk add` where it has the option (users'
// scripts carry them), with the dashed forms accepted too. A target's own options are declared in
// its descriptor (targets/*.ts); the two together make an add spec (daemon/spec.ts).

import { UsageError } from './errors';
import { kinds, readGroup, show, type GroupContext, type OptionDecl, type RawOptions, type ValuesOf } from './options';

export type ZeroCopyMode = 'off' | 'auto' | 'explicit';

/**
 * Where queue threads run: `cpu` binds each to one CPU of those the block layer maps to its queue
 * (as ublksrv does), `queue` to all of them, `none` leaves it to the scheduler.
 */
export const QUEUE_AFFINITIES = ['cpu', 'queue', 'none'] as const;
export type QueueAffinity = (typeof QUEUE_AFFINITIES)[number];

export const LIMITS = {
  /** dev ids are char-device minors: below 1 << MINORBITS */
  maxDevId: (1 << 20) - 1,
  maxQueues: 64,
  maxDepth: 4096,
  /** more threads than CPUs only adds switching; 64 covers large machines */
  maxThreadsPerQueue: 64,
  maxBusyPollUs: 100000,
  logicalBlockSizes: [512, 1024, 2048, 4096] as const,
  maxIoBufBytes: 32 * 1024 * 1024,
  ioBufAlign: 4096,
} as const;

export const COMMON_OPTIONS = {
  id: {
    cli: { short: '-n', long: '--number', arg: '<id>' },
    description: 'device id: /dev/ublkbID; -1 lets the kernel choose (default: -1)',
    kind: kinds.int(-1, LIMITS.maxDevId),
    default: -1,
  },
  queues: {
    cli: { short: '-q', long: '--queues', arg: '<nq>' },
    description: 'hardware queues, 1-64 (default: 1)',
    kind: kinds.int(1, LIMITS.maxQueues),
    default: 1,
  },
  depth: {
    cli: { short: '-d', long: '--depth', arg: '<depth>' },
    description: 'queue depth, 1-4096 (default: 128)',
    kind: kinds.int(1, LIMITS.maxDepth),
    default: 128,
  },
  logicalBlockSize: {
    cli: { short: '-b', long: '--logical-block-size', aliases: ['--logical_block_size'], arg: '<bytes>' },
    description: 'logical block size: 512, 1024, 2048 or 4096 (default: 512)',
    kind: kinds.oneOf(LIMITS.logicalBlockSizes),
    default: 512,
  },
  zeroCopy: {
    cli: { short: '-z', long: '--zerocopy', aliases: ['--zero-copy', '--zero_copy'] },
    description:
      'zero copy (needs Linux 6.15; automatic buffer registration from 6.16). In a config file: false, true or "auto" (AUTO_BUF_REG when the kernel has it, else REGISTER_IO_BUF), "explicit" (always REGISTER_IO_BUF)',
    // -z on the command line gives true; --zc-mode refines it (readCommon)
    kind: { ...kinds.oneOf([false, true, 'auto', 'explicit'] as const), expect: 'must be true, false, "auto" or "explicit"' },
  },
  zcMode: {
    cli: { long: '--zc-mode', aliases: ['--zc_mode'], arg: '<auto|explicit>' },
    field: false,
    description: 'with -z: auto uses AUTO_BUF_REG when the kernel has it, explicit always REGISTER_IO_BUF (default: auto)',
    kind: kinds.oneOf(['auto', 'explicit'] as const),
  },
  userCopy: {
    cli: { long: '--usercopy', aliases: ['--user-copy', '--user_copy'] },
    description: 'copy data with pread/pwrite on /dev/ublkcN (needs Linux 6.5)',
    kind: kinds.switch(),
    default: false,
  },
  batchIo: {
    cli: { long: '--batch-io', aliases: ['--batch_io'] },
    description: 'fetch and commit requests in batches, one command for many (needs Linux 7.0)',
    kind: kinds.switch(),
    default: false,
  },
  threadsPerQueue: {
    cli: { long: '--threads-per-queue', aliases: ['--threads_per_queue'], arg: '<n>' },
    description:
      'threads serving each queue, its tags split between them, so one queue can use several CPUs (needs Linux 6.16; not with --batch-io; default: 1)',
    kind: kinds.int(1, LIMITS.maxThreadsPerQueue),
    default: 1,
  },
  affinity: {
    cli: { long: '--affinity', arg: '<cpu|queue|none>' },
    description:
      'where queue threads run: cpu binds each to one of the CPUs the kernel maps to its queue (as ublksrv does), queue to all of them, none leaves it to the scheduler (default: cpu)',
    kind: kinds.oneOf(QUEUE_AFFINITIES),
    // A queue thread the scheduler may move gets pulled next to whoever wakes it, the application
    // submitting I/O, and then shares that CPU with it; ublksrv binds its queue threads to one CPU.
    default: 'cpu',
  },
  busyPoll: {
    cli: { long: '--busy-poll', aliases: ['--busy_poll'], arg: '<µs>' },
    description:
      "after a pass of a queue's ring that had work, poll the ring this long before sleeping: less latency at low queue depth for CPU time (0: sleep at once; default: 0)",
    kind: kinds.int(0, LIMITS.maxBusyPollUs),
    default: 0,
  },
  maxIoBufBytes: {
    cli: { long: '--max_io_buf_bytes', aliases: ['--max-io-buf-bytes'], arg: '<bytes>' },
    description: 'largest request, a multiple of 4096 up to 32 MiB (default: 524288)',
    kind: kinds.bytes(LIMITS.ioBufAlign, LIMITS.maxIoBufBytes, LIMITS.ioBufAlign, 'must be a multiple of 4096 from 4096 to 33554432 (32 MiB)'),
    default: 512 * 1024,
  },
  recovery: {
    cli: { short: '-r', long: '--recovery', aliases: ['--user_recovery', '--user-recovery'], arg: '<0|1>' },
    description: 'keep the disk (QUIESCED) when the server dies, for `recover` (needs Linux 6.1)',
    kind: kinds.zeroOrOne(),
  },
  recoveryReissue: {
    cli: { short: '-i', long: '--recovery-reissue', aliases: ['--user_recovery_reissue', '--user-recovery-reissue'], arg: '<0|1>' },
    description: 'with -r 1: re-issue in-flight I/O to the recovered server',
    kind: kinds.zeroOrOne(),
  },
  recoveryFailIo: {
    cli: { short: '-e', long: '--recovery-fail-io', aliases: ['--user_recovery_fail_io', '--user-recovery-fail-io'], arg: '<0|1>' },
    description: 'with -r 1: fail I/O while no server runs (needs Linux 6.13)',
    kind: kinds.zeroOrOne(),
  },
  readOnly: {
    cli: { long: '--read-only', aliases: ['--read_only'] },
    description: 'expose a read-only disk',
    kind: kinds.switch(),
    default: false,
  },
  ioScheduler: {
    cli: { long: '--io-scheduler', aliases: ['--io_scheduler'], arg: '<name|kernel>' },
    description:
      "I/O scheduler of the disk: none, mq-deadline, kyber, bfq, or kernel to keep the kernel's choice (default: none, as the kernel's loop driver)",
    // a sysfs elevator name; whether this kernel has it is known once the disk exists
    kind: kinds.text('^[a-z0-9][a-z0-9_-]{0,31}$', 'must be a scheduler name (none, mq-deadline, kyber, bfq) or kernel'),
    // As the kernel's loop driver picks for itself: the server and the backing store do their own
    // queueing, and mq-deadline in front of them puts every dispatch through kblockd (README.md,
    // the add command's row, has the figure).
    default: 'none',
  },
  shared: {
    cli: { long: '--shared' },
    description:
      'the backing store is shared with other disks on purpose (a cluster filesystem, a read-mostly image): do not refuse one that another writable disk uses',
    kind: kinds.switch(),
    default: false,
  },
  foreground: {
    cli: { long: '--foreground' },
    field: false,
    description: 'serve in this process until SIGTERM/SIGINT',
    kind: kinds.switch(),
    default: false,
  },
} satisfies Record<string, OptionDecl>;

export type CommonKey = keyof typeof COMMON_OPTIONS;
type CommonValues = ValuesOf<typeof COMMON_OPTIONS>;

/**
 * What every add spec holds besides its target: the common options, checked and resolved (-z and
 * --zc-mode folded into one mode, -i / -e implying -r). `foreground` is how a server runs, not
 * what it serves: it is not part of the spec.
 */
export type CommonSpec = Omit<CommonValues, 'zeroCopy' | 'zcMode' | 'recovery' | 'recoveryReissue' | 'recoveryFailIo' | 'foreground'> & {
  zeroCopy: ZeroCopyMode;
  recovery: boolean;
  recoveryReissue: boolean;
  recoveryFailIo: boolean;
};

/**
 * Reads the common options from `raw` (by key) and checks how they go together. Returns the
 * spec's common part and every problem found; `foreground` separately (a way to run).
 */
export function readCommon(raw: RawOptions, ctx: GroupContext): { common: CommonSpec; foreground: boolean; problems: string[] } {
  const { values: v, problems } = readGroup(COMMON_OPTIONS, raw, ctx);
  const label = ctx.label;

  // every thread needs at least one tag of its queue
  if (v.threadsPerQueue > v.depth) {
    problems.push(`${label('threadsPerQueue')} must be a whole number from 1 to ${Math.min(LIMITS.maxThreadsPerQueue, v.depth)}, not ${show(raw.threadsPerQueue)}`);
  }

  // zero copy: -z (or a file's true/"auto"/"explicit"), refined by --zc-mode
  const z = v.zeroCopy;
  let zeroCopy: ZeroCopyMode = z === undefined || z === false ? 'off' : z === true ? 'auto' : z;
  if (v.zcMode !== undefined) {
    if (zeroCopy === 'off') problems.push(`${label('zcMode')} needs ${label('zeroCopy')}`);
    else zeroCopy = v.zcMode;
  }
  if (zeroCopy !== 'off' && v.userCopy) {
    problems.push(`${label('zeroCopy')} and ${label('userCopy')} cannot be used together`);
  }
  // a batch command carries tags of the whole queue: the kernel has no per-I/O daemons with it
  if (v.batchIo && v.threadsPerQueue > 1) {
    problems.push(`${label('threadsPerQueue')} above 1 cannot be used with ${label('batchIo')}`);
  }

  // recovery: none, r, r+i, r+e (ublksrv lets -i 1 / -e 1 imply -r 1; an explicit -r 0 contradicts)
  const reissue = v.recoveryReissue === true;
  const failIo = v.recoveryFailIo === true;
  if (reissue && failIo) {
    problems.push(`${label('recoveryReissue')} and ${label('recoveryFailIo')} cannot both be 1`);
  }
  if (v.recovery === false && (reissue || failIo)) {
    problems.push(`${label(reissue ? 'recoveryReissue' : 'recoveryFailIo')} 1 needs ${label('recovery')} 1`);
  }

  const { zcMode: _m, foreground, recovery, recoveryReissue: _r, recoveryFailIo: _f, zeroCopy: _z, ...rest } = v;
  const common: CommonSpec = {
    ...rest,
    zeroCopy,
    recovery: recovery === true || reissue || failIo,
    recoveryReissue: reissue,
    recoveryFailIo: failIo,
  };
  return { common, foreground, problems };
}

/** Throws one UsageError listing every problem, when there are any. */
export function throwProblems(problems: string[]): void {
  if (problems.length > 0) throw new UsageError(problems);
}
