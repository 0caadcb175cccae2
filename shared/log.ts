// Logging. Servers (the per-device server, `add --foreground`, `serve`) log JSON lines (pino) to
// stdout: journald or `add`'s <runDir>/ublk-ts.log keeps them. On a terminal the same records are
// printed as short human-readable lines instead. CLI commands log nothing (they print results and
// one-line errors). pino is required inside createLogger so that importing this file costs nothing.
//
// The level can change while the process runs (`serve` applies a new logLevel on SIGHUP). pino
// copies its level into every child logger when the child is made, and device servers make their
// own children, so the level is not pino's: pino writes everything it is given, and one shared gate
// in front of it, read on every call, decides what is given.

import * as tty from 'node:tty';
import * as fs from 'node:fs';

/** The part of a logger the daemon uses; pino's Logger fits it, and so does nullLogger. */
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Log;
}

/** The logger a process creates once: its children share its level. */
export interface RootLog extends Log {
  readonly level: LogLevel;
  setLevel(level: LogLevel): void;
}

export const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LEVELS)[number];
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

const LEVEL_VALUE: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === 'string' && (LEVELS as readonly string[]).includes(v);
}

export interface LoggerOptions {
  /** default: $UBLK_TS_LOG_LEVEL, else info */
  level?: string;
  /** default: $UBLK_TS_LOG_FORMAT, else auto (pretty on a terminal, JSON otherwise) */
  format?: string;
  /** default: 'ublk-ts' */
  name?: string;
  /** file descriptor to write to; default 1 (stdout) */
  fd?: number;
}

interface Gate {
  value: number;
  level: LogLevel;
}

type PinoLike = {
  debug(o: object, m?: string): void;
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
  error(o: object, m?: string): void;
  child(b: Record<string, unknown>): PinoLike;
};

function gated(p: PinoLike, gate: Gate): Log {
  return {
    debug: (o, m) => {
      if (gate.value <= 20) p.debug(o, m);
    },
    info: (o, m) => {
      if (gate.value <= 30) p.info(o, m);
    },
    warn: (o, m) => {
      if (gate.value <= 40) p.warn(o, m);
    },
    error: (o, m) => {
      if (gate.value <= 50) p.error(o, m);
    },
    child: (b) => gated(p.child(b), gate),
  };
}

export function createLogger(opts: LoggerOptions = {}): RootLog {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pino = require('pino') as typeof import('pino');
  const wanted = opts.level ?? process.env.UBLK_TS_LOG_LEVEL ?? 'info';
  const level: LogLevel = isLogLevel(wanted) ? wanted : 'info';
  const fd = opts.fd ?? 1;
  const format = opts.format ?? process.env.UBLK_TS_LOG_FORMAT ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && tty.isatty(fd));
  // sync: a server that exits right after a failure must not lose its last lines
  const dest = pretty ? prettyDestination(fd) : pino.destination({ fd, sync: true });
  const p = pino({ name: opts.name ?? 'ublk-ts', level: 'trace', base: { pid: process.pid } }, dest) as unknown as PinoLike;
  const gate: Gate = { value: LEVEL_VALUE[level], level };
  return {
    ...gated(p, gate),
    get level() {
      return gate.level;
    },
    setLevel(l: LogLevel) {
      gate.level = l;
      gate.value = LEVEL_VALUE[l];
    },
  };
}

const LEVEL_NAME: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'devId', 'event']);

/** One JSON record as a line for people: `12:00:01.123 INFO  dev 0 live mode=copy`. */
export function prettyLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const t = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : '';
  const lvl = LEVEL_NAME[r.level as number] ?? String(r.level);
  const dev = typeof r.devId === 'number' && r.devId >= 0 ? `dev ${r.devId} ` : '';
  const rest = Object.entries(r)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${t} ${lvl} ${dev}${String(r.msg ?? r.event ?? '')}${rest ? ` ${rest}` : ''}\n`;
}

function prettyDestination(fd: number): { write(s: string): void } {
  return {
    write(s: string) {
      try {
        fs.writeSync(fd, prettyLine(s.trimEnd()));
      } catch {
        // a closed terminal must not take the server down
      }
    },
  };
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
