import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeviceServer } from '../../daemon/device-server';
import { StateStore, type DeviceState } from '../../daemon/state-store';
import { validateAddOptions } from '../../daemon/spec';
import type { RawOptions as RawAddOptions } from '../../shared/options';
import { FakeBinding, nativeError } from './fake-binding';
import { UblkError } from '../../shared/errors';

const PID = 777;

function setup(raw: RawAddOptions = {}, features = 0xfffn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-ds-'));
  const store = new StateStore(dir);
  const binding = new FakeBinding(features);
  const spec = validateAddOptions({ target: 'null', ...raw }, { source: 'cli', cwd: '/' });
  const ds = new DeviceServer(spec, { binding, store, pid: PID, sleep: async () => undefined });
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  return { dir, store, binding, spec, ds, cleanup };
}

test('add: the control sequence, in order', async () => {
  const t = setup({ queues: '2', zeroCopy: true, recovery: '1' });
  try {
    const st = await t.ds.start();
    assert.deepEqual(t.binding.ops(), ['getFeatures', 'addDev', 'setParams', 'createServer', 'server.start', 'startDev', 'setIoScheduler']);
    assert.equal(t.binding.schedulers.get(0), 'none', 'the default, as the kernel loop driver');
    const add = t.binding.calls[1].args[0] as { flags: bigint; devId: number; nrHwQueues: number };
    assert.equal(add.devId, -1);
    assert.equal(add.nrHwQueues, 2);
    assert.equal(add.flags, 0x40n | 0x1n | 0x800n | 0x8n);
    assert.deepEqual(t.binding.calls[5].args, [0, PID]);
    const serve = t.binding.servers[0].opts;
    assert.equal(serve.mode, 'zc_auto');
    assert.equal(serve.devId, 0);
    assert.equal(serve.nrQueues, 2);
    assert.equal(serve.target.name, 'null');
    assert.equal(t.ds.phase, 'live');
    assert.equal(st.devId, 0);
    assert.equal(st.pid, PID);
    assert.deepEqual(st.tids, [1000, 1001]);
    assert.equal(st.flags, '0x849');
    assert.equal(st.spec.id, 0);
    assert.deepEqual(t.store.read(0), st);
    assert.equal(t.binding.devices.get(0)?.info.state, 1);
  } finally {
    t.cleanup();
  }
});

test('add: the kernel clamps queues (nr_cpu_ids): the server follows its answer', async () => {
  const t = setup({ queues: '8', size: '1G' });
  const realAdd = t.binding.addDev.bind(t.binding);
  t.binding.addDev = async (req) => ({ ...(await realAdd({ ...req, nrHwQueues: 2, maxIoBufBytes: 262144 })) });
  try {
    await t.ds.start();
    assert.equal(t.binding.servers[0].opts.nrQueues, 2);
    const params = t.binding.devices.get(0)?.params;
    assert.equal(params?.basic.maxSectors, 512, 'max_sectors fits the accepted buffer size');
  } finally {
    t.cleanup();
  }
});

interface FailCase {
  name: string;
  arrange: (t: ReturnType<typeof setup>) => void;
  raw?: RawAddOptions;
  features?: bigint;
  ops: string[];
  message: RegExp | string;
}

