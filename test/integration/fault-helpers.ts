// Tools shared by the recovery, fault and teardown tests: in-process devices through the real
// addon (where the CLI is not what is tested: every node start costs ~4 s in the emulated guest),
// background fio that can be stopped and checked, device states straight from the kernel, and the
// "nothing left behind" checks (nodes, server processes, state files, threads, fds, memory).

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import assert from 'node:assert/strict';
import { DeviceServer } from '../../daemon/device-server';
import { StateStore } from '../../daemon/state-store';
import { getBinding } from '../../daemon/addon/load-binding';
import { validateAddOptions } from '../../daemon/spec';
import type { RawOptions as RawAddOptions } from '../../shared/options';
import type { NativeBinding } from '../../shared/binding';
import { RunResult, cli, processAlive, sleep, trace, ublkDevices } from './helpers';

export const RUN_DIR = process.env.UBLK_TS_RUN_DIR ?? '/run/ublk-ts';
export const STATE = { DEAD: 0, LIVE: 1, QUIESCED: 2, FAIL_IO: 3 } as const;

export function binding(): NativeBinding {
  return getBinding();
}

/** The kernel's state of a device (UBLK_S_DEV_*), or -1 when it does not exist. */
export async function kernelState(devId: number): Promise<number> {
  try {
    return (await binding().getDevInfo(devId)).state;
  } catch {
    return -1;
  }
}

export async function serverPid(devId: number): Promise<number> {
  return (await binding().getDevInfo(devId)).ublksrvPid;
}

export async function waitState(devId: number, want: number[], timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  let s = await kernelState(devId);
  while (!want.includes(s) && Date.now() < end) {
    await sleep(100);
    s = await kernelState(devId);
  }
  if (!want.includes(s)) throw new Error(`device ${devId} is in state ${s}, not ${want.join('/')} after ${timeoutMs} ms`);
  return s;
}

/** Runs `ublk-ts ARGS` without blocking the event loop (several at once). */
export function cliAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const bin = path.resolve(__dirname, '..', '..', '..', 'bin', 'ublk-ts');
  trace(`start ublk-ts ${args.join(' ')} (async)`);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => {
      trace(`end   ublk-ts ${args.join(' ')} -> ${code} in ${Date.now() - t0} ms`);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

// ---- fio in the background --------------------------------------------------------------------

export interface BackgroundFio {
  pid: number;
  /** fio's exit, stdout (JSON) and stderr */
  done: Promise<RunResult>;
  exited: () => boolean;
}

/** Starts fio with these `--key=value` options (no shell in between: signals reach fio). */
export function fioBackground(opts: Record<string, string | number | boolean>): BackgroundFio {
  const args = Object.entries(opts).map(([k, v]) => (v === true ? `--${k}` : `--${k}=${v}`));
  args.push('--output-format=json');
  trace(`start fio ${args.join(' ')} (background)`);
  const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let over = false;
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => {
      over = true;
      trace(`end   fio (background) -> ${code ?? signal}`);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    }),
  );
  return { pid: child.pid ?? -1, done, exited: () => over };
}

export interface FioJobResult {
  name: string;
  error: number;
  readBytes: number;
  writeBytes: number;
  /** I/O errors fio counted (with continue_on_error; else it stops at the first) */
  totalErrors: number;
}

