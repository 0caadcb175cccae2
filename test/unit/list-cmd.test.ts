import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runList } from '../../daemon/cli/commands/list';
import type { ListDeps } from '../../daemon/cli/device-view';
import { runFeatures } from '../../daemon/cli/commands/features';
import { StateStore } from '../../daemon/state-store';
import { DeviceServer } from '../../daemon/device-server';
import { validateAddOptions } from '../../daemon/spec';
import { FakeBinding } from './fake-binding';

async function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-list-'));
  const binding = new FakeBinding(0xfffn);
  const store = new StateStore(dir);
  const spec = validateAddOptions({ target: 'null', size: '1G', zeroCopy: true }, { source: 'cli', cwd: '/' });
  await new DeviceServer(spec, { binding, store, pid: 321 }).start();
  binding.addDevice(4, { ublksrvPid: 99 }, {
    basic: {
      attrs: 4,
      logicalBsShift: 9,
      physicalBsShift: 12,
      ioOptShift: 12,
      ioMinShift: 9,
      maxSectors: 1024,
      chunkSectors: 0,
      devSectors: 2048n,
      virtBoundaryMask: 0n,
    },
  });
  let out = '';
  const warnings: string[] = [];
  const deps: Partial<ListDeps> = {
    binding: () => binding,
    store,
    kernelIds: () => [...binding.devices.keys()].sort(),
    deviceExists: (id) => binding.devices.has(id),
    readAffinity: () => [1],
    pidAlive: () => true,
    out: (t) => {
      out += t;
    },
    warn: (t) => warnings.push(t),
    checkControl: () => undefined,
  };
  return { dir, binding, store, deps, output: () => out, warnings, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('list: every device, ours with queues and target, a foreign one without', async () => {
  const t = await setup();
  try {
    assert.equal(await runList({}, t.deps), 0);
    assert.equal(
      t.output(),
      'dev id 0: nr_hw_queues 1 queue_depth 128 block size 512 dev_capacity 2097152\n' +
        '\tmax rq size 524288 daemon pid 321 state LIVE\n' +
        '\tflags 0x841 [ SUPPORT_ZERO_COPY AUTO_ZC CMD_IOCTL_ENCODE ]\n' +
        '\tublkc: 240:0 ublkb: 259:0 owner: 0:0\n' +
        '\tqueue 0: tid 1000 affinity(1 )\n' +
        '\ttarget {"data_mode":"zc_auto","dev_size":1073741824,"name":"null","type":0,"zero_copy":"auto"}\n' +
        'dev id 4: nr_hw_queues 1 queue_depth 128 block size 512 dev_capacity 2048\n' +
        '\tmax rq size 524288 daemon pid 99 state LIVE\n' +
        '\tflags 0x40 [ CMD_IOCTL_ENCODE ]\n' +
        '\tublkc: 0:0 ublkb: 0:0 owner: 0:0\n',
    );
    assert.deepEqual(t.warnings, []);
  } finally {
    t.cleanup();
  }
});

test('list -n, --json, stale state and a reused id are reported', async () => {
  const t = await setup();
  try {
    await runList({ number: '0', json: true }, t.deps);
    const j = JSON.parse(t.output()) as Array<Record<string, unknown>>;
    assert.equal(j.length, 1);
    assert.equal(j[0].dev_id, 0);
    assert.equal(j[0].zero_copy, 'auto');

    // device 0 goes away behind our back; device 4's id gets a state file from another pid
    t.binding.devices.delete(0);
    const st = t.store.read(0)!;
    t.store.write({ ...st, devId: 4, pid: 12345 });
    await runList({}, t.deps);
    assert.deepEqual(t.warnings, [
      'device 4: state file names server pid 12345, the kernel says 99: ignoring the file',
      'stale state for device 0 (no such device in the kernel): remove it with `ublk-ts del -n 0`',
    ]);
    await assert.rejects(runList({ number: '0' }, t.deps), { message: 'device 0 does not exist' });
  } finally {
    t.cleanup();
  }
});

test('features command', async () => {
  let out = '';
  const b = new FakeBinding(0x7fen);
  await runFeatures({}, { binding: () => b, out: (t) => (out += t), checkControl: () => undefined });
  assert.match(out, /^ublk_drv features: 0x7fe\n\tCOMP_IN_TASK        : 0x2\n/);
  assert.match(out, /zero copy \(-z\): unavailable/);
  out = '';
  await runFeatures({ json: true }, { binding: () => b, out: (t) => (out += t), checkControl: () => undefined });
  assert.equal(JSON.parse(out).features, '0x7fe');
});
