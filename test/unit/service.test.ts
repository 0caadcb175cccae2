// The service (several devices in one process) with a fake driver: READY=1 only after every
// device is LIVE, all-or-nothing start, STOPPING=1 then every device deleted, reloads, devices
// lost and brought back, recovery of our QUIESCED disks and cleanup of our dead ones.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Service } from '../../daemon/service/service';
import { Notifier } from '../../daemon/service/notify';
import { StateStore } from '../../daemon/state-store';
import { validateAddOptions, type AddSpec } from '../../daemon/spec';
import type { Config as AnyConfig, DeviceConfig as AnyDeviceConfig } from '../../config/load-config';

type Config = AnyConfig<AddSpec>;
type DeviceConfig = AnyDeviceConfig<AddSpec>;
import type { LogLevel } from '../../shared/log';
import { FakeBinding, nativeError } from './fake-binding';
import { savedState } from './state-fixture';

const dev = (name: string, raw: Record<string, string | boolean> = {}): DeviceConfig => ({
  name,
  spec: validateAddOptions({ target: 'null', size: '1M', ...raw }, { source: 'cli', cwd: '/' }),
  origin: `test: ${name}`,
});

const config = (devices: DeviceConfig[], over: Partial<Config> = {}): Config => ({
  logLevel: 'info',
  logFormat: 'json',
  metrics: null,
  devices,
  files: [],
  origins: { logLevel: 'default', logFormat: 'default', metricsAddress: 'default' },
  ...over,
});