/** fio's JSON (after whatever it printed before it), one entry per job; throws without JSON. */
export function fioJobs(r: RunResult): FioJobResult[] {
  const at = r.stdout.indexOf('{');
  if (at < 0) throw new Error(`fio printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout.slice(at)) as { jobs: any[] };
  return out.jobs.map((j) => ({
    name: j.jobname,
    error: j.error,
    readBytes: j.read?.io_bytes ?? 0,
    writeBytes: j.write?.io_bytes ?? 0,
    totalErrors: j.total_err ?? 0,
  }));
}

/** Reads + writes completed on /dev/ublkbN so far (/sys/block/ublkbN/stat). */
export function diskOps(devId: number): number {
  try {
    const f = fs.readFileSync(`/sys/block/ublkb${devId}/stat`, 'utf8').trim().split(/\s+/).map(Number);
    return f[0] + f[4];
  } catch {
    return 0;
  }
}

/** Waits until `min` more I/Os have completed on the disk (a job really running, not starting). */
export async function waitForIo(devId: number, min: number, timeoutMs: number): Promise<void> {
  const start = diskOps(devId);
  const end = Date.now() + timeoutMs;
  while (diskOps(devId) - start < min) {
    if (Date.now() > end) throw new Error(`fewer than ${min} I/Os on /dev/ublkb${devId} in ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Resolves with fio's result, or null when it is still running after `ms`. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<null>((res) => (t = setTimeout(() => res(null), ms)))]);
  if (t) clearTimeout(t);
  return r;
}

// ---- devices served in this process ----------------------------------------------------------

/** A run dir of their own for in-process devices: `ublk-ts del -a` must never signal this process. */
export function inProcessStore(): StateStore {
  return new StateStore(fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-inproc-')));
}

/** Adds a device served by this process (real addon, real driver). */
export async function addInProcess(raw: RawAddOptions, store: StateStore): Promise<DeviceServer> {
  const spec = validateAddOptions(raw, { source: 'cli', cwd: '/' });
  const ds = new DeviceServer(spec, { binding: binding(), store });
  await ds.start();
  return ds;
}

/** Recovers device `devId` in this process. */
export async function recoverInProcess(devId: number, store: StateStore): Promise<DeviceServer> {
  const ds = new DeviceServer(undefined, { binding: binding(), store, recoveryBusyTimeoutMs: 10_000 });
  await ds.recover(devId);
  return ds;
}

// ---- what must be left behind: nothing ---------------------------------------------------------

export function stateFiles(dir = RUN_DIR): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
}

/** Live ublk-ts server processes (zombies are init's to reap, and hold nothing). */
export function serverProcesses(): string[] {
  const out: string[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes('server-main') && processAlive(Number(p))) out.push(`${p} ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

export function assertNoDevices(what: string): void {
  assert.deepEqual(ublkDevices(), [], `${what}: /dev/ublk* nodes left behind`);
  assert.deepEqual(fs.existsSync('/sys/class/ublk-char') ? fs.readdirSync('/sys/class/ublk-char') : [], [], `${what}: devices left in the kernel`);
}

/** No device, no server process, no state file. */
export function assertClean(what: string): void {
  assertNoDevices(what);
  assert.deepEqual(serverProcesses(), [], `${what}: server processes left behind`);
  assert.deepEqual(stateFiles(), [], `${what}: state files left behind`);
}

export interface Footprint {
  fds: number;
  threads: number;
  /** kB, this process (after a full garbage collection) */
  rss: number;
  /** kB, from /proc/meminfo after dropping caches */
  memAvailable: number;
  slab: number;
  sUnreclaim: number;
}

function threadName(tid: string): string {
  try {
    return fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
  } catch {
    return ''; // it just ended
  }
}

/** This process's fds and threads, and the guest's memory (page cache dropped first). */
export function footprint(): Footprint {
  // JavaScript garbage is not a leak: collect it first (twice: finalizers free native memory)
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  gc();
  gc();
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    // not root, or not allowed: the numbers are noisier
  }
  const mi = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(mi)?.[1] ?? NaN);
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  return {
    fds: fs.readdirSync('/proc/self/fd').length,
    // io_uring's io-wq workers (iou-wrk-N) are threads of this process too, but they belong to a
    // live ring and come and go with its load (tmpfs I/O is handed to them): not counted.
    threads: fs.readdirSync('/proc/self/task').filter((t) => !threadName(t).startsWith('iou-wrk')).length,
    rss: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN),
    memAvailable: kb('MemAvailable'),
    slab: kb('Slab'),
    sUnreclaim: kb('SUnreclaim'),
  };
}

export function describeFootprint(a: Footprint, b: Footprint): string {
  const d = (k: keyof Footprint) => `${k} ${a[k]} -> ${b[k]} (${b[k] - a[k] >= 0 ? '+' : ''}${b[k] - a[k]})`;
  return (['fds', 'threads', 'rss', 'memAvailable', 'slab', 'sUnreclaim'] as const).map(d).join(', ');
}

/** Mode bits of a path (e.g. 0o600). */
export function modeOf(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

export async function killAndWait(pid: number, timeoutMs = 10_000): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  const end = Date.now() + timeoutMs;
  while (processAlive(pid) && Date.now() < end) await sleep(50);
  if (processAlive(pid)) throw new Error(`pid ${pid} still alive ${timeoutMs} ms after SIGKILL`);
}
