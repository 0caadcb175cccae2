// The per-device server process: `node dist/daemon/server/server-main.js '<request json>'`, spawned
// detached by `ublk-ts add` / `ublk-ts recover` (or run in the CLI's own process with
// --foreground). It runs device-server.ts, tells its parent the outcome as ONE JSON line on fd 3
//   {"event":"live","devId":N}  or  {"event":"error","message":"...","code":"EEXIST","exitCode":1}
// then closes fd 3 and serves until SIGTERM/SIGINT (stop and delete the device, exit 0) or until
// the device is stopped by someone else. Logs go to stdout as JSON lines (the parent points
// stdout at <runDir>/ublk-ts.log).
//
// request: {"action":"add","spec":<AddSpec>} | {"action":"recover","devId":N}

import * as fs from 'node:fs';
import type { NativeBinding } from '../../shared/binding';
import { describeError, exitCodeFor, UsageError } from '../../shared/errors';
import { createLogger, type Log } from '../../shared/log';
import { getBinding } from '../addon/load-binding';
import { DeviceServer } from '../device-server';
import { dropInheritedMounts } from '../mount-ns';
import { resourcesOf, reviveSpec } from '../spec';
import { StateStore } from '../state-store';
import { Notifier } from '../service/notify';
import { protectFromOom } from '../oom';
import { codeOf, fd3Reporter, parseRequest, type Readiness, type ServerRequest } from './protocol';

export type { Readiness, ServerRequest } from './protocol';

export interface ServeProcessOptions {
  binding?: NativeBinding;
  store?: StateStore;
  log?: Log;
  /** told once: live, or why not */
  report: (r: Readiness) => void;
  /** called when the server is done (device stopped, or start failed) with the exit status */
  exit: (code: number) => void;
  /** gets the DeviceServer as soon as it exists (crash handling) */
  onServer?: (ds: DeviceServer) => void;
}

/**
 * Runs one device in this process until it is stopped. Installs the signal handlers: SIGTERM and
 * SIGINT stop and delete the device; SIGHUP is ignored (reserved for reloading).
 */
export async function serve(req: ServerRequest, opts: ServeProcessOptions): Promise<DeviceServer | undefined> {
  const log = opts.log ?? createLogger();
  protectFromOom(log);
  log.info({ event: 'server_start', action: req.action, devId: req.action === 'add' ? req.spec.id : req.devId }, 'server starting');

  let binding: NativeBinding;
  try {
    binding = opts.binding ?? getBinding();
  } catch (err) {
    opts.report({ event: 'error', message: describeError(err), code: codeOf(err), exitCode: exitCodeFor(err) });
    opts.exit(exitCodeFor(err));
    return undefined;
  }

  // With $NOTIFY_SOCKET (a Type=notify unit running `add --foreground`): READY=1 once LIVE,
  // STOPPING=1 on the way out, WATCHDOG=1 while WatchdogSec asks for it.
  const notifier = new Notifier({ send: (s) => binding.sdNotify(s), log });
  notifier.startWatchdog();
  const ds = new DeviceServer(req.action === 'add' ? req.spec : undefined, {
    binding,
    store: opts.store ?? new StateStore(),
    log,
  });
  opts.onServer?.(ds);
  // The native server may hold no reference on the event loop: keep the process alive ourselves
  // until the device is gone.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let exited = false;
  const done = (code: number) => {
    if (exited) return;
    exited = true;
    clearInterval(keepAlive);
    notifier.stopWatchdog();
    for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeListener(s, onSignal);
    log.info({ event: 'server_exit', devId: ds.devId, code }, 'server exiting');
    opts.exit(code);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (sig === 'SIGHUP') {
      log.info({ event: 'signal', devId: ds.devId, signal: sig }, 'SIGHUP ignored');
      return;
    }
    log.info({ event: 'signal', devId: ds.devId, signal: sig }, 'stopping on signal');
    notifier.stopping(`stopping ublk device ${ds.devId}: ${sig}`);
    ds.stop(`signal ${sig}`).then(
      () => done(0),
      () => done(1),
    );
  };
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, onSignal);
  // Stopped by someone else (STOP_DEV from another tool): every queue exited, device deleted.
  // Quiesced for a live upgrade (QUIESCE_DEV): the device goes on with the next server.
  ds.onStopped((reason) => {
    if (ds.phase === 'detached' && reason === 'handover') {
      notifier.stopping(`ublk device ${ds.devId} handed over to a new server`);
      setImmediate(() => done(0));
      return;
    }
    if (ds.phase === 'detached' && reason === 'queue failed') {
      // the target lost its store for good: the disk waits QUIESCED for `ublk-ts recover`
      notifier.stopping(`ublk device ${ds.devId}: a queue failed; left for recover`);
      setImmediate(() => done(1));
      return;
    }
    if (ds.phase !== 'stopped') return;
    notifier.stopping(`ublk device ${ds.devId} stopped`);
    // stopped after a queue failed: exit 1 (systemd and scripts see the failure)
    setImmediate(() => done(reason.startsWith('queue ') ? 1 : 0));
  });

  try {
    const state = req.action === 'add' ? await ds.start() : await ds.recover(req.devId);
    opts.report({ event: 'live', devId: state.devId, ...(ds.notes.length ? { notes: ds.notes } : {}) });
    notifier.ready(`ublk device ${state.devId} live (/dev/ublkb${state.devId})`);
    return ds;
  } catch (err) {
    opts.report({ event: 'error', message: describeError(err), code: codeOf(err), exitCode: exitCodeFor(err) });
    done(exitCodeFor(err));
    return ds;
  }
}

