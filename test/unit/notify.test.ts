// sd_notify: what is sent when, the watchdog interval, and the real addon's datagrams arriving at
// a socket this test binds (a path and an abstract name), as systemd would receive them.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Notifier, watchdogIntervalMs } from '../../daemon/service/notify';
import type { NativeBinding } from '../../shared/binding';
import { listenNotify, python3 } from '../notify-socket';

const ADDON = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'ublk_native.node');

function recorder(env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/x' }) {
  const sent: string[] = [];
  const n = new Notifier({ send: (s) => (sent.push(s), true), env, pid: 42, monotonicUs: () => 123n });
  return { n, sent };
}

test('watchdog interval: half of WATCHDOG_USEC, only for our pid', () => {
  assert.equal(watchdogIntervalMs({}, 1), 0);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 1), 15000);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, 1), 15000);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '2' }, 1), 0);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'x' }, 1), 0);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 1), 0);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '1000' }, 1), 1);
});

test('messages: READY with STATUS and MAINPID, RELOADING with MONOTONIC_USEC, STOPPING once', () => {
  const { n, sent } = recorder();
  n.ready('2/2 devices live\nsecond line');
  n.status('x');
  n.reloading();
  n.stopping('bye');
  n.stopping('again');
  assert.deepEqual(sent, [
    'READY=1\nSTATUS=2/2 devices live; second line\nMAINPID=42',
    'STATUS=x',
    'RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=123',
    'STOPPING=1\nSTATUS=bye',
  ]);
});

test('a socket error is swallowed (logged once): the server keeps running', () => {
  const warns: unknown[] = [];
  const log = { debug() {}, info() {}, error() {}, warn: (o: unknown) => warns.push(o), child: () => log } as any;
  const n = new Notifier({ send: () => { throw new Error('ECONNREFUSED'); }, env: { NOTIFY_SOCKET: '/x' }, log });
  n.ready('x');
  n.status('y');
  assert.equal(warns.length, 1);
});

test('watchdog: WATCHDOG=1 at once, then every WATCHDOG_USEC/2', async () => {
  const sent: Array<{ s: string; t: number }> = [];
  const n = new Notifier({ send: (s) => (sent.push({ s, t: Date.now() }), true), env: { WATCHDOG_USEC: '100000' }, pid: 1 });
  assert.equal(n.startWatchdog(), 50);
  await new Promise((r) => setTimeout(r, 290));
  n.stopWatchdog();
  const count = sent.length;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(sent.length, count, 'no ping after stopWatchdog');
  assert.ok(sent.every((x) => x.s === 'WATCHDOG=1'));
  assert.ok(count >= 3 && count <= 7, `${count} pings in 290 ms at 50 ms`);
});

for (const abstract of [false, true]) {
  test(`the real addon's sdNotify reaches a listening ${abstract ? 'abstract' : 'path'} socket`, async (t) => {
    if (!fs.existsSync(ADDON)) return t.skip(`the addon is not built (${ADDON})`);
    if (!python3()) return t.skip('python3 is not available to bind a unix datagram socket');
    const addon = require(ADDON) as NativeBinding;
    const l = await listenNotify({ abstract });
    const saved = process.env.NOTIFY_SOCKET;
    process.env.NOTIFY_SOCKET = l.socket; // the addon reads the process environment (setenv)
    try {
      const n = new Notifier({ send: (s) => addon.sdNotify(s) });
      n.ready('one device live');
      n.stopping();
      const ready = await l.waitFor((m) => m.fields.READY === '1', 5000, 'READY=1');
      assert.equal(ready.fields.STATUS, 'one device live');
      assert.equal(ready.fields.MAINPID, String(process.pid));
      await l.waitFor((m) => m.fields.STOPPING === '1', 5000, 'STOPPING=1');
    } finally {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
      l.close();
    }
    assert.equal(addon.sdNotify('READY=1'), saved !== undefined, 'no NOTIFY_SOCKET: nothing sent, false');
  });
}
