// The metrics exposition, from fake native counters: names, types, labels, per-op counters,
// the latency histogram converted from µs per-bucket counts to cumulative seconds; promtool's
// linter when it is installed; prom-client never loaded by the plain CLI.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { createMetricsRegistry, type MetricsDevice } from '../../daemon/service/metrics';
import { UblkExposition, escapeLabel, secondsLabel } from '../../daemon/service/ublk-exposition';
import type { QueueStats } from '../../shared/binding';
import { find, parseExposition } from '../prom-text';

const BOUNDS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, Infinity];

function queue(queueId: number, n: number): QueueStats {
  const counts = BOUNDS.map(() => 0);
  counts[0] = n; // ≤ 10 µs
  counts[3] = 2 * n; // ≤ 100 µs
  counts[19] = 1; // +Inf
  return {
    queueId,
    tid: 100 + queueId,
    ops: { read: n, write: 2 * n, flush: 1, discard: 0, write_zeroes: 0, other: 0 },
    bytes: { read: n * 4096, write: 2 * n * 4096, flush: 0, discard: 0, write_zeroes: 0, other: 0 },
    errors: { read: 0, write: 0, flush: 1, discard: 0, write_zeroes: 0, other: 0 },
    inflight: queueId + 1,
    latencyBucketsUs: BOUNDS,
    latencyCounts: counts,
    latencySumUs: 123456,
    jsCalls: 0,
    zcFallbackRegs: queueId === 1 ? 3 : 0,
    target: queueId === 1 ? { reconnects: 2 } : {},
  };
}

function devices(): MetricsDevice[] {
  return [
    { name: 'data', devId: 0, target: 'loop', phase: 'live', depth: 128, mode: 'zc_auto', stats: () => [queue(0, 10), queue(1, 20)] },
    { name: 'broken', devId: -1, target: 'null', phase: 'failed', stats: () => [] },
  ];
}

const build = { version: '0.1.0', addon: '0.1.0', liburing: '2.3' };

test('bucket bounds in seconds without float noise', () => {
  assert.deepEqual(BOUNDS.slice(0, 5).map(secondsLabel), ['0.00001', '0.000025', '0.00005', '0.0001', '0.00025']);
  assert.equal(secondsLabel(2500000), '2.5');
  assert.equal(secondsLabel(Infinity), '+Inf');
});

test('histogram samples are cumulative, in seconds, with _sum and _count; +Inf added when the native side lacks it', () => {
  const q = { ...queue(0, 0), latencyBucketsUs: [10, 100], latencyCounts: [3, 0], latencySumUs: 2_500_000 };
  const dev: MetricsDevice = { name: 'h', devId: 7, target: 'null', phase: 'live', stats: () => [q] };
  const e = parseExposition(new UblkExposition().render([dev]));
  assert.deepEqual(
    e.samples.filter((s) => s.name.startsWith('ublk_io_latency_seconds')).map((s) => [s.name, s.labels.le, s.value]),
    [
      ['ublk_io_latency_seconds_bucket', '0.00001', 3],
      ['ublk_io_latency_seconds_bucket', '0.0001', 3],
      ['ublk_io_latency_seconds_bucket', '+Inf', 3],
      ['ublk_io_latency_seconds_sum', undefined, 2.5],
      ['ublk_io_latency_seconds_count', undefined, 3],
    ],
  );
});

test('label values are escaped (backslash, quote, newline) and the text follows each scrape\'s values', () => {
  assert.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  let n = 1;
  const dev: MetricsDevice = { name: 'odd "name"\\x', devId: 3, target: 'loop', phase: 'live', stats: () => [queue(0, n)] };
  const x = new UblkExposition();
  const first = parseExposition(x.render([dev]));
  assert.deepEqual(find(first, 'ublk_device_info')[0].labels, { dev: '3', name: 'odd "name"\\x', target: 'loop' });
  n = 5;
  const second = parseExposition(x.render([dev]));
  assert.equal(find(second, 'ublk_io_operations_total', { op: 'read' })[0].value, 5, 'cached label text, fresh values');
});

