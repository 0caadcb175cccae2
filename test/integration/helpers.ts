// Shared tools for the integration tests. They drive the real product (bin/ublk-ts, a separate
// server process per device) against the real kernel driver, with real fio, mkfs and mount.
// Files the tests make live in the guest's /tmp (a tmpfs of its own inside the VM).

import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const CLI = path.join(REPO, 'bin', 'ublk-ts');
export const WORK = process.env.UBLK_TS_TEST_DIR ?? '/tmp/ublk-ts-it';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Appends a line to $UBLK_TS_TRACE (set by the VM suite): which command ran, how long it took. */
export function trace(msg: string): void {
  const file = process.env.UBLK_TS_TRACE;
  if (!file) return;
  try {
    fs.appendFileSync(file, `${new Date().toISOString()} [${path.basename(process.argv[1] ?? '')}] ${msg}\n`);
  } catch {
    // tracing must never break a test
  }
}

function traced<T extends RunResult>(what: string, run: () => T): T {
  trace(`start ${what}`);
  const t0 = Date.now();
  const r = run();
  trace(`end   ${what} -> ${r.code} in ${Date.now() - t0} ms`);
  return r;
}

function result(r: SpawnSyncReturns<string>): RunResult {
  if (r.error) throw r.error;
  return { code: r.status ?? (r.signal ? 128 : 1), stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs `ublk-ts ARGS` as a user would; never throws on a non-zero exit. */
export function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; prefix?: string[]; timeoutMs?: number } = {}): RunResult {
  const argv = [...(opts.prefix ?? []), process.execPath, CLI, ...args];
  return traced(`ublk-ts ${args.join(' ')}`, () =>
    result(
      spawnSync(argv[0], argv.slice(1), {
        encoding: 'utf8',
        env: { ...process.env, ...opts.env },
        timeout: opts.timeoutMs ?? 120_000,
      }),
    ),
  );
}

/**
 * cli() without blocking this process: for a test that serves something itself (a fake server in
 * this process) while ublk-ts talks to it.
 */
export function cliAsync(args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  trace(`start ublk-ts ${args.join(' ')} (async)`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      trace(`end   ublk-ts ${args.join(' ')} -> ${code ?? signal}`);
      resolve({ code: code ?? 128, stdout, stderr });
    });
  });
}

