// DISCARD and WRITE_ZEROES reach the backing file: discarded ranges become holes, zeroed ranges
// read back as zeros, and data outside the range is untouched.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { requireKernel } from './kernel-gate';
import { addDevice, delAll, delDevice, makeBacking, sh } from './helpers';

before(() => requireKernel());
after(() => delAll());

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

function isZero(file: string, offset: number, length: number): boolean {
  const buf = Buffer.alloc(length);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, buf, 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
  return buf.every((b) => b === 0);
}

test('blkdiscard punches holes in the backing file', () => {
  const file = makeBacking('discard.img', 64, 'random');
  const before = allocatedBytes(file);
  const id = addDevice(['-t', 'loop', '-f', file]);
  try {
    sh(`blkdiscard -o 0 -l ${32 << 20} /dev/ublkb${id}`);
  } finally {
    delDevice(id);
  }
  const after = allocatedBytes(file);
  assert.ok(before - after >= 30 << 20, `allocation went from ${before} to ${after} bytes only`);
  assert.ok(isZero(file, 0, 1 << 20), 'the discarded range does not read back as zeros');
  assert.ok(!isZero(file, 40 << 20, 1 << 20), 'data outside the discarded range was lost');
});

test('blkdiscard --zeroout (WRITE_ZEROES) zeroes the range', () => {
  const file = makeBacking('zeroes.img', 64, 'random');
  const id = addDevice(['-t', 'loop', '-f', file, '-z']);
  try {
    sh(`blkdiscard -z -o ${8 << 20} -l ${8 << 20} /dev/ublkb${id}`);
    assert.equal(sh(`cmp -n ${8 << 20} -i ${8 << 20}:0 /dev/ublkb${id} /dev/zero && echo same`).trim(), 'same');
  } finally {
    delDevice(id);
  }
  assert.ok(isZero(file, 8 << 20, 8 << 20), 'the zeroed range is not zero in the file');
  assert.ok(!isZero(file, 0, 1 << 20), 'data before the range was lost');
  assert.ok(!isZero(file, 16 << 20, 1 << 20), 'data after the range was lost');
});
