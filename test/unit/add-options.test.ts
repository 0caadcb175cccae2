import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { validateAddOptions } from '../../daemon/spec';
import { UsageError } from '../../shared/errors';
import type { RawOptions } from '../../shared/options';

const env = { source: 'cli' as const, cwd: '/work' };
const fromFile = { source: 'file' as const, cwd: '/work' };

function problems(raw: RawOptions): string[] {
  try {
    validateAddOptions(raw, env);
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    return err.problems;
  }
  return [];
}

test('defaults', () => {
  const s = validateAddOptions({ target: 'null' }, env);
  assert.deepEqual(s, {
    target: { kind: 'null', size: 250 * 2 ** 30 },
    id: -1,
    queues: 1,
    depth: 128,
    logicalBlockSize: 512,
    maxIoBufBytes: 524288,
    zeroCopy: 'off',
    userCopy: false,
    batchIo: false,
    threadsPerQueue: 1,
    affinity: 'cpu',
    busyPoll: 0,
    recovery: false,
    recoveryReissue: false,
    recoveryFailIo: false,
    readOnly: false,
    ioScheduler: 'none',
    shared: false,
  });
});

test('a full loop spec; relative file made absolute', () => {
  const s = validateAddOptions(
    {
      target: 'loop',
      file: 'disk.img',
      id: '3',
      queues: '4',
      depth: '256',
      logicalBlockSize: '4096',
      zeroCopy: true,
      zcMode: 'explicit',
      batchIo: true,
      maxIoBufBytes: '1M',
      offset: '8',
      size: '1G',
      recovery: '1',
      recoveryReissue: '1',
      readOnly: true,
    },
    env,
  );
  assert.deepEqual(s.target, { kind: 'loop', file: '/work/disk.img', bufferedIo: false, offset: 8, size: 1 << 30, writeSubmit: 'auto', mtimeStamp: 'on' });
  assert.equal(s.id, 3);
  assert.equal(s.queues, 4);
  assert.equal(s.depth, 256);
  assert.equal(s.logicalBlockSize, 4096);
  assert.equal(s.zeroCopy, 'explicit');
  assert.equal(s.batchIo, true);
  assert.equal(s.maxIoBufBytes, 1 << 20);
  assert.equal(s.recovery, true);
  assert.equal(s.recoveryReissue, true);
  assert.equal(s.readOnly, true);
});

test('--threads-per-queue: 1 up to the depth (at most 64), not with --batch-io', () => {
  assert.equal(validateAddOptions({ target: 'null', threadsPerQueue: '2' }, env).threadsPerQueue, 2);
  assert.equal(validateAddOptions({ target: 'null', depth: '4', threadsPerQueue: 4 }, env).threadsPerQueue, 4);
  assert.deepEqual(problems({ target: 'null', depth: '4', threadsPerQueue: '5' }), [
    '--threads-per-queue must be a whole number from 1 to 4, not "5"',
  ]);
  assert.deepEqual(problems({ target: 'null', threadsPerQueue: '65' }), [
    '--threads-per-queue must be a whole number from 1 to 64, not "65"',
  ]);
  assert.deepEqual(problems({ target: 'null', threadsPerQueue: '0' }), [
    '--threads-per-queue must be a whole number from 1 to 64, not "0"',
  ]);
  assert.deepEqual(problems({ target: 'null', threadsPerQueue: '2', batchIo: true }), [
    '--threads-per-queue above 1 cannot be used with --batch-io',
  ]);
  // one thread and batch I/O go together
  assert.equal(validateAddOptions({ target: 'null', threadsPerQueue: '1', batchIo: true }, env).batchIo, true);
});

test('--busy-poll: µs from 0 (default, off) to 100000', () => {
  assert.equal(validateAddOptions({ target: 'null' }, env).busyPoll, 0);
  assert.equal(validateAddOptions({ target: 'null', busyPoll: '200' }, env).busyPoll, 200);
  assert.deepEqual(problems({ target: 'null', busyPoll: 100001 }), ['--busy-poll must be a whole number from 0 to 100000, not 100001']);
  assert.deepEqual(problems({ target: 'null', busyPoll: -1 }), ['--busy-poll must be a whole number from 0 to 100000, not -1']);
});

