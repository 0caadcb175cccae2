// Teardown leaves nothing behind: SIGTERM and `del` during heavy I/O, a server killed with SIGKILL
// (with and without recovery), a mounted disk `del` refuses to cut off, and many add/del and
// kill/recover cycles after which the host has no device, server process, state file, thread or
// fd more than before, and no more memory in use.
//
// The long loops run in this process through DeviceServer and the real addon (a node start costs
// ~4 s in the emulated guest): 200 add/del cycles, and 20 crash/recover cycles where the crash is
// DeviceServer.detach() (queue threads end, rings and /dev/ublkcN close without STOP_DEV, as when
// the process dies). Real SIGKILLs of real server processes: recovery.test.ts (6 kill/recover) and
// the tests below.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { addDevice, cli, delAll, delDevice, makeBacking, processAlive, sh, shResult, sleep, trace, waitFor, workDir } from './helpers';
import {
  STATE,
  addInProcess,
  assertClean,
  assertNoDevices,
  describeFootprint,
  fioBackground,
  fioJobs,
  footprint,
  inProcessStore,
  kernelState,
  killAndWait,
  recoverInProcess,
  serverPid,
  stateFiles,
  waitForIo,
  waitState,
  within,
  type BackgroundFio,
} from './fault-helpers';
import type { DeviceServer } from '../../daemon/device-server';

const MNT = path.join(workDir(), 'td-mnt');

before(() => requireKernel());
after(() => {
  shResult(`umount ${MNT} 2>/dev/null || true`);
  delAll();
});

/** Heavy random I/O on a disk until it fails or 120 s pass; fio stops at its first error. */
function heavyIo(devId: number): BackgroundFio {
  return fioBackground({
    name: 'busy',
    filename: `/dev/ublkb${devId}`,
    ioengine: 'io_uring',
    direct: 1,
    rw: 'randrw',
    bs: '4k',
    iodepth: 32,
    numjobs: 2,
    time_based: 1,
    runtime: 120,
    group_reporting: 1,
  });
}

/** fio must end within `ms` and have seen an I/O error (never hang, never pretend all is well). */
async function endsWithErrors(f: BackgroundFio, ms: number, what: string): Promise<void> {
  const r = await within(f.done, ms);
  assert.ok(r, `${what}: fio still running ${ms / 1000} s later: I/O hangs`);
  const jobs = fioJobs(r!);
  trace(`${what}: fio exit ${r!.code}, job errors ${jobs.map((j) => j.error).join(',')}: ${r!.stderr.split('\n').find((l) => /error/i.test(l)) ?? ''}`);
  assert.ok(
    r!.code !== 0 || jobs.some((j) => j.error !== 0),
    `${what}: fio saw no error (exit ${r!.code})\n${r!.stderr}`,
  );
}

// Kernel memory may move a little between measurements (slab caches keep some pages); a leak of
// a gendisk, a tag set or an io_uring per cycle would be megabytes over these loops.
const SLAB_SLACK_KB = 8 * 1024;
const MEM_SLACK_KB = 32 * 1024;

// Right after fio exits and a device's rings close, the kernel frees their memory from work
// queues (io_uring's ring exit work, RCU): MemAvailable is read again for up to 10 s before it
// counts. A leak stays, so it still fails.
async function settledFootprint(before: ReturnType<typeof footprint>): Promise<ReturnType<typeof footprint>> {
  let fp = footprint();
  for (let i = 0; i < 20 && before.memAvailable - fp.memAvailable >= MEM_SLACK_KB; i++) {
    await sleep(500);
    fp = footprint();
  }
  return fp;
}

function assertNoGrowth(before: ReturnType<typeof footprint>, afterFp: ReturnType<typeof footprint>, what: string): void {
  const msg = `${what}: ${describeFootprint(before, afterFp)}`;
  console.log(msg);
  trace(msg);
  assert.equal(afterFp.fds, before.fds, `${msg}: fds leaked`);
  assert.equal(afterFp.threads, before.threads, `${msg}: threads leaked`);
  assert.ok(afterFp.sUnreclaim - before.sUnreclaim < SLAB_SLACK_KB, `${msg}: unreclaimable slab grew`);
  assert.ok(before.memAvailable - afterFp.memAvailable < MEM_SLACK_KB, `${msg}: MemAvailable fell`);
}

