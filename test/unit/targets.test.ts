import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { validateAddOptions, type AddSpec } from '../../daemon/spec';
import { realFs, type FileFacts, type TargetDescription, type TargetFs } from '../../shared/target';
import { UsageError } from '../../shared/errors';
import type { RawOptions } from '../../shared/options';
import { loopTarget } from '../../targets/loop';
import { nullTarget } from '../../targets/null';

type RawAddOptions = RawOptions;

interface FakeFile extends Partial<FileFacts> {
  openRw?: string;
  openRo?: string;
  statError?: string;
}

function fakeFs(files: Record<string, FakeFile>, sys: Record<string, string> = {}): TargetFs {
  return {
    stat(p) {
      const f = files[p];
      if (!f) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      if (f.statError) throw Object.assign(new Error(f.statError), { code: f.statError });
      return { kind: f.kind ?? 'file', size: f.size ?? 0, major: f.major ?? 0, minor: f.minor ?? 0, fsMajor: f.fsMajor ?? 0, fsMinor: f.fsMinor ?? 0 };
    },
    tryOpen(p, writable) {
      const f = files[p];
      return writable ? f?.openRw : f?.openRo;
    },
    readText(p) {
      return sys[p];
    },
  };
}

const spec = (raw: RawAddOptions) => validateAddOptions({ target: 'loop', ...raw }, { source: 'cli', cwd: '/' });
// the descriptor's calls, with the spec's target part and common part split as the daemon does
const loop = {
  validate: (s: AddSpec, fsx: TargetFs) => loopTarget.validate(s.target as never, s, fsx),
  describe: (s: AddSpec, fsx: TargetFs) => loopTarget.describe(s.target as never, s, { fs: fsx }) as TargetDescription,
};

const MiB = 1 << 20;

const loopCases: Array<[string, RawAddOptions, Record<string, FakeFile>, string]> = [
  ['missing', { file: '/x.img' }, {}, '-f /x.img: no such file or directory'],
  ['stat fails', { file: '/x.img' }, { '/x.img': { statError: 'EACCES' } }, '-f /x.img: cannot stat (EACCES)'],
  ['directory', { file: '/d' }, { '/d': { kind: 'directory' } }, '-f /d: is a directory'],
  ['char device', { file: '/dev/null' }, { '/dev/null': { kind: 'other' } }, '-f /dev/null: not a regular file or block device'],
  ['unreadable', { file: '/x.img' }, { '/x.img': { size: MiB, openRw: 'EACCES', openRo: 'EACCES' } }, '-f /x.img: cannot open for reading (EACCES)'],
  ['unreadable, --read-only', { file: '/x.img', readOnly: true }, { '/x.img': { size: MiB, openRo: 'EACCES' } }, '-f /x.img: cannot open for reading (EACCES)'],
  ['empty', { file: '/x.img' }, { '/x.img': { size: 0 } }, '-f /x.img: is empty'],
  [
    'size not a multiple of the block size',
    { file: '/x.img' },
    { '/x.img': { size: MiB + 100 } },
    '-f /x.img: 1048676 bytes (after the offset) is not a multiple of the logical block size 512; use --size to trim it',
  ],
  [
    'size after offset not a multiple of 4096',
    { file: '/x.img', offset: '8', logicalBlockSize: '4096' },
    { '/x.img': { size: MiB + 512 } },
    '-f /x.img: 1044992 bytes (after the offset) is not a multiple of the logical block size 4096; use --size to trim it',
  ],
  [
    'offset beyond the end',
    { file: '/x.img', offset: '2048' },
    { '/x.img': { size: MiB } },
    '--offset 2048 sectors (1048576 bytes) is at or beyond the end of /x.img (1048576 bytes)',
  ],
  [
    '--size larger than the file',
    { file: '/x.img', size: '2M' },
    { '/x.img': { size: MiB } },
    '--size 2097152 is larger than the 1048576 bytes of /x.img after the offset',
  ],
];

