// `ublk-ts add`: validate everything that can be validated before touching the kernel, then start
// the device's own server process (detached: Node cannot fork) and wait for it to say the disk is
// LIVE, or why not. Prints the new device like `list`, as ublksrv's `ublk add` does.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { validateAddOptions, type AddSpec, type RawAddOptions } from '../add-options';
import { UblkError, UsageError } from '../errors';
import { getTarget } from '../../targets/index';
import { StateStore, pidAlive } from '../state-store';
import { formatDevice } from '../list-format';
import { defaultListDeps, gatherEntry, requireControl } from './list';
import type { Readiness, ServerRequest } from '../server-main';
import { serverLaunch } from '../mount-ns';

export const READY_TIMEOUT_MS = 60_000;

export function requireRoot(euid: number | undefined = process.geteuid?.()): void {
  if (euid !== 0) throw new UblkError('must be run as root', { code: 'EPERM' });
}

export function serverMainPath(): string {
  return path.join(__dirname, '..', 'server-main.js');
}

export interface SpawnResult {
  devId: number;
  pid: number;
  logPath: string;
}

/**
 * Starts a detached server for `req` and waits for its readiness line on fd 3. On "live" the
 * child is let go (unref) and keeps running; on "error", an early exit or the timeout, the
 * error says why and no server is left running (the server undoes its own steps; a wedged one is
 * killed).
 */
export function spawnServer(
  req: ServerRequest,
  opts: { store?: StateStore; timeoutMs?: number; execPath?: string; mainPath?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<SpawnResult> {
  const store = opts.store ?? new StateStore();
  store.ensureDir();
  const logPath = path.join(store.dir, 'ublk-ts.log');
  const logFd = fs.openSync(logPath, 'a', 0o600);
  let child: ChildProcess;
  try {
    // In a mount namespace of its own (daemon/mount-ns.ts), from /, with the run dir made
    // absolute: the server must pin no mount, and must find the same state files as we do.
    const launch = serverLaunch(
      opts.execPath ?? process.execPath,
      [path.resolve(opts.mainPath ?? serverMainPath()), JSON.stringify(req)],
      { ...(opts.env ?? process.env), UBLK_TS_RUN_DIR: path.resolve(store.dir) },
    );
    child = spawn(launch.file, launch.args, {
      detached: true,
      cwd: '/',
      stdio: ['ignore', logFd, logFd, 'pipe'],
      env: launch.env,
    });
  } finally {
    fs.closeSync(logFd);
  }
  const timeoutMs = opts.timeoutMs ?? Number(process.env.UBLK_TS_READY_TIMEOUT_MS ?? READY_TIMEOUT_MS);
  const seeLog = `see ${logPath}`;

  return new Promise<SpawnResult>((resolve, reject) => {
    const pipe = child.stdio[3] as Readable | null;
    let buf = '';
    let settled = false;
    let timer: NodeJS.Timeout | undefined;

    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      pipe?.removeAllListeners('data');
      fn();
    };

    const onLine = (line: string) => {
      let r: Readiness;
      try {
        r = JSON.parse(line) as Readiness;
      } catch {
        finish(() => {
          kill(child);
          reject(new UblkError(`the server sent a malformed readiness line; ${seeLog}`, { code: 'EPROTO' }));
        });
        return;
      }
      if (r.event === 'live') {
        finish(() => {
          pipe?.destroy();
          child.unref();
          resolve({ devId: r.devId, pid: child.pid ?? -1, logPath });
        });
      } else {
        // The server has already undone its steps; wait for it to be gone before reporting, so
        // nothing of this add outlives the command.
        finish(() => {
          const err =
            r.exitCode === 2 ? new UsageError(r.message) : new UblkError(r.message, { code: r.code, op: 'add' });
          pipe?.destroy();
          waitExit(child, 10_000).then(() => reject(err));
        });
      }
    };

    pipe?.setEncoding('utf8');
    pipe?.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) onLine(buf.slice(0, nl));
    });
    pipe?.on('error', () => undefined);
    child.on('error', (err) =>
      finish(() => reject(new UblkError(`cannot start the server: ${err.message}`, { code: (err as NodeJS.ErrnoException).code }))),
    );
    child.on('exit', (code, signal) =>
      finish(() =>
        reject(
          new UblkError(
            `the server exited (${signal ? `signal ${signal}` : `status ${code}`}) before the device was live; ${seeLog}`,
            { code: 'ESRCH' },
          ),
        ),
      ),
    );
    timer = setTimeout(
      () =>
        finish(() => {
          // SIGTERM first: the server rolls back whatever it got done; SIGKILL if it is wedged.
          kill(child);
          reject(
            new UblkError(`the server did not report within ${Math.round(timeoutMs / 1000)} s (wedged kernel?); ${seeLog}`, {
              code: 'ETIMEDOUT',
            }),
          );
        }),
      timeoutMs,
    );
  });
}

