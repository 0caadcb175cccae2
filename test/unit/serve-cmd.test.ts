// `ublk-ts serve` as a whole: in this process with a fake driver (order of start-up steps, the
// metrics of live devices, reload, stop), and as a real process with the fake addon playing the
// driver while this test plays systemd on a real notify socket (READY/STATUS/WATCHDOG/STOPPING,
// SIGHUP, SIGTERM, exit status).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { runServe, type ServeHandle } from '../../daemon/service/run-service';
import { ConfigError } from '../../shared/errors';
import { StateStore } from '../../daemon/state-store';
import { createLogger } from '../../shared/log';
import { FakeBinding } from './fake-binding';
import { listenNotify, python3 } from '../notify-socket';
import { find, parseExposition } from '../prom-text';
import type { QueueStats } from '../../shared/binding';
import { fakeAddonEnv } from './fake-addon-env';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'daemon', 'cli', 'main.js');
const ADDON = path.join(ROOT, 'build', 'Release', 'ublk_native.node');

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-serve-'));
}

function writeConfig(dir: string, v: unknown, name = 'ublk.json'): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(v));
  return f;
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

const silent = () => createLogger({ level: 'silent', format: 'json' });

test('an invalid config stops everything before the driver is touched (exit 2, every problem)', async () => {
  const d = tmp();
  const f = writeConfig(d, { devices: [{ target: 'loop' }, { target: 'null', queues: 0, colour: 1 }] });
  const binding = new FakeBinding();
  await assert.rejects(runServe({ config: f }, { binding, euid: 0, checkControl: () => undefined, log: silent(), handleSignals: false }), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.problems.length, 3, e.message);
    return true;
  });
  assert.deepEqual(binding.calls, []);
});

test('a metrics address in use fails the start before any device exists', async () => {
  const d = tmp();
  const blocker = http.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const port = (blocker.address() as { port: number }).port;
  const binding = new FakeBinding();
  try {
    await assert.rejects(
      runServe({ config: writeConfig(d, { devices: [{ target: 'null' }] }), metricsAddress: `127.0.0.1:${port}` }, {
        binding, euid: 0, checkControl: () => undefined, log: silent(), handleSignals: false, env: {},
      }),
      new RegExp(`cannot serve metrics on 127.0.0.1:${port}: EADDRINUSE`),
    );
    assert.deepEqual(binding.calls, []);
  } finally {
    blocker.close();
  }
});

test('in process: devices up, READY, metrics of live queues, reload adds a device, stop deletes all', async () => {
  const d = tmp();
  const f = writeConfig(d, { service: { metricsAddress: '127.0.0.1:0' }, devices: [{ name: 'a', target: 'null', queues: 2 }] });
  const binding = new FakeBinding();
  binding.statsFn = (o) =>
    Array.from({ length: o.nrQueues }, (_, q): QueueStats => ({
      queueId: q, tid: 1, ops: { read: 5 + q }, bytes: { read: 4096 }, errors: {}, inflight: 0,
      latencyBucketsUs: [100, Infinity], latencyCounts: [5, 0], latencySumUs: 50, jsCalls: 0, zcFallbackRegs: 0, target: {},
    }));
  const store = new StateStore(path.join(d, 'run'));
  let handle: ServeHandle | undefined;
  const done = runServe({ config: f }, {
    binding, store, euid: 0, checkControl: () => undefined, log: silent(), handleSignals: false, env: { NOTIFY_SOCKET: '/x' },
    diskNode: async () => true,
    onStarted: (h) => (handle = h),
  });
  while (!handle) await new Promise((r) => setTimeout(r, 5));
  const h = handle;
  assert.ok(binding.notifications.some((n) => n.startsWith('READY=1\nSTATUS=1/1 devices live: a=ublkb0')));
  const e = parseExposition(await scrape(h.metrics!.address.port));
  assert.equal(find(e, 'ublk_io_operations_total', { dev: '0', queue: '1', op: 'read' })[0].value, 6);
  assert.equal(find(e, 'ublk_io_latency_seconds_bucket', { dev: '0', queue: '0', le: '0.0001' })[0].value, 5);

  writeConfig(d, { service: { metricsAddress: '127.0.0.1:0' }, devices: [{ name: 'a', target: 'null', queues: 2 }, { name: 'b', target: 'null' }] });
  await h.reload();
  assert.equal(h.service.device('b')?.phase, 'live');
  const reloading = binding.notifications.findIndex((n) => n.startsWith('RELOADING=1'));
  assert.ok(reloading > 0 && binding.notifications.slice(reloading).some((n) => n.startsWith('READY=1\nSTATUS=2/2')));

  h.stop();
  assert.equal(await done, 0);
  assert.equal(binding.devices.size, 0);
  assert.ok(binding.notifications.some((n) => n.startsWith('STOPPING=1')));
});