test('exposition: every ublk family, per device and queue, read at scrape time', async () => {
  let scrapes = 0;
  const devs = devices();
  const reg = createMetricsRegistry(() => {
    scrapes++;
    return devs;
  }, build);
  assert.equal(scrapes, 0, 'nothing read until scraped');
  const e = parseExposition(await reg.metrics());
  assert.ok(scrapes > 0);

  const types = Object.fromEntries([...e.types].filter(([n]) => n.startsWith('ublk')));
  assert.deepEqual(types, {
    ublk_io_operations_total: 'counter',
    ublk_io_bytes_total: 'counter',
    ublk_io_errors_total: 'counter',
    ublk_io_inflight: 'gauge',
    ublk_io_latency_seconds: 'histogram',
    ublk_zc_fallback_registrations_total: 'counter',
    ublk_target_events_total: 'counter',
    ublk_queue_depth: 'gauge',
    ublk_device_state: 'gauge',
    ublk_device_zero_copy_mode: 'gauge',
    ublk_device_info: 'gauge',
    ublk_ts_build_info: 'gauge',
  });
  assert.equal(find(e, 'ublk_io_operations_total', { dev: '0', queue: '1', op: 'write' })[0].value, 40);
  assert.equal(find(e, 'ublk_io_operations_total', { dev: '0' }).length, 12, '2 queues x 6 ops');
  assert.equal(find(e, 'ublk_io_bytes_total', { dev: '0', queue: '0', op: 'read' })[0].value, 40960);
  assert.equal(find(e, 'ublk_io_errors_total', { dev: '0', queue: '0', op: 'flush' })[0].value, 1);
  assert.equal(find(e, 'ublk_io_inflight', { dev: '0', queue: '1' })[0].value, 2);
  assert.equal(find(e, 'ublk_queue_depth', { dev: '0', queue: '0' })[0].value, 128);
  assert.equal(find(e, 'ublk_zc_fallback_registrations_total', { dev: '0', queue: '1' })[0].value, 3);
  assert.equal(find(e, 'ublk_zc_fallback_registrations_total', { dev: '0', queue: '0' })[0].value, 0);
  const tc = find(e, 'ublk_target_events_total', { dev: '0' });
  assert.deepEqual(tc.map((x) => [x.labels.queue, x.labels.counter, x.value]), [['1', 'reconnects', 2]], "the target's own counters");

  const buckets = find(e, 'ublk_io_latency_seconds_bucket', { dev: '0', queue: '0' });
  assert.equal(buckets.length, 20);
  assert.equal(buckets[0].labels.le, '0.00001');
  assert.equal(buckets[0].value, 10);
  assert.equal(find(e, 'ublk_io_latency_seconds_bucket', { dev: '0', queue: '0', le: '0.0001' })[0].value, 30);
  assert.equal(find(e, 'ublk_io_latency_seconds_bucket', { dev: '0', queue: '0', le: '+Inf' })[0].value, 31);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative');
  assert.equal(find(e, 'ublk_io_latency_seconds_count', { dev: '0', queue: '0' })[0].value, 31);
  assert.equal(find(e, 'ublk_io_latency_seconds_sum', { dev: '0', queue: '0' })[0].value, 0.123456);

  assert.deepEqual(
    find(e, 'ublk_device_state', { name: 'data' }).filter((s) => s.value === 1).map((s) => s.labels.state),
    ['live'],
  );
  assert.deepEqual(find(e, 'ublk_device_state', { name: 'broken', state: 'failed' })[0].labels.dev, '');
  assert.deepEqual(find(e, 'ublk_device_zero_copy_mode').map((s) => [s.labels.dev, s.labels.mode, s.value]), [['0', 'zc_auto', 1]]);
  assert.deepEqual(find(e, 'ublk_device_info')[0].labels, { dev: '0', name: 'data', target: 'loop' });
  assert.deepEqual(find(e, 'ublk_ts_build_info')[0].labels, { version: '0.1.0', addon: '0.1.0', liburing: '2.3', node: process.version });
  assert.ok(find(e, 'process_cpu_user_seconds_total').length === 1, 'default process metrics');
  assert.ok(find(e, 'nodejs_heap_size_used_bytes').length === 1);
});

test('a device that goes away leaves no stale series', async () => {
  let devs = devices();
  const reg = createMetricsRegistry(() => devs, build);
  await reg.metrics();
  devs = [];
  const e = parseExposition(await reg.metrics());
  assert.equal(e.samples.filter((s) => s.name.startsWith('ublk_') && s.name !== 'ublk_ts_build_info').length, 0);
});

test('promtool check metrics finds no problem (when promtool is installed)', async (t) => {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) return t.skip('promtool is not installed (Debian: apt-get install prometheus)');
  const reg = createMetricsRegistry(devices, build);
  const r = spawnSync('promtool', ['check', 'metrics'], { input: await reg.metrics(), encoding: 'utf8' });
  assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  assert.equal(r.stdout + r.stderr, '');
});

test('the CLI does not load prom-client (only `serve` does)', () => {
  const cli = path.resolve(__dirname, '..', '..', 'daemon', 'cli', 'main.js');
  const prog = `
    const { buildProgram } = require(${JSON.stringify(cli)});
    buildProgram({ code: 0 });
    require(${JSON.stringify(path.resolve(__dirname, '..', '..', 'daemon', 'cli', 'commands', 'list.js'))});
    const loaded = Object.keys(require.cache).filter((f) => /prom-client|pino/.test(f));
    process.stdout.write(JSON.stringify(loaded));`;
  const r = spawnSync(process.execPath, ['-e', prog], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), []);
});

test('a scrape reads the native counters once, however many families use them; the next scrape reads again', async () => {
  let reads = 0;
  const devs = devices().map((d) => ({ ...d, stats: () => (reads++, d.stats()) }));
  const reg = createMetricsRegistry(() => devs, build);
  await reg.metrics();
  assert.equal(reads, 1); // one per device that has an id (the failed one has no queues to read)
  await reg.metrics();
  assert.equal(reads, 2);
});

test('the process metrics are the standard names, without the event-loop and GC families', async () => {
  const e = parseExposition(await createMetricsRegistry(devices, build).metrics());
  for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'process_max_fds', 'process_start_time_seconds']) {
    assert.equal(find(e, n).length, 1, n);
    assert.ok(find(e, n)[0].value > 0, `${n} > 0`);
  }
  assert.equal(e.samples.filter((s) => /^nodejs_(eventloop|gc)/.test(s.name)).length, 0);
});
