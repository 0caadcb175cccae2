// User recovery against the real driver: a server killed with SIGKILL in the middle of I/O leaves
// its disk QUIESCED (FAIL_IO with -e 1) and `ublk-ts recover` brings it back to LIVE with nothing
// lost; fio keeps verifying on the raw disk and on a file of a mounted ext4 through several
// kill/recover cycles. The checks that need no real process death run in this process (a
// DeviceServer detached from its device closes everything the way a dying server does).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { addDevice, background, cli, delAll, delDevice, makeBacking, processAlive, sh, shResult, sleep, trace, workDir } from './helpers';
import {
  RUN_DIR,
  STATE,
  addInProcess,
  assertClean,
  binding,
  cliAsync,
  fioBackground,
  fioJobs,
  inProcessStore,
  kernelState,
  killAndWait,
  modeOf,
  recoverInProcess,
  serverPid,
  waitForIo,
  waitState,
  within,
  type BackgroundFio,
  type FioJobResult,
} from './fault-helpers';
import type { DeviceServer } from '../../daemon/device-server';
import { cpusAllowed, queueCpus, queueThreadsOf } from './threads';

const MNT = path.join(workDir(), 'rec-mnt');

before(() => requireKernel());
after(() => {
  shResult(`umount ${MNT} 2>/dev/null || true`);
  delAll();
});

/** Removes an in-process device whatever state it is in (test cleanup). */
async function removeInProcess(devId: number, ...servers: Array<DeviceServer | undefined>): Promise<void> {
  for (const ds of servers) if (ds?.phase === 'live') await ds.stop().catch(() => undefined);
  const b = binding();
  await b.stopDev(devId).catch(() => undefined);
  await b.delDev(devId).catch(() => undefined);
}

function verifyJob(name: string, filename: string): Record<string, string | number> {
  return { name, filename, ioengine: 'io_uring', direct: 1, rw: 'randwrite', bs: '4k', iodepth: 16, size: '8M', verify: 'crc32c', verify_fatal: 1 };
}

function fioArgs(job: Record<string, string | number>): string {
  return Object.entries(job)
    .map(([k, v]) => `--${k}=${v}`)
    .join(' ');
}

type VerifyJob = ReturnType<typeof verifyJob>;

/**
 * One full write + verify pass of `job` first (the final verify reads every block, and a block
 * the interrupted loop never reached must hold an earlier pass's data, not zeros), then write +
 * verify loops in the background, verifying every 512 blocks as they go, until stopped.
 */
function startVerifyLoop(job: VerifyJob): BackgroundFio {
  const r = shResult(`fio --output-format=json --do_verify=1 ${fioArgs(job)}`, 600_000);
  assert.equal(r.code, 0, `the first pass on ${job.name} failed:\n${r.stderr}`);
  return fioBackground({ ...job, do_verify: 1, verify_backlog: 512, loops: 1000000, runtime: 1800 });
}

/** Stops a verify loop (SIGINT); it must have reported no error. Returns its jobs' figures. */
async function stopVerifyLoop(f: BackgroundFio, job: VerifyJob): Promise<FioJobResult[]> {
  process.kill(f.pid, 'SIGINT');
  const r = await within(f.done, 120_000);
  assert.ok(r, `fio ${job.name} did not stop within 120 s of SIGINT`);
  const jobs = fioJobs(r!);
  for (const j of jobs) assert.equal(j.error, 0, `fio ${j.name} reported error ${j.error}: ${r!.stderr}`);
  return jobs;
}

/** The final verify: every block of `job`'s region, as last written. */
function finalVerify(job: VerifyJob): void {
  const r = shResult(`fio --verify_only=1 --output-format=json ${fioArgs(job)}`, 600_000);
  assert.equal(r.code, 0, `final verify of ${job.name} failed:\n${r.stderr}`);
  for (const j of fioJobs(r)) assert.equal(j.error, 0);
}

