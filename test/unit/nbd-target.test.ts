// The nbd target's descriptor with a fake probe: what the server says becomes the disk (size,
// read-only, block sizes, largest request, flush / FUA / discard / write-zeroes, one queue without
// multi-connection), and every bad answer is one clear usage error.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { validateAddOptions, type AddSpec } from '../../daemon/spec';
import { UsageError } from '../../shared/errors';
import { ATTR } from '../../shared/kernel';
import type { TargetDescription } from '../../shared/target';
import { nbdTarget, type NbdFacts } from '../../targets/nbd';

const TX = { READ_ONLY: 2, SEND_FLUSH: 4, SEND_FUA: 8, SEND_TRIM: 32, SEND_WRITE_ZEROES: 64, CAN_MULTI_CONN: 256 };
const ALL = TX.SEND_FLUSH | TX.SEND_FUA | TX.SEND_TRIM | TX.SEND_WRITE_ZEROES | TX.CAN_MULTI_CONN | 1;

const spec = (raw: Record<string, unknown>) => validateAddOptions({ target: 'nbd', ...raw }, { source: 'cli', cwd: '/' });

async function describe(raw: Record<string, unknown>, facts: Partial<NbdFacts> | Error): Promise<{ d: TargetDescription; asked: unknown }> {
  const s: AddSpec = spec(raw);
  let asked: unknown;
  const d = await nbdTarget.describe(s.target as never, s, {
    probe: async (options) => {
      asked = options;
      if (facts instanceof Error) throw facts;
      return { size: 64 << 20, flags: ALL, minBlock: 0, preferredBlock: 0, maxBlock: 0, ...facts };
    },
  });
  return { d, asked };
}

test('options: --host/--port or --unix, ublksrv spellings, the native options', async () => {
  const { d, asked } = await describe({ host: '127.0.0.1', port: '10900', export: 'disk', recovery: '1', reconnectTimeout: '5', ioTimeout: '0' }, {});
  assert.deepEqual(asked, { host: '127.0.0.1', port: 10900, name: 'disk', reconnect: 1, reconnectTimeoutMs: 5000, ioTimeoutMs: 0, sendZc: false });
  assert.deepEqual(d.serve.options, asked);
  const u = await describe({ unix: '/run/nbd.sock' }, {});
  assert.deepEqual(u.asked, { unix: '/run/nbd.sock', name: '', reconnect: 0, reconnectTimeoutMs: 60000, ioTimeoutMs: 30000, sendZc: false });
  // ublksrv's --export_name and --send_zc
  const t = validateAddOptions({ target: 'nbd', host: 'h', sendZc: true }, { source: 'cli', cwd: '/' });
  assert.equal((t.target as { sendZc?: boolean }).sendZc, true);
  const s = validateAddOptions({ target: 'nbd', unix: '/s', export: 'x' }, { source: 'cli', cwd: '/' });
  assert.equal(s.target.export, 'x');
  assert.deepEqual(nbdTarget.resources(s.target as never, s), [{ what: 'NBD socket', path: '/s', exclusive: false }]);
});

test('the disk is what the server says: size, flags, block sizes, largest request', async () => {
  const { d } = await describe({ unix: '/s', queues: '4' }, { size: 1 << 30, minBlock: 4096, preferredBlock: 65536, maxBlock: 256 << 10 });
  assert.equal(d.sizeBytes, 1 << 30);
  assert.equal(d.params.basic.logicalBsShift, 12, "the server's smallest block");
  assert.equal(d.params.basic.physicalBsShift, 16, 'its preferred block');
  assert.equal(d.params.basic.maxSectors, (256 << 10) >> 9, 'its largest request');
  assert.equal(d.params.basic.attrs, ATTR.VOLATILE_CACHE | ATTR.FUA);
  assert.deepEqual(d.params.discard, { discardAlignment: 0, discardGranularity: 65536, maxDiscardSectors: 512, maxWriteZeroesSectors: 512, maxDiscardSegments: 1 });
  assert.equal(d.maxQueues, undefined, 'multi-conn: a connection per queue');
  assert.match(d.notes.join(), /smallest block is 4096 bytes/);
  assert.equal(d.json.server, '/s');
  assert.equal(d.queuesKey, 'connections');
});

test('a server without flush, trim or multi-conn, and a read-only export', async () => {
  const { d } = await describe({ host: 'h', queues: '2' }, { flags: 1 | TX.READ_ONLY });
  assert.equal(d.readOnly, true);
  assert.equal(d.params.basic.attrs, ATTR.READ_ONLY);
  assert.equal(d.params.discard, undefined);
  assert.equal(d.maxQueues, 1);
  assert.deepEqual(d.notes, [
    'the server exports h:10809 read-only: the disk is read-only',
    'the server does not allow several connections (no NBD_FLAG_CAN_MULTI_CONN): one queue, not 2',
  ]);
  const w = await describe({ host: 'h' }, { flags: 1 | TX.SEND_WRITE_ZEROES });
  assert.deepEqual([w.d.params.discard?.maxDiscardSectors, w.d.params.discard?.maxWriteZeroesSectors], [0, 1024], 'write-zeroes without trim');
});

test('bad answers and bad input are usage errors naming the server', async () => {
  const fails = async (raw: Record<string, unknown>, facts: Partial<NbdFacts> | Error, re: RegExp) =>
    assert.rejects(describe(raw, facts), (e: Error) => e instanceof UsageError && re.test(e.message));
  await fails({ unix: '/s', export: 'nope' }, new Error('probe nbd failed: No such file or directory (the server refused: unknown export)'), /^NBD server \/s, export "nope": No such file .*unknown export/);
  await fails({ host: 'h' }, { size: 1000 }, /export's size, 1000 bytes, is not a multiple of the block size 512/);
  await fails({ host: 'h' }, { size: 0 }, /the export is empty/);
  await fails({ host: 'h' }, { minBlock: 3000 }, /not a block size a disk can have/);
  assert.throws(() => spec({}), /-t nbd needs --host HOST or --unix SOCKET/);
  assert.throws(() => spec({ host: 'h', unix: '/s' }), /--host and --unix cannot be used together/);
  assert.throws(() => spec({ host: 'h', port: '70000' }), /--port must be a whole number from 1 to 65535, not "70000"/);
  assert.throws(() => spec({ host: 'h', userCopy: true }), /--usercopy: the nbd target cannot use user copy: nbd sends from the tag's buffer/);
  assert.throws(() => spec({ host: 'h', threadsPerQueue: '2' }), /--threads-per-queue above 1: an nbd queue's connection is served by one thread/);
  assert.throws(() => spec({ file: '/x', host: 'h' }), /-f\/--file is only for -t loop/);
  assert.throws(() => spec({ unix: '/s', zeroCopy: true }), /-z.* with --unix: a unix socket cannot send from pinned pages \(SEND_ZC is for TCP\)/);
  assert.throws(() => spec({ unix: '/s', sendZc: true }), /--send_zc with --unix: a unix socket cannot send/);
  assert.doesNotThrow(() => spec({ host: 'h', zeroCopy: true, sendZc: true }));
});
