// Faults of the backing store reach the application as I/O errors, never as a hang or a crash,
// and the disk keeps serving what it still can:
// - a backing file on a small filesystem that fills up: ENOSPC in fio, reads still work;
// - a backing file truncated under the device: reads past its new end fail with EIO;
// - a backing block device that fails every I/O (here another ublk disk in FAIL_IO: no
//   device-mapper modules needed): EIO (or what that device returns) for reads and writes; once
//   the backing device is back, so is the disk.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { addDevice, delAll, delDevice, makeBacking, sh, shResult, trace, workDir } from './helpers';
import {
  STATE,
  addInProcess,
  assertClean,
  binding,
  fioBackground,
  fioJobs,
  inProcessStore,
  kernelState,
  recoverInProcess,
  waitState,
  within,
} from './fault-helpers';
import type { DeviceServer } from '../../daemon/device-server';

const SMALL = path.join(workDir(), 'small-fs');
// "Never a hang": generous, because the emulated guest on a busy host can be 10x slower than
// usual; a hang is forever. The real times are traced (UBLK_TS_TRACE).
const NO_HANG_MS = 300_000;

before(() => requireKernel());
after(() => {
  delAll();
  shResult(`umount ${SMALL} 2>/dev/null || true`);
});

function pattern(name: string, kib: number): string {
  const p = path.join(workDir(), name);
  sh(`dd if=/dev/urandom of=${p} bs=1k count=${kib} status=none`);
  return p;
}

test('a full backing filesystem: ENOSPC errors in fio, no hang; the disk stays LIVE and serves reads', async () => {
  fs.mkdirSync(SMALL, { recursive: true });
  sh(`mount -t tmpfs -o size=32m ublk-ts-small ${SMALL}`);
  try {
    const file = path.join(SMALL, 'backing.img');
    sh(`truncate -s 64M ${file}`); // sparse: twice what the filesystem can hold
    const pat = pattern('enospc-pattern', 1024);
    const id = addDevice(['-t', 'loop', '-f', file]);
    sh(`dd if=${pat} of=/dev/ublkb${id} bs=64k oflag=direct status=none`);
    const t0 = Date.now();
    const fill = fioBackground({
      name: 'fill', filename: `/dev/ublkb${id}`, ioengine: 'io_uring', direct: 1, rw: 'write', bs: '128k', iodepth: 8, offset: '1M', size: '63M',
    });
    const r = await within(fill.done, NO_HANG_MS);
    if (!r) process.kill(fill.pid, 'SIGKILL');
    assert.ok(r, `fio still running ${NO_HANG_MS / 1000} s later: writes to a full backing filesystem hang`);
    trace(`ENOSPC: fio ended after ${Date.now() - t0} ms`);
    const jobs = fioJobs(r);
    assert.notEqual(r.code, 0, 'fio filled a 64 MiB disk on a 32 MiB filesystem without an error');
    assert.equal(jobs[0].error, 28, `fio's error is ${jobs[0].error}, not ENOSPC (28):\n${r.stderr}`);
    assert.match(r.stderr, /No space left on device/);
    // still LIVE, still serving: the data written before the filesystem filled up reads back
    assert.equal(await kernelState(id), STATE.LIVE);
    sh(`dd if=/dev/ublkb${id} bs=64k count=16 iflag=direct status=none | cmp - ${pat}`);
    sh(`dd if=/dev/ublkb${id} of=/dev/null bs=1M iflag=direct status=none`); // the whole disk, holes included
    delDevice(id);
  } finally {
    shResult(`umount ${SMALL}`);
  }
  assertClean('after ENOSPC');
});