/** Spawns `serve` with the fake addon; its disk nodes are plain files in `devDir`. */
function spawnServe(dir: string, config: string, env: NodeJS.ProcessEnv) {
  const devDir = path.join(dir, 'dev');
  fs.mkdirSync(devDir, { recursive: true });
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(devDir, `ublkb${i}`), '');
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config, '--log-format', 'json'], {
    env: fakeAddonEnv(dir, { UBLK_TS_DEV_DIR: devDir, ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exit, out: () => out, err: () => err };
}

test('as a process, with a listening notify socket: READY after LIVE, watchdog, SIGHUP, SIGTERM → STOPPING', async (t) => {
  if (process.geteuid?.() !== 0) return t.skip('serve needs root');
  if (!fs.existsSync(ADDON)) return t.skip('the real addon (for sd_notify) is not built');
  if (!python3()) return t.skip('python3 is not available to bind a unix datagram socket');
  const d = tmp();
  const cfg = writeConfig(d, { service: { metricsAddress: 'off' }, devices: [{ name: 'one', target: 'null' }] });
  const l = await listenNotify();
  const s = spawnServe(d, cfg, { NOTIFY_SOCKET: l.socket, WATCHDOG_USEC: '200000', UBLK_TS_LOG_LEVEL: 'info' });
  try {
    const ready = await l.waitFor((m) => m.fields.READY === '1', 20_000, 'READY=1');
    assert.equal(ready.fields.STATUS, '1/1 devices live: one=ublkb0');
    assert.equal(ready.fields.MAINPID, String(s.child.pid));
    const live = s.out().split('\n').filter(Boolean).map((x) => JSON.parse(x)).find((r) => r.event === 'live');
    assert.ok(live && live.time <= ready.atMs, 'the device was LIVE before READY=1');

    // watchdog pings every 100 ms
    const i0 = l.messages.length;
    await new Promise((r) => setTimeout(r, 650));
    const pings = l.messages.slice(i0).filter((m) => m.text === 'WATCHDOG=1');
    assert.ok(pings.length >= 3, `${pings.length} watchdog pings in 650 ms`);
    const gaps = pings.slice(1).map((p, k) => p.atMs - pings[k].atMs);
    assert.ok(gaps.every((g) => g > 40 && g < 400), `gaps ${gaps.join(',')}`);

    // SIGHUP with a second device in the file
    writeConfig(d, { service: { metricsAddress: 'off' }, devices: [{ name: 'one', target: 'null' }, { name: 'two', target: 'null' }] });
    const i1 = l.messages.length;
    s.child.kill('SIGHUP');
    await l.waitFor((m) => m.fields.RELOADING === '1' && /^\d+$/.test(m.fields.MONOTONIC_USEC ?? ''), 10_000, 'RELOADING=1', i1);
    const again = await l.waitFor((m) => m.fields.READY === '1', 10_000, 'READY=1 after the reload', i1);
    assert.equal(again.fields.STATUS, '2/2 devices live: one=ublkb0, two=ublkb1');

    s.child.kill('SIGTERM');
    await l.waitFor((m) => m.fields.STOPPING === '1', 10_000, 'STOPPING=1');
    assert.equal(await s.exit, 0, s.err());
    const events = s.out().split('\n').filter(Boolean).map((x) => JSON.parse(x));
    assert.deepEqual(events.filter((r) => r.event === 'deleted').map((r) => r.devId).sort(), [0, 1]);
  } finally {
    s.child.kill('SIGKILL');
    l.close();
  }
});

test('as a process: an invalid config exits 2 and lists every problem on stderr', () => {
  const d = tmp();
  const cfg = writeConfig(d, { devices: [{ target: 'null', id: 1 }, { target: 'null', id: 1, depth: 'deep' }] });
  const r = spawnSync(process.execPath, [CLI, 'serve', '--config', cfg, '--metrics-address', 'nowhere'], {
    env: { ...process.env, UBLK_TS_ADDON: '/nonexistent' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    [
      'ublk-ts: invalid configuration (3 problems):',
      '  - --metrics-address must be "HOST:PORT" (e.g. "127.0.0.1:9101", "[::1]:9101") or "off", not "nowhere"',
      `  - ${cfg}: devices[1].depth must be a whole number from 1 to 4096, not "deep"`,
      `  - ${cfg}: devices[1].id 1 is also the id of ${cfg}: devices[0]`,
      '',
    ].join('\n'),
  );
});
