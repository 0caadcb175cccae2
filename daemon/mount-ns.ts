// The per-device server runs in a mount namespace of its own (util-linux `unshare --mount
// --propagation slave`, see commands/add.ts), so that it never holds a mount of a ublk disk:
//
// - A server in the same namespace as a mount of its own disk can deadlock on exit (the facts:
//   run it with unshare(CLONE_NEWNS) or systemd PrivateMounts=yes).
// - A new namespace starts with a COPY of every mount, including filesystems on ublk disks that
//   are mounted at that moment (a `recover` under a mounted filesystem). Where the host's mounts
//   are not shared (a bare init, containers) a later `umount` on the host does not reach that
//   copy: the filesystem would stay alive inside the server, unflushed, and be torn down only
//   when the server exits, after its disk is gone. So the server drops (lazily unmounts) its
//   copies of such mounts before it does anything else. With `slave` propagation, mounts and
//   unmounts made on the host later still reach the server's namespace; nothing the server does
//   reaches back.
//
// Everything here only READS the system, except dropMounts(), which runs `umount -l` and is
// only called after ownNamespace() said this process is not in its parent's namespace.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Log } from '../shared/log';

/** Set by the spawner when it wrapped the server in `unshare --mount`. */
export const OWN_MOUNT_NS_ENV = 'UBLK_TS_OWN_MOUNT_NS';

export interface MountEntry {
  mountId: number;
  parentId: number;
  /** "major:minor" of the filesystem's device */
  devt: string;
  mountPoint: string;
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/PID/mountinfo (proc(5)); malformed lines are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const a = line.slice(0, sep).split(' ');
    const b = line.slice(sep + 3).split(' ');
    if (a.length < 6 || b.length < 2) continue;
    const mountId = Number(a[0]);
    const parentId = Number(a[1]);
    if (!Number.isInteger(mountId) || !Number.isInteger(parentId) || !/^\d+:\d+$/.test(a[2])) continue;
    out.push({ mountId, parentId, devt: a[2], mountPoint: unescape(a[4]), fsType: b[0], source: unescape(b[1]) });
  }
  return out;
}

export interface BlockFs {
  /** names in /sys/class/block */
  list(): string[];
  /** "major:minor" of a block device, or undefined */
  dev(name: string): string | undefined;
  /** the devices this one is stacked on (/sys/class/block/NAME/slaves) */
  slaves(name: string): string[];
  /** the devices stacked on this one (/sys/class/block/NAME/holders) */
  holders(name: string): string[];
}

function readDir(p: string): string[] {
  try {
    return fs.readdirSync(p);
  } catch {
    return [];
  }
}

export const sysBlockFs: BlockFs = {
  list: () => readDir('/sys/class/block'),
  dev(name) {
    try {
      return fs.readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim();
    } catch {
      return undefined;
    }
  },
  slaves: (name) => readDir(`/sys/class/block/${name}/slaves`),
  holders: (name) => readDir(`/sys/class/block/${name}/holders`),
};

const UBLK_DISK = /^ublkb(\d+)(p\d+)?$/;

/**
 * "major:minor" -> name of every block device that is, or sits on, a ublk disk: ublkbN, its
 * partitions, and devices stacked on them (dm, md: their `slaves/` name a ublk disk), to any
 * depth. With `only`, just that disk, its partitions and what is stacked on them.
 */
export function ublkBacked(bfs: BlockFs = sysBlockFs, only?: number): Map<string, string> {
  const names = bfs.list();
  const backed = new Set(
    names.filter((n) => {
      const m = UBLK_DISK.exec(n);
      return m !== null && (only === undefined || Number(m[1]) === only);
    }),
  );
  // stacked devices: repeat until nothing new (a dm on a dm on a ublk disk)
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of names) {
      if (backed.has(n)) continue;
      if (bfs.slaves(n).some((s) => backed.has(s))) {
        backed.add(n);
        changed = true;
      }
    }
  }
  const out = new Map<string, string>();
  for (const n of backed) {
    const dev = bfs.dev(n);
    if (dev && /^\d+:\d+$/.test(dev)) out.set(dev, n);
  }
  return out;
}

