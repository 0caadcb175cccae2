// --busy-poll µs: after a pass of its ring that had work, a queue polls the ring that long before
// it sleeps, on a queue thread (native targets) and on Node's event loop (the js target). On the
// real driver: data stays right (fio crc32c verify), the queue spends its CPU polling while
// requests keep coming, and once they stop it sleeps again (no CPU while the disk is idle).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { REPO, addDevice, cli, delAll, delDevice, fio, sleep, verifyJobs } from './helpers';
import { serverPid } from './fault-helpers';
import { threadCpuTicks } from './threads';

before(() => requireKernel());
after(() => delAll());

const TICK_MS = 10; // USER_HZ 100: /proc's clock ticks
const EX = (f: string) => path.join(REPO, 'examples', f);

/** utime + stime of the whole process, in clock ticks. */
function processTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** CPU time of `ticks()` over `ms` of wall time, as a share of it. */
async function cpuShare(ticks: () => number, ms: number): Promise<number> {
  const t0 = ticks();
  const w0 = Date.now();
  await sleep(ms);
  return ((ticks() - t0) * TICK_MS) / (Date.now() - w0);
}

/** A null disk with --busy-poll `bp`: its queue thread's CPU share at depth 1 and then idle. */
async function nullShares(bp: number): Promise<{ busy: number; idle: number }> {
  const id = addDevice(['-t', 'null', '--size', '64M', '--busy-poll', String(bp)]);
  try {
    const listed = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout)[0];
    assert.equal(listed.busy_poll_us, bp, JSON.stringify(listed));
    const pid = await serverPid(id);
    const queue = () => [...threadCpuTicks(pid, id).values()].reduce((a, b) => a + b, 0);
    const t0 = queue();
    const w0 = Date.now();
    fio(`/dev/ublkb${id}`, [{ name: 'qd1', rw: 'randread', bs: '4k', iodepth: 1, extra: { time_based: 1, runtime: 3 } }]);
    const busy = ((queue() - t0) * TICK_MS) / (Date.now() - w0);
    await sleep(500); // past the window
    return { busy, idle: await cpuShare(queue, 2000) };
  } finally {
    delDevice(id);
  }
}

test('null, --busy-poll: the queue thread polls between requests at depth 1, and sleeps once they stop', async (t) => {
  const off = await nullShares(0);
  // a 100 ms window: between two requests at depth 1 the thread polls instead of sleeping
  const on = await nullShares(100000);
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  t.diagnostic(`queue thread's CPU at depth 1: ${pct(off.busy)} without, ${pct(on.busy)} with; idle after: ${pct(off.idle)}, ${pct(on.idle)}`);
  assert.ok(on.busy >= 0.4 && on.busy >= 2 * off.busy, `polling: ${pct(on.busy)} of a CPU, sleeping: ${pct(off.busy)}: it did not poll`);
  assert.ok(on.idle <= 0.05, `the idle queue thread used ${pct(on.idle)} of a CPU: it kept polling`);
});

test('js, --busy-poll: fio verify through the memory disk; the event loop sleeps again when the disk is idle', async () => {
  const id = addDevice(['-t', 'js', '--module', EX('memory-disk.mjs'), '--set', 'size=128M', '--busy-poll', '100000']);
  try {
    fio(`/dev/ublkb${id}`, verifyJobs());
    const pid = await serverPid(id);
    await sleep(500);
    const idle = await cpuShare(() => processTicks(pid), 2000);
    assert.ok(idle <= 0.05, `the idle server used ${(idle * 100).toFixed(0)}% of a CPU: its event loop kept polling`);
  } finally {
    delDevice(id);
  }
});

test('--busy-poll out of range: refused before any device exists', () => {
  const r = cli(['add', '-t', 'null', '--busy-poll', '200000']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--busy-poll must be a whole number from 0 to 100000, not "200000"/);
});
