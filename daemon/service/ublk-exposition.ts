// The ublk families of /metrics, written as Prometheus text straight from the native counters.
//
// Why not prom-client's Counter/Gauge for these: its generic path (reset + inc per label set,
// hashing every label object, escaping and formatting every sample) cost ~0.9 ms of CPU per scrape
// on the host for one device, and ~40 ms of the service's CPU in the emulated test guest, where
// that CPU is taken from the queue threads. Here the text before each value — name and labels,
// escaped once — is built the first time a device/queue is seen and kept while it exists, so a
// scrape is one stats() read per device and a number-to-string per sample. prom-client still owns
// the registry, the content type, the process metrics and the build info (metrics.ts).

import type { DataMode, QueueStats } from '../../shared/binding';
import type { Phase } from '../device-server';

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

const PHASES: readonly Phase[] = ['starting', 'live', 'stopping', 'stopped', 'failed', 'detached'];
const OPS = ['read', 'write', 'flush', 'discard', 'write_zeroes', 'other'] as const;

/** 250 µs → "0.00025": bucket bounds in seconds, without binary-float noise. */
export function secondsLabel(us: number): string {
  return us === Infinity ? '+Inf' : String(Number((us / 1e6).toPrecision(12)));
}

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
}

const F = {
  ops: { name: 'ublk_io_operations_total', type: 'counter', help: 'I/O requests the server completed, by device, queue and operation.' },
  bytes: { name: 'ublk_io_bytes_total', type: 'counter', help: 'Bytes the server moved for successful requests, by device, queue and operation.' },
  errors: { name: 'ublk_io_errors_total', type: 'counter', help: 'Requests the server completed with an error, by device, queue and operation.' },
  inflight: { name: 'ublk_io_inflight', type: 'gauge', help: 'Requests the server has received and not yet completed, by device and queue.' },
  latency: {
    name: 'ublk_io_latency_seconds',
    type: 'histogram',
    help: 'Time from the request reaching the server to its completion being committed, by device and queue.',
  },
  zcFallback: {
    name: 'ublk_zc_fallback_registrations_total',
    type: 'counter',
    help: 'Zero-copy requests whose pages the kernel could not register automatically (AUTO_BUF_REG fallback) and the server registered itself, by device and queue.',
  },
  target: {
    name: 'ublk_target_events_total',
    type: 'counter',
    help: "What a target counts of its own (NBD: reconnects, bytes sent and received), by device, queue, target and counter name.",
  },
  depth: { name: 'ublk_queue_depth', type: 'gauge', help: 'Tags (request slots) of each hardware queue, as the kernel accepted them.' },
  state: { name: 'ublk_device_state', type: 'gauge', help: "The service's view of each configured device: 1 for its current state, 0 for the others." },
  mode: { name: 'ublk_device_zero_copy_mode', type: 'gauge', help: 'Data path of each device (copy, user_copy, zc_auto, zc_explicit); always 1.' },
  info: { name: 'ublk_device_info', type: 'gauge', help: 'Configured name and target of each device; always 1.' },
} as const satisfies Record<string, Family>;

type Key = keyof typeof F;
const ORDER: Key[] = ['ops', 'bytes', 'errors', 'inflight', 'latency', 'zcFallback', 'target', 'depth', 'state', 'mode', 'info'];

/** The text before the value of every sample of one queue: `name{labels} `. */
interface QueueText {
  ops: string[];
  bytes: string[];
  errors: string[];
  inflight: string;
  zcFallback: string;
  depth: string;
  /** per bucket bound of `bounds` */
  buckets: string[];
  bounds: number[];
  sum: string;
  count: string;
  /** the target's counters: their sample text by counter name, made when first seen */
  target: Map<string, string>;
  targetLabels: string;
}

function queueText(dev: string, queue: string, bounds: number[], target: string): QueueText {
  const l = `dev="${dev}",queue="${queue}"`;
  const perOp = (name: string) => OPS.map((op) => `${name}{${l},op="${op}"} `);
  // the native side always ends with +Inf; should it not, the count still has to be complete
  const les = bounds[bounds.length - 1] === Infinity ? bounds : [...bounds, Infinity];
  return {
    ops: perOp(F.ops.name),
    bytes: perOp(F.bytes.name),
    errors: perOp(F.errors.name),
    inflight: `${F.inflight.name}{${l}} `,
    zcFallback: `${F.zcFallback.name}{${l}} `,
    depth: `${F.depth.name}{${l}} `,
    buckets: les.map((ub) => `${F.latency.name}_bucket{${l},le="${secondsLabel(ub)}"} `),
    bounds,
    sum: `${F.latency.name}_sum{${l}} `,
    count: `${F.latency.name}_count{${l}} `,
    target: new Map(),
    targetLabels: `${l},target="${escapeLabel(target)}"`,
  };
}

