// Starting a device's server process: detached (Node cannot fork), in a mount namespace of its own,
// and waiting for its readiness line on fd 3 (protocol.ts) that says the disk is LIVE, or why not.
// `add`, `recover` and `upgrade` start their servers here.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { UblkError, UsageError } from '../../shared/errors';
import { StateStore, pidAlive } from '../state-store';
import { serverLaunch } from '../mount-ns';
import type { Readiness, ServerRequest } from './protocol';

export const READY_TIMEOUT_MS = 60_000;

export function serverMainPath(): string {
  return path.join(__dirname, 'server-main.js');
}

export interface SpawnResult {
  devId: number;
  pid: number;
  logPath: string;
  /** what the target said the user should know (a lowered -q, a read-only export) */
  notes: string[];
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
  const timeoutMs = opts.timeoutMs ?? READY_TIMEOUT_MS;
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
          resolve({ devId: r.devId, pid: child.pid ?? -1, logPath, notes: r.notes ?? [] });
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

