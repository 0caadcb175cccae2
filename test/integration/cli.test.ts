// The command line as users drive it: add/list/del, features, bad input, and del under load.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import {
  addDevice,
  background,
  cli,
  delAll,
  makeBacking,
  processAlive,
  processesMatching,
  shResult,
  ublkDevices,
  waitFor,
  workDir,
} from './helpers';

const RUN_DIR = process.env.UBLK_TS_RUN_DIR ?? '/run/ublk-ts';

before(() => requireKernel());
after(() => delAll());

function stateFiles(): string[] {
  try {
    return fs.readdirSync(RUN_DIR).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
}

function serverProcesses(): string[] {
  return processesMatching('daemon/server-main');
}

/** Nothing of a device may be left: no node, no server process, no state file. */
function assertClean(what: string): void {
  assert.deepEqual(ublkDevices(), [], `${what}: /dev/ublk* nodes left behind`);
  assert.deepEqual(serverProcesses(), [], `${what}: server processes left behind`);
  assert.deepEqual(stateFiles(), [], `${what}: state files left behind`);
}

test('features lists the kernel feature flags by name with their bits', () => {
  const r = cli(['features']);
  assert.equal(r.code, 0, r.stderr);
  // Kernel 6.15+ has zero copy; the VM's kernel has every flag up to AUTO_BUF_REG at least.
  for (const name of ['ZERO_COPY', 'USER_RECOVERY', 'CMD_IOCTL_ENCODE', 'USER_COPY', 'AUTO_BUF_REG']) {
    assert.match(r.stdout, new RegExp(name), `features output lacks ${name}:\n${r.stdout}`);
  }
  assert.match(r.stdout, /0x[0-9a-f]+/i);
});

describe('add, list and del', () => {
  test('add prints the list entry; list shows the device; del removes everything', () => {
    const file = makeBacking('cli.img', 32);
    const id = addDevice(['-t', 'loop', '-f', file, '-q', '2', '-d', '32']);
    const r = cli(['list', '-n', String(id)]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.match(lines[0], new RegExp(`^dev id ${id}: nr_hw_queues 2 queue_depth 32 block size 512 dev_capacity 65536$`));
    assert.match(r.stdout, /\tmax rq size 524288 daemon pid (\d+) state LIVE/);
    assert.match(r.stdout, /\tflags 0x[0-9a-f]+ \[ .*\]/);
    assert.match(r.stdout, /\tublkc: \d+:\d+ ublkb: \d+:\d+ owner: 0:0/);
    assert.match(r.stdout, /\tqueue 0: tid \d+/);
    assert.match(r.stdout, /\tqueue 1: tid \d+/);
    assert.match(r.stdout, /\ttarget \{.*"loop".*\}/);
    const pid = Number(/daemon pid (\d+)/.exec(r.stdout)![1]);
    assert.ok(processAlive(pid), 'the daemon pid in list is not running');

    const j = cli(['list', '--json']);
    assert.equal(j.code, 0, j.stderr);
    assert.ok(JSON.stringify(JSON.parse(j.stdout)).includes(`"devId":${id}`) || j.stdout.includes(`${id}`));

    const d = cli(['del', '-n', String(id)]);
    assert.equal(d.code, 0, d.stderr);
    assert.ok(!processAlive(pid), 'the server outlived del');
    assertClean('after del -n');
  });

  test('del -a removes every device', () => {
    const file = makeBacking('cli-a.img', 16);
    addDevice(['-t', 'loop', '-f', file]);
    addDevice(['-t', 'null']);
    assert.equal(ublkDevices().filter((n) => n.startsWith('ublkb')).length, 2);
    const r = cli(['del', '-a']);
    assert.equal(r.code, 0, r.stderr);
    assertClean('after del -a');
  });

  test('the disk gets the I/O scheduler none (as the kernel loop driver), or the one --io-scheduler names', () => {
    const sched = (id: number) => fs.readFileSync(`/sys/block/ublkb${id}/queue/scheduler`, 'utf8').trim();
    const a = addDevice(['-t', 'null']);
    assert.match(sched(a), /\[none\]/);
    const b = addDevice(['-t', 'null', '--io-scheduler', 'mq-deadline']);
    assert.match(sched(b), /\[mq-deadline\]/);
    const c = addDevice(['-t', 'null', '--io-scheduler', 'kernel']);
    assert.match(sched(c), /\[mq-deadline\]/, "the kernel's own choice for a one-queue disk");
    assert.equal(cli(['del', '-a']).code, 0);
    assertClean('after the scheduler devices');
  });

  test('a file that backs a writable disk is not given to a second one, unless both are read-only or both say --shared', () => {
    const file = makeBacking('cli-shared.img', 16);
    const a = addDevice(['-t', 'loop', '-f', file]);
    let r = cli(['add', '-t', 'loop', '-f', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`backing file ${file} is also the backing file of device ${a} \\(/dev/ublkb${a}\\): two disks that write one file corrupt it`));
    r = cli(['add', '-t', 'loop', '-f', file, '--read-only']);
    assert.equal(r.code, 1, 'read-only beside a writer is refused too');
    assert.equal(cli(['del', '-n', String(a)]).code, 0);
    // both read-only: fine
    const b = addDevice(['-t', 'loop', '-f', file, '--read-only']);
    const c = addDevice(['-t', 'loop', '-f', file, '--read-only']);
    assert.equal(cli(['del', '-n', String(b)]).code, 0);
    assert.equal(cli(['del', '-n', String(c)]).code, 0);
    // both shared on purpose: fine
    const d = addDevice(['-t', 'loop', '-f', file, '--shared']);
    const e = addDevice(['-t', 'loop', '-f', file, '--shared']);
    assert.equal(cli(['del', '-a']).code, 0, `del ${d} ${e}`);
    assertClean('after the shared-file devices');
  });

  test('SIGTERM to a server stops and deletes its device', async () => {
    const id = addDevice(['-t', 'null']);
    const pid = Number(/daemon pid (\d+)/.exec(cli(['list', '-n', String(id)]).stdout)![1]);
    assert.ok(pid > 1, `bad daemon pid ${pid}`);
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !processAlive(pid) && !fs.existsSync(`/dev/ublkb${id}`), 30_000, 'the server to exit');
    assertClean('after SIGTERM');
  });
});

describe('bad input: a clear one-line error, non-zero exit, nothing left behind', () => {
  const dir = () => workDir();
  const cases: Array<{ name: string; args: () => string[]; expect: RegExp; prefix?: string[] }> = [
    { name: 'missing file', args: () => ['add', '-t', 'loop', '-f', path.join(dir(), 'nope.img')], expect: /nope\.img/ },
    { name: 'a directory', args: () => ['add', '-t', 'loop', '-f', dir()], expect: /director/i },
    { name: 'an empty file', args: () => ['add', '-t', 'loop', '-f', makeBacking('empty.img', 0)], expect: /empty/i },
    {
      name: 'size not a multiple of the block size',
      args: () => {
        const f = path.join(dir(), 'odd.img');
        fs.writeFileSync(f, Buffer.alloc(4096 + 100));
        return ['add', '-t', 'loop', '-f', f];
      },
      expect: /multiple/i,
    },
    { name: 'no file for loop', args: () => ['add', '-t', 'loop'], expect: /file/i },
    { name: 'unknown target', args: () => ['add', '-t', 'qcow9'], expect: /qcow9/ },
    { name: 'bad queue count', args: () => ['add', '-t', 'null', '-q', '0'], expect: /queue/i },
    { name: 'queue count with junk', args: () => ['add', '-t', 'null', '-q', '2x'], expect: /2x/ },
    { name: 'bad depth', args: () => ['add', '-t', 'null', '-d', '5000'], expect: /depth/i },
    { name: 'bad block size', args: () => ['add', '-t', 'null', '-b', '1000'], expect: /block.size/i },
    { name: 'unknown option', args: () => ['add', '-t', 'null', '--frobnicate'], expect: /frobnicate/ },
    // known only once the disk exists: the add is undone
    { name: 'an I/O scheduler this kernel lacks', args: () => ['add', '-t', 'null', '--io-scheduler', 'cfq'], expect: /scheduler.*"cfq"/ },
    {
      name: 'not root',
      args: () => ['add', '-t', 'null'],
      // nobody, keeping only the capability that reads a checkout nobody may not (under /root)
      prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search', '--'],
      expect: /root/i,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = cli(c.args(), { prefix: c.prefix });
      assert.notEqual(r.code, 0, `exit 0 for ${c.name}`);
      const msg = r.stderr.trim();
      assert.match(msg, c.expect);
      assert.ok(msg.split('\n').length <= 2, `more than a one-line error:\n${msg}`);
      assertClean(c.name);
    });
  }

  test('a device id already in use', () => {
    const id = addDevice(['-t', 'null']);
    const r = cli(['add', '-t', 'null', '-n', String(id)]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`${id}.*(in use|exists)|(in use|exists).*${id}`, 'i'));
    // The first device is untouched; only it exists.
    assert.deepEqual(ublkDevices().filter((n) => n.startsWith('ublkb')), [`ublkb${id}`]);
    cli(['del', '-n', String(id)]);
    assertClean('after id in use');
  });

  test('/dev/ublk-control missing names modprobe', () => {
    // A private mount namespace where /dev has no ublk-control.
    const r = shResult(`unshare -m bash -c 'mount -t tmpfs none /dev && ${process.execPath} ${path.resolve(
      __dirname,
      '../../../bin/ublk-ts',
    )} add -t null'`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /modprobe ublk_drv/);
    assertClean('without /dev/ublk-control');
  });
});

test('del during running fio: fio gets errors, never hangs, and the device is gone', async () => {
  const file = makeBacking('del-io.img', 64);
  const id = addDevice(['-t', 'loop', '-f', file, '-z']);
  const job = background(
    `fio --name=busy --filename=/dev/ublkb${id} --ioengine=io_uring --direct=1 --rw=randrw --bs=4k ` +
      `--iodepth=32 --time_based --runtime=120 --output-format=json`,
  );
  await new Promise((r) => setTimeout(r, 4000));
  const started = Date.now();
  const d = cli(['del', '-n', String(id)], { timeoutMs: 90_000 });
  assert.equal(d.code, 0, d.stderr);
  const res = await Promise.race([
    job.done,
    new Promise<null>((r) => setTimeout(() => r(null), 60_000)),
  ]);
  assert.ok(res, 'fio still running 60 s after del: I/O hangs');
  assert.ok(Date.now() - started < 90_000);
  // fio stops at its first I/O error: a non-zero exit, or a job error in its JSON.
  assert.ok(res!.code !== 0 || /"error"\s*:\s*[1-9]/.test(res!.stdout), `fio saw no error:\n${res!.stderr}`);
  assertClean('after del under I/O');
});
