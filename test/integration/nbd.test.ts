// The nbd target against real NBD servers started here (nbdkit: memory, file, and its error,
// delay, exportname and multi-conn filters; qemu-nbd exporting a qcow2 image), over TCP on
// 127.0.0.1 and over unix sockets, with the real driver: fio crc32c verify in every data mode it
// serves with 1 and 4 queues, a filesystem round trip, discard and write-zeroes reaching the
// server's file, the server killed and restarted under fio verify with -r 1 -i 1 (nothing lost),
// killed without -r 1 (errors, no hang, nothing left), and every bad input one clear line.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { requireKernel } from './kernel-gate';
import { addDevice, cli, cliAsync, delAll, delDevice, fio, makeBacking, sh, shResult, sleep, trace, verifyJobs, waitFor, workDir } from './helpers';
import {
  addInProcess,
  assertClean,
  fioBackground,
  fioJobs,
  inProcessStore,
  kernelState,
  STATE,
  waitForIo,
  waitState,
  within,
} from './fault-helpers';

before(() => requireKernel());
after(() => {
  for (const s of servers) stopServer(s);
  delAll();
});

// ---- NBD servers for the tests ------------------------------------------------------------------

interface NbdServer {
  child: ChildProcess;
  args: string[];
  /** `--unix` or `--host/--port` for ublk-ts add */
  addr: string[];
}
const servers: NbdServer[] = [];
let nextPort = 10900;

function socketPath(name: string): string {
  return path.join(workDir(), `${name}.sock`);
}

