// Live upgrade logic with the fake binding: QUIESCE is negotiated with -r 1 where the kernel has
// it; a server whose queues end while the disk is still LIVE (QUIESCE_DEV) hands the device over
// instead of deleting it; `ublk-ts upgrade` checks, quiesces, waits for the old server and starts
// the new one, and says why when it cannot.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeviceServer } from '../../daemon/device-server';
import { StateStore } from '../../daemon/state-store';
import { validateAddOptions } from '../../daemon/spec';
import type { RawOptions as RawAddOptions } from '../../shared/options';
import { checkUpgradable, runUpgrade, type UpgradeDeps } from '../../daemon/cli/commands/upgrade';
import { negotiateFlags } from '../../daemon/features';
import { UBLK_F } from '../../shared/kernel';
import { UsageError } from '../../shared/errors';
import { FakeBinding } from './fake-binding';

const ALL = 0x1fffn; // through QUIESCE (bit 12)

function setup(raw: RawAddOptions = { recovery: '1' }, features = ALL) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-upg-'));
  const store = new StateStore(dir);
  const binding = new FakeBinding(features);
  const spec = validateAddOptions({ target: 'null', ...raw }, { source: 'cli', cwd: '/' });
  const ds = new DeviceServer(spec, { binding, store, pid: 777, sleep: async () => undefined });
  return { dir, store, binding, ds, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

const flush = () => new Promise((r) => setImmediate(r));

test('QUIESCE is asked for with -r 1 when the kernel has it, and only then', () => {
  const spec = (r: boolean) => ({ zeroCopy: 'off' as const, userCopy: false, recovery: r, recoveryReissue: false, recoveryFailIo: false });
  assert.ok(negotiateFlags(ALL, spec(true)).flags & UBLK_F.QUIESCE);
  assert.equal(negotiateFlags(ALL, spec(false)).flags & UBLK_F.QUIESCE, 0n);
  // an older kernel: recovery still works, without live upgrade
  const old = negotiateFlags(0xfffn, spec(true)).flags;
  assert.equal(old & UBLK_F.QUIESCE, 0n);
  assert.ok(old & UBLK_F.USER_RECOVERY);
});

test('queues ending while the disk stays LIVE (QUIESCE_DEV): handed over, not deleted; the state file stays', async () => {
  const t = setup();
  try {
    const st = await t.ds.start();
    const reasons: string[] = [];
    t.ds.onStopped((r) => reasons.push(r));
    t.binding.calls = [];
    t.binding.servers[0].exitQueue(0, 0, 'aborted');
    for (let i = 0; i < 5; i++) await flush();
    assert.equal(t.ds.phase, 'detached');
    assert.deepEqual(reasons, ['handover']);
    assert.deepEqual(t.binding.ops(), ['getDevInfo', 'server.stop']);
    assert.ok(t.store.read(st.devId), 'the state file went');
    assert.ok(t.binding.devices.has(st.devId));
  } finally {
    t.cleanup();
  }
});

test('queues ending on a DEAD disk (STOP_DEV from elsewhere), or without -r 1: deleted; a failed queue of a -r 1 disk: left for recover', async () => {
  for (const [name, raw, state, err, phase] of [
    ['stopped elsewhere', { recovery: '1' }, 0, 0, 'stopped'],
    ['no recovery', {}, 1, 0, 'stopped'],
    ['queue failure, no recovery', {}, 1, -5, 'stopped'],
    ['queue failure with -r 1', { recovery: '1' }, 1, -5, 'detached'],
  ] as const) {
    const t = setup(raw);
    try {
      const st = await t.ds.start();
      t.binding.devices.get(st.devId)!.info.state = state;
      t.binding.servers[0].exitQueue(0, err, 'x');
      for (let i = 0; i < 10; i++) await flush();
      assert.equal(t.ds.phase, phase, name);
      if (phase === 'stopped') assert.equal(t.store.read(st.devId), undefined, name);
      else {
        assert.ok(t.store.read(st.devId), `${name}: the state file stays for recover`);
        assert.ok(t.binding.devices.has(st.devId), `${name}: no STOP_DEV, no DEL_DEV`);
      }
    } finally {
      t.cleanup();
    }
  }
});

function info(state: number, flags: bigint) {
  return { nrHwQueues: 1, queueDepth: 1, state, maxIoBufBytes: 4096, devId: 3, ublksrvPid: 10, flags, ublksrvFlags: 0n, ownerUid: 0, ownerGid: 0 };
}

test('checkUpgradable: a LIVE -r 1 disk with QUIESCE only, each refusal says why', () => {
  const ok = UBLK_F.USER_RECOVERY | UBLK_F.QUIESCE;
  checkUpgradable(info(1, ok));
  assert.throws(() => checkUpgradable(info(1, UBLK_F.QUIESCE)), { message: 'device 3 was not added with -r 1: its server cannot be replaced while it runs' });
  assert.throws(() => checkUpgradable(info(2, ok)), { message: 'device 3 is QUIESCED, not LIVE: its server is gone, use `ublk-ts recover -n 3`' });
  assert.throws(() => checkUpgradable(info(0, ok)), { message: 'device 3 is DEAD, not LIVE' });
  assert.throws(() => checkUpgradable(info(1, UBLK_F.USER_RECOVERY)), /added without UBLK_F_QUIESCE .*Linux 6\.16/);
  assert.throws(() => checkUpgradable(info(1, ok | UBLK_F.BATCH_IO)), /uses batch I\/O \(--batch-io\): the kernel fails the I\/O in flight/);
});

function upgradeDeps(t: ReturnType<typeof setup>, extra: Partial<UpgradeDeps> = {}): UpgradeDeps {
  return {
    euid: 0,
    store: t.store,
    binding: t.binding,
    checkControl: () => undefined,
    processAlive: () => false,
    sleep: async () => undefined,
    warn: () => undefined,
    print: async () => undefined,
    ...extra,
  };
}

test('ublk-ts upgrade: QUIESCE_DEV, waits until the old server let go and the disk is QUIESCED, then starts the new server', async () => {
  const t = setup();
  try {
    const st = await t.ds.start();
    const dev = t.binding.devices.get(st.devId)!;
    t.binding.calls = [];
    let polls = 0;
    let oldAlive = true;
    const started: number[] = [];
    const deps = upgradeDeps(t, {
      processAlive: (pid) => pid === 777 && oldAlive,
      sleep: async () => {
        // the old server drains and exits; the kernel then marks the disk QUIESCED
        if (++polls === 2) dev.info.state = 2;
        if (polls === 3) oldAlive = false;
      },
      startServer: async (id) => {
        started.push(id);
      },
    });
    assert.equal(await runUpgrade({ number: String(st.devId), timeout: '5' }, deps), 0);
    assert.deepEqual(started, [st.devId]);
    const q = t.binding.calls.find((c) => c.op === 'quiesceDev');
    assert.deepEqual(q?.args, [st.devId, 5000]);
    assert.ok(polls >= 3, 'did not wait for the old server');
  } finally {
    t.cleanup();
  }
});

test('ublk-ts upgrade refuses bad input and devices it cannot upgrade, before QUIESCE_DEV', async () => {
  const t = setup({});
  try {
    const st = await t.ds.start();
    const deps = upgradeDeps(t);
    await assert.rejects(runUpgrade({}, deps), (e: Error) => e instanceof UsageError);
    await assert.rejects(runUpgrade({ number: 'x' }, deps), (e: Error) => e instanceof UsageError);
    await assert.rejects(runUpgrade({ number: '0', timeout: '0' }, deps), /--timeout must be a whole number of seconds from 1 to 3600, not "0"/);
    await assert.rejects(runUpgrade({ number: '0' }, { ...deps, euid: 1000 }), /must be run as root/);
    await assert.rejects(runUpgrade({ number: '9' }, deps), /no ublk-ts state for device 9/);
    await assert.rejects(runUpgrade({ number: String(st.devId) }, deps), /was not added with -r 1/);
    assert.ok(!t.binding.ops().includes('quiesceDev'));
  } finally {
    t.cleanup();
  }
});

test('ublk-ts upgrade: EBUSY from QUIESCE_DEV and an old server that never lets go are reported, the disk named', async () => {
  const t = setup();
  try {
    const st = await t.ds.start();
    t.binding.fail('quiesceDev', 'EBUSY', 1);
    await assert.rejects(runUpgrade({ number: String(st.devId) }, upgradeDeps(t)), /every tag of some queue stayed busy for 30 s .*keeps running with its old server/);
    let n = 0;
    const deps = upgradeDeps(t, { processAlive: () => true, sleep: async () => void n++ });
    await assert.rejects(runUpgrade({ number: String(st.devId), timeout: '1' }, { ...deps }), /has not let go after 1 s/);
  } finally {
    t.cleanup();
  }
});

test('ublk-ts upgrade of a -e 1 disk warns that I/O fails during the change-over', async () => {
  const t = setup({ recovery: '1', recoveryFailIo: '1' });
  try {
    const st = await t.ds.start();
    const dev = t.binding.devices.get(st.devId)!;
    const warned: string[] = [];
    const deps = upgradeDeps(t, {
      warn: (l) => warned.push(l),
      sleep: async () => {
        dev.info.state = 3;
      },
      startServer: async () => undefined,
    });
    assert.equal(await runUpgrade({ number: String(st.devId) }, deps), 0);
    assert.deepEqual(warned, [`ublk-ts: device ${st.devId} was added with -e 1: I/O fails (EIO) while the servers change over`]);
  } finally {
    t.cleanup();
  }
});
