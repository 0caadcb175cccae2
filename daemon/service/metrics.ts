// Prometheus metrics of every device a `serve` process runs, read at scrape time: each metric's
// collect() callback asks the devices for their native counters (NativeServer.stats(), plain loads
// of the queue threads' relaxed atomics). Nothing is recorded per I/O on the JavaScript side and a
// scrape costs the queue threads nothing.
//
// Names: `ublk_` prefix, base units (bytes, seconds), `_total` for counters. Per device (`dev`, the
// ublk id as in /dev/ublkbN) and queue. Nothing here repeats node_exporter's diskstats for
// /dev/ublkbN (completed I/Os, sectors, io time as the block layer sees them): these are the
// server's side, per hardware queue, with errors and latency as the server measured them.
//
// prom-client is loaded by whoever calls createMetricsRegistry (serve only), never by the CLI.

import type * as Prom from 'prom-client';
import type { DataMode, QueueStats } from '../native/binding-types';
import type { Phase } from '../device-server';
import { perScrape, registerProcessMetrics } from './process-metrics';

/** What metrics need from one device of the service. */
export interface MetricsDevice {
  name: string;
  /** -1 before ADD_DEV answered */
  devId: number;
  target: string;
  phase: Phase;
  /** kernel-accepted queue depth, when known */
  depth?: number;
  mode?: DataMode;
  /** native counters now; empty when the device is not live */
  stats(): QueueStats[];
}

export interface BuildInfo {
  version: string;
  addon: string;
  liburing: string;
}

export const PHASES: readonly Phase[] = ['starting', 'live', 'stopping', 'stopped', 'failed', 'detached'];
export const OPS = ['read', 'write', 'flush', 'discard', 'write_zeroes', 'other'] as const;

/** 250 µs → "0.00025": bucket bounds in seconds, without binary-float noise. */
export function secondsLabel(us: number): string {
  return us === Infinity ? '+Inf' : String(Number((us / 1e6).toPrecision(12)));
}

/**
 * A native per-bucket histogram (non-cumulative counts, last bucket +Inf) as Prometheus samples:
 * cumulative `_bucket{le}` in seconds, `_sum` in seconds, `_count`.
 */
export function histogramSamples(
  name: string,
  labels: Record<string, string>,
  q: Pick<QueueStats, 'latencyBucketsUs' | 'latencyCounts' | 'latencySumUs'>,
): Array<{ metricName: string; labels: Record<string, string>; value: number }> {
  const out: Array<{ metricName: string; labels: Record<string, string>; value: number }> = [];
  let cum = 0;
  q.latencyBucketsUs.forEach((ub, i) => {
    cum += q.latencyCounts[i] ?? 0;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: secondsLabel(ub) }, value: cum });
  });
  // the native side always ends with +Inf; should it not, the count still has to be complete
  if (q.latencyBucketsUs[q.latencyBucketsUs.length - 1] !== Infinity) {
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cum });
  }
  out.push({ metricName: `${name}_sum`, labels, value: q.latencySumUs / 1e6 });
  out.push({ metricName: `${name}_count`, labels, value: cum });
  return out;
}

/**
 * prom-client's Histogram only counts its own observe() calls; ours are counted natively. This
 * object has the shape prom-client's Registry reads (name, help, type, get()), and builds the
 * samples from the native buckets at every scrape.
 */
class NativeHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => Array<{ labels: Record<string, string>; q: QueueStats }>,
  ) {}

  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.read().flatMap(({ labels, q }) => histogramSamples(this.name, labels, q)),
    };
  }

  reset(): void {
    // nothing kept here: every scrape reads the native counters afresh
  }
}

/** Creates a registry with every ublk metric, the build info and the process metrics. */
export function createMetricsRegistry(devices: () => MetricsDevice[], build: BuildInfo, prom: typeof Prom = require('prom-client')): Prom.Registry {
  const registry = new prom.Registry();
  registerProcessMetrics(registry, prom);

  /** One read of every live device's queues per scrape, shared by every family. */
  const queues = perScrape(() =>
    devices().flatMap((d) => d.stats().map((q) => ({ d, q, labels: { dev: String(d.devId), queue: String(q.queueId) } }))),
  );

  const perOp = (name: string, help: string, pick: (q: QueueStats) => Record<string, number>) =>
    new prom.Counter({
      name,
      help,
      labelNames: ['dev', 'queue', 'op'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const { q, labels } of queues()) {
          const v = pick(q);
          for (const op of OPS) this.inc({ ...labels, op }, v[op] ?? 0);
        }
      },
    });
  perOp('ublk_io_operations_total', 'I/O requests the server completed, by device, queue and operation.', (q) => q.ops);
  perOp('ublk_io_bytes_total', 'Bytes the server moved for successful requests, by device, queue and operation.', (q) => q.bytes);
  perOp('ublk_io_errors_total', 'Requests the server completed with an error, by device, queue and operation.', (q) => q.errors);

  new prom.Gauge({
    name: 'ublk_io_inflight',
    help: 'Requests the server has received and not yet completed, by device and queue.',
    labelNames: ['dev', 'queue'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { q, labels } of queues()) this.set(labels, q.inflight);
    },
  });

  registry.registerMetric(
    new NativeHistogram(
      'ublk_io_latency_seconds',
      'Time from the request reaching the server to its completion being committed, by device and queue.',
      () => queues().map(({ q, labels }) => ({ q, labels })),
    ) as unknown as Prom.Metric,
  );

  new prom.Gauge({
    name: 'ublk_queue_depth',
    help: 'Tags (request slots) of each hardware queue, as the kernel accepted them.',
    labelNames: ['dev', 'queue'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { d, q, labels } of queues()) if (d.depth !== undefined) this.set(labels, d.depth);
    },
  });

  new prom.Gauge({
    name: 'ublk_device_state',
    help: 'The service\'s view of each configured device: 1 for its current state, 0 for the others.',
    labelNames: ['dev', 'name', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const d of devices()) {
        for (const s of PHASES) this.set({ dev: d.devId >= 0 ? String(d.devId) : '', name: d.name, state: s }, d.phase === s ? 1 : 0);
      }
    },
  });

  new prom.Gauge({
    name: 'ublk_device_zero_copy_mode',
    help: 'Data path of each device (copy, user_copy, zc_auto, zc_explicit); always 1.',
    labelNames: ['dev', 'mode'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const d of devices()) if (d.mode && d.devId >= 0) this.set({ dev: String(d.devId), mode: d.mode }, 1);
    },
  });

  new prom.Gauge({
    name: 'ublk_device_info',
    help: 'Configured name and target of each device; always 1.',
    labelNames: ['dev', 'name', 'target'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const d of devices()) if (d.devId >= 0) this.set({ dev: String(d.devId), name: d.name, target: d.target }, 1);
    },
  });

  const info = new prom.Gauge({
    name: 'ublk_ts_build_info',
    help: 'Versions of ublk-ts, its native addon and liburing; always 1.',
    labelNames: ['version', 'addon', 'liburing', 'node'] as const,
    registers: [registry],
  });
  info.set({ version: build.version, addon: build.addon, liburing: build.liburing, node: process.version }, 1);

  return registry;
}
