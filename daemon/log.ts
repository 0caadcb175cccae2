// Logging. The per-device server logs JSON lines (pino) to its stdout, which `add` points at
// <runDir>/ublk-ts.log; CLI commands log nothing (they print results and one-line errors).
// pino is required inside createLogger so that importing this file costs nothing.

/** The part of a logger the daemon uses; pino's Logger fits it, and so does nullLogger. */
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Log;
}

export const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface LoggerOptions {
  /** default: $UBLK_TS_LOG_LEVEL, else info */
  level?: string;
  /** default: 'ublk-ts' */
  name?: string;
  /** file descriptor to write to; default 1 (stdout) */
  fd?: number;
}

export function createLogger(opts: LoggerOptions = {}): Log {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pino = require('pino') as typeof import('pino');
  const wanted = opts.level ?? process.env.UBLK_TS_LOG_LEVEL ?? 'info';
  const level = (LEVELS as readonly string[]).includes(wanted) ? wanted : 'info';
  // sync: a server that exits right after a failure must not lose its last lines
  const dest = pino.destination({ fd: opts.fd ?? 1, sync: true });
  return pino({ name: opts.name ?? 'ublk-ts', level, base: { pid: process.pid } }, dest) as unknown as Log;
}

const noop = () => undefined;

/** Discards everything. */
export const nullLogger: Log = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => nullLogger,
};
