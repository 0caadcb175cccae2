// `ublk-ts serve` against the real driver, with this test playing systemd (a notify socket it
// listens on) and Prometheus (its /metrics endpoint, promtool, and a real Prometheus server when
// Debian's `prometheus` package is installed):
//   READY=1 only once /dev/ublkbN exists and serves I/O; fio crc32c verify through the device;
//   non-zero I/O counters and latency buckets for it; WATCHDOG=1 at the asked interval; SIGHUP
//   adds and removes a device; `del` of one device leaves the service up; SIGTERM → STOPPING=1,
//   every device deleted, exit 0.
// One service process for the whole file: node start-ups cost ~4 s each in the VM.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { cli, fio, httpGet, makeBacking, processAlive, sh, sleep, startService, verifyJobs, waitFor, workDir, writeServiceConfig, type ServiceRun } from './helpers';
import { listenNotify, python3, type NotifyListener } from '../notify-socket';
import { find, parseExposition } from '../prom-text';

const WATCHDOG_USEC = 3_000_000; // pings every 1.5 s

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

describe('serve: a device from a config file, under systemd\'s and Prometheus\'s eyes', () => {
  let listener: NotifyListener;
  let service: ServiceRun;
  let config: string;
  let devId = -1;
  let metricsUrl = '';
  const records = () => service.records();
  const writeConfig = (devices: unknown[]) => writeServiceConfig(config, devices);

  before(async () => {
    requireKernel();
    if (!python3()) throw new Error('python3 is needed to play systemd\'s notify socket');
    const dir = workDir();
    const backing = makeBacking('service.img', 64);
    config = path.join(dir, 'service.json');
    writeConfig([{ name: 'data', target: 'loop', file: backing, queues: 2, depth: 64 }]);
    listener = await listenNotify();
    service = startService(config, { NOTIFY_SOCKET: listener.socket, WATCHDOG_USEC: String(WATCHDOG_USEC) });
  });

  after(async () => {
    await service?.stop();
    listener?.close();
    cli(['del', '-a']);
  });

  test('READY=1 arrives once /dev/ublkbN exists and serves I/O, with the device in STATUS=', async () => {
    const ready = await listener.waitFor((m) => m.fields.READY === '1', 180_000, 'READY=1');
    const live = records().find((r) => r.event === 'live');
    assert.ok(live, 'the service logged the device live');
    devId = live.devId as number;
    assert.ok(live.time <= ready.atMs, 'LIVE before READY');
    // right now, as systemd would start dependent units: the disk exists and answers a read
    assert.ok(fs.statSync(`/dev/ublkb${devId}`).isBlockDevice());
    sh(`dd if=/dev/ublkb${devId} of=/dev/null bs=4k count=1 iflag=direct status=none`);
    assert.equal(ready.fields.STATUS, `1/1 devices live: data=ublkb${devId}`);
    assert.equal(ready.fields.MAINPID, String(service.child.pid));
    const before = listener.messages.slice(0, listener.messages.indexOf(ready));
    assert.ok(!before.some((m) => m.fields.READY), 'READY=1 only once');
    const m = records().find((r) => r.event === 'metrics_listening');
    assert.ok(m?.address, 'metrics address logged');
    metricsUrl = `http://${m.address}/metrics`;
  });

  test('fio write + crc32c verify through the device', () => {
    assert.ok(devId >= 0);
    fio(`/dev/ublkb${devId}`, verifyJobs());
  });

  test('/metrics: non-zero I/O counters, bytes and latency buckets for the device; promtool finds no problem', async (t) => {
    const r = await httpGet(metricsUrl);
    assert.equal(r.status, 200);
    const e = parseExposition(r.body);
    const dev = String(devId);
    const sum = (name: string, match: Record<string, string>) => find(e, name, { dev, ...match }).reduce((a, s) => a + s.value, 0);
    assert.ok(sum('ublk_io_operations_total', { op: 'write' }) > 0, 'writes counted');
    assert.ok(sum('ublk_io_operations_total', { op: 'read' }) > 0, 'reads counted');
    assert.ok(sum('ublk_io_bytes_total', { op: 'write' }) >= 2 * 2 ** 20, 'bytes counted');
    assert.equal(sum('ublk_io_errors_total', {}), 0);
    assert.equal(find(e, 'ublk_queue_depth', { dev }).length, 2, 'both queues');
    assert.equal(find(e, 'ublk_queue_depth', { dev, queue: '0' })[0].value, 64);
    const inf = sum('ublk_io_latency_seconds_bucket', { le: '+Inf' });
    assert.equal(inf, sum('ublk_io_operations_total', {}), 'every completed I/O is in the histogram');
    const finite = find(e, 'ublk_io_latency_seconds_bucket', { dev }).filter((s) => s.labels.le !== '+Inf' && s.value > 0);
    assert.ok(finite.length > 0, 'latencies fall in finite buckets');
    assert.ok(sum('ublk_io_latency_seconds_sum', {}) > 0);
    assert.equal(find(e, 'ublk_device_state', { dev, state: 'live' })[0].value, 1);
    assert.equal(find(e, 'ublk_device_zero_copy_mode', { dev }).length, 1);
    if (!have('promtool')) return t.skip('promtool is not installed (scripts/test-deps.sh installs Debian\'s prometheus)');
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8' });
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);
  });

  test('a real Prometheus server scrapes the endpoint; its HTTP API returns the device\'s counters and buckets', async (t) => {
    if (!have('prometheus')) return t.skip('prometheus is not installed (scripts/test-deps.sh installs Debian\'s prometheus)');
    const dir = path.join(workDir(), 'prometheus');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const target = new URL(metricsUrl).host;
    fs.writeFileSync(
      path.join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ublk-ts\n    static_configs:\n      - targets: ['${target}']\n`,
    );
    const prom = spawn(
      'prometheus',
      [`--config.file=${dir}/prometheus.yml`, `--storage.tsdb.path=${dir}/data`, '--web.listen-address=127.0.0.1:19090', '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let promErr = '';
    prom.stderr?.on('data', (d: Buffer) => (promErr += d));
    try {
      const query = async (q: string): Promise<number> => {
        const r = await httpGet(`http://127.0.0.1:19090/api/v1/query?query=${encodeURIComponent(q)}`, 10_000);
        const j = JSON.parse(r.body) as { status: string; data: { result: Array<{ value: [number, string] }> } };
        return j.status === 'success' && j.data.result.length > 0 ? Number(j.data.result[0].value[1]) : NaN;
      };
      const dev = String(devId);
      let ops = NaN;
      const end = Date.now() + 180_000;
      while (Date.now() < end && !(ops > 0)) {
        await sleep(1000);
        ops = await query(`sum(ublk_io_operations_total{dev="${dev}"})`).catch(() => NaN);
      }
      assert.ok(ops > 0, `Prometheus never returned the device's operations; its log:\n${promErr}`);
      assert.equal(await query('up{job="ublk-ts"}'), 1);
      assert.ok((await query(`sum(ublk_io_latency_seconds_bucket{dev="${dev}",le="+Inf"})`)) > 0, 'latency buckets');
      assert.ok((await query(`sum(ublk_io_bytes_total{dev="${dev}",op="write"})`)) > 0, 'bytes');
      const q = await query(`histogram_quantile(0.5, sum by (le) (ublk_io_latency_seconds_bucket{dev="${dev}"}))`);
      assert.ok(q > 0 && q < 10, `median latency ${q} s`);
    } finally {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.once('exit', r));
    }
  });

  test('WATCHDOG=1 every WATCHDOG_USEC/2', (t) => {
    // systemd arms the watchdog once start-up is complete (READY=1): the gaps that count are after it
    const ready = listener.messages.findIndex((m) => m.fields.READY === '1');
    const pings = listener.messages.slice(ready).filter((m) => m.text === 'WATCHDOG=1');
    assert.ok(pings.length >= 5, `${pings.length} pings`);
    const interval = WATCHDOG_USEC / 2000;
    const gaps = pings.slice(1).map((p, i) => Math.round(p.atMs - pings[i].atMs));
    const sorted = [...gaps].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    assert.ok(Math.abs(median - interval) < interval * 0.2, `median gap ${median} ms for a ${interval} ms interval (gaps ${gaps.join(',')})`);
    // Most pings on time. The emulated guest's 2 vCPUs are saturated while fio runs, and then a
    // ping (or the receiver) can be late by a second or two: counted, not failed.
    const late = gaps.filter((g) => g > interval * 1.5);
    assert.ok(late.length <= gaps.length * 0.1, `${late.length} of ${gaps.length} gaps over 1.5x the interval (gaps ${gaps.join(',')})`);
    t.diagnostic(`watchdog gaps: median ${median} ms, max ${sorted[sorted.length - 1]} ms, ${late.length}/${gaps.length} over ${interval * 1.5} ms`);
  });

  test('SIGHUP adds a device, `del` of it leaves the service up, SIGHUP brings it back, removing it deletes it', async () => {
    const base = listener.messages.length;
    writeConfig([
      { name: 'data', target: 'loop', file: path.join(workDir(), 'service.img'), queues: 2, depth: 64 },
      { name: 'extra', target: 'null', size: '64M' },
    ]);
    service.child.kill('SIGHUP');
    const ready = await listener.waitFor((m) => m.fields.READY === '1', 60_000, 'READY=1 after adding a device', base);
    const extra = records().filter((r) => r.event === 'live').at(-1)!.devId as number;
    assert.notEqual(extra, devId);
    assert.equal(ready.fields.STATUS, `2/2 devices live: data=ublkb${devId}, extra=ublkb${extra}`);
    assert.ok(fs.existsSync(`/dev/ublkb${extra}`));

    const del = cli(['del', '-n', String(extra)]);
    assert.equal(del.code, 0, del.stderr);
    assert.match(del.stderr, /of the ublk-ts service/);
    await waitFor(() => !fs.existsSync(`/dev/ublkc${extra}`), 30_000, `ublkc${extra} to go`);
    assert.ok(processAlive(service.child.pid!), 'the service is still running');
    sh(`dd if=/dev/ublkb${devId} of=/dev/null bs=4k count=1 iflag=direct status=none`);
    await waitFor(() => records().some((r) => r.event === 'device_lost'), 30_000, 'device_lost logged');

    const b2 = listener.messages.length;
    service.child.kill('SIGHUP');
    await listener.waitFor((m) => m.fields.READY === '1', 60_000, 'READY=1 after the reload', b2);
    const back = records().filter((r) => r.event === 'live').at(-1)!.devId as number;
    assert.ok(fs.existsSync(`/dev/ublkb${back}`), 'extra is back');

    const b3 = listener.messages.length;
    writeConfig([{ name: 'data', target: 'loop', file: path.join(workDir(), 'service.img'), queues: 2, depth: 64 }]);
    service.child.kill('SIGHUP');
    const r3 = await listener.waitFor((m) => m.fields.READY === '1', 60_000, 'READY=1 after removing it', b3);
    assert.equal(r3.fields.STATUS, `1/1 devices live: data=ublkb${devId}`);
    await waitFor(() => !fs.existsSync(`/dev/ublkc${back}`), 30_000, `ublkc${back} deleted`);
  });

  test('SIGTERM: STOPPING=1, every device stopped and deleted, exit 0', async () => {
    const base = listener.messages.length;
    service.child.kill('SIGTERM');
    await listener.waitFor((m) => m.fields.STOPPING === '1', 60_000, 'STOPPING=1', base);
    assert.equal(await service.exit, 0);
    assert.ok(!fs.existsSync(`/dev/ublkc${devId}`) && !fs.existsSync(`/dev/ublkb${devId}`), 'device deleted');
    const events = records().filter((r) => r.devId === devId).map((r) => r.event);
    for (const e of ['added', 'live', 'stopping', 'deleted', 'stopped']) {
      assert.equal(events.filter((x) => x === e).length, 1, `"${e}" logged once for device ${devId}: ${events.join(',')}`);
    }
  });
});
