// The CLI as users run it: `node bin/ublk-ts ...` in a child process.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { spawnServer } from '../../daemon/server/spawn';
import { StateStore } from '../../daemon/state-store';
import { UblkError, UsageError } from '../../shared/errors';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'ublk-ts');
const FAKE_ADDON = path.join(__dirname, 'fake-addon.js');

function run(args: string[], opts: SpawnSyncOptions = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, ...opts });
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const fakeEnv = (runDir: string) => ({
  ...process.env,
  UBLK_TS_ADDON: FAKE_ADDON,
  UBLK_TS_RUN_DIR: runDir,
});

test('unknown option and unknown command: exit 2 with commander\'s message', () => {
  let r = run(['list', '--frob']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.split('\n')[0], "ublk-ts: unknown option '--frob'");
  r = run(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^ublk-ts: unknown command 'frobnicate'/);
  r = run(['add', '-t']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^ublk-ts: option '-t, --type <loop\|null\|nbd\|js>' argument missing/);
});

test('bad -q: exit 2, one line', () => {
  const r = run(['add', '-t', 'null', '-q', '12abc']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'ublk-ts: -q/--queues must be a whole number from 1 to 64, not "12abc"\n');
  assert.equal(r.stdout, '');
});

test('ublksrv spellings are accepted', () => {
  // validation passes (then stops at root/driver checks, exit 1, not 2)
  const r = run(['add', '-t', 'loop', '-f', '/x', '--max_io_buf_bytes', '1048576', '--buffered_io', '-o', '8', '--user_recovery', '1'], {
    env: { ...process.env, UBLK_TS_ADDON: FAKE_ADDON, UBLK_TS_FAKE_NO_CONTROL: '1' },
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /ublk-control not found|must be run as root/);
  const r2 = run(['add', '-t', 'null', '--max-io-buf-bytes', '4095']);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /--max_io_buf_bytes must be a multiple of 4096/);
});

test('add as non-root: "must be run as root", exit 1', () => {
  if (process.geteuid?.() !== 0) {
    const r = run(['add', '-t', 'null']);
    assert.equal(r.stderr, 'ublk-ts: must be run as root\n');
    assert.equal(r.code, 1);
    return;
  }
  // As root: run it as nobody. The checkout may sit where nobody cannot read (under /root, in a
  // mktemp -d directory): nobody keeps the one capability that reads it (CAP_DAC_READ_SEARCH,
  // ambient), as if ublk-ts were installed world-readable; nothing else of root's.
  const setpriv = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search', '--'];
  const r = spawnSync(setpriv[0], [...setpriv.slice(1), process.execPath, BIN, 'add', '-t', 'null'], { encoding: 'utf8', timeout: 20_000, cwd: '/' });
  assert.equal(r.stderr, 'ublk-ts: must be run as root\n');
  assert.equal(r.status, 1);
});

test('no driver: one line naming modprobe, exit 1', () => {
  const r = run(['list'], { env: { ...process.env, UBLK_TS_ADDON: FAKE_ADDON, UBLK_TS_FAKE_NO_CONTROL: '1' } });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'ublk-ts: /dev/ublk-control not found: load the driver with `modprobe ublk_drv`\n');
});

test('help and version exit 0; no arguments is a usage error', () => {
  assert.equal(run(['help']).code, 0);
  assert.equal(run(['help', 'add']).code, 0);
  assert.equal(run(['--version']).stdout, '0.1.0\n');
  assert.equal(run([]).code, 2);
});