test('-r 1 -i 1: fio verify on the raw disk and on an ext4 file runs through 3 SIGKILL + recover cycles; nothing lost; fsck clean', async () => {
  const raw = addDevice(['-t', 'loop', '-f', makeBacking('rec-raw.img', 64), '-r', '1', '-i', '1', '-z']);
  const fsd = addDevice(['-t', 'loop', '-f', makeBacking('rec-fs.img', 128), '-r', '1', '-i', '1', '-q', '2']);
  // state files: 0600 in a 0700 directory
  assert.equal(modeOf(RUN_DIR).toString(8), '700');
  for (const id of [raw, fsd]) assert.equal(modeOf(path.join(RUN_DIR, `${String(id).padStart(4, '0')}.json`)).toString(8), '600');

  fs.mkdirSync(MNT, { recursive: true });
  sh(`mkfs.ext4 -q -F /dev/ublkb${fsd} && mount /dev/ublkb${fsd} ${MNT}`);
  const jobs = [verifyJob('raw', `/dev/ublkb${raw}`), verifyJob('fs', path.join(MNT, 'verify.dat'))];
  const fios = jobs.map((j) => startVerifyLoop(j));
  try {
    await Promise.all([waitForIo(raw, 1000, 120_000), waitForIo(fsd, 1000, 120_000)]);
    for (let cycle = 1; cycle <= 3; cycle++) {
      const old = [await serverPid(raw), await serverPid(fsd)];
      await Promise.all(old.map((pid) => killAndWait(pid)));
      for (const id of [raw, fsd]) await waitState(id, [STATE.QUIESCED], 10_000);
      for (const f of fios) assert.ok(!f.exited(), `cycle ${cycle}: fio ended when the server died`);

      const res = await Promise.all([raw, fsd].map((id) => cliAsync(['recover', '-n', String(id)])));
      for (const r of res) {
        assert.equal(r.code, 0, `cycle ${cycle}: recover failed: ${r.stderr}`);
        assert.match(r.stdout, /state LIVE/);
      }
      for (const [i, id] of [raw, fsd].entries()) {
        assert.equal(await kernelState(id), STATE.LIVE);
        const pid = await serverPid(id);
        assert.notEqual(pid, old[i]);
        assert.ok(processAlive(pid), `cycle ${cycle}: the recovered server of device ${id} is not running`);
      }
      // I/O flows again on both disks before the next kill
      await Promise.all([waitForIo(raw, 500, 120_000), waitForIo(fsd, 500, 120_000)]);
      for (const f of fios) assert.ok(!f.exited(), `cycle ${cycle}: fio ended after recovery`);
    }

    // The recovered server of the mounted disk runs in a mount namespace of its own and holds no
    // copy of that mount (else the filesystem would outlive our umount, unflushed).
    const srv = await serverPid(fsd);
    assert.notEqual(fs.readlinkSync(`/proc/${srv}/ns/mnt`), fs.readlinkSync('/proc/self/ns/mnt'));
    assert.doesNotMatch(fs.readFileSync(`/proc/${srv}/mountinfo`, 'utf8'), new RegExp(`ublkb${fsd}\\b`));

    for (const [i, f] of fios.entries()) {
      for (const j of await stopVerifyLoop(f, jobs[i])) {
        assert.ok(j.writeBytes > 0 && j.readBytes > 0, `fio ${j.name} wrote ${j.writeBytes} and verified ${j.readBytes} bytes`);
      }
    }
    for (const j of jobs) finalVerify(j);

    assert.match(fs.readFileSync('/proc/self/mounts', 'utf8'), new RegExp(`^/dev/ublkb${fsd} ${MNT} ext4 rw`, 'm'), 'the filesystem is no longer mounted rw');
    sh(`umount ${MNT}`);
    sh(`fsck.ext4 -fn /dev/ublkb${fsd}`);
    delDevice(raw);
    delDevice(fsd);
    assertClean('after the kill/recover cycles');
  } finally {
    for (const f of fios) if (!f.exited()) process.kill(f.pid, 'SIGKILL');
    shResult(`umount ${MNT} 2>/dev/null || true`);
    for (const id of [raw, fsd]) if ((await kernelState(id)) >= 0) cli(['del', '-n', String(id)]);
  }
});