for (const [name, raw, files, message] of loopCases) {
  test(`loop validation: ${name}`, () => {
    assert.deepEqual(loop.validate(spec(raw), fakeFs(files)), [message]);
    assert.throws(() => loop.describe(spec(raw), fakeFs(files)), (e: Error) => e instanceof UsageError && e.message === message);
  });
}

test('loop: a file we may only read becomes a read-only disk, without discard', () => {
  const d = loop.describe(spec({ file: '/x.img' }), fakeFs({ '/x.img': { size: MiB, openRw: 'EROFS' } }));
  assert.equal(d.readOnly, true);
  assert.equal(d.readOnly, true);
  assert.equal(d.serve.options.readOnly, true);
  assert.equal(d.params.basic.attrs, 4 | 8 | 1);
  assert.equal(d.params.discard, undefined);
  assert.match(d.notes[0], /not writable \(EROFS\)/);
});

test('loop: params for a regular file', () => {
  const d = loop.describe(spec({ file: '/x.img', offset: '8', maxIoBufBytes: '1M' }), fakeFs({ '/x.img': { size: 8 * MiB } }));
  assert.deepEqual(d.params, {
    basic: {
      attrs: 4 | 8,
      logicalBsShift: 9,
      physicalBsShift: 12,
      ioOptShift: 12,
      ioMinShift: 9,
      maxSectors: 2048,
      chunkSectors: 0,
      devSectors: BigInt((8 * MiB - 4096) / 512),
      virtBoundaryMask: 0n,
    },
    discard: {
      discardAlignment: 0,
      discardGranularity: 4096,
      maxDiscardSectors: 0xffffffff >>> 9,
      maxWriteZeroesSectors: 0xffffffff >>> 9,
      maxDiscardSegments: 1,
    },
  });
  assert.deepEqual(d.serve, { name: 'loop', options: { path: '/x.img', directIo: true, readOnly: false, offset: 4096, writeSubmit: 'auto', mtimeStamp: true } });
  assert.equal(d.readOnly, false);
  assert.deepEqual(d.json, {
    name: 'loop',
    type: 0,
    backing_file: '/x.img',
    dev_size: 8 * MiB - 4096,
    direct_io: 1,
    offset: 8,
    read_only: 0,
  });
});

test('loop: zero copy adds dma alignment; --buffered_io turns direct I/O off; 4k blocks', () => {
  const d = loop.describe(
    spec({ file: '/x.img', zeroCopy: true, bufferedIo: true, logicalBlockSize: '4096', size: '1M' }),
    fakeFs({ '/x.img': { size: 8 * MiB } }),
  );
  assert.deepEqual(d.params.dma, { alignment: 511 });
  assert.equal(d.serve.options.directIo, false);
  assert.equal(d.params.basic.logicalBsShift, 12);
  assert.equal(d.params.basic.ioMinShift, 12);
  assert.equal(d.params.basic.physicalBsShift, 12);
  assert.equal(d.params.basic.devSectors, 2048n);
});

test('loop: block device size and limits come from sysfs by major:minor', () => {
  const files = { '/dev/sdb': { kind: 'block' as const, major: 8, minor: 16 } };
  const sys = {
    '/sys/dev/block/8:16/size': '2048\n',
    '/sys/dev/block/8:16/queue/logical_block_size': '512\n',
    '/sys/dev/block/8:16/queue/discard_max_bytes': '0\n',
  };
  const d = loop.describe(spec({ file: '/dev/sdb' }), fakeFs(files, sys));
  assert.equal(d.sizeBytes, MiB);
  assert.equal(d.params.basic.devSectors, 2048n);
  assert.equal(d.params.discard, undefined, 'no discard when the device has none');
  // a partition: queue/ lives in the parent
  const part = { '/dev/sdb1': { kind: 'block' as const, major: 8, minor: 17 } };
  const sys2 = {
    '/sys/dev/block/8:17/size': '2048\n',
    '/sys/dev/block/8:17/../queue/logical_block_size': '4096\n',
    '/sys/dev/block/8:17/../queue/discard_max_bytes': '4096\n',
  };
  assert.deepEqual(loop.validate(spec({ file: '/dev/sdb1' }), fakeFs(part, sys2)), [
    '-f /dev/sdb1: its logical block size is 4096, larger than 512; use -b 4096 or --buffered_io',
  ]);
  const d2 = loop.describe(spec({ file: '/dev/sdb1', logicalBlockSize: '4096' }), fakeFs(part, sys2));
  assert.ok(d2.params.discard);
});

