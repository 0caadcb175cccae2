import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deleteDevice, type DelDeps } from '../../daemon/delete-device';
import { runDel } from '../../daemon/cli/commands/del';
import { StateStore } from '../../daemon/state-store';
import { UsageError } from '../../shared/errors';
import { FakeBinding } from './fake-binding';
import { savedState } from './state-fixture';

function setup(over: Partial<DelDeps & { checkControl: () => void }> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-del-'));
  const binding = new FakeBinding();
  const store = new StateStore(dir);
  const alive = new Set<number>();
  const kills: Array<[number, string]> = [];
  const warnings: string[] = [];
  const deps: DelDeps & { checkControl: () => void } = {
    binding: () => binding,
    store,
    kernelIds: () => [...binding.devices.keys()],
    pidAlive: (pid) => alive.has(pid),
    isOurServer: () => true,
    kill: (pid, sig) => {
      kills.push([pid, sig]);
    },
    sleep: () => new Promise((r) => setTimeout(r, 1)),
    warn: (t) => warnings.push(t),
    checkControl: () => undefined,
    timeoutMs: 200,
    serverExitMs: 20,
    pollMs: 1,
    ...over,
  };
  return { dir, binding, store, alive, kills, warnings, deps, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('del: our live server is asked (SIGTERM) and we wait for the device to go', async () => {
  const t = setup();
  t.binding.addDevice(1, { ublksrvPid: 500 });
  t.store.write(savedState(1, 500));
  t.alive.add(500);
  t.deps.kill = (pid, sig) => {
    t.kills.push([pid, sig]);
    // the server stops and deletes its device a little later
    setTimeout(() => {
      t.binding.devices.delete(1);
      t.store.remove(1);
    }, 10);
  };
  try {
    assert.equal(await deleteDevice(1, t.deps), 'stopped-by-server');
    assert.deepEqual(t.kills, [[500, 'SIGTERM']]);
    assert.ok(!t.binding.ops().includes('stopDev'));
    assert.ok(!t.binding.ops().includes('delDev'));
    assert.equal(t.store.read(1), undefined);
  } finally {
    t.cleanup();
  }
});

test('del: a dead server (no recovery) is no obstacle: STOP_DEV + DEL_DEV here', async () => {
  const t = setup();
  t.binding.addDevice(2, { ublksrvPid: 501, state: 0 });
  t.store.write(savedState(2, 501));
  try {
    assert.equal(await deleteDevice(2, t.deps), 'deleted');
    assert.deepEqual(t.binding.ops(), ['getDevInfo', 'stopDev', 'delDev']);
    assert.deepEqual(t.kills, []);
    assert.equal(t.binding.devices.size, 0);
    assert.equal(t.store.read(2), undefined);
  } finally {
    t.cleanup();
  }
});

test('del: a QUIESCED device whose server died with recovery can still be deleted', async () => {
  const t = setup();
  t.binding.addDevice(3, { ublksrvPid: 502, state: 2, flags: 0x48n });
  t.store.write(savedState(3, 502));
  try {
    assert.equal(await deleteDevice(3, t.deps), 'deleted');
    assert.equal(t.binding.devices.size, 0);
  } finally {
    t.cleanup();
  }
});

test('del: a device that is not ours (no state) is stopped and deleted directly', async () => {
  const t = setup();
  t.binding.addDevice(4, { ublksrvPid: 503 });
  t.alive.add(503);
  setTimeout(() => t.alive.delete(503), 5); // the foreign server leaves after STOP_DEV
  try {
    assert.equal(await deleteDevice(4, t.deps), 'deleted');
    assert.deepEqual(t.binding.ops(), ['getDevInfo', 'stopDev', 'delDev']);
    assert.deepEqual(t.kills, []);
  } finally {
    t.cleanup();
  }
});

test('del: a recycled pid is not signalled', async () => {
  const t = setup({ isOurServer: () => false });
  t.binding.addDevice(5, { ublksrvPid: 504 });
  t.store.write(savedState(5, 504));
  t.alive.add(504);
  try {
    assert.equal(await deleteDevice(5, t.deps), 'deleted');
    assert.deepEqual(t.kills, []);
  } finally {
    t.cleanup();
  }
});

test('del: the server dies without deleting: we finish the job', async () => {
  const t = setup();
  t.binding.addDevice(6, { ublksrvPid: 505 });
  t.store.write(savedState(6, 505));
  t.alive.add(505);
  t.deps.kill = () => {
    t.alive.delete(505);
  };
  try {
    assert.equal(await deleteDevice(6, t.deps), 'deleted');
    assert.equal(t.binding.devices.size, 0);
  } finally {
    t.cleanup();
  }
});

test('del: a server that ignores SIGTERM times out with a hint', async () => {
  const t = setup({ timeoutMs: 30 });
  t.binding.addDevice(7, { ublksrvPid: 506 });
  t.store.write(savedState(7, 506));
  t.alive.add(506);
  try {
    await assert.rejects(deleteDevice(7, t.deps), {
      message: 'device 7 still exists 0 s after SIGTERM to its server (pid 506): is /dev/ublkb7 still open or mounted?',
    });
  } finally {
    t.cleanup();
  }
});

test('del: DEL_DEV that never returns times out', async () => {
  const t = setup({ timeoutMs: 30 });
  t.binding.addDevice(8, { ublksrvPid: 0 });
  t.binding.delDev = () => new Promise<void>(() => undefined);
  try {
    await assert.rejects(deleteDevice(8, t.deps), /DEL_DEV of device 8 did not finish within 0 s: is \/dev\/ublkb8 still open or mounted/);
  } finally {
    t.cleanup();
  }
});

test('del: stale state only, and nothing at all', async () => {
  const t = setup();
  t.store.write(savedState(9, 507));
  try {
    assert.equal(await deleteDevice(9, t.deps), 'stale-state-removed');
    assert.equal(t.store.read(9), undefined);
    await assert.rejects(deleteDevice(9, t.deps), { message: 'device 9 does not exist' });
  } finally {
    t.cleanup();
  }
});

test('del -a: kernel devices and state files; one failure makes exit 1, the rest go', async () => {
  const t = setup();
  t.binding.addDevice(0);
  t.binding.addDevice(1);
  t.binding.addDevice(2);
  t.store.write(savedState(5, 9999)); // stale
  const realDel = t.binding.delDev.bind(t.binding);
  t.binding.delDev = async (id) => {
    if (id === 1) throw Object.assign(new Error('busy'), { errno: 16, code: 'EBUSY', op: 'DEL_DEV' });
    return realDel(id);
  };
  try {
    assert.equal(await runDel({ all: true }, t.deps), 1);
    assert.deepEqual([...t.binding.devices.keys()], [1]);
    assert.equal(t.store.read(5), undefined);
    assert.deepEqual(t.warnings, ['device 1: DEL_DEV failed for device 1: busy']);
  } finally {
    t.cleanup();
  }
});

test('del usage', async () => {
  const t = setup();
  try {
    await assert.rejects(runDel({}, t.deps), (e: Error) => e instanceof UsageError && e.message === 'del needs -n/--number ID or -a/--all');
    await assert.rejects(runDel({ number: '1', all: true }, t.deps), {
      message: 'del takes -n/--number ID or -a/--all, not both',
    });
    await assert.rejects(runDel({ number: '1x' }, t.deps), {
      message: '-n/--number must be a whole number from 0 to 1048575, not "1x"',
    });
    t.binding.addDevice(3);
    assert.equal(await runDel({ number: '3' }, t.deps), 0);
    assert.equal(t.binding.devices.size, 0);
  } finally {
    t.cleanup();
  }
});

test('del: a device of `ublk-ts serve` is stopped here, never by SIGTERM to the whole service', async () => {
  const t = setup();
  t.binding.addDevice(3, { ublksrvPid: 600 });
  t.store.write({ ...savedState(3, 600), service: 'data' });
  t.alive.add(600);
  try {
    assert.equal(await deleteDevice(3, t.deps), 'deleted');
    assert.deepEqual(t.kills, []);
    assert.deepEqual(t.binding.ops().filter((o) => o !== 'getDevInfo'), ['stopDev', 'delDev']);
    assert.equal(t.warnings.length, 1);
    assert.match(t.warnings[0], /^device 3 is "data" of the ublk-ts service \(pid 600\): deleting it; remove it from/);
  } finally {
    t.cleanup();
  }
});