// Batch I/O through a crash: the new server prepares every tag again and the requests the dead
// one held are re-issued to it (a live upgrade of a batch disk is refused instead, see below).
test('-r 1 -i 1 --batch-io: fio verify on the raw disk runs through 2 SIGKILL + recover cycles; nothing lost', async () => {
  const raw = addDevice(['-t', 'loop', '-f', makeBacking('rec-batch.img', 64), '-r', '1', '-i', '1', '-z', '--batch-io']);
  const job = verifyJob('raw', `/dev/ublkb${raw}`);
  const f = startVerifyLoop(job);
  try {
    await waitForIo(raw, 1000, 120_000);
    for (let cycle = 1; cycle <= 2; cycle++) {
      const old = await serverPid(raw);
      await killAndWait(old);
      await waitState(raw, [STATE.QUIESCED], 10_000);
      const r = await cliAsync(['recover', '-n', String(raw)]);
      assert.equal(r.code, 0, `cycle ${cycle}: recover failed: ${r.stderr}`);
      assert.match(r.stdout, /BATCH_IO/);
      await waitForIo(raw, 500, 120_000);
      assert.ok(!f.exited(), `cycle ${cycle}: fio ended after recovery`);
    }
    await stopVerifyLoop(f, job);
    finalVerify(job);
    delDevice(raw);
  } finally {
    if (!f.exited()) process.kill(f.pid, 'SIGKILL');
    if ((await kernelState(raw)) >= 0) cli(['del', '-n', String(raw)]);
  }
});

