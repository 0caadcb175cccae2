// The per-I/O path stays in native code: while fio drives a disk, the queue thread makes no
// syscall but io_uring_enter (no mmap/brk for memory, no read/write, no futex with JavaScript)
// and, for the loop target's writes, at most one futimens per clock tick (utimensat: the mtime
// stamp that keeps backing writes inline, see native/target_loop.cc),
// makes no call into JavaScript, and makes no heap allocation. Checked on the real driver with
// strace on the queue thread, and with an LD_PRELOAD allocation counter (native/alloc-counter.c)
// that counts malloc & co. called from queue threads.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { addDevice, background, cli, delAll, delDevice, fio, makeBacking, sh, sleep, trace, workDir } from './helpers';

before(() => requireKernel());
after(() => delAll());

// strace -c's table: "% time seconds usecs/call calls errors syscall"
function syscallsIn(table: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of table.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
    if (m && m[2] !== 'total') out.set(m[2], Number(m[1]));
  }
  return out;
}

for (const mode of [
  { name: 'zero copy', args: ['-z'] },
  { name: 'zero copy, batch I/O', args: ['-z', '--batch-io'] },
  { name: 'copy', args: [] },
]) {
  test(`loop, ${mode.name}: the queue thread only enters io_uring while serving I/O`, async () => {
    const file = makeBacking(`perio-${mode.args.length}.img`, 64);
    const id = addDevice(['-t', 'loop', '-f', file, ...mode.args]);
    try {
      const listed = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout);
      const text = JSON.stringify(listed);
      const tid = Number(/"tids?"\s*:\s*\[?\s*(\d+)/.exec(text)?.[1] ?? /"tid"\s*:\s*(\d+)/.exec(text)?.[1]);
      assert.ok(tid > 1, `no queue tid in list --json: ${text}`);

      // `exec`: the background pid is strace itself, stopped with SIGINT (it then prints its table).
      const tracer = background(`exec strace -c -p ${tid}`);
      await sleep(3000); // strace attached
      const t0 = Date.now();
      const fio = background(
        `fio --name=io --filename=/dev/ublkb${id} --ioengine=io_uring --direct=1 --rw=randrw --bs=4k ` +
          `--iodepth=16 --time_based --runtime=5 --output-format=json`,
      );
      const f = await fio.done;
      assert.equal(f.code, 0, `fio failed: ${f.stderr}`);
      const ios = JSON.parse(f.stdout.slice(f.stdout.indexOf('{'))).jobs[0];
      const total = ios.read.total_ios + ios.write.total_ios;
      assert.ok(total > 100, `fio did only ${total} I/Os`);

      process.kill(tracer.pid, 'SIGINT');
      const t = await tracer.done;
      const calls = syscallsIn(t.stderr);
      assert.ok(calls.size > 0, `strace produced no table:\n${t.stderr}`);
      const others = [...calls.keys()].filter((c) => c !== 'io_uring_enter' && c !== 'utimensat');
      assert.deepEqual(others, [], `queue thread made other syscalls:\n${t.stderr}`);
      // The mtime stamp: per tick (HZ <= 1000), never per write.
      const stamps = calls.get('utimensat') ?? 0;
      const seconds = (Date.now() - t0) / 1000 + 3;
      assert.ok(stamps <= seconds * 1000 && stamps <= ios.write.total_ios, `${stamps} utimensat for ${ios.write.total_ios} writes in ${seconds.toFixed(1)} s`);
      // At most one io_uring_enter per I/O for the loop's passes, plus one per write: the loop
      // target submits each backing write as soon as its mtime stamp is checked (target_loop.cc).
      const enters = calls.get('io_uring_enter')!;
      assert.ok(enters <= total + ios.write.total_ios, `${enters} enters for ${total} I/Os (${ios.write.total_ios} writes)`);
    } finally {
      delDevice(id);
    }
  });
}

/** Reads the shim's running count once the server has written it (every 50 ms). */
async function allocCount(file: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    try {
      const t = fs.readFileSync(file, 'utf8').trim();
      if (/^\d+$/.test(t)) return Number(t);
    } catch {
      // not written yet
    }
    await sleep(100);
  }
  throw new Error(`the allocation counter never wrote ${file}`);
}

for (const mode of [
  { name: 'zero copy (auto)', args: ['-z'] },
  { name: 'zero copy (explicit)', args: ['-z', '--zc-mode', 'explicit'] },
  { name: 'copy', args: [] },
  { name: 'user copy', args: ['--usercopy'] },
  { name: 'zero copy (auto), batch I/O', args: ['-z', '--batch-io'] },
  { name: 'zero copy (auto), 2 threads per queue', args: ['-z', '--threads-per-queue', '2'] },
]) {
  test(`loop, ${mode.name}: no heap allocation in the queue threads across a fio run`, async () => {
    const so = path.join(workDir(), 'alloc-counter.so');
    if (!fs.existsSync(so)) sh(`cc -shared -fPIC -O2 -o ${so} ${path.resolve(__dirname, '../../../test/integration/native/alloc-counter.c')} -lpthread`);
    const counts = path.join(workDir(), `allocs-${mode.args.join('') || 'copy'}.txt`);
    fs.rmSync(counts, { force: true });
    const file = makeBacking(`alloc-${mode.args.join('')}.img`, 32);
    const id = addDevice(['-t', 'loop', '-f', file, '-q', '2', ...mode.args], { LD_PRELOAD: so, UBLK_TS_ALLOC_COUNTS: counts });
    try {
      await sleep(500);
      const before = await allocCount(counts);
      // setup allocates (the tag table, on each queue thread): the counter sees queue threads
      assert.ok(before > 0, 'the counter saw no allocation at all in the queue threads: it is not counting');
      const out = fio(`/dev/ublkb${id}`, [
        { name: 'rand', rw: 'randrw', bs: '4k', iodepth: 32, size: '8M' },
        { name: 'seq', rw: 'write', bs: '128k', iodepth: 16, size: '16M', extra: { offset: '16M' } },
        { name: 'flush', rw: 'write', bs: '64k', iodepth: 4, size: '2M', extra: { fsync: 8, offset: '8M' } },
      ]);
      const ios = out.jobs.reduce((n: number, j: any) => n + j.read.total_ios + j.write.total_ios, 0);
      await sleep(300);
      const after = await allocCount(counts);
      trace(`queue-thread allocations (${mode.name}): ${before} at start, ${after} after ${ios} I/Os`);
      assert.ok(ios > 1000, `fio did only ${ios} I/Os`);
      assert.equal(after, before, `the queue threads allocated ${after - before} times during ${ios} I/Os`);
    } finally {
      delDevice(id);
    }
  });
}
