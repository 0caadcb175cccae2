// What the benchmark measures: its rows (devices) and jobs (fio workloads), shared by the host side
// (scripts/bench.mjs, which validates BENCH_ROWS/BENCH_JOBS before booting the VM) and the driver
// that runs next to the kernel (bench/run.mjs).

/**
 * Devices, in the order they are measured. `cli` = arguments of `ublk-ts add` (@FILE/@SIZE filled
 * in); `mode` = the data mode(s) `ublk-ts list --json` must report, else the row is n/a.
 */
export const ROWS = [
  { name: 'raw-file', kind: 'raw', what: 'fio straight on the backing file' },
  { name: 'kernel-loop', kind: 'loop', what: 'the kernel loop driver, losetup --direct-io=on' },
  { name: 'ublk-loop-copy', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE'], mode: 'copy' },
  { name: 'ublk-loop-usercopy', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--usercopy'], mode: 'user_copy' },
  { name: 'ublk-loop-zc-auto', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '-z', '--zc-mode', 'auto'], mode: 'zc_auto' },
  { name: 'ublk-loop-zc-explicit', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '-z', '--zc-mode', 'explicit'], mode: 'zc_explicit' },
  // Batch I/O (UBLK_F_BATCH_IO, Linux 7.0): requests fetched and committed many per command.
  { name: 'ublk-loop-zc-batch', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '-z', '--batch-io'], mode: 'zc_auto' },
  // Two threads serving the one queue, its tags split between them (UBLK_F_PER_IO_DAEMON, 6.16).
  { name: 'ublk-loop-zc-2t', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '-z', '--threads-per-queue', '2'], mode: 'zc_auto' },
  // The queue thread left to the scheduler (--affinity none) instead of bound to one CPU (default).
  { name: 'ublk-loop-zc-unbound', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '-z', '--affinity', 'none'], mode: 'zc_auto' },
  { name: 'ublk-null', kind: 'ublk', cli: ['-t', 'null', '--size', '@SIZE'], mode: 'copy' },
  { name: 'ublk-null-zc', kind: 'ublk', cli: ['-t', 'null', '-z', '--size', '@SIZE'], mode: ['zc_auto', 'zc_explicit'] },
  // The reference C server, for the "at least what ublksrv reached": only with
  // BENCH_UBLKSRV=/path/to/ublk (its `ublk` CLI, built by the user; nothing of it is in this repo).
  // `ublk add -t loop -z` asks for AUTO_BUF_REG where the kernel has it, as our -z does.
  { name: 'ublksrv-loop-copy', kind: 'ublksrv', cli: ['-t', 'loop', '-f', '@FILE'], mode: 'copy', optIn: 'BENCH_UBLKSRV' },
  { name: 'ublksrv-loop-zc', kind: 'ublksrv', cli: ['-t', 'loop', '-f', '@FILE', '-z'], mode: 'zc_auto', optIn: 'BENCH_UBLKSRV' },
  { name: 'ublksrv-loop-zc-batch', kind: 'ublksrv', cli: ['-t', 'loop', '-f', '@FILE', '-z', '-b'], mode: 'zc_auto', optIn: 'BENCH_UBLKSRV' },
];

/** How a metric is named in tables and goal texts. */
export const METRIC_LABEL = { iops: 'IOPS', mibps: 'MiB/s' };

/** fio workloads; every one runs with --ioengine=io_uring --direct=1 --numjobs=1, time based. */
export const JOBS = [
  { name: '4k-randread-qd1', rw: 'randread', bs: '4k', qd: 1 },
  { name: '4k-randread-qd32', rw: 'randread', bs: '4k', qd: 32 },
  { name: '4k-randwrite-qd1', rw: 'randwrite', bs: '4k', qd: 1 },
  { name: '4k-randwrite-qd32', rw: 'randwrite', bs: '4k', qd: 32 },
  { name: '128k-read-qd32', rw: 'read', bs: '128k', qd: 32 },
  { name: '128k-write-qd32', rw: 'write', bs: '128k', qd: 32 },
];

/** The row every ratio is taken against. */
export const BASELINE = 'kernel-loop';