test('200 add/del cycles (in process, real addon): no device, thread, fd, state file or memory left', async () => {
  const store = inProcessStore();
  try {
    const variants = [
      { target: 'null', size: '64M' },
      { target: 'null', size: '64M', queues: '2', depth: '32' },
      { target: 'null', size: '64M', zeroCopy: true },
      { target: 'null', size: '64M', recovery: '1', recoveryReissue: '1' },
    ];
    const cycle = async (i: number) => {
      const ds = await addInProcess(variants[i % variants.length], store);
      await ds.stop();
    };
    for (let i = 0; i < 8; i++) await cycle(i); // warm-up: first-use allocations are not leaks
    const before = footprint();
    const t0 = Date.now();
    for (let i = 0; i < 200; i++) await cycle(i);
    const ms = Date.now() - t0;
    const afterFp = footprint();
    trace(`200 in-process add/del cycles in ${ms} ms`);
    assertNoGrowth(before, afterFp, `200 add/del cycles (${ms} ms)`);
    assertNoDevices('after 200 add/del cycles');
    assert.deepEqual(fs.readdirSync(store.dir), [], 'state files left in the in-process run dir');
  } finally {
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
});

test('20 crash/recover cycles (in process) under reads and writes: nothing left, data intact', async () => {
  const store = inProcessStore();
  const file = makeBacking('td-cycles.img', 16);
  const pat = path.join(workDir(), 'td-pattern');
  sh(`dd if=/dev/urandom of=${pat} bs=64k count=4 status=none`);
  let ds: DeviceServer | undefined = await addInProcess({ target: 'loop', file, recovery: '1', recoveryReissue: '1', queues: '2' }, store);
  const id = ds.devId;
  try {
    const cycle = async (i: number) => {
      sh(`dd if=${pat} of=/dev/ublkb${id} bs=64k seek=${(i % 8) * 4} oflag=direct status=none`);
      await ds!.detach();
      await waitState(id, [STATE.QUIESCED], 10_000);
      ds = await recoverInProcess(id, store);
      sh(`dd if=/dev/ublkb${id} bs=64k skip=${(i % 8) * 4} count=4 iflag=direct status=none | cmp - ${pat}`);
    };
    await cycle(0);
    const before = footprint();
    const t0 = Date.now();
    for (let i = 1; i <= 20; i++) await cycle(i);
    const afterFp = footprint();
    assertNoGrowth(before, afterFp, `20 crash/recover cycles (${Date.now() - t0} ms)`);
    assert.equal(await kernelState(id), STATE.LIVE);
    await ds.stop();
    assertNoDevices('after 20 crash/recover cycles');
    assert.deepEqual(fs.readdirSync(store.dir), []);
  } finally {
    if (ds?.phase === 'live') await ds.stop().catch(() => undefined);
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
});

test('stop during heavy I/O (in process): threads joined, fds closed, fio gets errors', async () => {
  const store = inProcessStore();
  const file = makeBacking('td-stop.img', 64);
  try {
    const before = footprint();
    const ds = await addInProcess({ target: 'loop', file, queues: '2', depth: '64' }, store);
    const f = heavyIo(ds.devId);
    await waitForIo(ds.devId, 2000, 120_000);
    assert.ok(!f.exited(), 'fio ended before the stop');
    await ds.stop('test');
    await endsWithErrors(f, 60_000, 'stop under I/O');
    assertNoGrowth(before, await settledFootprint(before), 'add + heavy I/O + stop');
    assertNoDevices('after stop under I/O');
  } finally {
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
});

test('SIGTERM to the server during heavy I/O: fio gets errors, the server deletes its device and exits', async () => {
  const id = addDevice(['-t', 'loop', '-f', makeBacking('td-term.img', 64), '-q', '2', '-z']);
  const pid = await serverPid(id);
  const f = heavyIo(id);
  await waitForIo(id, 2000, 120_000);
  process.kill(pid, 'SIGTERM');
  await endsWithErrors(f, 60_000, 'SIGTERM under I/O');
  await waitFor(() => !processAlive(pid), 30_000, 'the server to exit');
  assertClean('after SIGTERM under I/O');
});

test('del during heavy I/O of a -r 1 disk: fio gets errors, everything is gone', async () => {
  const id = addDevice(['-t', 'loop', '-f', makeBacking('td-del.img', 64), '-q', '2', '-r', '1', '-i', '1']);
  const pid = await serverPid(id);
  const f = heavyIo(id);
  await waitForIo(id, 2000, 120_000);
  const d = cli(['del', '-n', String(id)], { timeoutMs: 90_000 });
  assert.equal(d.code, 0, d.stderr);
  await endsWithErrors(f, 60_000, 'del under I/O');
  assert.ok(!processAlive(pid), 'the server outlived del');
  assertClean('after del under I/O');
});

test('SIGKILL without recovery during heavy I/O: errors within seconds, state DEAD, del removes it', async () => {
  const id = addDevice(['-t', 'loop', '-f', makeBacking('td-kill.img', 64), '-q', '2']);
  const f = heavyIo(id);
  await waitForIo(id, 2000, 120_000);
  const t0 = Date.now();
  await killAndWait(await serverPid(id));
  // "within seconds" on a quiet machine; the limit allows for a slow emulated guest (traced)
  await endsWithErrors(f, 120_000, 'SIGKILL under I/O');
  trace(`fio ended ${Date.now() - t0} ms after SIGKILL`);
  assert.equal(await waitState(id, [STATE.DEAD], 10_000), STATE.DEAD);
  const r = shResult(`dd if=/dev/ublkb${id} of=/dev/null bs=4k count=1 iflag=direct`, 120_000);
  trace(`new I/O on a DEAD disk: ${r.stderr.trim()}`);
  assert.notEqual(r.code, 0, 'new I/O succeeded on a DEAD disk');
  assert.equal(stateFiles().length, 1, 'the state file should stay until del');
  delDevice(id);
  assertClean('after SIGKILL + del');
});

test('SIGKILL with -r 1 -i 1 under I/O, then del instead of recover: the waiting I/O fails, everything is gone', async () => {
  // -i 1: the I/O the dead server held waits for the next one too (without it, the driver fails
  // that I/O at once and fio stops before the disk is even QUIESCED)
  const id = addDevice(['-t', 'loop', '-f', makeBacking('td-kill-r.img', 64), '-r', '1', '-i', '1']);
  const f = heavyIo(id);
  try {
    await waitForIo(id, 2000, 120_000);
    await killAndWait(await serverPid(id));
    await waitState(id, [STATE.QUIESCED], 10_000);
    await sleep(1000);
    assert.ok(!f.exited(), 'fio ended while the disk was QUIESCED (its I/O should wait)');
    delDevice(id);
    await endsWithErrors(f, 60_000, 'del of a QUIESCED disk');
    assertClean('after SIGKILL (-r 1 -i 1) + del');
  } finally {
    if (!f.exited()) process.kill(f.pid, 'SIGKILL');
    if ((await kernelState(id)) >= 0) cli(['del', '-n', String(id)]);
  }
});

test('del refuses a mounted disk (its filesystem is left alone); after umount it goes', () => {
  const id = addDevice(['-t', 'loop', '-f', makeBacking('td-mounted.img', 64)]);
  fs.mkdirSync(MNT, { recursive: true });
  sh(`mkfs.ext4 -q -F /dev/ublkb${id} && mount /dev/ublkb${id} ${MNT} && echo kept > ${MNT}/f`);
  try {
    const r = cli(['del', '-n', String(id)]);
    trace(`del of a mounted disk: ${r.stderr.trim()}`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`device ${id} is in use \\(ublkb${id} mounted on ${MNT}\\)`));
    // untouched: still writable, nothing shut down
    sh(`echo more >> ${MNT}/f && sync && grep -q more ${MNT}/f`);
  } finally {
    shResult(`umount ${MNT}`);
  }
  sh(`fsck.ext4 -fn /dev/ublkb${id}`);
  delDevice(id);
  assertClean('after umount + del');
});

test('3 add/del cycles through the CLI: nothing left behind each time', () => {
  for (let i = 0; i < 3; i++) {
    const id = addDevice(['-t', 'null', '--size', '64M', ...(i % 2 ? ['-r', '1'] : [])]);
    delDevice(id);
    assertClean(`CLI cycle ${i}`);
  }
});