test('-r 1 -e 1: while no server runs I/O fails at once (FAIL_IO); recover brings the disk and its data back', async () => {
  const store = inProcessStore();
  const file = makeBacking('rec-failio.img', 16);
  const pat = path.join(workDir(), 'rec-pattern');
  sh(`dd if=/dev/urandom of=${pat} bs=64k count=1 status=none`);
  const ds = await addInProcess({ target: 'loop', file, recovery: '1', recoveryFailIo: '1' }, store);
  const id = ds.devId;
  let ds2: DeviceServer | undefined;
  try {
    sh(`dd if=${pat} of=/dev/ublkb${id} bs=64k oflag=direct status=none`);
    await ds.detach();
    assert.equal(await waitState(id, [STATE.FAIL_IO], 10_000), STATE.FAIL_IO);
    // (the time-outs are "never hangs" limits for a slow emulated guest; the times are traced)
    const r = shResult(`dd if=/dev/ublkb${id} of=/dev/null bs=4k count=1 iflag=direct`, 120_000);
    trace(`FAIL_IO: read: ${r.stderr.trim()}`);
    assert.notEqual(r.code, 0, 'a read succeeded while no server runs');
    assert.match(r.stderr, /error/i);
    const w = shResult(`dd if=${pat} of=/dev/ublkb${id} bs=4k count=1 seek=100 oflag=direct`, 120_000);
    trace(`FAIL_IO: write: ${w.stderr.trim()}`);
    assert.notEqual(w.code, 0, 'a write succeeded while no server runs');

    ds2 = await recoverInProcess(id, store);
    assert.equal(await kernelState(id), STATE.LIVE);
    sh(`cmp -n 65536 ${pat} /dev/ublkb${id}`);
    await ds2.stop();
    assert.equal(await kernelState(id), -1);
  } finally {
    await removeInProcess(id, ds, ds2);
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
});

// Batch I/O too: the recovered server prepares every tag again (PREP_IO_CMDS) and the waiting
// request reaches it through the new multishot fetch. And two threads per queue: the saved spec
// brings them back (the device's flags do not say how many), each re-fetching its own tags.
for (const [i, variant] of [
  { name: '', raw: {}, threads: [] as string[] },
  { name: ' (zero copy, batch I/O)', raw: { zeroCopy: true, batchIo: true }, threads: [] },
  { name: ' (zero copy, 2 threads per queue)', raw: { zeroCopy: true, threadsPerQueue: '2' }, threads: ['q0.0', 'q0.1'] },
].entries()) {
  test(`-r 1${variant.name}: I/O issued while the disk is QUIESCED waits, then completes after recover`, async () => {
    const store = inProcessStore();
    const file = makeBacking('rec-quiesce.img', 16);
    const tag = `-${i}`;
    const pat = path.join(workDir(), `rec-pattern-q${tag}`);
    const out = path.join(workDir(), `rec-q${tag}.out`);
    sh(`dd if=/dev/urandom of=${pat} bs=64k count=1 status=none`);
    const ds = await addInProcess({ target: 'loop', file, recovery: '1', ...variant.raw }, store);
    const id = ds.devId;
    let ds2: DeviceServer | undefined;
    try {
      sh(`dd if=${pat} of=/dev/ublkb${id} bs=64k oflag=direct status=none`);
      await ds.detach();
      await waitState(id, [STATE.QUIESCED], 10_000);
      const reader = background(`dd if=/dev/ublkb${id} of=${out} bs=64k count=1 iflag=direct status=none`);
      let done = false;
      void reader.done.then(() => (done = true));
      await sleep(2000);
      assert.ok(!done, 'a read completed while the disk was QUIESCED');
      ds2 = await recoverInProcess(id, store);
      if (variant.threads.length) {
        const threads = queueThreadsOf(process.pid, id);
        assert.deepEqual(threads.map((t) => t.name).sort(), variant.threads.map((t) => `ublk${id}-${t}`));
        // the new threads are bound again, each to one of the queue's CPUs
        for (const t of threads) {
          const cpus = cpusAllowed(process.pid, t.tid);
          assert.ok(cpus.length === 1 && queueCpus(id, 0).includes(cpus[0]), `${t.name} may run on ${cpus}`);
        }
      }
      const r = await within(reader.done, 30_000);
      assert.ok(r, 'the waiting read did not complete within 30 s of recover');
      assert.equal(r!.code, 0, r!.stderr);
      sh(`cmp ${pat} ${out}`);
      if (variant.threads.length) {
        // One statistics entry per queue, the sum of its threads: 64 reads at depth 1 take the
        // tags in turn, so both threads serve some of them.
        sh(`dd if=/dev/ublkb${id} of=/dev/null bs=4k count=64 iflag=direct status=none`);
        const st = ds2.stats();
        assert.equal(st.length, 1, JSON.stringify(st));
        assert.ok(st[0].ops.read >= 65, `queue 0 counted ${st[0].ops.read} reads of the 65 issued`);
      }
      await ds2.stop();
    } finally {
      await removeInProcess(id, ds, ds2);
      fs.rmSync(store.dir, { recursive: true, force: true });
    }
  });
}

test('recover refuses what it cannot do, and says why; the device is left as it was', async () => {
  const store = inProcessStore();
  const env = { UBLK_TS_RUN_DIR: store.dir };
  const file = makeBacking('rec-refuse.img', 16);
  const live = await addInProcess({ target: 'loop', file, recovery: '1' }, store);
  const plain = await addInProcess({ target: 'null', size: '16M' }, store);
  try {
    const say = (r: { stderr: string }) => trace(`recover refusal: ${r.stderr.trim()}`);
    let r = cli(['recover', '-n', String(live.devId)], { env });
    say(r);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`device ${live.devId} is LIVE, not QUIESCED or FAIL_IO`));
    r = cli(['recover', '-n', String(plain.devId)], { env });
    say(r);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`device ${plain.devId} was not added with -r 1`));
    r = cli(['recover', '-n', '4242'], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no ublk-ts state for device 4242/);
    r = cli(['recover', '-n', '1x'], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /-n\/--number must be a whole number/);

    // the backing file shrank while the server was gone: refused, the disk stays QUIESCED
    await live.detach();
    await waitState(live.devId, [STATE.QUIESCED], 10_000);
    sh(`truncate -s 8M ${file}`);
    await assert.rejects(recoverInProcess(live.devId, store), /shrank from 16777216 to 8388608 bytes/);
    assert.equal(await kernelState(live.devId), STATE.QUIESCED);
    sh(`truncate -s 16M ${file}`);

    // ublksrv's spelling names the target again: other options than the disk's are refused
    const id = String(live.devId);
    r = cli(['recover', '-n', id, '-t', 'null'], { env });
    say(r);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`device ${id} is a loop disk, not "null"`));
    r = cli(['recover', '-n', id, '-t', 'loop', '-f', `${file}.other`], { env });
    say(r);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`device ${id} was added with -f/--file "${file}", not "${file}.other"`));
    assert.equal(await kernelState(live.devId), STATE.QUIESCED, 'refusals leave the disk as it was');
    // ... and the same options bring it back
    r = cli(['recover', '-t', 'loop', '-f', file, '-n', id], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await kernelState(live.devId), STATE.LIVE);
    r = cli(['del', '-n', id], { env });
    assert.equal(r.code, 0, r.stderr);
  } finally {
    await removeInProcess(live.devId, live);
    await removeInProcess(plain.devId, plain);
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
  assertClean('after the refusals');
});