test('a backing file truncated under the device: reads past its new end fail with EIO, the rest still reads', async () => {
  const store = inProcessStore();
  const file = makeBacking('fault-trunc.img', 16);
  const pat = pattern('trunc-pattern', 256);
  const ds = await addInProcess({ target: 'loop', file }, store);
  const id = ds.devId;
  try {
    sh(`dd if=${pat} of=/dev/ublkb${id} bs=64k oflag=direct status=none`);
    sh(`truncate -s 4M ${file}`);
    const past = shResult(`dd if=/dev/ublkb${id} of=/dev/null bs=4k count=1 skip=2048 iflag=direct`, 30_000);
    trace(`truncated backing file: read past the end: ${past.stderr.trim()}`);
    assert.notEqual(past.code, 0, 'a read past the end of the truncated file succeeded');
    assert.match(past.stderr, /Input\/output error/);
    sh(`dd if=/dev/ublkb${id} bs=64k count=4 iflag=direct status=none | cmp - ${pat}`);
    assert.equal(await kernelState(id), STATE.LIVE);
    // a write past the end grows the file again (a regular file has no fixed size)
    sh(`dd if=${pat} of=/dev/ublkb${id} bs=64k count=1 seek=160 oflag=direct status=none`);
    assert.ok(fs.statSync(file).size >= 160 * 65536 + 65536);
    await ds.stop();
  } finally {
    if (ds.phase === 'live') await ds.stop().catch(() => undefined);
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
});

test('a backing block device that fails every I/O: reads and writes get errors at once, no hang; it comes back with its backing device', async () => {
  const store = inProcessStore();
  const pat = pattern('eio-pattern', 256);
  // lower: a disk that fails I/O while its server is gone (-e 1); upper: a loop disk on it
  const lower = await addInProcess({ target: 'loop', file: makeBacking('fault-lower.img', 32), recovery: '1', recoveryFailIo: '1' }, store);
  let lower2: DeviceServer | undefined;
  let upper: DeviceServer | undefined;
  try {
    upper = await addInProcess({ target: 'loop', file: `/dev/ublkb${lower.devId}` }, store);
    const dev = `/dev/ublkb${upper.devId}`;
    sh(`dd if=${pat} of=${dev} bs=64k oflag=direct status=none`);

    await lower.detach();
    await waitState(lower.devId, [STATE.FAIL_IO], 10_000);
    // (shResult's time-outs are the "no hang" limits; the times are traced)
    const rd = shResult(`dd if=${dev} of=/dev/null bs=4k count=1 iflag=direct`, NO_HANG_MS);
    const wr = shResult(`dd if=${pat} of=${dev} bs=4k count=1 seek=64 oflag=direct`, NO_HANG_MS);
    const f = shResult(
      `fio --output-format=json --name=eio --filename=${dev} --ioengine=io_uring --direct=1 --rw=randrw --bs=4k ` +
        '--iodepth=16 --size=8M --time_based --runtime=10',
      NO_HANG_MS,
    );
    trace(`failing backing device: read: ${rd.stderr.trim()} / write: ${wr.stderr.trim()}`);
    assert.notEqual(rd.code, 0, 'a read succeeded');
    assert.match(rd.stderr, /I\/O error/);
    assert.notEqual(wr.code, 0, 'a write succeeded');
    assert.match(wr.stderr, /I\/O error/);
    assert.ok(f.code !== 0 && fioJobs(f)[0].error !== 0, `fio saw no error:\n${f.stderr}`);
    assert.equal(await kernelState(upper.devId), STATE.LIVE, 'the upper disk should stay LIVE');

    lower2 = await recoverInProcess(lower.devId, store);
    sh(`dd if=${dev} bs=64k count=4 iflag=direct status=none | cmp - ${pat}`);
    await upper.stop();
    await lower2.stop();
  } finally {
    if (upper?.phase === 'live') await upper.stop().catch(() => undefined);
    for (const d of [lower2, lower]) if (d?.phase === 'live') await d.stop().catch(() => undefined);
    // a lower disk left QUIESCED/FAIL_IO by a failure above
    if ((await kernelState(lower.devId)) >= 0) {
      await binding().stopDev(lower.devId).catch(() => undefined);
      await binding().delDev(lower.devId).catch(() => undefined);
    }
    fs.rmSync(store.dir, { recursive: true, force: true });
  }
  assertClean('after the failing backing device');
});