test('--affinity: cpu (default), queue or none', () => {
  assert.equal(validateAddOptions({ target: 'null' }, env).affinity, 'cpu');
  assert.equal(validateAddOptions({ target: 'null', affinity: 'queue' }, env).affinity, 'queue');
  assert.equal(validateAddOptions({ target: 'null', affinity: 'none' }, env).affinity, 'none');
  assert.deepEqual(problems({ target: 'null', affinity: 'all' }), ['--affinity must be cpu, queue or none, not "all"']);
  assert.deepEqual(problems({ target: 'null', affinity: 1 }), ['--affinity must be cpu, queue or none, not 1']);
});

test('values from a config file (JSON values) are accepted; strings where numbers belong are not', () => {
  const s = validateAddOptions({ target: 'null', queues: 2, depth: 64, size: '1M', recovery: true, zeroCopy: 'explicit' }, fromFile);
  assert.equal(s.queues, 2);
  assert.equal(s.depth, 64);
  assert.equal(s.target.size, 1048576);
  assert.equal(s.recovery, true);
  assert.equal(s.zeroCopy, 'explicit');
  assert.throws(() => validateAddOptions({ target: 'null', queues: '2' }, { ...fromFile, label: (k) => `devices[0].${k}` }), (e: Error) =>
    e.message === 'devices[0].queues must be a whole number from 1 to 64, not "2"');
});

test('-i 1 / -e 1 imply -r 1, as in ublksrv', () => {
  assert.equal(validateAddOptions({ target: 'null', recoveryReissue: '1' }, env).recovery, true);
  assert.equal(validateAddOptions({ target: 'null', recoveryFailIo: '1' }, env).recovery, true);
});