/** Runs a shell command; throws with its output when it fails. */
export function sh(cmd: string, timeoutMs = 300_000): string {
  const r = shResult(cmd, timeoutMs);
  if (r.code !== 0) throw new Error(`\`${cmd}\` exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export function shResult(cmd: string, timeoutMs = 300_000): RunResult {
  return traced(cmd.length > 120 ? cmd.slice(0, 117) + '...' : cmd, () =>
    // stdin from /dev/null: with a pipe there, bash under `node --test` in the guest spent ~8 s
    // before running anything (measured: 8 s with a pipe, 0.16 s without).
    result(spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] })),
  );
}

export function workDir(): string {
  fs.mkdirSync(WORK, { recursive: true });
  return WORK;
}

/** A backing file of `mib` MiB, zero-filled (sparse) or random. */
export function makeBacking(name: string, mib: number, fill: 'sparse' | 'random' = 'sparse'): string {
  const file = path.join(workDir(), name);
  fs.rmSync(file, { force: true });
  if (fill === 'sparse') {
    fs.writeFileSync(file, '');
    fs.truncateSync(file, mib << 20);
  } else {
    const fd = fs.openSync(file, 'w');
    try {
      for (let i = 0; i < mib; i++) fs.writeSync(fd, crypto.randomBytes(1 << 20));
    } finally {
      fs.closeSync(fd);
    }
  }
  return file;
}

/** `ublk-ts add ARGS`; returns the new device id, or throws with what the CLI said. */
export function addDevice(args: string[], env?: NodeJS.ProcessEnv): number {
  const r = cli(['add', ...args], env ? { env } : {});
  if (r.code !== 0) throw new Error(`ublk-ts add ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  const m = /^dev id (\d+):/m.exec(r.stdout);
  if (!m) throw new Error(`ublk-ts add printed no "dev id N:" line:\n${r.stdout}`);
  const id = Number(m[1]);
  if (!fs.existsSync(`/dev/ublkb${id}`)) throw new Error(`add returned but /dev/ublkb${id} does not exist`);
  return id;
}

export function delDevice(id: number): void {
  const r = cli(['del', '-n', String(id)]);
  if (r.code !== 0) throw new Error(`ublk-ts del -n ${id} exited ${r.code}: ${r.stderr}`);
}

/** Deletes every ublk device; for cleanup after a failed test. */
export function delAll(): void {
  cli(['del', '-a']);
}

/** Command lines of running processes whose command line contains `needle` (read from /proc). */
export function processesMatching(needle: string): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (!processAlive(Number(pid))) continue;
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (cmd.includes(needle) && Number(pid) !== process.pid) out.push(`${pid} ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export function ublkDevices(): string[] {
  return fs.readdirSync('/dev').filter((n) => /^ublk[bc]\d+$/.test(n));
}

export interface FioJob {
  name: string;
  rw: string;
  bs: string;
  iodepth: number;
  size?: string;
  extra?: Record<string, string | number>;
}

/**
 * Runs fio jobs one after another (stonewall) on `filename` and returns fio's JSON. Throws when
 * fio fails or any job reports an error (which includes a verify mismatch).
 */
export function fio(filename: string, jobs: FioJob[], global: Record<string, string | number> = {}): any {
  const lines = ['[global]', `filename=${filename}`, 'ioengine=io_uring', 'direct=1', 'stonewall'];
  for (const [k, v] of Object.entries(global)) lines.push(`${k}=${v}`);
  for (const j of jobs) {
    lines.push(`[${j.name}]`, `rw=${j.rw}`, `bs=${j.bs}`, `iodepth=${j.iodepth}`);
    if (j.size) lines.push(`size=${j.size}`);
    for (const [k, v] of Object.entries(j.extra ?? {})) lines.push(`${k}=${v}`);
  }
  const jobFile = path.join(workDir(), `fio-${process.pid}-${Date.now()}.fio`);
  fs.writeFileSync(jobFile, lines.join('\n') + '\n');
  const r = shResult(`fio --output-format=json ${jobFile}`, 600_000);
  fs.rmSync(jobFile, { force: true });
  let out: any;
  try {
    out = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
  } catch {
    throw new Error(`fio exited ${r.code} without JSON output:\n${r.stdout}\n${r.stderr}`);
  }
  const bad = (out.jobs ?? []).filter((j: any) => j.error !== 0);
  if (r.code !== 0 || bad.length > 0) {
    throw new Error(
      `fio failed (exit ${r.code}); jobs with errors: ${bad.map((j: any) => `${j.jobname}: error ${j.error}`).join(', ')}\n${r.stderr}`,
    );
  }
  return out;
}

/** The standard write + crc32c verify set from the issues: 4k random and 128k sequential, QD 1 and 64. */
// Sizes are small on purpose: the VM emulates its CPU, and every job still crosses the whole
// data path thousands of times (4k jobs: 512 writes + 512 verified reads each).
export function verifyJobs(size4k = '2M', size128k = '16M'): FioJob[] {
  const v = { verify: 'crc32c', do_verify: 1, verify_fatal: 1, randrepeat: 0 } as Record<string, string | number>;
  return [
    { name: 'rand4k-qd1', rw: 'randwrite', bs: '4k', iodepth: 1, size: size4k, extra: v },
    { name: 'rand4k-qd64', rw: 'randwrite', bs: '4k', iodepth: 64, size: size4k, extra: { ...v, offset: '32M' } },
    { name: 'seq128k-qd1', rw: 'write', bs: '128k', iodepth: 1, size: size128k, extra: { ...v, offset: '8M' } },
    { name: 'seq128k-qd64', rw: 'write', bs: '128k', iodepth: 64, size: size128k, extra: { ...v, offset: '40M' } },
  ];
}

export function sha256File(file: string, length?: number): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  let pos = 0;
  try {
    for (;;) {
      const want = length === undefined ? buf.length : Math.min(buf.length, length - pos);
      if (want <= 0) break;
      const n = fs.readSync(fd, buf, 0, want, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Starts a long-running command in the background; resolves with its exit when it ends. */
export function background(cmd: string): { done: Promise<RunResult>; pid: number } {
  const child = spawn('bash', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })),
  );
  return { done, pid: child.pid ?? -1 };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `pred` holds, polling; throws after `timeoutMs` with `what`. */
export async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** A process that exists and is not a zombie (an exited orphan not yet reaped by PID 1). */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** GET over plain HTTP (a /metrics endpoint, Prometheus's API): status and body. */
export function httpGet(url: string, timeoutMs = 30_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

// ---- `ublk-ts serve` as a test's child -------------------------------------------------------

/** One line of the service's JSON log. */
export interface ServiceLogRecord {
  event?: string;
  devId?: number;
  device?: string;
  time: number;
  address?: string;
  [k: string]: unknown;
}

export interface ServiceRun {
  child: ChildProcess;
  /** the exit code, once it exited */
  exit: Promise<number | null>;
  /** every JSON log record written so far */
  records(): ServiceLogRecord[];
  /** SIGTERM, and SIGKILL if it is still there after a minute (for `after` hooks) */
  stop(): Promise<void>;
}

/** Writes a service configuration with these devices, its metrics on an ephemeral local port. */
export function writeServiceConfig(file: string, devices: unknown[]): void {
  fs.writeFileSync(file, JSON.stringify({ service: { metricsAddress: '127.0.0.1:0', logLevel: 'info' }, devices }, null, 2));
}

/** Starts `ublk-ts serve --config FILE` with JSON logs; its stderr goes to ours. */
export function startService(config: string, env: NodeJS.ProcessEnv = {}): ServiceRun {
  const child = spawn(process.execPath, [path.join(REPO, 'dist', 'daemon', 'cli', 'main.js'), 'serve', '--config', config, '--log-format', 'json'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d));
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    exit,
    records: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ServiceLogRecord),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([exit, sleep(60_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
