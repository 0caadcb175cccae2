// Recovery and teardown logic with the fake binding: detach (a server letting go of its device as
// a dying one does), recovery races and time-outs, damaged state files, the fast refusals of
// `ublk-ts recover`, and `del` refusing a disk that is in use.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeviceServer } from '../../daemon/device-server';
import { StateStore } from '../../daemon/state-store';
import { validateAddOptions, type AddSpec } from '../../daemon/spec';
import type { RawOptions as RawAddOptions } from '../../shared/options';
import { checkRecoverable, recheckSavedSpec } from '../../daemon/recovery-checks';
import { specToRaw } from '../../daemon/spec';
import { runRecover } from '../../daemon/cli/commands/recover';
import { deleteDevice, type DelDeps } from '../../daemon/delete-device';
import { UblkError, UsageError } from '../../shared/errors';
import { FakeBinding } from './fake-binding';

function setup(raw: RawAddOptions = { recovery: '1' }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-rec-'));
  const store = new StateStore(dir);
  const binding = new FakeBinding(0xfffn);
  const spec = validateAddOptions({ target: 'null', ...raw }, { source: 'cli', cwd: '/' });
  const ds = new DeviceServer(spec, { binding, store, pid: 777, sleep: async () => undefined });
  return { dir, store, binding, ds, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('detach: the queue threads end without STOP_DEV or DEL_DEV; the state file stays; stop() after it does nothing', async () => {
  const t = setup();
  try {
    const st = await t.ds.start();
    t.binding.calls = [];
    const stopped: string[] = [];
    t.ds.onStopped((r) => stopped.push(r));
    await t.ds.detach();
    assert.equal(t.ds.phase, 'detached');
    assert.deepEqual(t.binding.ops(), ['server.stop']);
    assert.deepEqual(t.binding.calls[0].args, [true]);
    assert.deepEqual(stopped, ['detached']);
    assert.ok(t.store.read(st.devId), 'the state file went');
    // queue threads reporting their exit afterwards must not stop the device either
    t.binding.servers[0].exitQueue(0);
    await t.ds.stop();
    assert.deepEqual(t.binding.ops(), ['server.stop']);
    assert.equal(t.ds.phase, 'detached');
    assert.ok(t.binding.devices.has(st.devId));
  } finally {
    t.cleanup();
  }
});

test('detach: only a live device', async () => {
  const t = setup();
  try {
    await assert.rejects(t.ds.detach(), /detach\(\) in phase idle/);
  } finally {
    t.cleanup();
  }
});

async function quiesced(raw?: RawAddOptions) {
  const t = setup(raw);
  const st = await t.ds.start();
  await t.ds.detach();
  t.binding.devices.get(st.devId)!.info.state = 2;
  t.binding.calls = [];
  return { ...t, st };
}

test('recover: EBUSY because another recover got there first: says so at once, no waiting out the time-out', async () => {
  const t = await quiesced();
  try {
    let n = 0;
    t.binding.fail('startUserRecovery', 'EBUSY');
    const ds2 = new DeviceServer(undefined, {
      binding: t.binding,
      store: t.store,
      pid: 888,
      sleep: async () => {
        // the other recover finishes while we wait
        if (++n === 2) Object.assign(t.binding.devices.get(0)!.info, { state: 1, ublksrvPid: 999 });
      },
    });
    await assert.rejects(ds2.recover(0), (e: Error) => {
      assert.ok(e instanceof UblkError);
      assert.equal(e.message, 'device 0 became LIVE (server pid 999) while this recover waited: another recover got there first');
      return true;
    });
    assert.equal(t.binding.ops().filter((o) => o === 'startUserRecovery').length, 3);
    assert.ok(!t.binding.ops().includes('createServer'));
    assert.equal(ds2.phase, 'failed');
  } finally {
    t.cleanup();
  }
});

test('recover: EBUSY that never ends times out naming the old server', async () => {
  const t = await quiesced();
  try {
    t.binding.devices.get(0)!.info.ublksrvPid = 4321;
    t.binding.fail('startUserRecovery', 'EBUSY');
    const ds2 = new DeviceServer(undefined, { binding: t.binding, store: t.store, pid: 888, recoveryBusyTimeoutMs: 30, sleep: (ms) => new Promise((r) => setTimeout(r, ms / 10)) });
    await assert.rejects(ds2.recover(0), /still answers EBUSY after 0 s: is the old server \(pid 4321\) still holding \/dev\/ublkc0\?/);
    assert.equal(t.binding.devices.get(0)!.info.state, 2, 'the device must be left QUIESCED');
  } finally {
    t.cleanup();
  }
});

function editState(store: StateStore, devId: number, edit: (spec: Record<string, unknown>) => void): void {
  const file = store.fileFor(devId);
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(j.spec);
  fs.writeFileSync(file, JSON.stringify(j));
}

for (const [name, edit, why] of [
  ['a relative backing file', (s: Record<string, unknown>) => Object.assign(s, { target: { kind: 'loop', file: 'disk.img' } }), /target\.file "disk\.img" is not as ublk-ts writes it \("\/disk\.img"\)/],
  ['a negative offset', (s: Record<string, unknown>) => Object.assign(s, { target: { kind: 'loop', file: '/x.img', offset: -8 } }), /offset must be a whole number of 512-byte sectors, not -8/],
  ['a size that is not a number', (s: Record<string, unknown>) => Object.assign(s, { target: { kind: 'null', size: '1e9' } }), /size must be a whole number of bytes/],
  ['an unknown target', (s: Record<string, unknown>) => Object.assign(s, { target: { kind: 'qcow9' } }), /target must be loop, null, nbd or js, not "qcow9"/],
  ['a flag that is not a boolean', (s: Record<string, unknown>) => Object.assign(s, { readOnly: 'yes' }), /readOnly must be true or false, not "yes"/],
  ['queue depth out of range', (s: Record<string, unknown>) => Object.assign(s, { depth: 100000 }), /depth must be a whole number from 1 to 4096, not 100000/],
] as const) {
  test(`recover: a state file with ${name} is refused before the kernel is asked for anything`, async () => {
    const t = await quiesced();
    try {
      editState(t.store, 0, edit);
      const ds2 = new DeviceServer(undefined, { binding: t.binding, store: t.store, pid: 888, sleep: async () => undefined });
      await assert.rejects(ds2.recover(0), (e: Error) => {
        assert.match(e.message, /^the state file .*0000\.json of device 0 is not usable: /);
        assert.match(e.message, why);
        assert.match(e.message, /delete the device with `ublk-ts del -n 0`$/);
        return true;
      });
      assert.deepEqual(t.binding.ops(), ['getDevInfo']);
    } finally {
      t.cleanup();
    }
  });
}

test('recheckSavedSpec: every valid spec comes back as it was', () => {
  const specs: AddSpec[] = [
    validateAddOptions({ target: 'null' }, { source: 'cli', cwd: '/' }),
    validateAddOptions({ target: 'null', size: '1G', queues: '4', depth: '64', zeroCopy: true, zcMode: 'explicit', recovery: '1', recoveryReissue: '1' }, { source: 'cli', cwd: '/' }),
    validateAddOptions(
      { target: 'loop', file: '/a/b.img', offset: '8', bufferedIo: true, readOnly: true, logicalBlockSize: '4096', maxIoBufBytes: '1M', recoveryFailIo: '1', userCopy: true, size: '8M' },
      { source: 'cli', cwd: '/' },
    ),
  ];
  for (const [i, spec] of specs.entries()) {
    const s = { ...spec, id: 5 + i };
    assert.deepEqual(recheckSavedSpec(s, 5 + i, '/run/x.json'), s);
    assert.deepEqual(validateAddOptions(specToRaw(s), { source: 'file', cwd: '/' }), s);
  }
  assert.throws(() => recheckSavedSpec(null, 1, 'f'), /no device spec/);
});

test('checkRecoverable: QUIESCED and FAIL_IO of a -r 1 device only', () => {
  const info = (state: number, flags = 0x8n) => ({
    nrHwQueues: 1, queueDepth: 1, state, maxIoBufBytes: 4096, devId: 3, ublksrvPid: 10, flags, ublksrvFlags: 0n, ownerUid: 0, ownerGid: 0,
  });
  checkRecoverable(info(2));
  checkRecoverable(info(3));
  assert.throws(() => checkRecoverable(info(1)), { message: 'device 3 is LIVE, not QUIESCED or FAIL_IO: there is nothing to recover' });
  assert.throws(() => checkRecoverable(info(0)), /device 3 is DEAD/);
  assert.throws(() => checkRecoverable(info(2, 0n)), { message: 'device 3 was not added with -r 1: it cannot be recovered' });
});

test('ublk-ts recover fails fast, before starting a server: LIVE, no such device, bad id', async () => {
  const t = setup();
  try {
    const st = await t.ds.start();
    const deps = { euid: 0, store: t.store, binding: t.binding, checkControl: () => undefined };
    await assert.rejects(runRecover({ number: String(st.devId) }, deps), /device 0 is LIVE, not QUIESCED or FAIL_IO/);
    t.binding.devices.delete(0);
    await assert.rejects(runRecover({ number: '0' }, deps), { message: 'device 0 does not exist' });
    await assert.rejects(runRecover({ number: '-1' }, deps), (e: Error) => e instanceof UsageError);
    await assert.rejects(runRecover({ number: '0' }, { ...deps, euid: 1000 }), /must be run as root/);
    await assert.rejects(runRecover({}, deps), (e: Error) => e instanceof UsageError);
  } finally {
    t.cleanup();
  }
});

test('del refuses a disk that is in use: nothing is signalled or stopped', async () => {
  const t = setup();
  try {
    const st = await t.ds.start();
    t.binding.calls = [];
    const kills: number[] = [];
    let asked: [number, string | undefined] | undefined;
    const deps: DelDeps = {
      binding: () => t.binding,
      store: t.store,
      kernelIds: () => [...t.binding.devices.keys()],
      pidAlive: () => true,
      isOurServer: () => true,
      kill: (pid) => kills.push(pid),
      sleep: async () => undefined,
      warn: () => undefined,
      timeoutMs: 100,
      serverExitMs: 10,
      pollMs: 1,
      inUse: (id, devt) => {
        asked = [id, devt];
        return ['ublkb0 mounted on /mnt', 'dm-0 stacked on ublkb0'];
      },
    };
    await assert.rejects(deleteDevice(st.devId, deps), (e: Error) => {
      assert.ok(e instanceof UblkError);
      assert.equal(e.code, 'EBUSY');
      assert.match(e.message, /^device 0 is in use \(ublkb0 mounted on \/mnt; dm-0 stacked on ublkb0\): unmount it first/);
      return true;
    });
    assert.deepEqual(asked, [0, '259:0']); // the disk's devt from GET_PARAMS
    assert.deepEqual(kills, []);
    assert.ok(!t.binding.ops().includes('stopDev'));
    assert.ok(t.binding.devices.has(0));
    // nothing in use: deleted as before
    deps.inUse = () => [];
    deps.pidAlive = () => false;
    assert.equal(await deleteDevice(st.devId, deps), 'deleted');
  } finally {
    t.cleanup();
  }
});

test('state dir: a symlink is refused', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-link-'));
  try {
    fs.mkdirSync(path.join(dir, 'real'));
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
    assert.throws(() => new StateStore(path.join(dir, 'link')).ensureDir(), /is not a directory \(a symlink\?\)/);
    new StateStore(path.join(dir, 'real')).ensureDir();
    assert.equal(fs.statSync(path.join(dir, 'real')).mode & 0o777, 0o700);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
