// The process metrics Prometheus users expect (the standard `process_*` names, plus Node's heap),
// read at scrape time from process.cpuUsage(), process.memoryUsage() and /proc.
//
// Not prom-client's collectDefaultMetrics(): it keeps a 100 Hz event-loop-delay timer and a GC
// observer running all the time and its scrape costs ~5x ours (2.0 ms vs 0.4 ms of CPU per
// scrape on the host, mostly the event-loop-lag and GC families) — CPU that, on a small machine,
// is taken from the queue threads. The event loop of this process carries no I/O, so its lag
// is not worth that.

import * as fs from 'node:fs';
import type * as Prom from 'prom-client';

function procFdCount(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1; // minus the one readdir itself holds
  } catch {
    return NaN;
  }
}

function procMaxFds(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

// /proc/self/statm (sizes in pages), not /proc/self/status, per scrape: the kernel writes one
// short line instead of ~60. The page size (Node does not expose it) is found once, from both.
let pageSize = 0;
function statmPages(): number {
  return Number(fs.readFileSync('/proc/self/statm', 'latin1').split(' ', 1)[0]);
}
function procVirtualBytes(): number {
  try {
    if (!pageSize) {
      const m = /^VmSize:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
      const ratio = m ? (Number(m[1]) * 1024) / statmPages() : 4096;
      pageSize = 2 ** Math.round(Math.log2(ratio)); // the two reads are a moment apart
    }
    return statmPages() * pageSize;
  } catch {
    return NaN;
  }
}

/**
 * One reading per scrape. prom-client's Registry.metrics() calls every family's collect()
 * synchronously, one after another, before its first await: a value kept until the next
 * microtask is shared by exactly one scrape.
 */
export function perScrape<T>(read: () => T): () => T {
  let cached: { v: T } | undefined;
  return () => {
    if (!cached) {
      cached = { v: read() };
      queueMicrotask(() => (cached = undefined));
    }
    return cached.v;
  };
}

export function registerProcessMetrics(registry: Prom.Registry, prom: typeof Prom): void {
  const gauge = (name: string, help: string, read: () => number) =>
    new prom.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new prom.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const mem = perScrape(() => process.memoryUsage());
  const cpu = perScrape(() => process.cpuUsage());

  counter('process_cpu_user_seconds_total', 'User CPU time spent in seconds.', () => cpu().user / 1e6);
  counter('process_cpu_system_seconds_total', 'System CPU time spent in seconds.', () => cpu().system / 1e6);
  counter('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', () => {
    const u = cpu();
    return (u.user + u.system) / 1e6;
  });
  const startTime = Math.round(Date.now() / 1000 - process.uptime());
  gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () => startTime);
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => mem().rss);
  gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', procVirtualBytes);
  gauge('process_open_fds', 'Number of open file descriptors.', procFdCount);
  // read once: the limit is set before the service starts (LimitNOFILE=) and a file read per
  // scrape for a value that does not change is CPU taken from the queue threads
  const maxFds = procMaxFds();
  gauge('process_max_fds', 'Maximum number of open file descriptors.', () => maxFds);
  gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', () => mem().heapTotal);
  gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', () => mem().heapUsed);
  gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', () => mem().external);
}
