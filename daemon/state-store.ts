// Per-device state, one JSON file per device in the run directory ($UBLK_TS_RUN_DIR or
// /run/ublk-ts; directory 0700, files 0600). Written by the device's server once the disk is LIVE
// (and after a recovery), read by `list`, `del` and `recover`. A file is replaced atomically
// (temporary file, fsync, rename) so a reader never sees half a file.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DataMode } from '../shared/binding';
import type { AddSpec } from './spec';
import { migrateSpec } from './spec-migrate';
import { UblkError } from '../shared/errors';

export const DEFAULT_RUN_DIR = '/run/ublk-ts';

export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.UBLK_TS_RUN_DIR || DEFAULT_RUN_DIR;
}

/** 2: the spec is common options + a target part (spec.ts); 1 (ublk-ts 0.1): flat, read through migrateSpec. */
export const STATE_VERSION = 2;

export interface DeviceState {
  version: 1 | 2;
  devId: number;
  /** the per-device server process (ublksrv_pid) */
  pid: number;
  /** the validated add request, for recovery */
  spec: AddSpec;
  /** negotiated UBLK_F_* flags, hex ("0x48") since JSON has no 64-bit integers */
  flags: string;
  mode: DataMode;
  /** queue thread ids, index = queue id */
  tids: number[];
  /** the target's JSON (list's "target" line) */
  target: Record<string, string | number>;
  /** ISO times */
  createdAt: string;
  updatedAt: string;
  /** set when `ublk-ts serve` runs the device: its name in the service's config (`del` warns) */
  service?: string;
}

export interface StateEntry {
  devId: number;
  file: string;
  state?: DeviceState;
  /** why the file could not be used */
  error?: string;
}

function isState(v: unknown): v is DeviceState {
  const s = v as Partial<DeviceState> | null;
  return (
    !!s &&
    (s.version === 1 || s.version === 2) &&
    typeof s.devId === 'number' &&
    typeof s.pid === 'number' &&
    typeof s.flags === 'string' &&
    typeof s.mode === 'string' &&
    Array.isArray(s.tids) &&
    typeof s.spec === 'object' &&
    typeof s.target === 'object'
  );
}

const NAME = /^(\d+)\.json$/;

export class StateStore {
  constructor(readonly dir: string = runDir()) {}

  /** NNNN.json, as rublk names its files. */
  fileFor(devId: number): string {
    return path.join(this.dir, `${String(devId).padStart(4, '0')}.json`);
  }

  /** Creates the directory (0700) if needed. */
  ensureDir(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Root keeps device state and logs here: never through a symlink, nor in a directory another
    // user owns (they could swap the files a later `recover` or `del` acts on).
    const st = fs.lstatSync(this.dir);
    if (!st.isDirectory()) {
      throw new UblkError(`the run directory ${this.dir} is not a directory (a symlink?): refusing to keep device state there`, {
        code: 'ENOTDIR',
      });
    }
    if (process.geteuid?.() === 0 && st.uid !== 0) {
      throw new UblkError(`the run directory ${this.dir} belongs to uid ${st.uid}, not root: refusing to keep device state there`, {
        code: 'EPERM',
      });
    }
    try {
      fs.chmodSync(this.dir, 0o700);
    } catch {
      // not ours to change (e.g. a shared test directory): files stay 0600 regardless
    }
  }

  write(state: DeviceState): void {
    this.ensureDir();
    const file = this.fileFor(state.devId);
    const tmp = path.join(this.dir, `.${path.basename(file)}.${process.pid}.tmp`);
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
    try {
      fs.fchmodSync(fd, 0o600); // the umask may have taken bits away, never added: make it exact
      fs.writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
      fs.fsyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    try {
      fs.renameSync(tmp, file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
  }

  /** The state of one device; undefined when there is no file; throws on an unreadable file. */
  read(devId: number): DeviceState | undefined {
    const e = this.readEntry(devId, this.fileFor(devId));
    if (!e) return undefined;
    if (e.error) throw new Error(e.error);
    return e.state;
  }

  private readEntry(devId: number, file: string): StateEntry | undefined {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return { devId, file, error: `cannot read ${file}: ${(err as Error).message}` };
    }
    try {
      const v: unknown = JSON.parse(text);
      if (!isState(v) || v.devId !== devId) return { devId, file, error: `${file} is not a ublk-ts state file` };
      // every reader sees today's spec shape; the spec is checked where it is used (recover)
      return { devId, file, state: { ...v, spec: migrateSpec(v.spec as unknown as Record<string, unknown>) as unknown as AddSpec } };
    } catch {
      return { devId, file, error: `${file} is not valid JSON` };
    }
  }

  /** Every state file, sorted by device id; unreadable ones carry `error`. */
  list(): StateEntry[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: StateEntry[] = [];
    for (const n of names) {
      const m = NAME.exec(n);
      if (!m) continue;
      const e = this.readEntry(Number(m[1]), path.join(this.dir, n));
      if (e) out.push(e);
    }
    return out.sort((a, b) => a.devId - b.devId);
  }

  /** Removes a device's state; no error when there is none. */
  remove(devId: number): void {
    fs.rmSync(this.fileFor(devId), { force: true });
  }

  /** State files whose device the kernel no longer has. */
  stale(exists: (devId: number) => boolean = kernelDeviceExists): StateEntry[] {
    return this.list().filter((e) => !exists(e.devId));
  }
}

// ---- the kernel's side: which ublk devices exist -------------------------------------------------

const UBLKC = /^ublkc(\d+)$/;

/** Ids of the ublk devices the kernel has, from /sys/class/ublk-char, else /dev/ublkc*. */
export function listKernelDeviceIds(sysClassDir = '/sys/class/ublk-char', devDir = '/dev'): number[] {
  for (const dir of [sysClassDir, devDir]) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    const ids = names.flatMap((n) => {
      const m = UBLKC.exec(n);
      return m ? [Number(m[1])] : [];
    });
    if (dir === sysClassDir || ids.length > 0) return ids.sort((a, b) => a - b);
  }
  return [];
}

export function kernelDeviceExists(devId: number): boolean {
  return fs.existsSync(`/sys/class/ublk-char/ublkc${devId}`) || fs.existsSync(`/dev/ublkc${devId}`);
}

/** True when a process with this pid exists (signal 0; EPERM still means it exists). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