const failCases: FailCase[] = [
  {
    name: 'GET_FEATURES fails',
    arrange: (t) => t.binding.fail('getFeatures', 'EINVAL'),
    ops: ['getFeatures'],
    message: "this kernel's ublk driver does not answer GET_FEATURES: Linux 6.5 or later is needed",
  },
  {
    name: 'a feature is missing',
    arrange: () => undefined,
    raw: { zeroCopy: true },
    features: 0x7fen,
    ops: ['getFeatures'],
    message: "this kernel's ublk driver lacks a feature: -z/--zerocopy needs UBLK_F_SUPPORT_ZERO_COPY (Linux 6.15 or later)",
  },
  {
    name: 'ADD_DEV fails (id in use)',
    arrange: (t) => t.binding.addDevice(5),
    raw: { id: '5' },
    ops: ['getFeatures', 'addDev'],
    message: 'device id 5 is already in use',
  },
  {
    name: 'the kernel drops a flag',
    arrange: (t) => {
      t.binding.dropFlags = 0x800n;
    },
    raw: { zeroCopy: true },
    ops: ['getFeatures', 'addDev', 'delDev'],
    message: 'the kernel did not accept AUTO_BUF_REG for device 0',
  },
  {
    name: 'SET_PARAMS fails',
    arrange: (t) => t.binding.fail('setParams', 'EINVAL'),
    ops: ['getFeatures', 'addDev', 'setParams', 'delDev'],
    message: /refused the disk parameters of device 0/,
  },
  {
    name: 'createServer throws',
    arrange: (t) => t.binding.fail('createServer', nativeError('open', 'EBUSY', 'open /dev/ublkc0: EBUSY')),
    ops: ['getFeatures', 'addDev', 'setParams', 'createServer', 'delDev'],
    message: '/dev/ublkc0 is busy: another server is serving device 0',
  },
  {
    name: 'queue threads fail to start',
    arrange: (t) => t.binding.fail('server.start', nativeError('io_uring_queue_init', 'ENOMEM', 'ring: ENOMEM')),
    ops: ['getFeatures', 'addDev', 'setParams', 'createServer', 'server.start', 'server.stop', 'delDev'],
    message: /io_uring_queue_init failed for device 0: ring: ENOMEM/,
  },
  {
    name: 'START_DEV fails',
    arrange: (t) => t.binding.fail('startDev', 'EINVAL'),
    ops: ['getFeatures', 'addDev', 'setParams', 'createServer', 'server.start', 'startDev', 'server.stop', 'delDev'],
    message: /START_DEV failed for device 0/,
  },
  {
    name: 'the state file cannot be written',
    arrange: (t) => {
      fs.rmSync(t.dir, { recursive: true });
      fs.writeFileSync(t.dir, 'not a directory');
    },
    ops: ['getFeatures', 'addDev', 'setParams', 'createServer', 'server.start', 'startDev', 'setIoScheduler', 'stopDev', 'server.stop', 'delDev'],
    message: /EEXIST|ENOTDIR/,
  },
  {
    name: 'the kernel has no such I/O scheduler',
    arrange: () => undefined,
    raw: { ioScheduler: 'cfq' },
    ops: ['getFeatures', 'addDev', 'setParams', 'createServer', 'server.start', 'startDev', 'setIoScheduler', 'stopDev', 'server.stop', 'delDev'],
    message: 'cannot set the I/O scheduler of /dev/ublkb0 to "cfq": this kernel has no such scheduler (see /sys/block/ublkbN/queue/scheduler)',
  },
];

for (const c of failCases) {
  test(`add rollback: ${c.name}`, async () => {
    const t = setup(c.raw ?? {}, c.features ?? 0xfffn);
    c.arrange(t);
    const preexisting = new Set(t.binding.devices.keys());
    try {
      await assert.rejects(t.ds.start(), (err: Error) =>
        typeof c.message === 'string' ? err.message === c.message : c.message.test(err.message),
      );
      assert.deepEqual(t.binding.ops(), c.ops);
      // nothing left behind: no new device, no state file, queue threads stopped with force
      assert.deepEqual(new Set(t.binding.devices.keys()), preexisting);
      if (fs.statSync(t.dir).isDirectory()) assert.deepEqual(fs.readdirSync(t.dir), []);
      for (const s of t.binding.servers) assert.deepEqual(s.stops, s.opts ? (c.ops.includes('server.stop') ? [true] : []) : []);
      assert.equal(t.ds.phase, 'failed');
      // stop() after a failed start touches nothing (the id may belong to someone else by now)
      const n = t.binding.calls.length;
      await t.ds.stop();
      assert.equal(t.binding.calls.length, n);
    } finally {
      fs.rmSync(t.dir, { recursive: true, force: true });
    }
  });
}