// Also with two threads per queue: the new server must come up the way the old one was added
// (the threads from the saved spec). Batch devices are refused (see below).
for (const up of [
  { name: '', args: [] as string[], bit: 12n, needs: 'UBLK_F_QUIESCE (Linux 6.16+)' },
  { name: ', 2 threads per queue', args: ['--threads-per-queue', '2'], bit: 13n, needs: 'UBLK_F_PER_IO_DAEMON (Linux 6.16+)' },
]) test(`live upgrade (QUIESCE_DEV${up.name}): \`ublk-ts upgrade\` twice under fio verify on a mounted ext4; no error, nothing lost, fsck clean`, async (t) => {
  const feats = BigInt(JSON.parse(cli(['features', '--json']).stdout).features ?? 0);
  for (const [bit, needs] of [[12n, 'UBLK_F_QUIESCE (Linux 6.16+)'], [up.bit, up.needs]] as const) {
    if (!(feats & (1n << bit))) {
      t.skip(`this kernel has no ${needs}`);
      return;
    }
  }
  const id = addDevice(['-t', 'loop', '-f', makeBacking('upg-fs.img', 128), '-r', '1', '-i', '1', '-z', ...up.args]);
  const mnt = path.join(workDir(), 'upg-mnt');
  fs.mkdirSync(mnt, { recursive: true });
  sh(`mkfs.ext4 -q -F /dev/ublkb${id} && mount /dev/ublkb${id} ${mnt}`);
  const job = verifyJob('upg', path.join(mnt, 'verify.dat'));
  const f = startVerifyLoop(job);
  try {
    await waitForIo(id, 1000, 120_000);
    for (let round = 1; round <= 2; round++) {
      const old = await serverPid(id);
      const r = await cliAsync(['upgrade', '-n', String(id)]);
      trace(`upgrade ${round}: ${r.stdout.trim()} ${r.stderr.trim()}`);
      assert.equal(r.code, 0, `upgrade ${round} failed: ${r.stderr}`);
      assert.match(r.stdout, /state LIVE/);
      const pid = await serverPid(id);
      assert.notEqual(pid, old, 'the same server still runs the disk');
      assert.ok(!processAlive(old), `the old server ${old} is still running`);
      assert.ok(processAlive(pid));
      if (up.args.includes('--threads-per-queue')) {
        assert.deepEqual(queueThreadsOf(pid, id).map((q) => q.name).sort(), [`ublk${id}-q0.0`, `ublk${id}-q0.1`]);
      }
      assert.equal(await kernelState(id), STATE.LIVE);
      await waitForIo(id, 500, 120_000);
      assert.ok(!f.exited(), `round ${round}: fio ended during the upgrade`);
    }
    await stopVerifyLoop(f, job);
    finalVerify(job);
    assert.match(fs.readFileSync('/proc/self/mounts', 'utf8'), new RegExp(`^/dev/ublkb${id} ${mnt} ext4 rw`, 'm'));
    sh(`umount ${mnt}`);
    sh(`fsck.ext4 -fn /dev/ublkb${id}`);
    delDevice(id);
    assertClean('after the live upgrades');
  } finally {
    if (!f.exited()) process.kill(f.pid, 'SIGKILL');
    shResult(`umount ${mnt} 2>/dev/null || true`);
    if ((await kernelState(id)) >= 0) cli(['del', '-n', String(id)]);
  }
});

// A batch device (-r 1 --batch-io) is refused too: on this kernel QUIESCE_DEV of a batch queue
// failed the I/O in flight (see checkUpgradable).
for (const refused of [
  { name: 'a disk added without -r 1', args: [] as string[], why: 'was not added with -r 1' },
  { name: 'a batch I/O disk', args: ['-r', '1', '--batch-io'], why: 'uses batch I/O \\(--batch-io\\)' },
]) test(`upgrade refuses ${refused.name}, and says why; the disk keeps running`, async () => {
  const id = addDevice(['-t', 'null', '--size', '16M', ...refused.args]);
  try {
    const pid = await serverPid(id);
    const r = cli(['upgrade', '-n', String(id)]);
    trace(`upgrade refusal: ${r.stderr.trim()}`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`device ${id} ${refused.why}`));
    assert.equal(await kernelState(id), STATE.LIVE);
    assert.equal(await serverPid(id), pid);
    sh(`dd if=/dev/zero of=/dev/ublkb${id} bs=4k count=16 oflag=direct status=none`);
  } finally {
    delDevice(id);
  }
});