/**
 * The goals (not test assertions). `ratio(row, job, metric)` over `ratio(ref, job, metric)` ≥ min.
 * IOPS and MiB/s ratios are the same number within one job (same block size).
 */
export const CHECKS = [
  { id: 'zc-4k-randread-qd32-vs-loop', row: 'ublk-loop-zc-auto', ref: 'kernel-loop', job: '4k-randread-qd32', metric: 'iops', min: 0.40,
    text: '4k randread QD32: zc-auto >= 0.40x kernel-loop IOPS' },
  { id: 'zc-128k-read-vs-loop', row: 'ublk-loop-zc-auto', ref: 'kernel-loop', job: '128k-read-qd32', metric: 'mibps', min: 1.10,
    text: '128k seq read QD32: zc-auto >= 1.10x kernel-loop MiB/s' },
  { id: 'zc-128k-write-vs-loop', row: 'ublk-loop-zc-auto', ref: 'kernel-loop', job: '128k-write-qd32', metric: 'mibps', min: 1.10,
    text: '128k seq write QD32: zc-auto >= 1.10x kernel-loop MiB/s' },
  { id: 'zc-128k-read-vs-copy', row: 'ublk-loop-zc-auto', ref: 'ublk-loop-copy', job: '128k-read-qd32', metric: 'mibps', min: 1.6,
    text: '128k seq read QD32: zc-auto >= 1.6x ublk copy MiB/s' },
  { id: 'zc-128k-write-vs-copy', row: 'ublk-loop-zc-auto', ref: 'ublk-loop-copy', job: '128k-write-qd32', metric: 'mibps', min: 1.6,
    text: '128k seq write QD32: zc-auto >= 1.6x ublk copy MiB/s' },
  // The same goals for -z with batch I/O, and it against ublksrv's batch mode (`ublk add -z -b`).
  // `extra`: not the issue's own goals; reported only when their row ran.
  ...[['4k-randread-qd32', 'iops', '4k randread QD32', 0.40], ['128k-read-qd32', 'mibps', '128k seq read QD32', 1.10], ['128k-write-qd32', 'mibps', '128k seq write QD32', 1.10]].flatMap(
    ([job, metric, what, min]) => [
      { id: `zc-batch-${job}-vs-loop`, row: 'ublk-loop-zc-batch', ref: 'kernel-loop', job, metric, min, extra: true,
        text: `${what}: zc-auto --batch-io >= ${min.toFixed(2)}x kernel-loop ${METRIC_LABEL[metric]}` },
      { id: `zc-batch-${job}-vs-ublksrv`, row: 'ublk-loop-zc-batch', ref: 'ublksrv-loop-zc-batch', job, metric, min: 1.0, extra: true,
        text: `${what}: zc-auto --batch-io >= ublksrv -z -b (same boot) ${METRIC_LABEL[metric]}` },
    ]),
  // "At least what ublksrv reached", taken literally (reported only where its opt-in row ran).
  ...[['4k-randread-qd32', 'iops', '4k randread QD32'], ['128k-read-qd32', 'mibps', '128k seq read QD32'], ['128k-write-qd32', 'mibps', '128k seq write QD32']].map(
    ([job, metric, what]) => ({ id: `zc-${job}-vs-ublksrv`, row: 'ublk-loop-zc-auto', ref: 'ublksrv-loop-zc', job, metric, min: 1.0,
      text: `${what}: zc-auto >= ublksrv -z (same boot) ${METRIC_LABEL[metric]}` })),
];

/**
 * Parses a comma list of names against `known`; empty/undefined = all. Throws on unknown names.
 * An opt-in entry (it needs something this repo does not have, named by the variable in its
 * `optIn`) is only part of "all" when that variable is set in `env`.
 */
export function pick(list, known, label, env = {}) {
  if (!list || !list.trim()) return known.filter((x) => !x.optIn || env[x.optIn]).map((x) => x.name);
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !known.some((k) => k.name === n));
  if (bad.length) throw new Error(`${label}: unknown name(s) ${bad.join(', ')}; known: ${known.map((k) => k.name).join(', ')}`);
  // Keep the canonical order (the baseline is measured before the rows compared with it).
  return known.map((k) => k.name).filter((n) => names.includes(n));
}