function sameBounds(a: number[], b: number[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The same for one device's own samples. */
interface DeviceText {
  state: string[];
  mode: Map<string, string>;
  info: string;
}

function deviceText(d: MetricsDevice): DeviceText {
  const dev = d.devId >= 0 ? String(d.devId) : '';
  const name = escapeLabel(d.name);
  return {
    state: PHASES.map((s) => `${F.state.name}{dev="${dev}",name="${name}",state="${s}"} `),
    mode: new Map(),
    info: `${F.info.name}{dev="${dev}",name="${name}",target="${escapeLabel(d.target)}"} `,
  };
}

/** Renders the ublk families; keeps the label text of the devices and queues it has seen. */
export class UblkExposition {
  private readonly queues = new Map<string, QueueText>();
  private readonly devices = new Map<string, DeviceText>();

  render(devices: readonly MetricsDevice[]): string {
    const out: Record<Key, string[]> = { ops: [], bytes: [], errors: [], inflight: [], latency: [], zcFallback: [], target: [], depth: [], state: [], mode: [], info: [] };
    const seenQ = new Set<string>();
    const seenD = new Set<string>();
    for (const d of devices) {
      const dk = `${d.devId}\0${d.name}\0${d.target}`;
      seenD.add(dk);
      let dt = this.devices.get(dk);
      if (!dt) this.devices.set(dk, (dt = deviceText(d)));
      PHASES.forEach((s, i) => out.state.push(dt.state[i] + (d.phase === s ? '1' : '0')));
      if (d.devId < 0) continue;
      out.info.push(`${dt.info}1`);
      if (d.mode) {
        let m = dt.mode.get(d.mode);
        if (!m) dt.mode.set(d.mode, (m = `${F.mode.name}{dev="${d.devId}",mode="${escapeLabel(d.mode)}"} `));
        out.mode.push(`${m}1`);
      }
      for (const q of d.stats()) {
        const qk = `${d.devId}/${q.queueId}`;
        seenQ.add(qk);
        let t = this.queues.get(qk);
        if (!t || !sameBounds(t.bounds, q.latencyBucketsUs)) {
          t = queueText(String(d.devId), String(q.queueId), q.latencyBucketsUs, d.target);
          this.queues.set(qk, t);
        }
        this.queueSamples(out, t, q, d.depth);
      }
    }
    // forget what is gone, so a long-lived service that adds and deletes disks does not grow
    for (const k of this.queues.keys()) if (!seenQ.has(k)) this.queues.delete(k);
    for (const k of this.devices.keys()) if (!seenD.has(k)) this.devices.delete(k);

    return ORDER.map((k) => {
      const f: Family = F[k];
      const head = `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}`;
      return out[k].length ? `${head}\n${out[k].join('\n')}` : head;
    }).join('\n\n');
  }

  private queueSamples(out: Record<Key, string[]>, t: QueueText, q: QueueStats, depth: number | undefined): void {
    OPS.forEach((op, i) => {
      out.ops.push(t.ops[i] + (q.ops[op] ?? 0));
      out.bytes.push(t.bytes[i] + (q.bytes[op] ?? 0));
      out.errors.push(t.errors[i] + (q.errors[op] ?? 0));
    });
    out.inflight.push(t.inflight + q.inflight);
    out.zcFallback.push(t.zcFallback + (q.zcFallbackRegs ?? 0));
    for (const [name, v] of Object.entries(q.target ?? {})) {
      let s = t.target.get(name);
      if (!s) t.target.set(name, (s = `${F.target.name}{${t.targetLabels},counter="${escapeLabel(name)}"} `));
      out.target.push(s + v);
    }
    if (depth !== undefined) out.depth.push(t.depth + depth);
    // native counts are per bucket; Prometheus buckets are cumulative
    let cum = 0;
    for (let i = 0; i < t.buckets.length; i++) {
      cum += q.latencyCounts[i] ?? 0;
      out.latency.push(t.buckets[i] + cum);
    }
    out.latency.push(t.sum + q.latencySumUs / 1e6);
    out.latency.push(t.count + cum);
  }
}