test('add rollback: a failing undo step does not hide the original error', async () => {
  const t = setup();
  t.binding.fail('startDev', 'EINVAL').fail('server.stop', 'EIO');
  try {
    await assert.rejects(t.ds.start(), /START_DEV failed/);
    assert.deepEqual(t.binding.ops().slice(-2), ['server.stop', 'delDev']);
    assert.equal(t.binding.devices.size, 0);
  } finally {
    t.cleanup();
  }
});

test('stop: STOP_DEV, join threads, DEL_DEV, remove state; idempotent', async () => {
  const t = setup();
  try {
    await t.ds.start();
    let stopped = 0;
    t.ds.onStopped(() => stopped++);
    const n = t.binding.calls.length;
    await Promise.all([t.ds.stop(), t.ds.stop()]);
    await t.ds.stop();
    assert.deepEqual(t.binding.ops().slice(n), ['stopDev', 'server.stop', 'delDev']);
    assert.deepEqual(t.binding.servers[0].stops, [undefined]);
    assert.equal(t.binding.devices.size, 0);
    assert.equal(t.store.read(0), undefined);
    assert.equal(t.ds.phase, 'stopped');
    assert.equal(stopped, 1);
  } finally {
    t.cleanup();
  }
});

test('stop: a device already gone (ENODEV) is fine', async () => {
  const t = setup();
  try {
    await t.ds.start();
    t.binding.devices.delete(0);
    await t.ds.stop();
    assert.equal(t.store.read(0), undefined);
  } finally {
    t.cleanup();
  }
});

test('stop: DEL_DEV failing keeps the state file and reports', async () => {
  const t = setup();
  try {
    await t.ds.start();
    t.binding.fail('delDev', 'EBUSY');
    await assert.rejects(t.ds.stop(), /DEL_DEV failed for device 0/);
    assert.ok(t.store.read(0));
  } finally {
    t.cleanup();
  }
});

test('stop during start waits for the start, then stops', async () => {
  const t = setup();
  try {
    const started = t.ds.start();
    const stopped = t.ds.stop('signal');
    await started;
    await stopped;
    assert.deepEqual(t.binding.ops(), [
      'getFeatures',
      'addDev',
      'setParams',
      'createServer',
      'server.start',
      'startDev',
      'setIoScheduler',
      'stopDev',
      'server.stop',
      'delDev',
    ]);
  } finally {
    t.cleanup();
  }
});

test('--io-scheduler: a chosen scheduler is set; kernel leaves the kernel\'s choice', async () => {
  const a = setup({ ioScheduler: 'mq-deadline' });
  const b = setup({ ioScheduler: 'kernel' });
  try {
    await a.ds.start();
    assert.equal(a.binding.schedulers.get(0), 'mq-deadline');
    await b.ds.start();
    assert.ok(!b.binding.ops().includes('setIoScheduler'));
    assert.equal(b.ds.phase, 'live');
  } finally {
    a.cleanup();
    b.cleanup();
  }
});

test('every queue thread exiting on its own (someone stopped the device) stops and deletes; so does one that fails', async () => {
  const t = setup({ queues: '2' });
  try {
    await t.ds.start();
    const done = new Promise<string>((r) => t.ds.onStopped(r));
    const srv = t.binding.servers[0];
    srv.exitQueue(0);
    await new Promise((r) => setImmediate(r));
    assert.equal(t.ds.phase, 'live', 'one queue left: still serving');
    srv.exitQueue(1);
    assert.equal(await done, 'every queue thread exited');
    assert.equal(t.binding.devices.size, 0);
    assert.equal(t.store.read(0), undefined);
  } finally {
    t.cleanup();
  }
  // one queue failing on its own (its target lost its store): the disk goes at once
  const u = setup({ queues: '2' });
  try {
    await u.ds.start();
    const done = new Promise<string>((r) => u.ds.onStopped(r));
    u.binding.servers[0].exitQueue(1, -5, 'connection lost');
    assert.equal(await done, 'queue 1 failed: connection lost');
    const t = u;
    assert.equal(t.binding.devices.size, 0);
    assert.equal(t.store.read(0), undefined);
  } finally {
    t.cleanup();
  }
  // ... and one that fails while START_DEV waits (an NBD server that stalls the partition scan):
  // add fails with the reason and rolls back, instead of a disk LIVE with nobody serving it
  const w = setup({ queues: '2' });
  try {
    w.binding.duringStartDev = () => w.binding.servers[0].exitQueue(0, -107, 'no reply within 2 s');
    await assert.rejects(w.ds.start(), /queue 0 failed: no reply within 2 s \(while the disk started\)/);
    assert.equal(w.binding.devices.size, 0);
    assert.equal(w.store.read(0), undefined);
  } finally {
    w.cleanup();
  }
});

