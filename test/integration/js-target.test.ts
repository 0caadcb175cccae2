// Disks written in JavaScript (-t js, and createDevice() as a library) against the real driver:
// fio crc32c verify through the in-memory disk with 1 and 4 queues; handlers that throw, reject
// and stall (examples/faulty.mjs); 10,000 requests in flight across a garbage collection; kill -9
// + recover with -r 1 -i 1 under fio verify (a file-backed disk); an ext4 image served over HTTP
// with range requests, mounted read-only, files read back with their checksums.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { requireKernel } from './kernel-gate';
import { addDevice, cli, delAll, delDevice, fio, makeBacking, REPO, sh, shResult, sleep, trace, verifyJobs, workDir } from './helpers';
import { assertClean, fioBackground, fioJobs, kernelState, killAndWait, serverPid, STATE, waitForIo, waitState, within } from './fault-helpers';
import { createDevice, type BlockTarget } from '../../daemon/library';

const EX = (f: string) => path.join(REPO, 'examples', f);

before(() => requireKernel());
after(() => delAll());

function fioVerify(id: number): void {
  const out = fio(`/dev/ublkb${id}`, verifyJobs());
  for (const j of out.jobs) assert.equal(j.error, 0, `${j.jobname} reported error ${j.error}`);
}

describe('js target: the in-memory disk', () => {
  for (const q of [1, 4]) {
    test(`${q} queue(s): fio crc32c verify; list shows the module; the queues are served on the server's main thread`, () => {
      const id = addDevice(['-t', 'js', '--module', EX('memory-disk.mjs'), '--set', 'size=128M', '-q', String(q)]);
      try {
        const l = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout)[0];
        assert.equal(l.target.name, 'js');
        assert.equal(l.target.module, EX('memory-disk.mjs'));
        assert.equal(l.target.dev_size, 128 << 20);
        assert.equal(l.data_mode, 'copy');
        // on the event loop (TargetOps::on_event_loop): no queue thread of its own
        assert.ok(l.queues.length > 0, 'list shows the queues');
        for (const qv of l.queues) assert.equal(qv.tid, l.daemon_pid, `queue ${qv.qid} tid ${qv.tid}, server pid ${l.daemon_pid}`);
        const names = fs.readdirSync(`/proc/${l.daemon_pid}/task`).map((t) => fs.readFileSync(`/proc/${l.daemon_pid}/task/${t}/comm`, 'utf8').trim());
        assert.ok(!names.some((n) => n.startsWith(`ublk${id}-q`)), `queue threads: ${names.join(', ')}`);
        fioVerify(id);
      } finally {
        delDevice(id);
      }
    });
  }

  test('-z is refused with the reason, before anything is created', () => {
    const r = cli(['add', '-t', 'js', '--module', EX('memory-disk.mjs'), '-z']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /the js target cannot use zero copy: a JavaScript target reads and writes the requests' bytes itself/);
    assertClean('after -z was refused');
  });

  test('a module that does not make a disk: one line, exit 2, nothing left', () => {
    const bad = path.join(workDir(), 'bad-disk.mjs');
    fs.writeFileSync(bad, 'export default () => ({ size: 1000, read() {} });\n');
    const r = cli(['add', '-t', 'js', '--module', bad]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /has no write\(\) method.*size 1000 is not a multiple of the block size 512/);
    assertClean('after a bad module');
  });
});

