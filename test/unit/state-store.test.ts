import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StateStore, runDir, pidAlive, type DeviceState } from '../../daemon/state-store';
import { savedState } from './state-fixture';

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-state-'));
}

function st(devId: number, pid = 100): DeviceState {
  return savedState(devId, pid);
}

test('run dir from the environment', () => {
  assert.equal(runDir({}), '/run/ublk-ts');
  assert.equal(runDir({ UBLK_TS_RUN_DIR: '/tmp/x' }), '/tmp/x');
});

test('write creates a 0700 directory and 0600 NNNN.json files; read/list/remove', () => {
  const base = tmp();
  const old = process.umask(0o022);
  try {
    const dir = path.join(base, 'run', 'ublk-ts');
    const s = new StateStore(dir);
    s.write(st(3));
    s.write(st(12));
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(s.fileFor(3), path.join(dir, '0003.json'));
    assert.equal(fs.statSync(s.fileFor(3)).mode & 0o777, 0o600);
    assert.deepEqual(s.read(3), st(3));
    assert.equal(s.read(4), undefined);
    assert.deepEqual(
      s.list().map((e) => e.devId),
      [3, 12],
    );
    s.remove(3);
    s.remove(3); // idempotent
    assert.equal(s.read(3), undefined);
    assert.deepEqual(fs.readdirSync(dir), ['0012.json']);
  } finally {
    process.umask(old);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('an existing directory is tightened to 0700', () => {
  const base = tmp();
  try {
    fs.chmodSync(base, 0o755);
    new StateStore(base).write(st(1));
    assert.equal(fs.statSync(base).mode & 0o777, 0o700);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('atomic replace: no temporary left, a reader sees old or new, never a mix', () => {
  const base = tmp();
  try {
    const s = new StateStore(base);
    s.write(st(5, 100));
    const inodeBefore = fs.statSync(s.fileFor(5)).ino;
    s.write(st(5, 200));
    assert.equal(s.read(5)?.pid, 200);
    assert.notEqual(fs.statSync(s.fileFor(5)).ino, inodeBefore, 'replaced by rename, not rewritten in place');
    assert.deepEqual(fs.readdirSync(base), ['0005.json']);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('broken files are reported, not fatal for list', () => {
  const base = tmp();
  try {
    const s = new StateStore(base);
    fs.writeFileSync(path.join(base, '0007.json'), '{not json');
    fs.writeFileSync(path.join(base, '0008.json'), '{"hello":1}');
    fs.writeFileSync(path.join(base, 'ublk-ts.log'), 'x');
    s.write(st(9));
    const l = s.list();
    assert.deepEqual(
      l.map((e) => [e.devId, e.error === undefined]),
      [
        [7, false],
        [8, false],
        [9, true],
      ],
    );
    assert.match(l[0].error ?? '', /not valid JSON/);
    assert.match(l[1].error ?? '', /not a ublk-ts state file/);
    assert.throws(() => s.read(7), /not valid JSON/);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('stale files: state for devices the kernel no longer has', () => {
  const base = tmp();
  try {
    const s = new StateStore(base);
    s.write(st(1));
    s.write(st(2));
    const stale = s.stale((id) => id === 1);
    assert.deepEqual(
      stale.map((e) => e.devId),
      [2],
    );
    for (const e of stale) s.remove(e.devId);
    assert.deepEqual(
      s.list().map((e) => e.devId),
      [1],
    );
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a missing run dir lists as empty', () => {
  assert.deepEqual(new StateStore('/nonexistent/ublk-ts-test').list(), []);
});

test('pidAlive', () => {
  assert.equal(pidAlive(process.pid), true);
  assert.equal(pidAlive(0), false);
  assert.equal(pidAlive(-5), false);
});
