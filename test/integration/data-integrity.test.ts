// Every data path keeps data intact: fio writes with crc32c verification through each mode
// (copy, user copy, zero copy auto and explicit), with 1 and 4 queues, at queue depths 1 and 64;
// then a fresh device on the same file reads back exactly the backing file's bytes. Each data mode
// again with batch I/O (--batch-io), and with several threads per queue (--threads-per-queue).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { requireKernel } from './kernel-gate';
import * as fs from 'node:fs';
import { addDevice, cli, delAll, delDevice, fio, makeBacking, sh, sha256File, shResult, trace, verifyJobs } from './helpers';
import { serverPid } from './fault-helpers';
import { queueThreadsOf, threadCpuTicks } from './threads';

const DISK_MIB = 64;

const MODES: Array<{ name: string; args: string[] }> = [
  { name: 'copy', args: [] },
  { name: 'user copy', args: ['--usercopy'] },
  { name: 'zero copy (auto)', args: ['-z'] },
  { name: 'zero copy (explicit)', args: ['-z', '--zc-mode', 'explicit'] },
];

before(() => requireKernel());
after(() => delAll());

/** fio's crc32c write-and-verify jobs on /dev/ublkb`id`: no error, and every byte written. */
function fioVerify(id: number): void {
  const out = fio(`/dev/ublkb${id}`, verifyJobs());
  for (const j of out.jobs) assert.equal(j.error, 0, `${j.jobname} reported error ${j.error}`);
  const written = out.jobs.reduce((n: number, j: any) => n + j.write.io_bytes, 0);
  assert.equal(written, 2 * (2 << 20) + 2 * (16 << 20), `fio wrote ${written} bytes`);
}

// Batch I/O (UBLK_F_BATCH_IO) changes how requests reach the server and are committed, not how
// their data moves: every data mode again, with 2 queues.
describe('loop, batch I/O (--batch-io)', () => {
  for (const mode of MODES) {
    test(`${mode.name}, 2 queues: fio crc32c verify`, () => {
      const file = makeBacking('verify-batch.img', DISK_MIB);
      const id = addDevice(['-t', 'loop', '-f', file, '-q', '2', '-d', '64', '--batch-io', ...mode.args]);
      try {
        assert.match(cli(['list', '-n', String(id)]).stdout, /BATCH_IO/);
        fioVerify(id);
      } finally {
        delDevice(id);
      }
    });
  }
});

// The loop's write settings (--write-submit, --mtime-stamp; bench/README.md, "The loop target's
// backing writes"): each way of submitting backing writes keeps the data, and the state file keeps
// the setting for a recovered server.
describe('loop, write settings', () => {
  for (const args of [['--write-submit', 'alone'], ['--write-submit', 'batched', '--mtime-stamp', 'off']]) {
    test(`${args.join(' ')}, zero copy: fio crc32c verify; list's state keeps the setting`, () => {
      const file = makeBacking('verify-writes.img', DISK_MIB);
      const id = addDevice(['-t', 'loop', '-f', file, '-z', ...args]);
      try {
        fioVerify(id);
        const run = process.env.UBLK_TS_RUN_DIR || '/run/ublk-ts';
        const saved = JSON.parse(fs.readFileSync(`${run}/${String(id).padStart(4, '0')}.json`, 'utf8'));
        assert.equal(saved.spec.target.writeSubmit, args[1]);
        assert.equal(saved.spec.target.mtimeStamp, args.includes('off') ? 'off' : 'on');
      } finally {
        delDevice(id);
      }
    });
  }
});

// Several threads per queue (UBLK_F_PER_IO_DAEMON): each thread fetches, serves and commits its
// own share of every queue's tags on its own ring. Three threads for a depth of 64 also splits the
// tags unevenly (22, 21, 21).
describe('loop, several threads per queue (--threads-per-queue)', () => {
  for (const mode of MODES) {
    test(`${mode.name}, 2 queues × 3 threads: fio crc32c verify`, async () => {
      const file = makeBacking('verify-threads.img', DISK_MIB);
      const id = addDevice(['-t', 'loop', '-f', file, '-q', '2', '-d', '64', '--threads-per-queue', '3', ...mode.args]);
      try {
        const names = queueThreadsOf(await serverPid(id), id).map((t) => t.name).sort();
        assert.deepEqual(names, [0, 1].flatMap((q) => [0, 1, 2].map((w) => `ublk${id}-q${q}.${w}`)));
        fioVerify(id);
      } finally {
        delDevice(id);
      }
    });
  }

  test('zero copy, 1 queue × 2 threads: both threads serve I/O; list shows one queue', async () => {
    const file = makeBacking('threads-balance.img', DISK_MIB);
    const id = addDevice(['-t', 'loop', '-f', file, '-z', '--threads-per-queue', '2']);
    try {
      const pid = await serverPid(id);
      const before = threadCpuTicks(pid, id);
      const out = fio(`/dev/ublkb${id}`, [
        { name: 'rr', rw: 'randread', bs: '4k', iodepth: 32, extra: { time_based: 1, runtime: 4 } },
      ]);
      const ios = out.jobs[0].read.total_ios as number;
      assert.ok(ios > 1000, `fio did only ${ios} reads`);
      const after = threadCpuTicks(pid, id);
      const used = [...after].map(([name, t]) => [name, t - (before.get(name) ?? 0)] as const);
      assert.equal(used.length, 2, `threads: ${JSON.stringify(used)}`);
      const total = used.reduce((n, [, t]) => n + t, 0);
      // blk-mq hands out tags in turn, and the tags alternate between the threads
      for (const [name, t] of used) assert.ok(t >= total / 5, `${name} used ${t} of ${total} ticks: ${JSON.stringify(used)}`);

      // One queue in `list`, however many threads serve it.
      const listed = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout);
      assert.match(JSON.stringify(listed), /PER_IO_DAEMON/);
      const text = cli(['list', '-n', String(id)]).stdout;
      assert.equal(text.match(/\tqueue \d+: tid/g)?.length, 1, text);
    } finally {
      delDevice(id);
    }
  });
});