describe('js target: handlers that throw, reject and stall', () => {
  const faulty = (sets: string[], extra: string[] = []) =>
    addDevice(['-t', 'js', '--module', EX('faulty.mjs'), '--set', `inner=${EX('memory-disk.mjs')}`, '--set', 'size=16M', ...sets.flatMap((s) => ['--set', s]), ...extra]);
  const read = (id: number, at: number) => shResult(`dd if=/dev/ublkb${id} of=/dev/null bs=4k count=1 skip=${at / 4096} iflag=direct`, 120_000);

  test('a handler that throws (sync) or rejects fails that request with its errno; the disk goes on', () => {
    for (const how of ['sync', 'reject']) {
      const id = faulty(['fail=read:0-4096:ENOSPC', `throw=${how}`]);
      try {
        const r = read(id, 0);
        assert.notEqual(r.code, 0, `${how}: the read of the failing range failed`);
        assert.match(r.stderr, /No space left on device/, how);
        assert.equal(read(id, 8192).code, 0, `${how}: the disk serves the rest`);
      } finally {
        delDevice(id);
      }
    }
  });

  test('a handler that never settles: --io-timeout fails it with ETIMEDOUT; the disk goes on', () => {
    const id = faulty(['delay=read:8192-12288:hang'], ['--io-timeout', '2']);
    try {
      const t0 = Date.now();
      const r = read(id, 8192);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Connection timed out|Timer expired|timed out/i);
      assert.ok(Date.now() - t0 < 60_000, 'within a minute');
      assert.equal(read(id, 0).code, 0, 'the rest of the disk still answers');
      const log = fs.readFileSync(path.join(process.env.UBLK_TS_RUN_DIR || '/run/ublk-ts', 'ublk-ts.log'), 'utf8');
      assert.match(log, /"event":"io_timeout"/);
    } finally {
      delDevice(id);
    }
  });
});

describe('js target as a library (createDevice), in this process', () => {
  // The guest has 2 vCPUs: blk-mq maps each CPU to one hardware queue, so at most 2 x 4096 requests
  // can be outstanding there; on a machine with 3 or more CPUs the test holds 10,000.
  const cpus = Math.min(os.cpus().length, 4);
  const want = Math.min(10_000, cpus * 4000);
  test(`${want.toLocaleString('en')} requests in flight across a garbage collection (10,000 with 3+ CPUs): every byte verifies`, async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const mem = new Map<number, Buffer>();
    const held: Array<() => void> = [];
    let release = false;
    const hold = () => (release ? Promise.resolve() : new Promise<void>((r) => held.push(r)));
    // 4 KiB pages of a 256 MiB disk; every write waits until `want` are waiting (reads go on: the
    // kernel's partition scan reads while it holds the disk's open mutex, which fio needs)
    const target: BlockTarget = {
      size: 256 << 20,
      async read(offset, length, into) {
        for (let o = 0; o < length; o += 4096) (mem.get(offset + o) ?? Buffer.alloc(4096)).copy(into, o);
      },
      async write(offset, data) {
        await hold();
        for (let o = 0; o < data.length; o += 4096) mem.set(offset + o, Buffer.from(data.subarray(o, o + 4096)));
      },
    };
    const disk = await createDevice(target, { queues: cpus, depth: 4096, maxIoBufBytes: '64K' });
    try {
      // one fio job per CPU (each CPU submits to its own hardware queue), `want` writes in flight
      const f = fioBackground({
        name: 'gc', filename: disk.path, ioengine: 'io_uring', direct: 1, rw: 'randwrite', bs: '4k', iodepth: Math.ceil(want / cpus), numjobs: cpus,
        cpus_allowed: `0-${cpus - 1}`, cpus_allowed_policy: 'split',
        size: '32M', offset_increment: '32M', verify: 'crc32c', verify_fatal: 1, do_verify: 1, group_reporting: 1,
      });
      const end = Date.now() + 300_000;
      while (held.length < want) {
        if (Date.now() > end) assert.fail(`only ${held.length} requests in flight`);
        await sleep(200);
      }
      trace(`js target: ${held.length} requests in flight; gc`);
      gc();
      gc();
      release = true;
      for (const r of held.splice(0)) r();
      const r = await within(f.done, 600_000);
      assert.ok(r, 'fio finished');
      for (const j of fioJobs(r)) assert.equal(j.error, 0, `${j.name}: error ${j.error}`);
    } finally {
      await disk.stop();
    }
    assert.ok(!fs.existsSync(disk.path), 'stop() deleted the disk');
  });
});

