// What the benchmark measures: its rows (devices) and jobs (fio workloads), shared by the host side
// (scripts/bench.mjs, which validates BENCH_ROWS/BENCH_JOBS before booting the VM) and the driver
// that runs next to the kernel (bench/run.mjs).

/**
 * Devices, in the order they are measured. `cli` = arguments of `ublk-ts add` (@FILE/@SIZE filled
 * in); `mode` = the data mode(s) `ublk-ts list --json` must report, else the row is n/a. Every row
 * uses the one backing file (one row runs I/O at a time): the loop rows say so with --shared.
 */
export const ROWS = [
  { name: 'raw-file', kind: 'raw', what: 'fio straight on the backing file' },
  { name: 'kernel-loop', kind: 'loop', what: 'the kernel loop driver, losetup --direct-io=on' },
  { name: 'ublk-loop-copy', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared'], mode: 'copy' },
  { name: 'ublk-loop-usercopy', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared', '--usercopy'], mode: 'user_copy' },
  { name: 'ublk-loop-zc-auto', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared', '-z', '--zc-mode', 'auto'], mode: 'zc_auto' },
  { name: 'ublk-loop-zc-explicit', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared', '-z', '--zc-mode', 'explicit'], mode: 'zc_explicit' },
  // Batch I/O (UBLK_F_BATCH_IO, Linux 7.0): requests fetched and committed many per command.
  { name: 'ublk-loop-zc-batch', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared', '-z', '--batch-io'], mode: 'zc_auto' },
  // Two threads serving the one queue, its tags split between them (UBLK_F_PER_IO_DAEMON, 6.16).
  { name: 'ublk-loop-zc-2t', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared', '-z', '--threads-per-queue', '2'], mode: 'zc_auto' },
  // The queue thread left to the scheduler (--affinity none) instead of bound to one CPU (default).
  { name: 'ublk-loop-zc-unbound', kind: 'ublk', cli: ['-t', 'loop', '-f', '@FILE', '--shared', '-z', '--affinity', 'none'], mode: 'zc_auto' },
  { name: 'ublk-null', kind: 'ublk', cli: ['-t', 'null', '--size', '@SIZE'], mode: 'copy' },
  { name: 'ublk-null-zc', kind: 'ublk', cli: ['-t', 'null', '-z', '--size', '@SIZE'], mode: ['zc_auto', 'zc_explicit'] },
  // Disks written in JavaScript (-t js, copy mode), against the native null target in copy mode
  // (`ref`): one that completes every request at once (examples/null-disk.mjs), and the sparse
  // in-memory disk (examples/memory-disk.mjs). Only with BENCH_JS=1.
  { name: 'ublk-js-null', kind: 'ublk', cli: ['-t', 'js', '--module', '@EXAMPLES/null-disk.mjs', '--set', 'size=@SIZE'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_JS' },
  // Two queues, both served by the one JavaScript thread: does it keep up (srv_js_cpu_pct)?
  { name: 'ublk-js-null-2q', kind: 'ublk', cli: ['-t', 'js', '--module', '@EXAMPLES/null-disk.mjs', '--set', 'size=@SIZE', '-q', '2'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_JS' },
  { name: 'ublk-js-memory', kind: 'ublk', cli: ['-t', 'js', '--module', '@EXAMPLES/memory-disk.mjs', '--set', 'size=@SIZE'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_JS' },
  // Busy polling (--busy-poll 200: after a pass with work the queue polls its ring 200 µs before
  // it sleeps), against the native null target without it: js null, the memory disk, native null.
  { name: 'ublk-js-null-bp', kind: 'ublk', cli: ['-t', 'js', '--module', '@EXAMPLES/null-disk.mjs', '--set', 'size=@SIZE', '--busy-poll', '200'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_JS' },
  { name: 'ublk-js-memory-bp', kind: 'ublk', cli: ['-t', 'js', '--module', '@EXAMPLES/memory-disk.mjs', '--set', 'size=@SIZE', '--busy-poll', '200'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_JS' },
  { name: 'ublk-null-bp', kind: 'ublk', cli: ['-t', 'null', '--size', '@SIZE', '--busy-poll', '200'], mode: 'copy', ref: 'ublk-null' },
  // The same rows from another ublk-ts checkout (BENCH_BASELINE=/path/to/checkout, built there):
  // an A/B of two commits in one boot, e.g. before and after a change to the engine.
  { name: 'base-loop-zc-auto', kind: 'ublk', impl: 'baseline', cli: ['-t', 'loop', '-f', '@FILE', '-z', '--zc-mode', 'auto'], mode: 'zc_auto', optIn: 'BENCH_BASELINE' },
  { name: 'base-loop-copy', kind: 'ublk', impl: 'baseline', cli: ['-t', 'loop', '-f', '@FILE'], mode: 'copy', optIn: 'BENCH_BASELINE' },
  { name: 'base-null-zc', kind: 'ublk', impl: 'baseline', cli: ['-t', 'null', '-z', '--size', '@SIZE'], mode: ['zc_auto', 'zc_explicit'], optIn: 'BENCH_BASELINE' },
  { name: 'base-js-null', kind: 'ublk', impl: 'baseline', cli: ['-t', 'js', '--module', '@EXAMPLES/null-disk.mjs', '--set', 'size=@SIZE'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_BASELINE' },
  { name: 'base-js-memory', kind: 'ublk', impl: 'baseline', cli: ['-t', 'js', '--module', '@EXAMPLES/memory-disk.mjs', '--set', 'size=@SIZE'], mode: 'copy', ref: 'ublk-null', optIn: 'BENCH_BASELINE' },
  { name: 'base-nbd-copy', kind: 'ublk', impl: 'baseline', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT'], mode: 'copy', ref: 'nbd-kernel', optIn: 'BENCH_BASELINE' },
  { name: 'base-nbd-zc', kind: 'ublk', impl: 'baseline', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT', '-z'], mode: ['zc_auto', 'zc_explicit'], ref: 'nbd-kernel', optIn: 'BENCH_BASELINE' },
  // NBD: one nbdkit server (memory plugin, TCP on 127.0.0.1: -z needs TCP) that bench/run.mjs starts, behind the
  // kernel's nbd driver (nbd-client) and behind ublk-ts -t nbd; only with BENCH_NBD=1. Their
  // ratios are taken against the kernel's nbd driver with as many connections (`ref`).
  { name: 'nbd-kernel', kind: 'nbd-kernel', connections: 1, what: 'the kernel nbd driver, nbd-client 127.0.0.1 PORT (one connection)', optIn: 'BENCH_NBD' },
  { name: 'nbd-kernel-4c', kind: 'nbd-kernel', connections: 4, what: 'the kernel nbd driver, nbd-client -C 4 (four connections)', optIn: 'BENCH_NBD' },
  { name: 'ublk-nbd-copy', kind: 'ublk', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT'], mode: 'copy', ref: 'nbd-kernel', optIn: 'BENCH_NBD' },
  { name: 'ublk-nbd-zc', kind: 'ublk', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT', '-z'], mode: ['zc_auto', 'zc_explicit'], ref: 'nbd-kernel', optIn: 'BENCH_NBD' },
  { name: 'ublk-nbd-copy-bp', kind: 'ublk', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT', '--busy-poll', '200'], mode: 'copy', ref: 'nbd-kernel', optIn: 'BENCH_NBD' },
  { name: 'ublk-nbd-copy-4q', kind: 'ublk', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT', '-q', '4'], mode: 'copy', ref: 'nbd-kernel-4c', optIn: 'BENCH_NBD' },
  { name: 'ublk-nbd-zc-4q', kind: 'ublk', cli: ['-t', 'nbd', '--host', '127.0.0.1', '--port', '@NBDPORT', '-q', '4', '-z'], mode: ['zc_auto', 'zc_explicit'], ref: 'nbd-kernel-4c', optIn: 'BENCH_NBD' },
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
  // A soak: 2 million mixed 4k I/Os, for the server's memory over time (srv_rss_kb in the results);
  // only when named in BENCH_JOBS (pick() leaves an opt-in job out of "all").
  { name: '4k-randrw-2m', rw: 'randrw', bs: '4k', qd: 32, ios: 2000000, optIn: 'BENCH_SOAK' },
];

/** The row every ratio is taken against, unless a row names its own (`ref`). */
export const BASELINE = 'kernel-loop';

/** The reference of a row's ratios. */
export function refOf(name) {
  return ROWS.find((r) => r.name === name)?.ref ?? BASELINE;
}

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
  // An A/B against another checkout (BENCH_BASELINE): no loss beyond the noise.
  ...[['4k-randread-qd32', 'iops', '4k randread QD32'], ['128k-read-qd32', 'mibps', '128k seq read QD32'], ['128k-write-qd32', 'mibps', '128k seq write QD32']].map(
    ([job, metric, what]) => ({ id: `zc-${job}-vs-baseline`, row: 'ublk-loop-zc-auto', ref: 'base-loop-zc-auto', job, metric, min: 0.97, extra: true,
      text: `${what}: zc-auto >= 0.97x the baseline checkout's (BENCH_BASELINE, same boot) ${METRIC_LABEL[metric]}` })),
  // NBD (issue 24): ublk-ts -t nbd at or above the kernel's nbd driver on every job, above it at
  // 128k with -z; one connection and four.
  ...['4k-randread-qd32', '4k-randread-qd1', '4k-randwrite-qd32', '4k-randwrite-qd1', '128k-read-qd32', '128k-write-qd32'].flatMap((job) =>
    [['ublk-nbd-copy', 'nbd-kernel'], ['ublk-nbd-zc', 'nbd-kernel'], ['ublk-nbd-copy-4q', 'nbd-kernel-4c'], ['ublk-nbd-zc-4q', 'nbd-kernel-4c']].map(([row, ref]) => ({
      id: `${row}-${job}-vs-${ref}`, row, ref, job, metric: 'iops', min: row.includes('zc') && job.startsWith('128k') ? 1.01 : 1.0, extra: true,
      text: `${job}: ${row} ${row.includes('zc') && job.startsWith('128k') ? '>' : '>='} ${ref} (same server, same boot)`,
    }))),
  // JavaScript targets (issue 23), against the native null target in the same boot: the null one
  // >= 0.6x its IOPS at depth 32 and <= 1.5x its latency at depth 1 (>= 1/1.5 of its IOPS: one
  // request in flight, so IOPS is 1 / latency); the in-memory disk >= 0.5x at 128k.
  { id: 'js-null-4k-randread-qd32-vs-null', row: 'ublk-js-null', ref: 'ublk-null', job: '4k-randread-qd32', metric: 'iops', min: 0.6, extra: true,
    text: '4k randread QD32: js null >= 0.6x native null IOPS' },
  { id: 'js-null-4k-randread-qd1-vs-null', row: 'ublk-js-null', ref: 'ublk-null', job: '4k-randread-qd1', metric: 'iops', min: 1 / 1.5, extra: true,
    text: '4k randread QD1: js null latency <= 1.5x native null (IOPS >= 0.67x)' },
  { id: 'js-null-bp-4k-randread-qd1-vs-null', row: 'ublk-js-null-bp', ref: 'ublk-null', job: '4k-randread-qd1', metric: 'iops', min: 1 / 1.5, extra: true,
    text: '4k randread QD1: js null with --busy-poll 200 latency <= 1.5x native null without (IOPS >= 0.67x)' },
  ...['128k-read-qd32', '128k-write-qd32'].map((job) => ({ id: `js-memory-${job}-vs-null`, row: 'ublk-js-memory', ref: 'ublk-null', job, metric: 'mibps', min: 0.5, extra: true,
    text: `${job}: js in-memory disk >= 0.5x native null MiB/s` })),
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
