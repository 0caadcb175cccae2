// The server's own mount namespace: reading mountinfo and sysfs, choosing the mounts to drop,
// what keeps a disk busy, and how the server is launched.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  OWN_MOUNT_NS_ENV,
  diskUsers,
  dropUblkMounts,
  mountsToDrop,
  ownNamespace,
  parseMountInfo,
  serverLaunch,
  ublkBacked,
  type BlockFs,
} from '../../daemon/mount-ns';

const MOUNTINFO = [
  '22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw',
  '40 22 259:7 / /mnt/data rw,relatime shared:20 - ext4 /dev/ublkb0 rw',
  '41 40 259:8 / /mnt/data/inner\\040dir rw - xfs /dev/ublkb1p1 rw',
  '42 22 253:0 / /srv rw - ext4 /dev/mapper/vg-lv rw',
  '43 22 259:9 / /var/lib/imgs rw - ext4 /dev/ublkb2 rw',
  'garbage line',
  '44 22 0:5 / /dev rw - devtmpfs udev rw',
].join('\n');

// ublkb0 (259:7); ublkb1 and its partition ublkb1p1 (259:8); ublkb2 (259:9); dm-0 (253:0) on
// ublkb3; dm-1 on dm-0; nvme0n1p1 unrelated
const BFS: BlockFs = {
  list: () => ['nvme0n1', 'nvme0n1p1', 'ublkb0', 'ublkb1', 'ublkb1p1', 'ublkb2', 'ublkb3', 'dm-0', 'dm-1'],
  dev: (n) =>
    ({ nvme0n1: '259:0', nvme0n1p1: '259:1', ublkb0: '259:7', ublkb1: '259:10', ublkb1p1: '259:8', ublkb2: '259:9', ublkb3: '259:11', 'dm-0': '253:0', 'dm-1': '253:1' })[n],
  slaves: (n) => ({ 'dm-0': ['ublkb3'], 'dm-1': ['dm-0'] })[n] ?? [],
  holders: (n) => ({ ublkb3: ['dm-0'] })[n] ?? [],
};

test('parseMountInfo: fields, \\ooo escapes, bad lines skipped', () => {
  const m = parseMountInfo(MOUNTINFO);
  assert.equal(m.length, 6);
  assert.deepEqual(m[2], { mountId: 41, parentId: 40, devt: '259:8', mountPoint: '/mnt/data/inner dir', fsType: 'xfs', source: '/dev/ublkb1p1' });
});

test('ublkBacked: ublk disks, partitions, and devices stacked on them to any depth', () => {
  assert.deepEqual(
    [...ublkBacked(BFS).entries()].sort(),
    [
      ['253:0', 'dm-0'],
      ['253:1', 'dm-1'],
      ['259:10', 'ublkb1'],
      ['259:11', 'ublkb3'],
      ['259:7', 'ublkb0'],
      ['259:8', 'ublkb1p1'],
      ['259:9', 'ublkb2'],
    ],
  );
  assert.deepEqual([...ublkBacked(BFS, 1).values()].sort(), ['ublkb1', 'ublkb1p1']);
  assert.deepEqual([...ublkBacked(BFS, 3).values()].sort(), ['dm-0', 'dm-1', 'ublkb3']);
});

test('mountsToDrop: deepest first; the mount holding our backing file is kept', () => {
  const m = parseMountInfo(MOUNTINFO);
  assert.deepEqual(mountsToDrop(m, ublkBacked(BFS), []), ['/mnt/data/inner dir', '/var/lib/imgs', '/mnt/data', '/srv']);
  assert.deepEqual(mountsToDrop(m, ublkBacked(BFS), ['/var/lib/imgs/disk.img', 'relative/ignored']), ['/mnt/data/inner dir', '/mnt/data', '/srv']);
  // /mnt/database is not inside /mnt/data
  assert.deepEqual(mountsToDrop(m, ublkBacked(BFS), ['/mnt/database/x']).length, 4);
});

test('diskUsers: mounts, stacked devices and swap of one disk; a removed disk found by its devt', () => {
  const swaps = 'Filename\tType\tSize\tUsed\tPriority\n/dev/ublkb2                             partition\t1024\t0\t-2\n';
  assert.deepEqual(diskUsers(0, undefined, { mountinfo: MOUNTINFO, swaps, bfs: BFS }), ['ublkb0 mounted on /mnt/data']);
  assert.deepEqual(diskUsers(1, undefined, { mountinfo: MOUNTINFO, swaps, bfs: BFS }), ['ublkb1p1 mounted on /mnt/data/inner dir']);
  assert.deepEqual(diskUsers(2, undefined, { mountinfo: MOUNTINFO, swaps, bfs: BFS }), ['ublkb2 mounted on /var/lib/imgs', 'ublkb2 used as swap']);
  assert.deepEqual(diskUsers(3, undefined, { mountinfo: MOUNTINFO, swaps, bfs: BFS }), ['dm-0 mounted on /srv', 'dm-0 stacked on ublkb3']);
  assert.deepEqual(diskUsers(3, undefined, { mountinfo: '', swaps: '', bfs: { ...BFS, list: () => ['ublkb3', 'dm-0'] } }), ['dm-0 stacked on ublkb3']);
  // the kernel removed ublkb5 (server gone, no recovery) but its filesystem is still mounted
  const gone = '50 22 259:20 / /mnt/old rw - ext4 /dev/ublkb5 rw';
  assert.deepEqual(diskUsers(5, '259:20', { mountinfo: gone, swaps: '', bfs: BFS }), ['ublkb5 mounted on /mnt/old']);
  assert.deepEqual(diskUsers(4, undefined, { mountinfo: MOUNTINFO, swaps, bfs: BFS }), []);
});

test('ownNamespace / dropUblkMounts: nothing happens without the spawner\'s mark, or in our parent\'s namespace', () => {
  assert.equal(ownNamespace({}), false);
  // marked, but this test runs in its parent's namespace: still no
  assert.equal(ownNamespace({ [OWN_MOUNT_NS_ENV]: '1' }), false);
  assert.deepEqual(dropUblkMounts([], { [OWN_MOUNT_NS_ENV]: '1' }), { dropped: [], failed: [] });
});

test('serverLaunch: through unshare when it works, marked; directly otherwise, or with UBLK_TS_MOUNT_NS=0', () => {
  const env = { PATH: '/bin', [OWN_MOUNT_NS_ENV]: '1' };
  const a = serverLaunch('/usr/bin/node', ['/x/server-main.js', '{}'], { PATH: '/bin' }, () => true);
  assert.equal(a.file, 'unshare');
  assert.deepEqual(a.args, ['--mount', '--propagation', 'slave', '--', '/usr/bin/node', '/x/server-main.js', '{}']);
  assert.equal(a.env[OWN_MOUNT_NS_ENV], '1');
  assert.ok(a.ownMountNs);
  const b = serverLaunch('/usr/bin/node', ['/x/server-main.js', '{}'], env, () => false);
  assert.equal(b.file, '/usr/bin/node');
  assert.deepEqual(b.args, ['/x/server-main.js', '{}']);
  assert.equal(b.env[OWN_MOUNT_NS_ENV], undefined, 'an inherited mark must not survive a direct start');
  let asked = false;
  const c = serverLaunch('/usr/bin/node', [], { UBLK_TS_MOUNT_NS: '0' }, () => (asked = true));
  assert.equal(c.file, '/usr/bin/node');
  assert.equal(asked, false);
});
