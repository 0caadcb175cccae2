// A real filesystem on a ublk-ts disk: mkfs.ext4, mount, copy a tree in, unmount, fsck clean,
// remount and compare checksums; then the same after `del` and a new `add` on the same file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireKernel } from './kernel-gate';
import { REPO, addDevice, delAll, delDevice, makeBacking, sh, workDir } from './helpers';

before(() => requireKernel());
after(() => {
  sh(`umount ${path.join(workDir(), 'mnt')} 2>/dev/null || true`);
  delAll();
});

// Checksums of every file under `dir`, sorted by path: equal trees give equal output.
function treeSums(dir: string): string {
  return sh(`cd ${dir} && find . -type f -print0 | sort -z | xargs -0 sha256sum`);
}

for (const mode of [
  { name: 'zero copy (auto), 4 queues', args: ['-z', '-q', '4'] },
  { name: 'zero copy (explicit)', args: ['-z', '--zc-mode', 'explicit'] },
  { name: 'copy', args: [] },
  { name: 'zero copy (auto), batch I/O, 2 queues', args: ['-z', '--batch-io', '-q', '2'] },
]) {
  test(`ext4 round trip (${mode.name}), and again after del + add on the same file`, () => {
    const file = makeBacking(`fs-${mode.args.length}.img`, 128);
    const mnt = path.join(workDir(), 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    // Some real files: the project's own sources and its compiled output.
    const src = path.join(REPO, 'dist');
    const expected = treeSums(src);

    let id = addDevice(['-t', 'loop', '-f', file, ...mode.args]);
    try {
      sh(`mkfs.ext4 -q -F /dev/ublkb${id}`);
      sh(`mount /dev/ublkb${id} ${mnt}`);
      sh(`cp -a ${src} ${mnt}/tree && sync`);
      sh(`umount ${mnt}`);
      sh(`fsck.ext4 -fn /dev/ublkb${id}`);
      sh(`mount /dev/ublkb${id} ${mnt}`);
      assert.equal(treeSums(path.join(mnt, 'tree')), expected);
      sh(`umount ${mnt}`);
    } finally {
      sh(`umount ${mnt} 2>/dev/null || true`);
      delDevice(id);
    }

    id = addDevice(['-t', 'loop', '-f', file, ...mode.args]);
    try {
      sh(`fsck.ext4 -fn /dev/ublkb${id}`);
      sh(`mount /dev/ublkb${id} ${mnt}`);
      assert.equal(treeSums(path.join(mnt, 'tree')), expected);
    } finally {
      sh(`umount ${mnt} 2>/dev/null || true`);
      delDevice(id);
    }
  });
}