function within(p: string, dir: string): boolean {
  if (dir === '/') return true;
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/**
 * The mount points to drop: mounts of ublk-backed devices, deepest first, except those that
 * hold one of `keep` (the server's own backing file may live on a ublk disk's filesystem).
 */
export function mountsToDrop(mounts: MountEntry[], backed: Map<string, string>, keep: string[]): string[] {
  const keepAbs = keep.filter((k) => k && path.isAbsolute(k)).map((k) => path.resolve(k));
  return mounts
    .filter((m) => backed.has(m.devt))
    .filter((m) => !keepAbs.some((k) => within(k, m.mountPoint)))
    .map((m) => m.mountPoint)
    .sort((a, b) => b.length - a.length);
}

/**
 * What keeps ublk disk `devId` busy, as a user would want to hear it: mounts (of the disk, its
 * partitions or a device stacked on it) in this mount namespace, devices stacked on it (dm, md)
 * and swap. `devt` ("major:minor", from GET_PARAMS) also finds mounts of a disk the kernel has
 * already removed (its server died without recovery). Only what this namespace can see.
 */
export function diskUsers(
  devId: number,
  devt?: string,
  io: { mountinfo?: string; swaps?: string; bfs?: BlockFs } = {},
): string[] {
  const bfs = io.bfs ?? sysBlockFs;
  const read = (p: string) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  const backed = ublkBacked(bfs, devId);
  if (devt && /^\d+:\d+$/.test(devt) && !backed.has(devt)) backed.set(devt, `ublkb${devId}`);
  const out: string[] = [];
  for (const m of parseMountInfo(io.mountinfo ?? read('/proc/self/mountinfo'))) {
    if (backed.has(m.devt)) out.push(`${backed.get(m.devt)} mounted on ${m.mountPoint}`);
  }
  const names = new Set(backed.values());
  for (const n of names) {
    if (!/^ublkb/.test(n)) continue;
    for (const h of bfs.holders(n)) out.push(`${h} stacked on ${n}`);
  }
  for (const line of (io.swaps ?? read('/proc/swaps')).split('\n').slice(1)) {
    const dev = line.split(/\s+/)[0];
    const base = dev ? path.basename(dev) : '';
    if (base && names.has(base)) out.push(`${base} used as swap`);
  }
  return out;
}

function nsOf(pid: number | 'self'): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/**
 * True when this process was started in a mount namespace of its own: the spawner said so, and
 * the namespace differs from its parent's and from init's. Only then may mounts be dropped.
 */
export function ownNamespace(env: NodeJS.ProcessEnv = process.env, ppid = process.ppid): boolean {
  if (env[OWN_MOUNT_NS_ENV] !== '1') return false;
  const self = nsOf('self');
  if (!self) return false;
  const others = [nsOf(ppid), nsOf(1)].filter((x): x is string => x !== undefined);
  return others.length > 0 && others.every((o) => o !== self);
}

export interface DropResult {
  dropped: string[];
  failed: Array<{ mountPoint: string; error: string }>;
}

/**
 * In a namespace of our own: lazily unmounts our copies of filesystems on ublk disks (keeping
 * those holding `keep`). Does nothing, and returns nothing, anywhere else.
 */
export function dropUblkMounts(keep: string[], env: NodeJS.ProcessEnv = process.env): DropResult {
  const res: DropResult = { dropped: [], failed: [] };
  if (!ownNamespace(env)) return res;
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return res;
  }
  for (const mp of mountsToDrop(parseMountInfo(text), ublkBacked(), keep)) {
    // -l: detach now even if busy; -i: no umount.<type> helpers; -n: no mtab.
    const r = spawnSync('umount', ['-l', '-i', '-n', '--', mp], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) res.dropped.push(mp);
    else res.failed.push({ mountPoint: mp, error: (r.stderr || r.error?.message || `exit ${r.status}`).trim() });
  }
  return res;
}

/**
 * server-main's first step: in the namespace `unshare` gave it, let go of the copies of
 * filesystems on ublk disks (keeping those that hold `keep`, the paths of this device's target).
 * Logs what it did; never throws.
 */
export function dropInheritedMounts(keep: string[], log: Log, env: NodeJS.ProcessEnv = process.env): void {
  try {
    if (!ownNamespace(env)) return;
    const r = dropUblkMounts(keep, env);
    if (r.dropped.length > 0) {
      log.info({ event: 'mounts_dropped', mounts: r.dropped }, 'dropped this namespace\'s copies of mounts of ublk disks');
    }
    for (const f of r.failed) {
      log.warn({ event: 'mount_drop_failed', mountPoint: f.mountPoint, err: f.error }, 'cannot drop a copy of a mount of a ublk disk');
    }
  } catch (err) {
    log.warn({ event: 'mount_drop_failed', err: (err as Error).message }, 'cannot drop copies of mounts of ublk disks');
  }
}

// ---- starting the server in a namespace of its own ------------------------------------------------

let unshareWorks: boolean | undefined;

/** Whether util-linux `unshare --mount --propagation slave` runs here (root, no seccomp ban). */
export function canUnshareMount(run: typeof spawnSync = spawnSync): boolean {
  if (unshareWorks === undefined) {
    const r = run('unshare', ['--mount', '--propagation', 'slave', '--', 'true'], { stdio: 'ignore', timeout: 10_000 });
    unshareWorks = r.status === 0;
  }
  return unshareWorks;
}

export interface Launch {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** true when the server gets a mount namespace of its own */
  ownMountNs: boolean;
}

/**
 * How to start `execPath args...` as a device server: through `unshare --mount --propagation
 * slave` when it works (same pid: unshare execs the server), else directly. UBLK_TS_MOUNT_NS=0
 * turns the namespace off.
 */
export function serverLaunch(
  execPath: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  canUnshare: () => boolean = canUnshareMount,
): Launch {
  const want = env.UBLK_TS_MOUNT_NS !== '0';
  if (want && canUnshare()) {
    return {
      file: 'unshare',
      args: ['--mount', '--propagation', 'slave', '--', execPath, ...args],
      env: { ...env, [OWN_MOUNT_NS_ENV]: '1' },
      ownMountNs: true,
    };
  }
  const rest = { ...env };
  delete rest[OWN_MOUNT_NS_ENV];
  return { file: execPath, args, env: rest, ownMountNs: false };
}