for (const mode of MODES) {
  describe(`loop, ${mode.name}`, () => {
    for (const queues of [1, 4]) {
      test(`${queues} queue(s): fio crc32c verify${queues > 1 ? ', then the bytes read back equal the file' : ''}`, () => {
        const file = makeBacking(`verify-${queues}.img`, DISK_MIB);
        const id = addDevice(['-t', 'loop', '-f', file, '-q', String(queues), '-d', '64', ...mode.args]);
        try {
          fioVerify(id);
        } finally {
          delDevice(id);
        }
        if (queues === 1) return;
        // A second, fresh device (copy mode) must show exactly what is in the file.
        const id2 = addDevice(['-t', 'loop', '-f', file]);
        try {
          assert.equal(sha256File(`/dev/ublkb${id2}`), sha256File(file));
        } finally {
          delDevice(id2);
        }
      });
    }
  });
}

// The loop target stamps the backing file's mtime itself once per clock tick, ahead of writes
// (native/target_loop.cc): the file must still end up with the times its writes give it, and
// reads must not touch it.
test('loop, zero copy: writes move the backing file\'s mtime and ctime forward, reads leave them', async () => {
  const file = makeBacking('mtime.img', 16);
  const old = new Date(Date.now() - 3600_000);
  fs.utimesSync(file, old, old);
  const m0 = fs.statSync(file).mtimeMs;
  const id = addDevice(['-t', 'loop', '-f', file, '-z']);
  try {
    fio(`/dev/ublkb${id}`, [{ name: 'r', rw: 'read', bs: '128k', iodepth: 8, size: '8M' }]);
    assert.equal(fs.statSync(file).mtimeMs, m0, 'a read changed the mtime');
    const before = Date.now();
    fio(`/dev/ublkb${id}`, [{ name: 'w', rw: 'write', bs: '128k', iodepth: 8, size: '8M' }]);
    const st = fs.statSync(file);
    // Coarse kernel clock: allow one tick (at most 10 ms) before `before`.
    assert.ok(st.mtimeMs >= before - 10 && st.mtimeMs <= Date.now() + 10, `mtime ${st.mtime.toISOString()} not from the writes`);
    assert.ok(st.ctimeMs >= st.mtimeMs - 10, `ctime ${st.ctime.toISOString()} behind mtime`);
  } finally {
    delDevice(id);
  }
});

describe('null target', () => {
  for (const zc of [false, true]) {
    test(`serves reads and writes${zc ? ' with zero copy' : ''}`, () => {
      const id = addDevice(['-t', 'null', ...(zc ? ['-z'] : [])]);
      try {
        const out = fio(`/dev/ublkb${id}`, [
          { name: 'w', rw: 'randwrite', bs: '4k', iodepth: 32, size: '16M' },
          { name: 'r', rw: 'read', bs: '128k', iodepth: 32, size: '64M' },
        ]);
        assert.equal(out.jobs[0].write.io_bytes, 16 << 20);
        assert.equal(out.jobs[1].read.io_bytes, 64 << 20);
      } finally {
        delDevice(id);
      }
    });
  }
});

describe('backing device with 4096-byte sectors (a loop device with --sector-size 4096)', () => {
  let loopDev = '';
  before(() => {
    loopDev = sh(`losetup --find --show --sector-size 4096 --direct-io=on ${makeBacking('4kn.img', DISK_MIB)}`).trim();
  });
  after(() => {
    if (loopDev) shResult(`losetup -d ${loopDev}`);
  });

  test('add -z with 512-byte blocks is refused with the reason; nothing is created', () => {
    const r = cli(['add', '-t', 'loop', '-f', loopDev, '-z']);
    trace(`4Kn refusal: ${r.stderr.trim()}`);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /its logical block size is 4096, larger than 512; use -b 4096 or --buffered_io/);
    assert.equal(cli(['list', '--json']).stdout.trim(), '[]');
  });

  for (const mode of MODES.filter((m) => m.args.includes('-z'))) {
    test(`-b 4096, ${mode.name}: DMA alignment 4095 reaches the kernel; fio crc32c verify passes`, () => {
      const id = addDevice(['-t', 'loop', '-f', loopDev, '-b', '4096', '-d', '64', ...mode.args]);
      try {
        assert.equal(fs.readFileSync(`/sys/block/ublkb${id}/queue/logical_block_size`, 'utf8').trim(), '4096');
        assert.equal(fs.readFileSync(`/sys/block/ublkb${id}/queue/dma_alignment`, 'utf8').trim(), '4095');
        const out = fio(`/dev/ublkb${id}`, verifyJobs());
        for (const j of out.jobs) assert.equal(j.error, 0, `${j.jobname} reported error ${j.error}`);
      } finally {
        delDevice(id);
      }
    });
  }
});
