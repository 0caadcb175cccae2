// `add --foreground` under a Type=notify unit (the per-device server path, server-main.ts):
// READY=1 once the device is LIVE, watchdog pings, STOPPING=1 on SIGTERM. The fake addon plays
// the driver; its sd_notify goes through the real addon to a socket this test listens on.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { listenNotify, python3 } from '../notify-socket';
import { fakeAddonEnv } from './fake-addon-env';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const ADDON = path.join(ROOT, 'build', 'Release', 'ublk_native.node');

test('add --foreground: READY=1 after LIVE, WATCHDOG=1, STOPPING=1 on SIGTERM', async (t) => {
  if (process.geteuid?.() !== 0) return t.skip('add needs root');
  if (!fs.existsSync(ADDON)) return t.skip('the real addon (for sd_notify) is not built');
  if (!python3()) return t.skip('python3 is not available to bind a unix datagram socket');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-fgn-'));
  const l = await listenNotify({ abstract: true });
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'ublk-ts'), 'add', '-t', 'null', '--size', '1M', '--foreground'], {
    env: fakeAddonEnv(dir, { UBLK_TS_LOG_LEVEL: 'silent', NOTIFY_SOCKET: l.socket, WATCHDOG_USEC: '100000' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  try {
    const ready = await l.waitFor((m) => m.fields.READY === '1', 15_000, 'READY=1');
    assert.equal(ready.fields.STATUS, 'ublk device 0 live (/dev/ublkb0)');
    assert.equal(ready.fields.MAINPID, String(child.pid));
    assert.ok(fs.existsSync(path.join(dir, 'run', '0000.json')), 'state written (LIVE) before READY=1');
    await l.waitFor((m) => m.text === 'WATCHDOG=1', 5_000, 'WATCHDOG=1', l.messages.indexOf(ready));
    child.kill('SIGTERM');
    await l.waitFor((m) => m.fields.STOPPING === '1', 10_000, 'STOPPING=1');
    assert.equal(await exited, 0);
    assert.equal(l.messages.filter((m) => m.fields.STOPPING === '1').length, 1, 'STOPPING=1 once');
  } finally {
    child.kill('SIGKILL');
    l.close();
  }
});
