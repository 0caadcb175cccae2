// `ublk-ts add --config FILE`: the file's one device through the normal add path.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { prepareAdd } from '../../daemon/cli/commands/add';
import { StateStore } from '../../daemon/state-store';
import { ConfigError } from '../../shared/errors';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'ublk-ts');

function cfg(v: unknown): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-addcfg-'));
  const file = path.join(dir, 'dev.json');
  fs.writeFileSync(file, JSON.stringify(v));
  return { dir, file };
}

test('add --config: the file\'s device, command-line options over it, root and driver checked after', () => {
  const { dir, file } = cfg({ service: { logLevel: 'debug' }, devices: [{ target: 'loop', file: 'img', depth: 64 }] });
  fs.writeFileSync(path.join(dir, 'img'), Buffer.alloc(1 << 20));
  fs.writeFileSync(path.join(dir, 'other'), Buffer.alloc(1 << 20));
  const store = new StateStore(path.join(dir, 'run'));
  const order: string[] = [];
  const r = prepareAdd({ queues: '2' }, { euid: 0, checkControl: () => order.push('control'), store }, file);
  assert.equal(r.spec.target.file, path.join(dir, 'img'));
  assert.equal(r.spec.queues, 2);
  assert.equal(r.spec.depth, 64);
  assert.equal(r.logOpts.level, 'debug');
  // a relative -f on the command line is relative to where the command runs
  const o = prepareAdd({ file: 'other' }, { euid: 0, checkControl: () => undefined, cwd: dir, store }, file);
  assert.equal(o.spec.target.file, path.join(dir, 'other'));
  assert.throws(() => prepareAdd({}, { euid: 1000, checkControl: () => undefined, store }, file), /must be run as root/);
  assert.deepEqual(order, ['control']);
});

test('add --config: a bad file is reported whole, before root and driver', () => {
  const { file } = cfg({ devices: [{ target: 'loop', file: 'missing', queues: 99 }] });
  assert.throws(
    () => prepareAdd({}, { euid: 1000, checkControl: () => assert.fail('checked the driver') }, file),
    (e: Error) =>
      e instanceof ConfigError &&
      e.problems.length === 2 &&
      /devices\[0\]\.queues must be a whole number from 1 to 64, not 99/.test(e.message) &&
      /devices\[0\]: -f .*missing: no such file or directory/.test(e.message),
  );
});

test('the CLI: `add --config FILE --foreground` serves the device; bad file exits 2', async (t) => {
  const bad = cfg({ devices: [] });
  const r = spawnSync(process.execPath, [BIN, 'add', '--config', bad.file], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /must declare exactly one device for `add --config`, not 0/);
  if (process.geteuid?.() !== 0) return t.skip('add needs root');
  const { dir, file } = cfg({ devices: [{ target: 'null', size: '1M', id: 7 }] });
  const child = spawn(process.execPath, [BIN, 'add', '--config', file, '--foreground'], {
    env: {
      ...process.env,
      UBLK_TS_ADDON: path.join(__dirname, 'fake-addon.js'),
      UBLK_TS_RUN_DIR: path.join(dir, 'run'),
      UBLK_TS_LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  const deadline = Date.now() + 15_000;
  while (!/^dev id 7:/m.test(out) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  assert.match(out, /^dev id 7:/m);
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