// ---- recovery ------------------------------------------------------------------------------

async function quiesced(raw: RawAddOptions = { recovery: '1' }) {
  const t = setup(raw);
  const st = await t.ds.start();
  // the server dies: the kernel keeps the disk QUIESCED
  t.binding.devices.get(st.devId)!.info.state = 2;
  t.binding.calls = [];
  const ds2 = new DeviceServer(undefined, { binding: t.binding, store: t.store, pid: 888, sleep: async () => undefined });
  return { ...t, st, ds2 };
}

test('recover: GET_DEV_INFO, START_USER_RECOVERY, FETCH, END_USER_RECOVERY, state updated', async () => {
  const t = await quiesced();
  try {
    const st: DeviceState = await t.ds2.recover(0);
    assert.deepEqual(t.binding.ops(), ['getDevInfo', 'startUserRecovery', 'createServer', 'server.start', 'endUserRecovery']);
    assert.deepEqual(t.binding.calls[4].args, [0, 888]);
    assert.equal(st.pid, 888);
    assert.equal(t.store.read(0)?.pid, 888);
    assert.equal(t.store.read(0)?.createdAt, t.st.createdAt);
    assert.equal(t.binding.devices.get(0)?.info.state, 1);
    assert.equal(t.ds2.phase, 'live');
    await t.ds2.stop();
    assert.equal(t.binding.devices.size, 0);
  } finally {
    t.cleanup();
  }
});

test('recover: retries START_USER_RECOVERY while the old server lets go (EBUSY)', async () => {
  const t = await quiesced();
  try {
    t.binding.fail('startUserRecovery', 'EBUSY', 3);
    await t.ds2.recover(0);
    assert.equal(t.binding.ops().filter((o) => o === 'startUserRecovery').length, 4);
  } finally {
    t.cleanup();
  }
});

test('recover: a LIVE device is refused before anything is done', async () => {
  const t = await quiesced();
  try {
    t.binding.devices.get(0)!.info.state = 1;
    await assert.rejects(t.ds2.recover(0), {
      message: 'device 0 is LIVE, not QUIESCED or FAIL_IO: there is nothing to recover',
    });
    assert.deepEqual(t.binding.ops(), ['getDevInfo']);
  } finally {
    t.cleanup();
  }
});

test('recover: no state file, no recovery flag', async () => {
  const t = await quiesced();
  try {
    await assert.rejects(t.ds2.recover(9), (e: Error) => e instanceof UblkError && /no ublk-ts state for device 9/.test(e.message));
    const t2 = await quiesced({});
    await assert.rejects(t2.ds2.recover(0), { message: 'device 0 was not added with -r 1: it cannot be recovered' });
    t2.cleanup();
  } finally {
    t.cleanup();
  }
});

test('recover: a failure leaves the device for another try', async () => {
  const t = await quiesced();
  try {
    t.binding.fail('endUserRecovery', 'EINVAL');
    await assert.rejects(t.ds2.recover(0), /END_USER_RECOVERY failed/);
    assert.deepEqual(t.binding.ops().slice(-2), ['endUserRecovery', 'server.stop']);
    assert.ok(t.binding.devices.has(0));
    assert.equal(t.store.read(0)?.pid, PID);
  } finally {
    t.cleanup();
  }
});
