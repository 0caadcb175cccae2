// The add spec as one model for every way in: option declarations (CLI and config file from one
// table), ublk-ts 0.1 state files read in today's shape, `recover -t` checked against the disk,
// the shared-file rule, and the native targets agreeing with their TypeScript descriptors.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addOptions, checkSameTarget, DEVICE_MODEL, migrateSpec, reviveSpec, validateAddOptions } from '../../daemon/spec';
import { recheckSavedSpec } from '../../daemon/recovery-checks';
import { checkResources } from '../../daemon/resource-check';
import { StateStore } from '../../daemon/state-store';
import { UsageError } from '../../shared/errors';
import { resourceClashes } from '../../shared/resources';
import { TARGETS } from '../../targets/registry';
import type { NativeBinding } from '../../shared/binding';
import { savedState } from './state-fixture';

const cli = { source: 'cli' as const, cwd: '/' };

test('every add option is declared once: a command-line spelling or a config field, and one key for both', () => {
  const entries = addOptions();
  const longs = entries.flatMap((e) => (e.decl.cli ? [e.decl.cli.long, ...(e.decl.cli.aliases ?? [])] : []));
  assert.equal(new Set(longs).size, longs.length, 'no spelling twice');
  const fields = DEVICE_MODEL.fieldNames();
  assert.equal(new Set(fields).size, fields.length, 'no config field twice');
  for (const e of entries) assert.ok(e.decl.cli || DEVICE_MODEL.fieldOfKey(e.key), `${e.key} is reachable`);
  // an option two targets share is one entry naming both
  const size = entries.find((e) => e.key === 'size');
  assert.deepEqual(size?.targets, ['loop', 'null']);
  assert.match(size?.help ?? '', /^loop: .*; null: /);
});

test('a state file written by ublk-ts 0.1 reads in today\'s shape and passes the checks', () => {
  const v1 = {
    target: 'loop', devId: 3, nrQueues: 2, depth: 64, logicalBlockSize: 512, maxIoBufBytes: 524288, zeroCopy: 'auto', userCopy: false,
    batchIo: false, threadsPerQueue: 1, affinity: 'cpu', file: '/x.img', bufferedIo: false, offsetSectors: 8, sizeBytes: 1048576,
    recovery: true, recoveryReissue: true, recoveryFailIo: false, foreground: false, readOnly: false, ioScheduler: 'none',
  };
  const m = migrateSpec(v1);
  assert.deepEqual(m.target, { kind: 'loop', file: '/x.img', bufferedIo: false, offset: 8, size: 1048576 });
  assert.equal(m.id, 3);
  assert.equal(m.queues, 2);
  const spec = recheckSavedSpec(v1, 3, '/run/ublk-ts/0003.json');
  assert.equal(spec.target.kind, 'loop');
  assert.equal(spec.target.writeSubmit, 'auto', 'an option 0.1 did not have takes its default');
  assert.equal(spec.zeroCopy, 'auto');
  assert.equal(spec.recoveryReissue, true);
  // an old null spec without a size: 250 GiB, as then
  assert.equal(reviveSpec(migrateSpec({ target: 'null', devId: 1, nrQueues: 1, depth: 128 })).spec?.target.size, 250 * 2 ** 30);
  // today's shape comes back as it is
  assert.equal(migrateSpec(m), m);
});

test('recover -t: the target and its options must be what the disk was added with', () => {
  const saved = validateAddOptions({ target: 'loop', file: '/data/a.img', offset: '8' }, cli);
  checkSameTarget({ target: 'loop', file: '/data/a.img' }, saved, 4, '/');
  checkSameTarget({ target: 'loop', file: 'a.img', offset: '8' }, saved, 4, '/data'); // relative to the command's directory
  checkSameTarget({}, saved, 4, '/');
  const refused = (given: Record<string, unknown>) => {
    try {
      checkSameTarget(given, saved, 4, '/');
    } catch (err) {
      assert.ok(err instanceof UsageError);
      return err.problems;
    }
    assert.fail('accepted');
  };
  assert.deepEqual(refused({ target: 'null' }), ['device 4 is a loop disk, not "null"', 'refusing to recover a disk with other options than it was added with']);
  assert.deepEqual(refused({ target: 'loop', file: '/data/b.img', offset: '16' }), [
    'device 4 was added with -f/--file "/data/a.img", not "/data/b.img"',
    'device 4 was added with -o/--offset 8, not 16',
    'refusing to recover a disk with other options than it was added with',
  ]);
  assert.deepEqual(refused({ target: 'loop', offset: 'x' }), [
    '-o/--offset must be a whole number of 512-byte sectors, not "x"',
    'refusing to recover a disk with other options than it was added with',
  ]);
});

test('the shared-file rule: writers never share; read-only disks, or disks that all say --shared, may', () => {
  const holder = (raw: Record<string, unknown>, name: string) => DEVICE_MODEL.holder(validateAddOptions({ target: 'loop', file: '/f.img', ...raw }, cli), name);
  const clash = (a: Record<string, unknown>, b: Record<string, unknown>) => resourceClashes(holder(a, 'A'), [holder(b, 'B')]);
  assert.deepEqual(clash({}, {}), ['backing file /f.img is also the backing file of B: two disks that write one file corrupt it (only read-only disks, or disks that all say --shared, may share one)']);
  assert.equal(clash({ readOnly: true }, {}).length, 1, 'a reader beside a writer');
  assert.equal(clash({ readOnly: true }, { readOnly: true }).length, 0);
  assert.equal(clash({ shared: true }, { shared: true }).length, 0);
  assert.equal(clash({ shared: true }, {}).length, 1, 'both must say so');
  assert.equal(resourceClashes(holder({}, 'A'), [DEVICE_MODEL.holder(validateAddOptions({ target: 'null' }, cli), 'N')]).length, 0);
});

test('add and every device server refuse a file a live device writes (state files of devices that still exist)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-res-'));
  try {
    const store = new StateStore(dir);
    const spec = validateAddOptions({ target: 'loop', file: '/f.img' }, cli);
    store.write(savedState(2, 100, { spec: { ...spec, id: 2 } }));
    assert.throws(() => checkResources(spec, store, -1, () => true), /backing file \/f\.img is also the backing file of device 2 \(\/dev\/ublkb2\)/);
    checkResources(spec, store, -1, () => false); // the device is gone: its stale state file holds nothing
    checkResources(spec, store, 2, () => true); // itself (a recovery) is no clash
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('each native target serves what its TypeScript descriptor says (the real addon)', (t) => {
  const addon = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'ublk_native.node');
  if (!fs.existsSync(addon)) {
    if (process.env.CI) assert.fail(`no addon at ${addon}: the build step did not build it`);
    t.skip(`no addon at ${addon} (npm run build:native)`);
    return;
  }
  const native = (require(addon) as NativeBinding).targets();
  assert.deepEqual(native.map((n) => n.name).sort(), TARGETS.map((d) => d.name).sort(), 'the same targets on both sides');
  for (const d of TARGETS) {
    const n = native.find((x) => x.name === d.name)!;
    const c = d.capabilities;
    assert.deepEqual(
      { dataModes: [...n.dataModes].sort(), flush: n.flush, discard: n.discard, writeZeroes: n.writeZeroes, fua: n.fua },
      { dataModes: [...c.dataModes].sort(), flush: c.flush, discard: c.discard, writeZeroes: c.writeZeroes, fua: c.fua },
      d.name,
    );
  }
});