test('loop: O_DIRECT needs of the device under a file: its block size is checked, zero copy gets its DMA alignment', () => {
  const files = { '/mnt/x.img': { size: 8 * MiB, fsMajor: 259, fsMinor: 3 } };
  const sys = { '/sys/dev/block/259:3/../queue/logical_block_size': '4096\n' };
  assert.deepEqual(loop.validate(spec({ file: '/mnt/x.img', zeroCopy: true }), fakeFs(files, sys)), [
    '-f /mnt/x.img (on device 259:3): its logical block size is 4096, larger than 512; use -b 4096 or --buffered_io',
  ]);
  const d = loop.describe(spec({ file: '/mnt/x.img', zeroCopy: true, logicalBlockSize: '4096' }), fakeFs(files, sys));
  assert.deepEqual(d.params.dma, { alignment: 4095 });
  // buffered I/O has no such need
  assert.deepEqual(loop.validate(spec({ file: '/mnt/x.img', bufferedIo: true }), fakeFs(files, sys)), []);
  // a device that asks for more than its block size
  const sys2 = { '/sys/dev/block/259:3/queue/logical_block_size': '512\n', '/sys/dev/block/259:3/queue/dma_alignment': '4095\n' };
  assert.deepEqual(loop.describe(spec({ file: '/mnt/x.img', zeroCopy: true }), fakeFs(files, sys2)).params.dma, { alignment: 4095 });
  // tmpfs and friends (no device): 511
  assert.deepEqual(loop.describe(spec({ file: '/mnt/x.img', zeroCopy: true }), fakeFs({ '/mnt/x.img': { size: MiB } })).params.dma, { alignment: 511 });
});

test('loop: block device without a readable size', () => {
  const files = { '/dev/sdb': { kind: 'block' as const, major: 8, minor: 16 } };
  assert.deepEqual(loop.validate(spec({ file: '/dev/sdb' }), fakeFs(files)), [
    '-f /dev/sdb: cannot read its size from /sys/dev/block/8:16/size',
  ]);
});

test('loop: the real file system', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-target-'));
  try {
    const img = path.join(dir, 'a.img');
    fs.writeFileSync(img, Buffer.alloc(64 * 1024));
    const d = loop.describe(spec({ file: img }), realFs);
    assert.equal(d.sizeBytes, 64 * 1024);
    assert.deepEqual(loop.validate(spec({ file: dir }), realFs), [`-f ${dir}: is a directory`]);
    const st = realFs.stat('/dev/null');
    assert.equal(st.kind, 'other');
    assert.equal(st.major, 1);
    assert.equal(st.minor, 3);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('null: 250 GiB by default, --size honoured, read-only attr', () => {
  const describe = (s: AddSpec) => nullTarget.describe(s.target as never, s) as TargetDescription;
  const d = describe(validateAddOptions({ target: 'null' }, { source: 'cli', cwd: '/' }));
  assert.equal(d.sizeBytes, 250 * 1024 ** 3);
  assert.equal(d.params.basic.devSectors, BigInt(250 * 1024 ** 3) / 512n);
  assert.equal(d.params.basic.attrs, 4);
  assert.equal(d.params.discard, undefined);
  assert.deepEqual(d.serve, { name: 'null', options: {} });
  assert.equal(d.readOnly, false);
  assert.deepEqual(d.json, { name: 'null', type: 0, dev_size: 250 * 1024 ** 3 });
  const d2 = describe(validateAddOptions({ target: 'null', size: '1G', readOnly: true, logicalBlockSize: '4096' }, { source: 'cli', cwd: '/' }));
  assert.equal(d2.sizeBytes, 1024 ** 3);
  assert.equal(d2.params.basic.attrs, 5);
  assert.equal(d2.params.basic.logicalBsShift, 12);
});