/** Starts nbdkit (or another server) in the foreground and waits until it accepts connections. */
async function startServer(cmd: string, args: string[], addr: string[], probe: { unix?: string; port?: number }): Promise<NbdServer> {
  if (probe.unix) fs.rmSync(probe.unix, { force: true });
  trace(`start ${cmd} ${args.join(' ')}`);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d) => (err += d));
  const s: NbdServer = { child, args: [cmd, ...args], addr };
  servers.push(s);
  const ok = async () =>
    new Promise<boolean>((res) => {
      const c = probe.unix ? net.connect(probe.unix) : net.connect(probe.port!, '127.0.0.1');
      c.once('connect', () => (c.destroy(), res(true)));
      c.once('error', () => res(false));
    });
  const end = Date.now() + 30_000;
  while (!(await ok())) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited ${child.exitCode}: ${err}`);
    if (Date.now() > end) throw new Error(`${cmd} did not listen within 30 s: ${err}`);
    await sleep(100);
  }
  return s;
}

function stopServer(s: NbdServer, sig: NodeJS.Signals = 'SIGTERM'): void {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill(sig);
  // a server that ignores the signal must not keep this test file's process alive
  s.child.stderr?.destroy();
  s.child.unref();
}

/** nbdkit with `plugin` = [plugin, its args and the filters' key=value args]; `extra` = nbdkit's own flags. */
async function nbdkit(name: string, plugin: string[], opts: { tcp?: boolean; filters?: string[]; extra?: string[] } = {}): Promise<NbdServer> {
  const base = ['--foreground', '--exit-with-parent', ...(opts.filters ?? []).map((f) => `--filter=${f}`), ...(opts.extra ?? [])];
  if (opts.tcp) {
    const port = nextPort++;
    return startServer('nbdkit', [...base, '-i', '127.0.0.1', '-p', String(port), ...plugin], ['--host', '127.0.0.1', '--port', String(port)], { port });
  }
  const sock = socketPath(name);
  return startServer('nbdkit', [...base, '-U', sock, ...plugin], ['--unix', sock], { unix: sock });
}

const MODES: Array<{ name: string; args: string[] }> = [
  { name: 'copy', args: [] },
  { name: 'zero copy (auto)', args: ['-z'] },
  { name: 'zero copy (explicit)', args: ['-z', '--zc-mode', 'explicit'] },
  { name: 'copy, writes sent with SEND_ZC', args: ['--send_zc'] },
];

function fioVerify(id: number): void {
  const out = fio(`/dev/ublkb${id}`, verifyJobs());
  for (const j of out.jobs) assert.equal(j.error, 0, `${j.jobname} reported error ${j.error}`);
}

describe('nbd: data through every mode, unix socket and TCP, 1 and 4 queues', () => {
  // zero copy and SEND_ZC need TCP (a unix socket refuses SEND_ZC: the bad-input test below)
  for (const [mode, tcp] of [[MODES[0], false] as const, ...MODES.map((m) => [m, true] as const)]) {
    test(`${mode.name}, ${tcp ? 'TCP 127.0.0.1' : 'unix socket'}, nbdkit memory: fio crc32c verify`, async () => {
      const srv = await nbdkit(`mem${tcp ? '-tcp' : ''}-${mode.args.join('')}`, ['memory', '64M'], { tcp });
      const id = addDevice(['-t', 'nbd', ...srv.addr, ...mode.args]);
      try {
        const listed = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout)[0];
        assert.equal(listed.target.name, 'nbd');
        assert.equal(listed.target.dev_size, 64 << 20);
        assert.equal(listed.target.server, tcp ? `127.0.0.1:${srv.addr[3]}` : srv.addr[1]);
        fioVerify(id);
      } finally {
        delDevice(id);
        stopServer(srv);
      }
    });
  }
  for (const mode of [MODES[0], MODES[1]]) {
    test(`${mode.name}, TCP 127.0.0.1, 4 queues (one connection each): fio crc32c verify`, async () => {
      const srv = await nbdkit('mem-tcp', ['memory', '64M'], { tcp: true });
      const id = addDevice(['-t', 'nbd', ...srv.addr, '-q', '4', '-d', '32', ...mode.args]);
      try {
        const listed = JSON.parse(cli(['list', '-n', String(id), '--json']).stdout)[0];
        assert.equal(listed.target.connections, listed.nr_hw_queues, 'one connection per queue');
        fioVerify(id);
      } finally {
        delDevice(id);
        stopServer(srv);
      }
    });
  }

  test('a server without multi-connection: one queue, and add says why', async () => {
    const srv = await nbdkit('single', ['memory', '16M', 'multi-conn-mode=disable'], { filters: ['multi-conn'] });
    const r = cli(['add', '-t', 'nbd', ...srv.addr, '-q', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /note: the server does not allow several connections \(no NBD_FLAG_CAN_MULTI_CONN\): one queue, not 2/);
    const id = Number(/^dev id (\d+):/m.exec(r.stdout)![1]);
    assert.match(r.stdout, /nr_hw_queues 1 /);
    fioVerify(id);
    delDevice(id);
    stopServer(srv);
  });
});

describe('nbd: a filesystem on qemu-nbd (qcow2), discard and write-zeroes reaching the server', () => {
  test('qemu-nbd over a qcow2 image: mkfs.ext4, a file tree, umount, fsck clean', async () => {
    const img = path.join(workDir(), 'nbd-fs.qcow2');
    fs.rmSync(img, { force: true });
    sh(`qemu-img create -q -f qcow2 ${img} 256M`);
    // TCP: -z sends with SEND_ZC, which unix sockets refuse
    const port = nextPort++;
    const srv = await startServer('qemu-nbd', ['-b', '127.0.0.1', '-p', String(port), '-f', 'qcow2', '--persistent', '--shared=8', '--cache=none', img],
      ['--host', '127.0.0.1', '--port', String(port)], { port });
    const id = addDevice(['-t', 'nbd', ...srv.addr, '-z']);
    const mnt = path.join(workDir(), 'nbd-mnt');
    fs.mkdirSync(mnt, { recursive: true });
    try {
      sh(`mkfs.ext4 -q -F /dev/ublkb${id} && mount /dev/ublkb${id} ${mnt}`);
      sh(`for d in a b c; do mkdir -p ${mnt}/$d; for i in 1 2 3 4 5; do head -c $((i * 70000)) /dev/urandom > ${mnt}/$d/f$i; done; done`);
      const sums = sh(`cd ${mnt} && find . -type f | sort | xargs sha256sum`);
      sh(`umount ${mnt} && mount /dev/ublkb${id} ${mnt}`);
      assert.equal(sh(`cd ${mnt} && find . -type f | sort | xargs sha256sum`), sums, 'the files read back the same');
      sh(`umount ${mnt}`);
      const f = shResult(`fsck.ext4 -fn /dev/ublkb${id}`);
      assert.equal(f.code, 0, f.stdout + f.stderr);
    } finally {
      shResult(`umount ${mnt} 2>/dev/null`);
      delDevice(id);
      stopServer(srv);
    }
  });

  test('discard punches the server file, write-zeroes zeroes it (nbdkit file)', async () => {
    const file = makeBacking('nbd-trim.img', 16, 'random');
    const srv = await nbdkit('file', ['file', `file=${file}`]);
    const id = addDevice(['-t', 'nbd', ...srv.addr]);
    try {
      const zero = (off: number, len: number) => fs.readFileSync(file).subarray(off, off + len).every((b) => b === 0);
      assert.ok(!zero(1 << 20, 1 << 20), 'random to begin with');
      sh(`blkdiscard -o ${1 << 20} -l ${1 << 20} /dev/ublkb${id} && sync`);
      assert.ok(zero(1 << 20, 1 << 20), 'the discarded MiB reads as zeros in the server file');
      assert.ok(!zero(4 << 20, 1 << 20));
      sh(`blkdiscard -z -o ${4 << 20} -l ${1 << 20} /dev/ublkb${id} && sync`);
      assert.ok(zero(4 << 20, 1 << 20), 'the written-zeroes MiB reads as zeros in the server file');
      assert.ok(!zero(8 << 20, 1 << 20), 'the rest is untouched');
    } finally {
      delDevice(id);
      stopServer(srv);
    }
  });
});

describe('nbd: when the server goes away', () => {
  const verifyOpts = (filename: string) => ({
    name: 'nbd-verify', filename, ioengine: 'io_uring', direct: 1, rw: 'randwrite', bs: '4k', iodepth: 16, size: '16M',
    verify: 'crc32c', verify_fatal: 1, do_verify: 1, loops: 3,
  });

  test('-r 1 -i 1: nbdkit killed and started again under fio verify; I/O waits, resumes, nothing lost', async () => {
    const file = makeBacking('nbd-reconnect.img', 64);
    const port = nextPort++;
    const args = ['--foreground', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), 'file', `file=${file}`];
    let srv = await startServer('nbdkit', args, ['--host', '127.0.0.1', '--port', String(port)], { port });
    const store = inProcessStore();
    const ds = await addInProcess({ target: 'nbd', host: '127.0.0.1', port: String(port), recovery: '1', recoveryReissue: '1', reconnectTimeout: '60' }, store);
    try {
      const f = fioBackground(verifyOpts(`/dev/ublkb${ds.devId}`));
      await waitForIo(ds.devId, 500, 120_000);
      stopServer(srv, 'SIGKILL');
      await sleep(2000);
      assert.equal(await kernelState(ds.devId), STATE.LIVE, 'the disk stays LIVE while the server is away');
      srv = await startServer('nbdkit', args, srv.addr, { port });
      const r = await within(f.done, 240_000);
      assert.ok(r, 'fio finished');
      for (const j of fioJobs(r)) assert.equal(j.error, 0, `${j.name}: error ${j.error}`);
      const reconnects = ds.stats().reduce((n, q) => n + (q.target.reconnects ?? 0), 0);
      assert.ok(reconnects >= 1, `the queue reconnected (${reconnects})`);
    } finally {
      await ds.stop().catch(() => undefined);
      stopServer(srv);
      fs.rmSync(store.dir, { recursive: true, force: true });
    }
  });

  test('without -r 1: nbdkit killed under fio; fio gets errors at once, the disk goes, nothing left', async () => {
    const srv = await nbdkit('die', ['memory', '64M']);
    const id = addDevice(['-t', 'nbd', ...srv.addr]);
    const f = fioBackground({ ...verifyOpts(`/dev/ublkb${id}`), continue_on_error: 'none' });
    await waitForIo(id, 200, 120_000);
    const t0 = Date.now();
    stopServer(srv, 'SIGKILL');
    const r = await within(f.done, 60_000);
    assert.ok(r, 'fio ended instead of hanging');
    assert.notEqual(r.code, 0, 'fio saw errors');
    trace(`fio ended ${Date.now() - t0} ms after the server died`);
    await waitFor(() => !fs.existsSync(`/dev/ublkb${id}`), 60_000, 'the disk to go');
    cli(['del', '-n', String(id)]);
    assertClean('after the NBD server died');
  });

  test('-r 1, the server never comes back: given up after --reconnect-timeout, the disk waits QUIESCED for recover', async () => {
    const srv = await nbdkit('gone', ['memory', '16M'], { tcp: true });
    const id = addDevice(['-t', 'nbd', ...srv.addr, '-r', '1', '--reconnect-timeout', '3']);
    stopServer(srv, 'SIGKILL');
    // no I/O needed: the receive loop sees the connection end
    assert.equal(await waitState(id, [STATE.QUIESCED], 60_000), STATE.QUIESCED);
    assert.equal(cli(['del', '-n', String(id)]).code, 0);
    assertClean('after giving up');
  });

  test('a server that stops answering: --io-timeout ends the connection, I/O fails, nothing hangs', async () => {
    // every read stalls, the partition scan's first: the queue fails while START_DEV waits for
    // that scan, and add fails with the reason instead of leaving a disk nobody serves
    const srv = await nbdkit('stall', ['memory', '16M', 'rdelay=120'], { filters: ['delay'] });
    const t0 = Date.now();
    const r = await cliAsync(['add', '-t', 'nbd', ...srv.addr, '--io-timeout', '2'], { timeoutMs: 90_000 });
    // The queue's failure reaches JavaScript as an event that may come before or after START_DEV's
    // answer: add fails with the reason, or the disk goes right after it was LIVE (then add's own
    // listing finds it gone, or add returned first). Either way nothing stays.
    if (r.code !== 0) assert.match(r.stderr, /no reply to a request within 2 s|device \d+ does not exist/, r.stderr);
    await waitFor(() => !fs.readdirSync('/dev').some((f) => /^ublkb\d+$/.test(f)), 60_000, 'the disk to go');
    cli(['del', '-a']);
    assert.ok(Date.now() - t0 < 60_000, `within a minute (${Date.now() - t0} ms)`);
    stopServer(srv);
    assertClean('after the timeout');
  });
});

describe('nbd: bad input is one clear line, exit 2, nothing left behind', () => {
  /** A TCP server that greets with something else, or hangs up. */
  async function fakeServer(onConn: (s: net.Socket) => void): Promise<{ port: number; close: () => void }> {
    const conns = new Set<net.Socket>();
    const server = net.createServer((s) => {
      conns.add(s);
      s.on('close', () => conns.delete(s));
      s.on('error', () => undefined);  // the client hangs up on a bad greeting (ECONNRESET)
      onConn(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as net.AddressInfo).port,
      close: () => {
        for (const c of conns) c.destroy();
        server.close();
      },
    };
  }

  test('unknown export, refused option, not NBD, closed during the handshake, odd size, no server', async () => {
    const strict = await nbdkit('strict', ['memory', '16M', 'exportname=disk', 'exportname-strict=true'], { filters: ['exportname'] });
    const tls = await nbdkit('tls', ['memory', '16M'], { extra: ['--tls=require', `--tls-psk=${path.join(workDir(), 'nonexistent.psk')}`] }).catch(() => undefined);
    const odd = await nbdkit('odd', ['memory', '1000']);
    const garbage = await fakeServer((s) => s.end('HELLO, this is not NBD\r\n'));
    const hangup = await fakeServer((s) => s.destroy());
    const cases: Array<[string, string[], RegExp]> = [
      ['unknown export', [...strict.addr, '--name', 'nope'], /unknown export/],
      ['not NBD', ['--host', '127.0.0.1', '--port', String(garbage.port)], /not an NBD server/],
      ['closed during the handshake', ['--host', '127.0.0.1', '--port', String(hangup.port)], /closed the connection/],
      ['odd size', [...odd.addr], /is not a multiple of the block size 512/],
      ['no server', ['--unix', socketPath('nobody')], /No such file or directory|Connection refused/],
      ['host and unix', ['--host', 'x', '--unix', '/y'], /--host and --unix cannot be used together/],
      ['neither', [], /-t nbd needs --host HOST or --unix SOCKET/],
      ['user copy', [...odd.addr, '--usercopy'], /the nbd target cannot use user copy/],
      ['zero copy on a unix socket', [...odd.addr, '-z'], /with --unix: a unix socket cannot send from pinned pages/],
    ];
    if (tls) cases.push(['refused option (TLS required)', [...tls.addr], /TLS required|refused/]);
    try {
      for (const [name, args, want] of cases) {
        // async: the fake servers answer from this process
        const r = await cliAsync(['add', '-t', 'nbd', ...args]);
        trace(`nbd bad input "${name}": ${r.stderr.trim()}`);
        assert.equal(r.code, 2, `${name}: exit 2, got ${r.code}: ${r.stderr}`);
        assert.match(r.stderr, want, name);
        assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: one line`);
      }
    } finally {
      for (const s of [strict, tls, odd]) if (s) stopServer(s);
      garbage.close();
      hangup.close();
    }
    assertClean('after the bad input');
  });
});