const cases: Array<[string, RawOptions, string]> = [
  ['type missing', {}, '-t/--type is required (loop, null, nbd or js)'],
  ['type unknown', { target: 'qcow2' }, '-t/--type must be loop, null, nbd or js, not "qcow2"'],
  ['loop without file', { target: 'loop' }, '-t loop needs -f/--file FILE'],
  ['file with null', { target: 'null', file: 'x' }, '-f/--file is only for -t loop'],
  ['offset with null', { target: 'null', offset: '8' }, '-o/--offset is only for -t loop'],
  ['buffered_io with null', { target: 'null', bufferedIo: true }, '--buffered_io is only for -t loop'],
  ['number junk', { target: 'null', id: '12abc' }, '-n/--number must be a whole number from -1 to 1048575, not "12abc"'],
  ['number too low', { target: 'null', id: '-2' }, '-n/--number must be a whole number from -1 to 1048575, not "-2"'],
  ['queues 0', { target: 'null', queues: '0' }, '-q/--queues must be a whole number from 1 to 64, not "0"'],
  ['queues 65', { target: 'null', queues: '65' }, '-q/--queues must be a whole number from 1 to 64, not "65"'],
  ['queues junk', { target: 'null', queues: '12abc' }, '-q/--queues must be a whole number from 1 to 64, not "12abc"'],
  ['queues fraction', { target: 'null', queues: '1.5' }, '-q/--queues must be a whole number from 1 to 64, not "1.5"'],
  ['depth 0', { target: 'null', depth: '0' }, '-d/--depth must be a whole number from 1 to 4096, not "0"'],
  ['depth 4097', { target: 'null', depth: '4097' }, '-d/--depth must be a whole number from 1 to 4096, not "4097"'],
  ['lbs 513', { target: 'null', logicalBlockSize: '513' }, '-b/--logical-block-size must be 512, 1024, 2048 or 4096, not "513"'],
  ['lbs 8192', { target: 'null', logicalBlockSize: '8192' }, '-b/--logical-block-size must be 512, 1024, 2048 or 4096, not "8192"'],
  [
    'max_io_buf_bytes unaligned',
    { target: 'null', maxIoBufBytes: '5000' },
    '--max_io_buf_bytes must be a multiple of 4096 from 4096 to 33554432 (32 MiB), not "5000"',
  ],
  [
    'max_io_buf_bytes too big',
    { target: 'null', maxIoBufBytes: '64M' },
    '--max_io_buf_bytes must be a multiple of 4096 from 4096 to 33554432 (32 MiB), not "64M"',
  ],
  ['zc-mode bad', { target: 'null', zeroCopy: true, zcMode: 'fast' }, '--zc-mode must be auto or explicit, not "fast"'],
  ['zc-mode without -z', { target: 'null', zcMode: 'explicit' }, '--zc-mode needs -z/--zerocopy'],
  ['-z with --usercopy', { target: 'null', zeroCopy: true, userCopy: true }, '-z/--zerocopy and --usercopy cannot be used together'],
  ['-r 2', { target: 'null', recovery: '2' }, '-r/--recovery must be 0 or 1, not "2"'],
  ['-i x', { target: 'null', recoveryReissue: 'x' }, '-i/--recovery-reissue must be 0 or 1, not "x"'],
  [
    '-i 1 -e 1',
    { target: 'null', recoveryReissue: '1', recoveryFailIo: '1' },
    '-i/--recovery-reissue and -e/--recovery-fail-io cannot both be 1',
  ],
  ['-r 0 -i 1', { target: 'null', recovery: '0', recoveryReissue: '1' }, '-i/--recovery-reissue 1 needs -r/--recovery 1'],
  ['-r 0 -e 1', { target: 'null', recovery: '0', recoveryFailIo: '1' }, '-e/--recovery-fail-io 1 needs -r/--recovery 1'],
  ['offset junk', { target: 'loop', file: 'f', offset: '8s' }, '-o/--offset must be a whole number of 512-byte sectors, not "8s"'],
  [
    'offset unaligned for O_DIRECT',
    { target: 'loop', file: 'f', offset: '1', logicalBlockSize: '4096' },
    '-o/--offset 1 sectors (512 bytes) is not a multiple of the logical block size 4096; align it or use --buffered_io',
  ],
  [
    'size junk',
    { target: 'null', size: '12abc' },
    '--size must be a whole number of bytes greater than 0 (K, M, G, T suffixes allowed), not "12abc"',
  ],
  [
    'size 0',
    { target: 'null', size: '0' },
    '--size must be a whole number of bytes greater than 0 (K, M, G, T suffixes allowed), not "0"',
  ],
  ['size unaligned', { target: 'null', size: '1000' }, '--size 1000 is not a multiple of the logical block size 512'],
  ['switch with a value', { target: 'null', readOnly: 'yes' }, '--read-only is a switch and takes no value, not "yes"'],
  ['unknown key (config file)', { target: 'null', colour: 'blue' }, 'unknown option "colour"'],
  [
    'io-scheduler not a name',
    { target: 'null', ioScheduler: '../x' },
    '--io-scheduler must be a scheduler name (none, mq-deadline, kyber, bfq) or kernel, not "../x"',
  ],
];

for (const [name, raw, message] of cases) {
  test(`validation: ${name}`, () => {
    assert.deepEqual(problems(raw), [message]);
  });
}

test('every problem is reported at once', () => {
  const p = problems({ target: 'loop', queues: '0', depth: 'x', zeroCopy: true, userCopy: true });
  assert.deepEqual(p, [
    '-q/--queues must be a whole number from 1 to 64, not "0"',
    '-d/--depth must be a whole number from 1 to 4096, not "x"',
    '-z/--zerocopy and --usercopy cannot be used together',
    '-t loop needs -f/--file FILE',
  ]);
});

test('unaligned offset is fine with --buffered_io', () => {
  const s = validateAddOptions({ target: 'loop', file: 'f', offset: '1', logicalBlockSize: '4096', bufferedIo: true }, env);
  assert.equal(s.target.offset, 1);
});

test('UsageError message joins the problems on one line', () => {
  assert.throws(
    () => validateAddOptions({ queues: '0' }, env),
    (err: Error) => err.message === '-t/--type is required (loop, null, nbd or js); -q/--queues must be a whole number from 1 to 64, not "0"',
  );
});
