// sd_notify(3) for the servers (`serve`, `add --foreground`, the per-device server): READY=1 once
// every device is LIVE, STATUS= lines, RELOADING=1 around a SIGHUP reload, STOPPING=1 on shutdown,
// and WATCHDOG=1 every WATCHDOG_USEC/2 when systemd asks for it (WatchdogSec=). The datagram is
// sent by the native addon (binding.sdNotify: path or abstract '@' socket, no libsystemd); this
// file only decides what to send and when. Without $NOTIFY_SOCKET every call is a no-op.

import type { Log } from '../../shared/log';
import { nullLogger } from '../../shared/log';

export interface NotifierDeps {
  /** binding.sdNotify: true when sent, false without $NOTIFY_SOCKET; throws on a socket error */
  send: (state: string) => boolean;
  env?: NodeJS.ProcessEnv;
  pid?: number;
  log?: Log;
  /** CLOCK_MONOTONIC in µs, for RELOADING=1 (process.hrtime is CLOCK_MONOTONIC) */
  monotonicUs?: () => bigint;
}

/**
 * The watchdog ping interval in ms (half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises), or
 * 0 when no watchdog is asked for, or when WATCHDOG_PID names another process.
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return 0;
  if (env.WATCHDOG_PID && env.WATCHDOG_PID !== String(pid)) return 0;
  return Math.max(1, Math.floor(Number(usec) / 2 / 1000));
}

/** STATUS= is one line: no newlines in it. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ');
}

export class Notifier {
  private timer?: NodeJS.Timeout;
  private failed = false;
  private stoppingSent = false;
  private readonly env: NodeJS.ProcessEnv;
  private readonly pid: number;
  private readonly log: Log;
  private readonly monotonicUs: () => bigint;

  constructor(private readonly deps: NotifierDeps) {
    this.env = deps.env ?? process.env;
    this.pid = deps.pid ?? process.pid;
    this.log = deps.log ?? nullLogger;
    this.monotonicUs = deps.monotonicUs ?? (() => process.hrtime.bigint() / 1000n);
  }

  /** Is there a systemd (or anyone) listening? */
  get enabled(): boolean {
    return !!this.env.NOTIFY_SOCKET;
  }

  /** Sends one message; a socket error is logged once and never stops the server. */
  send(state: string): boolean {
    try {
      return this.deps.send(state);
    } catch (err) {
      if (!this.failed) {
        this.failed = true;
        this.log.warn({ event: 'sd_notify_failed', err: (err as Error).message, socket: this.env.NOTIFY_SOCKET }, 'sd_notify failed');
      }
      return false;
    }
  }

  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${oneLine(status)}\nMAINPID=${this.pid}`);
  }

  status(status: string): void {
    this.send(`STATUS=${oneLine(status)}`);
  }

  /** Before a reload; ready() again when it is done (systemd's Type=notify-reload protocol). */
  reloading(status = 'reloading configuration'): void {
    this.send(`RELOADING=1\nSTATUS=${oneLine(status)}\nMONOTONIC_USEC=${this.monotonicUs()}`);
  }

  /** Once: later calls (a device stopping after the service began to) send nothing. */
  stopping(status = 'stopping'): void {
    if (this.stoppingSent) return;
    this.stoppingSent = true;
    this.send(`STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  /** Starts the WATCHDOG=1 pings when systemd asked for them; returns the interval (0: none). */
  startWatchdog(): number {
    const ms = watchdogIntervalMs(this.env, this.pid);
    if (ms === 0 || this.timer) return ms;
    this.send('WATCHDOG=1');
    // The ping comes from the event loop: a loop blocked for WatchdogSec gets the service killed,
    // which is the point. unref: the pings alone must not keep a finished process alive.
    this.timer = setInterval(() => this.send('WATCHDOG=1'), ms);
    this.timer.unref();
    this.log.info({ event: 'watchdog', intervalMs: ms }, `watchdog pings every ${ms} ms`);
    return ms;
  }

  stopWatchdog(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