function kill(child: ChildProcess): void {
  try {
    child.kill('SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    if (child.pid !== undefined && pidAlive(child.pid)) child.kill('SIGKILL');
  }, 5_000);
  t.unref();
  child.unref();
}

function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.unref();
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Prints a device like `list -n ID` does. */
export async function printDevice(devId: number, out: (t: string) => void = (t) => process.stdout.write(t)): Promise<void> {
  const deps = defaultListDeps();
  out(formatDevice(await gatherEntry(devId, deps)));
}

export interface AddDeps {
  euid?: number;
  cwd?: string;
  checkControl?: () => void;
}

/** Validation of `add`'s options: usage errors first, then the system (prepareAddFromConfig for --config). */
export function prepareAdd(raw: RawAddOptions, deps: AddDeps = {}): AddSpec {
  const spec = validateAddOptions(raw, { cwd: deps.cwd ?? process.cwd() });
  requireRoot('euid' in deps ? deps.euid : process.geteuid?.());
  (deps.checkControl ?? (() => requireControl()))();
  const problems = getTarget(spec.target).validate(spec);
  if (problems.length > 0) throw new UsageError(problems);
  return spec;
}

/**
 * `add --config FILE`: the file's one device, with the options given on the command line over it
 * (a relative -f is relative to where the command runs; the file's, to the file). The whole file is
 * checked like `serve` checks it, every problem listed, before anything else.
 */
export function prepareAddFromConfig(raw: RawAddOptions, configPath: string, deps: AddDeps & { env?: NodeJS.ProcessEnv } = {}) {
  const { loadConfig } = require('../../config/load-config') as typeof import('../../config/load-config');
  const overrides: RawAddOptions = { ...raw };
  if (typeof overrides.file === 'string' && overrides.file !== '') overrides.file = path.resolve(deps.cwd ?? process.cwd(), overrides.file);
  const config = loadConfig({ path: configPath, deviceOverrides: overrides, exactlyOneDevice: true, env: deps.env });
  requireRoot('euid' in deps ? deps.euid : process.geteuid?.());
  (deps.checkControl ?? (() => requireControl()))();
  return { spec: config.devices[0].spec, config };
}

export async function runAdd(raw: RawAddOptions, deps: AddDeps = {}, configPath?: string): Promise<number> {
  let spec: AddSpec;
  let logOpts: { level?: string; format?: string } = {};
  if (configPath !== undefined) {
    const r = prepareAddFromConfig(raw, configPath, deps);
    spec = r.spec;
    logOpts = { level: r.config.logLevel, format: r.config.logFormat };
  } else spec = prepareAdd(raw, deps);
  if (spec.foreground) return runInForeground({ action: 'add', spec }, logOpts);
  // the detached server reads its log level from the environment (the config's, unless set)
  const env = logOpts.level ? { ...process.env, UBLK_TS_LOG_LEVEL: logOpts.level } : undefined;
  const { devId } = await spawnServer({ action: 'add', spec }, { env });
  await printDevice(devId);
  return 0;
}

/** --foreground: this process is the server until SIGTERM/SIGINT or until the device stops. */
export async function runInForeground(req: ServerRequest, logOpts: { level?: string; format?: string } = {}): Promise<number> {
  const { serve } = require('../server-main') as typeof import('../server-main');
  const { createLogger } = require('../log') as typeof import('../log');
  return new Promise<number>((resolve, reject) => {
    let live = false;
    serve(req, {
      log: createLogger(logOpts),
      report: (r) => {
        if (r.event === 'live') {
          live = true;
          printDevice(r.devId).catch(() => undefined);
        } else {
          reject(r.exitCode === 2 ? new UsageError(r.message) : new UblkError(r.message, { code: r.code }));
        }
      },
      exit: (code) => {
        if (live || code === 0) resolve(code);
      },
    }).catch(reject);
  });
}
