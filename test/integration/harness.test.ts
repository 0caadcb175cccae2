// Proves the integration-test plumbing: the ublk driver is there, the kernel is the one the VM
// harness fetched, and the tools later tests drive (fio, mkfs.ext4) run.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UBLK_CONTROL, inVm, requireKernel } from './kernel-gate';

before(() => requireKernel());

test('/dev/ublk-control is a character device', () => {
  assert.ok(fs.statSync(UBLK_CONTROL).isCharacterDevice());
});

test('the kernel is the expected one', () => {
  const release = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  if (inVm) {
    // run-in-vm.sh passes the release of the kernel it booted.
    assert.equal(release, process.env.UBLK_TS_VM_KERNEL);
  } else {
    // Directly on a host with ublk_drv: anything from 6.0 on has the driver this project targets.
    const [major] = release.split('.').map(Number);
    assert.ok(major >= 6, `kernel ${release} is older than 6.0`);
  }
});

test('fio runs', () => {
  const out = execFileSync('fio', ['--version'], { encoding: 'utf8' });
  assert.match(out, /^fio-\d/);
});

test('mkfs.ext4 makes a filesystem in a file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-harness-'));
  try {
    const img = path.join(dir, 'fs.img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 16 << 20);
    execFileSync('mkfs.ext4', ['-q', '-F', img], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = execFileSync('dumpe2fs', ['-h', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(out, /Filesystem magic number:\s+0xEF53/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('O_DIRECT works in the temporary directory (backing files for loop tests live there)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-harness-'));
  try {
    const file = path.join(dir, 'direct.img');
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=4', 'oflag=direct'], { stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'], { stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(fs.statSync(file).size, 4 << 20);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
