// Prometheus metrics of every device a `serve` process runs, read at scrape time: one
// NativeServer.stats() per device per scrape (plain loads of the queue threads' relaxed atomics).
// Nothing is recorded per I/O on the JavaScript side and a scrape costs the queue threads nothing.
//
// Names: `ublk_` prefix, base units (bytes, seconds), `_total` for counters. Per device (`dev`, the
// ublk id as in /dev/ublkbN) and queue. Nothing here repeats node_exporter's diskstats for
// /dev/ublkbN (completed I/Os, sectors, io time as the block layer sees them): these are the
// server's side, per hardware queue, with errors and latency as the server measured them.
//
// The registry is prom-client's, with the process metrics and the build info as prom-client
// metrics; the ublk families are written by ublk-exposition.ts from cached label text (see there
// why) and put before prom-client's text in every scrape.
//
// prom-client is loaded by whoever calls createMetricsRegistry (serve only), never by the CLI.

import type * as Prom from 'prom-client';
import { registerProcessMetrics } from './process-metrics';
import { UblkExposition, type MetricsDevice } from './ublk-exposition';

export type { MetricsDevice } from './ublk-exposition';

export interface BuildInfo {
  version: string;
  addon: string;
  liburing: string;
}

/** Creates a registry with every ublk metric, the build info and the process metrics. */
export function createMetricsRegistry(devices: () => MetricsDevice[], build: BuildInfo, prom: typeof Prom = require('prom-client')): Prom.Registry {
  const ublk = new UblkExposition();

  /** prom-client's registry, with the ublk families in front of its own text. */
  class ServiceRegistry extends prom.Registry {
    override async metrics(): Promise<string> {
      const own = ublk.render(devices());
      return `${own}\n\n${await super.metrics()}`;
    }
  }
  const registry = new ServiceRegistry();
  registerProcessMetrics(registry, prom);

  const info = new prom.Gauge({
    name: 'ublk_ts_build_info',
    help: 'Versions of ublk-ts, its native addon and liburing; always 1.',
    labelNames: ['version', 'addon', 'liburing', 'node'] as const,
    registers: [registry],
  });
  info.set({ version: build.version, addon: build.addon, liburing: build.liburing, node: process.version }, 1);

  return registry;
}