/** The paths this device's target holds (the mount namespace keeps the mounts they live on). */
function heldPaths(req: ServerRequest): string[] {
  try {
    const spec = req.action === 'add' ? req.spec : reviveSpec(new StateStore().read(req.devId)?.spec).spec;
    return spec ? resourcesOf(spec).map((r) => r.path) : [];
  } catch {
    return []; // an unreadable state file: recover reports it
  }
}

function main(): void {
  const log = createLogger();
  const report = fd3Reporter();
  let req: ServerRequest;
  try {
    req = parseRequest(process.argv[2]);
  } catch (err) {
    log.error({ event: 'bad_request', err: describeError(err) }, 'bad request');
    report({ event: 'error', message: describeError(err), code: 'EUSAGE', exitCode: 2 });
    process.exit(2);
  }
  // Started through `unshare --mount` (commands/add.ts): hold no copy of a ublk disk's mount.
  dropInheritedMounts(heldPaths(req), log);
  let ds: DeviceServer | undefined;
  const crash = (what: string, err: unknown) => {
    log.error({ event: 'crash', devId: ds?.devId ?? -1, what, err: (err as Error)?.stack ?? String(err) }, 'server crashed');
    report({ event: 'error', message: `server crashed: ${describeError(err)}`, exitCode: 1 });
    // With recovery the disk survives us as QUIESCED and `recover` can bring it back: leave it.
    // Without, stop and delete it rather than leave a dead disk behind.
    // (During a start, stop() waits for it: a failed start has rolled itself back.)
    const recoverable = ds?.state?.spec.recovery === true;
    if (!ds || recoverable) process.exit(1);
    setTimeout(() => process.exit(1), 30_000).unref(); // in case the start never settles
    ds.stop('crash').finally(() => process.exit(1));
  };
  process.on('uncaughtException', (err) => crash('uncaughtException', err));
  process.on('unhandledRejection', (err) => crash('unhandledRejection', err));
  serve(req, {
    log,
    report,
    exit: (code) => process.exit(code),
    onServer: (d) => {
      ds = d;
    },
  }).catch((err) => crash('serve', err));
}

if (require.main === module) main();
