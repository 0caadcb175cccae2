// The per-I/O path stays in native code: while fio drives a disk, the queue thread makes no
// syscall but io_uring_enter (no mmap/brk for memory, no read/write, no futex with JavaScript),
// and makes no call into JavaScript. Checked on the real driver with strace on the queue thread.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { requireKernel } from './kernel-gate';
import { addDevice, background, cli, delAll, delDevice, makeBacking, sleep } from './helpers';

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
      const others = [...calls.keys()].filter((c) => c !== 'io_uring_enter');
      assert.deepEqual(others, [], `queue thread made other syscalls:\n${t.stderr}`);
      // Batching: at most one io_uring_enter per I/O.
      assert.ok(calls.get('io_uring_enter')! <= total, `${calls.get('io_uring_enter')} enters for ${total} I/Os`);
    } finally {
      delDevice(id);
    }
  });
}
