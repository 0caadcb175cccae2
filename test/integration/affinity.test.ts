// Where queue threads run. The block layer sends the I/O submitted on a CPU to the hardware queue
// that CPU maps to (/sys/block/ublkbN/mq/Q/cpu_list, the kernel's map, which GET_QUEUE_AFFINITY
// reports); each queue thread is bound to one of its queue's CPUs by default (--affinity cpu, as
// ublksrv does), to all of them with --affinity queue, and left to the scheduler with --affinity
// none. `list` shows the binding in ublksrv's layout, `queue Q: tid T affinity(C )`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { requireKernel } from './kernel-gate';
import { addDevice, cli, delAll, delDevice, makeBacking, sh } from './helpers';
import { serverPid } from './fault-helpers';
import { cpusAllowed, queueCpus, queueThreadsOf } from './threads';

before(() => requireKernel());
after(() => delAll());

/** The CPUs this test process may use; a detached server inherits them. */
function ownCpus(): number[] {
  return cpusAllowed(process.pid, process.pid);
}

/** Each queue thread of device `id`, by name, with the CPUs it may run on. */
async function bindings(id: number): Promise<Map<string, number[]>> {
  const pid = await serverPid(id);
  return new Map(queueThreadsOf(pid, id).map((t) => [t.name, cpusAllowed(pid, t.tid)]));
}

test('default (--affinity cpu): each queue thread bound to one CPU of its queue; list shows it', async () => {
  const nq = Math.min(2, ownCpus().length);
  const id = addDevice(['-t', 'null', '-q', String(nq), '--size', '64M']);
  try {
    const b = await bindings(id);
    const listed = cli(['list', '-n', String(id)]).stdout;
    for (let q = 0; q < nq; q++) {
      const cpus = b.get(`ublk${id}-q${q}`);
      assert.ok(cpus, `no thread ublk${id}-q${q}: ${JSON.stringify([...b.keys()])}`);
      assert.equal(cpus.length, 1, `queue ${q} thread may run on ${cpus.join(',')}`);
      assert.ok(queueCpus(id, q).includes(cpus[0]), `queue ${q} thread on CPU ${cpus[0]}, the queue's CPUs are ${queueCpus(id, q)}`);
      assert.match(listed, new RegExp(`queue ${q}: tid \\d+ affinity\\(${cpus[0]} \\)`), listed);
    }
    // and it serves I/O from every CPU (each CPU's I/O goes to its own queue's thread)
    for (const cpu of ownCpus()) sh(`taskset -c ${cpu} dd if=/dev/ublkb${id} of=/dev/null bs=4k count=16 iflag=direct status=none`);
  } finally {
    delDevice(id);
  }
});

test('--threads-per-queue 2: the two threads of one queue are bound to different CPUs', async (t) => {
  const file = makeBacking('affinity.img', 16);
  const id = addDevice(['-t', 'loop', '-f', file, '-z', '--threads-per-queue', '2']);
  try {
    const mapped = queueCpus(id, 0);
    const b = await bindings(id);
    const a0 = b.get(`ublk${id}-q0.0`);
    const a1 = b.get(`ublk${id}-q0.1`);
    assert.ok(a0 && a1, JSON.stringify([...b.keys()]));
    assert.equal(a0.length, 1);
    assert.equal(a1.length, 1);
    assert.ok(mapped.includes(a0[0]) && mapped.includes(a1[0]), `${a0} ${a1} not in ${mapped}`);
    if (mapped.length < 2) t.diagnostic(`queue 0 maps to one CPU only (${mapped}): both threads share it`);
    else assert.notEqual(a0[0], a1[0], 'both threads on one CPU while the queue has two');
    sh(`dd if=/dev/urandom of=/dev/ublkb${id} bs=64k count=64 oflag=direct status=none`);
  } finally {
    delDevice(id);
  }
});

test('--affinity queue binds to all of the queue\'s CPUs; --affinity none leaves the threads alone', async () => {
  const nq = Math.min(2, ownCpus().length);
  const id = addDevice(['-t', 'null', '-q', String(nq), '--size', '64M', '--affinity', 'queue']);
  try {
    const b = await bindings(id);
    for (let q = 0; q < nq; q++) assert.deepEqual(b.get(`ublk${id}-q${q}`), queueCpus(id, q), `queue ${q}`);
  } finally {
    delDevice(id);
  }
  const id2 = addDevice(['-t', 'null', '--size', '64M', '--affinity', 'none']);
  try {
    assert.deepEqual((await bindings(id2)).get(`ublk${id2}-q0`), ownCpus());
    const listed = cli(['list', '-n', String(id2)]).stdout;
    assert.match(listed, new RegExp(`queue 0: tid \\d+ affinity\\(${ownCpus().map((c) => `${c} `).join('')}\\)`), listed);
  } finally {
    delDevice(id2);
  }
});

test('--affinity with a bad value: refused before any device exists', () => {
  const before = fs.readdirSync('/dev').filter((n) => n.startsWith('ublkc')).sort();
  const r = cli(['add', '-t', 'null', '--affinity', 'everywhere']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--affinity must be cpu, queue or none, not "everywhere"/);
  assert.deepEqual(fs.readdirSync('/dev').filter((n) => n.startsWith('ublkc')).sort(), before);
});