function setup(devices: DeviceConfig[], opts: { pidAlive?: (pid: number) => boolean } = {}) {
  const binding = new FakeBinding();
  // what was sent, interleaved with the driver calls, to check the order between them
  const timeline: string[] = [];
  const realRecord = binding.record.bind(binding);
  binding.record = (op, args) => {
    timeline.push(op);
    realRecord(op, args);
  };
  const notes: string[] = [];
  const notifier = new Notifier({ send: (s) => (notes.push(s), timeline.push(s.split('\n')[0]), true), env: { NOTIFY_SOCKET: '/x' } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-svc-'));
  const store = new StateStore(dir);
  const levels: LogLevel[] = [];
  const nodes: number[] = [];
  const svc = new Service(config(devices), {
    binding,
    store,
    log: { debug() {}, info() {}, warn() {}, error() {}, child() { return this; } },
    setLogLevel: (l) => levels.push(l),
    notifier,
    diskNode: async (id) => (nodes.push(id), timeline.push(`node ${id}`), true),
    pidAlive: opts.pidAlive ?? (() => false),
  });
  return { binding, notes, timeline, store, svc, levels, nodes };
}

test('start: every device live and its disk node present before READY=1; STATUS lists them', async () => {
  const t = setup([dev('a'), dev('b', { id: '5' })]);
  await t.svc.start();
  const ready = t.timeline.indexOf('READY=1');
  assert.ok(ready > 0);
  assert.equal(t.timeline.filter((x) => x === 'startDev').length, 2);
  assert.ok(t.timeline.lastIndexOf('startDev') < ready && t.timeline.indexOf('node 5') < ready, t.timeline.join(' '));
  assert.deepEqual(t.nodes, [0, 5]);
  const readyMsg = t.notes.find((n) => n.startsWith('READY=1'))!;
  assert.match(readyMsg, /^READY=1\nSTATUS=2\/2 devices live: a=ublkb0, b=ublkb5\nMAINPID=\d+$/);
  assert.equal(t.store.read(5)?.service, 'b', 'the state file says which service device it is');
  assert.equal(t.svc.device('a')?.phase, 'live');
});

test('start: one device fails → the others are stopped and deleted, no READY=1, the error is thrown', async () => {
  const t = setup([dev('a'), dev('b', { id: '0' })]); // b asks for the id a got
  await assert.rejects(t.svc.start(), /device id 0 is already in use/);
  assert.ok(!t.notes.some((n) => n.startsWith('READY=1')));
  assert.ok(t.notes.some((n) => n.startsWith('STOPPING=1')));
  assert.equal(t.binding.devices.size, 0, 'nothing left in the kernel');
});

test('stop: STOPPING=1 first, then every device stopped and deleted', async () => {
  const t = setup([dev('a'), dev('b')]);
  await t.svc.start();
  const before = t.timeline.length;
  assert.equal(await t.svc.stop('signal SIGTERM'), true);
  const after = t.timeline.slice(before);
  assert.equal(after[0], 'STOPPING=1');
  assert.deepEqual(after.filter((x) => x === 'delDev').length, 2);
  assert.equal(t.binding.devices.size, 0);
  assert.match(t.notes.at(-1)!, /^STOPPING=1\nSTATUS=stopping 2 device\(s\): signal SIGTERM$/);
});

test('stop during start: the starting device is stopped once it is up, no READY=1', async () => {
  const t = setup([dev('a'), dev('b')]);
  const starting = t.svc.start();
  const stopped = t.svc.stop('signal SIGTERM');
  await starting;
  await stopped;
  assert.ok(!t.notes.some((n) => n.startsWith('READY=1')));
  assert.equal(t.binding.devices.size, 0);
});

test('reload: log level live, devices added and removed, changes that need a restart reported', async () => {
  const t = setup([dev('a'), dev('b')]);
  await t.svc.start();
  const plan = await t.svc.reload(config([dev('a', { queues: '2' }), dev('c')], { logLevel: 'debug' }));
  assert.deepEqual(t.levels, ['debug']);
  assert.deepEqual(plan.remove, ['b']);
  assert.deepEqual(plan.add.map((d) => d.name), ['c']);
  assert.deepEqual(plan.changed, [{ name: 'a', fields: ['queues'] }]);
  assert.equal(t.svc.device('b'), undefined);
  assert.equal(t.svc.device('c')?.phase, 'live');
  assert.equal(t.binding.servers.find((s) => s.opts.devId === 0)?.opts.nrQueues, 1, 'a keeps running as it was');
  assert.deepEqual([...t.binding.devices.keys()].sort(), [0, 1], 'c took the id b left');
  assert.equal(t.svc.statusLine(), '2/2 devices live: a=ublkb0, c=ublkb1');
});

test('reload: a new device that fails is reported, the others keep running', async () => {
  const t = setup([dev('a')]);
  await t.svc.start();
  await t.svc.reload(config([dev('a'), dev('bad', { id: '0' })]));
  assert.equal(t.svc.device('a')?.phase, 'live');
  assert.equal(t.svc.device('bad')?.phase, 'failed');
  assert.equal(t.svc.statusLine(), '1/2 devices live: a=ublkb0; down: bad');
});

test('a device stopped from outside is reported down and comes back on reload', async () => {
  const t = setup([dev('a'), dev('b')]);
  await t.svc.start();
  // STOP_DEV from `ublk-ts del`: every queue thread of b ends
  t.binding.servers[1].exitQueue(0);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(t.svc.device('b')?.phase, 'stopped');
  assert.match(t.notes.at(-1)!, /^STATUS=1\/2 devices live: a=ublkb0; down: b$/);
  await t.svc.reload(config([dev('a'), dev('b')]));
  assert.equal(t.svc.device('b')?.phase, 'live');
});

test('restart after a crash: our QUIESCED disk (recovery) is recovered, not re-added', async () => {
  const t = setup([dev('r', { id: '3', recovery: '1' })]);
  t.binding.addDevice(3, { state: 2, flags: 0x48n, ublksrvPid: 999 });
  t.store.write(
    savedState(3, 999, {
      spec: dev('r', { id: '3', recovery: '1' }).spec,
      flags: '0x48',
      target: { name: 'null', dev_size: 1 << 20 },
      service: 'r',
    }),
  );
  await t.svc.start();
  assert.deepEqual(
    t.binding.ops().filter((o) => o !== 'getDevInfo' && o !== 'getFeatures'),
    ['startUserRecovery', 'createServer', 'server.start', 'endUserRecovery'],
  );
  assert.equal(t.svc.device('r')?.phase, 'live');
});

test('restart after a crash: our dead disk (no recovery) is deleted, then added again', async () => {
  const t = setup([dev('d', { id: '4' })]);
  t.binding.addDevice(4, { state: 0, ublksrvPid: 998 });
  t.store.write(savedState(4, 998, { spec: dev('d', { id: '4' }).spec }));
  await t.svc.start();
  const ops = t.binding.ops();
  assert.ok(ops.indexOf('delDev') < ops.indexOf('addDev'), ops.join(' '));
  assert.equal(t.svc.device('d')?.devId, 4);
});

test('someone else\'s device on our id is left alone: the add fails with "in use"', async () => {
  const t = setup([dev('d', { id: '4' })], { pidAlive: () => true });
  t.binding.addDevice(4, { ublksrvPid: 1234 });
  await assert.rejects(t.svc.start(), /device id 4 is already in use/);
  assert.ok(!t.binding.ops().includes('delDev') && !t.binding.ops().includes('stopDev'));
  void nativeError;
});