describe('js target: kill -9 and recover (-r 1 -i 1) under fio verify', () => {
  test('a file-backed disk keeps verifying through 2 crashes; nothing lost', async () => {
    const file = makeBacking('js-recover.img', 64);
    const id = addDevice(['-t', 'js', '--module', EX('file-disk.mjs'), '--set', `file=${file}`, '-r', '1', '-i', '1']);
    const f = fioBackground({
      name: 'js-rec', filename: `/dev/ublkb${id}`, ioengine: 'io_uring', direct: 1, rw: 'randwrite', bs: '4k', iodepth: 16, size: '16M',
      verify: 'crc32c', verify_fatal: 1, do_verify: 1, loops: 2,
    });
    try {
      for (let cycle = 0; cycle < 2; cycle++) {
        await waitForIo(id, 300, 120_000);
        await killAndWait(await serverPid(id));
        assert.equal(await waitState(id, [STATE.QUIESCED], 30_000), STATE.QUIESCED);
        const r = cli(['recover', '-n', String(id)]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await kernelState(id), STATE.LIVE);
      }
      const r = await within(f.done, 600_000);
      assert.ok(r, 'fio finished');
      for (const j of fioJobs(r)) assert.equal(j.error, 0, `${j.name}: error ${j.error}`);
    } finally {
      delDevice(id);
    }
    assertClean('after the recoveries');
  });
});

describe('js target: an ext4 image over HTTP (range requests), mounted read-only', () => {
  test('the files read back with their checksums', async () => {
    const src = path.join(workDir(), 'http-src');
    fs.rmSync(src, { recursive: true, force: true });
    fs.mkdirSync(path.join(src, 'd'), { recursive: true });
    const sums = new Map<string, string>();
    for (let i = 0; i < 6; i++) {
      const data = crypto.randomBytes(50_000 * (i + 1));
      const name = i % 2 ? `d/f${i}` : `f${i}`;
      fs.writeFileSync(path.join(src, name), data);
      sums.set(name, crypto.createHash('sha256').update(data).digest('hex'));
    }
    const img = path.join(workDir(), 'http.img');
    fs.rmSync(img, { force: true });
    sh(`mkfs.ext4 -q -F -d ${src} ${img} 32M`);
    const server = http.createServer((req, res) => {
      const st = fs.statSync(img);
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (req.method === 'HEAD' || !m) {
        res.writeHead(200, { 'content-length': st.size, 'accept-ranges': 'bytes' });
        if (req.method === 'HEAD') return res.end();
        return fs.createReadStream(img).pipe(res);
      }
      const [from, to] = [Number(m[1]), Math.min(Number(m[2]), st.size - 1)];
      res.writeHead(206, { 'content-length': to - from + 1, 'content-range': `bytes ${from}-${to}/${st.size}`, 'accept-ranges': 'bytes' });
      fs.createReadStream(img, { start: from, end: to }).pipe(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/disk.img`;
    const mnt = path.join(workDir(), 'http-mnt');
    fs.mkdirSync(mnt, { recursive: true });
    // the server runs in this process: serve it while the disk's own server process fetches from it
    const id = await new Promise<number>((resolve, reject) => {
      const args = ['add', '-t', 'js', '--module', EX('http-image.mjs'), '--set', `url=${url}`, '--set', 'cache=4M'];
      import('node:child_process').then(({ execFile }) =>
        execFile(process.execPath, [path.join(REPO, 'bin', 'ublk-ts'), ...args], (err, stdout, stderr) => {
          if (err) return reject(new Error(`add failed: ${stderr}`));
          resolve(Number(/^dev id (\d+):/m.exec(stdout)![1]));
        }),
      );
    });
    try {
      const l = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout)[0];
      assert.match(l.flags, /./);
      const mounted = await new Promise<string>((resolve) =>
        import('node:child_process').then(({ exec }) =>
          exec(`mount -o ro /dev/ublkb${id} ${mnt} && cd ${mnt} && find . -type f | sort | xargs sha256sum`, (err, stdout, stderr) => resolve(err ? `ERR ${stderr}` : stdout)),
        ),
      );
      assert.doesNotMatch(mounted, /^ERR/, mounted);
      for (const [name, sum] of sums) assert.match(mounted, new RegExp(`^${sum}  \\./${name}$`, 'm'), name);
      const w = shResult(`dd if=/dev/zero of=/dev/ublkb${id} bs=4k count=1 oflag=direct`);
      assert.notEqual(w.code, 0, 'a read-only image refuses writes');
    } finally {
      await new Promise<void>((r) => import('node:child_process').then(({ exec }) => exec(`umount ${mnt}`, () => r())));
      await new Promise<void>((r) => import('node:child_process').then(({ execFile }) => execFile(process.execPath, [path.join(REPO, 'bin', 'ublk-ts'), 'del', '-n', String(id)], () => r())));
      server.close();
    }
  });
});