test('features and list through a fake addon', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-cli-'));
  try {
    const env = { ...fakeEnv(dir), UBLK_TS_FAKE_FEATURES: '0x849' };
    let r = run(['features'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n')[0], 'ublk_drv features: 0x849');
    assert.match(r.stdout, /zero copy \(-z\): auto/);
    r = run(['list', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Array.isArray(JSON.parse(r.stdout)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('add --foreground: live, listed, state written; SIGTERM deletes it and exits 0', async () => {
  if (process.geteuid?.() !== 0) return; // add needs root
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-fg-'));
  try {
    const child = spawn(process.execPath, [BIN, 'add', '-t', 'null', '--size', '1M', '--foreground'], {
      env: { ...fakeEnv(dir), UBLK_TS_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const deadline = Date.now() + 10_000;
    while (!out.includes('\ttarget ') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(out, /^dev id 0: nr_hw_queues 1 queue_depth 128 block size 512 dev_capacity 2048\n/, err);
    assert.match(out, /\ttarget \{"data_mode":"copy","dev_size":1048576,"name":"null","type":0,"zero_copy":"off"\}\n/);
    const st = new StateStore(dir).read(0);
    assert.equal(st?.pid, child.pid);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    assert.equal(new StateStore(dir).read(0), undefined);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- the readiness protocol between add and its detached server --------------------------------

function fakeServer(dir: string, body: string): string {
  const p = path.join(dir, 'fake-server.js');
  fs.writeFileSync(p, `const fs = require('fs');\n${body}\n`);
  return p;
}

test('spawnServer: live', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-spawn-'));
  try {
    const main = fakeServer(dir, `fs.writeSync(3, JSON.stringify({event:'live',devId:7})+'\\n'); fs.closeSync(3); setTimeout(()=>{}, 300);`);
    const r = await spawnServer({ action: 'recover', devId: 7 }, { store: new StateStore(dir), mainPath: main, timeoutMs: 5000 });
    assert.equal(r.devId, 7);
    assert.ok(r.pid > 0);
    assert.equal(fs.statSync(path.join(dir, 'ublk-ts.log')).mode & 0o777, 0o600);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('spawnServer: error line, usage error line, early exit, timeout', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-spawn-'));
  const store = new StateStore(dir);
  try {
    let main = fakeServer(dir, `fs.writeSync(3, JSON.stringify({event:'error',message:'device id 3 is already in use',code:'EEXIST',exitCode:1})+'\\n'); process.exit(1);`);
    await assert.rejects(spawnServer({ action: 'recover', devId: 3 }, { store, mainPath: main }), (e: Error) => {
      return e instanceof UblkError && e.message === 'device id 3 is already in use';
    });
    main = fakeServer(dir, `fs.writeSync(3, JSON.stringify({event:'error',message:'-f /x: is empty',exitCode:2})+'\\n'); process.exit(2);`);
    await assert.rejects(spawnServer({ action: 'recover', devId: 3 }, { store, mainPath: main }), (e: Error) => e instanceof UsageError);
    main = fakeServer(dir, `console.log('boom'); process.exit(3);`);
    await assert.rejects(spawnServer({ action: 'recover', devId: 3 }, { store, mainPath: main }), {
      message: `the server exited (status 3) before the device was live; see ${path.join(dir, 'ublk-ts.log')}`,
    });
    assert.match(fs.readFileSync(path.join(dir, 'ublk-ts.log'), 'utf8'), /boom/);
    main = fakeServer(dir, `process.on('SIGTERM', () => process.exit(0)); setInterval(()=>{}, 1000);`);
    await assert.rejects(spawnServer({ action: 'recover', devId: 3 }, { store, mainPath: main, timeoutMs: 300 }), (e: Error) => {
      return e instanceof UblkError && e.code === 'ETIMEDOUT' && /did not report within 0 s/.test(e.message);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('server-main: readiness on fd 3, state while live, SIGTERM deletes and exits 0, JSON logs with the device id', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-srv-'));
  let killLater = () => undefined as unknown;
  try {
    const spec = {
      target: 'null', devId: -1, nrQueues: 2, depth: 64, logicalBlockSize: 512, maxIoBufBytes: 524288,
      zeroCopy: 'off', userCopy: false, bufferedIo: false, offsetSectors: 0, sizeBytes: 1048576,
      recovery: false, recoveryReissue: false, recoveryFailIo: false, foreground: false, readOnly: false,
    };
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'daemon', 'server', 'server-main.js'), JSON.stringify({ action: 'add', spec })], {
      env: fakeEnv(dir),
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d));
    const fd3 = child.stdio[3] as NodeJS.ReadableStream;
    let ready = '';
    const closed = new Promise<void>((r) => fd3.on('end', () => r()));
    fd3.on('data', (d: Buffer) => (ready += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    killLater = () => child.kill('SIGKILL');
    await closed; // the server closes fd 3 after its one line
    assert.equal(ready, '{"event":"live","devId":0}\n');
    const st = new StateStore(dir).read(0);
    assert.equal(st?.pid, child.pid);
    assert.deepEqual(st?.tids, [1000, 1001]);
    const canLower = spawnSync('sh', ['-c', 'echo -1000 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj'], { encoding: 'utf8' });
    if (String(canLower.stdout).trim() === '-1000') {
      assert.equal(fs.readFileSync(`/proc/${child.pid}/oom_score_adj`, 'utf8').trim(), '-1000');
    }
    child.kill('SIGHUP'); // ignored
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(child.exitCode, null);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(new StateStore(dir).read(0), undefined);
    const events = log
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; devId: number });
    const names = events.map((e) => e.event);
    for (const e of ['server_start', 'negotiated', 'added', 'params_set', 'queues_ready', 'live', 'signal', 'stopping', 'stopped', 'server_exit']) {
      assert.ok(names.includes(e), `log has ${e}: ${names.join(',')}`);
    }
    for (const e of events.filter((x) => ['added', 'live', 'stopped'].includes(x.event))) assert.equal(e.devId, 0);
  } finally {
    killLater();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('server-main: a failure is reported on fd 3 and nothing is left', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-srv-'));
  try {
    const spec = {
      target: 'loop', file: path.join(dir, 'missing.img'), devId: -1, nrQueues: 1, depth: 64, logicalBlockSize: 512,
      maxIoBufBytes: 524288, zeroCopy: 'off', userCopy: false, bufferedIo: false, offsetSectors: 0,
      recovery: false, recoveryReissue: false, recoveryFailIo: false, foreground: false, readOnly: false,
    };
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'daemon', 'server', 'server-main.js'), JSON.stringify({ action: 'add', spec })], {
      env: fakeEnv(dir),
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
      timeout: 10_000,
    });
    assert.equal(r.status, 2);
    assert.deepEqual(JSON.parse(String(r.output[3])), {
      event: 'error',
      message: `-f ${path.join(dir, 'missing.img')}: no such file or directory`,
      code: 'EUSAGE',
      exitCode: 2,
    });
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
