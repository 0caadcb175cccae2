// The service settings of a config file (its "service" object), each settable from the command
// line (`serve --log-level ...`) and the environment (UBLK_TS_LOG_LEVEL=...) too. Declared once here;
// the loader, the JSON Schema and `serve`'s options are built from this table.

import * as net from 'node:net';
import { LEVELS, LOG_FORMATS } from '../shared/log';

/** Where `serve` looks without --config. */
export const DEFAULT_CONFIG_PATH = '/etc/ublk-ts';
export const CONFIG_ENV = 'UBLK_TS_CONFIG';

export type ServiceKey = 'logLevel' | 'logFormat' | 'metricsAddress';

export interface ServiceField {
  /** environment variable */
  env: string;
  /** command-line option of `serve`; commander names its value after the key */
  cli: string;
  /** the option's value placeholder and one-line help */
  arg: string;
  help: string;
  default: string;
  enum?: readonly string[];
  description: string;
}

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9101';

export const SERVICE_FIELDS: Readonly<Record<ServiceKey, ServiceField>> = {
  logLevel: {
    env: 'UBLK_TS_LOG_LEVEL',
    cli: '--log-level',
    arg: 'level',
    help: 'fatal, error, warn, info (default), debug, trace or silent',
    default: 'info',
    enum: LEVELS,
    description: 'log level; `serve` applies a new one on SIGHUP',
  },
  logFormat: {
    env: 'UBLK_TS_LOG_FORMAT',
    cli: '--log-format',
    arg: 'format',
    help: 'json, pretty, or auto (default: pretty on a terminal)',
    default: 'auto',
    enum: LOG_FORMATS,
    description: 'json: one JSON object a line (journald); pretty: short lines for people; auto: pretty on a terminal, else json',
  },
  metricsAddress: {
    env: 'UBLK_TS_METRICS_ADDRESS',
    cli: '--metrics-address',
    arg: 'host:port',
    help: `Prometheus endpoint, or "off" (default ${DEFAULT_METRICS_ADDRESS})`,
    default: DEFAULT_METRICS_ADDRESS,
    description:
      'where `serve` answers Prometheus on /metrics: "HOST:PORT" with an IP address or localhost ("[::1]:9101" for IPv6; port 0 picks a free port), or "off"',
  },
};

export const SERVICE_KEYS = Object.keys(SERVICE_FIELDS) as ServiceKey[];

export interface MetricsAddress {
  host: string;
  port: number;
}

/** "HOST:PORT", "[V6]:PORT" or "off"; a string saying what is wrong otherwise. */
export function parseMetricsAddress(text: string): MetricsAddress | null | string {
  if (text === 'off') return null;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return 'must be "HOST:PORT" (e.g. "127.0.0.1:9101", "[::1]:9101") or "off"';
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port > 65535) return `port ${port} is above 65535`;
  if (m[1] !== undefined && net.isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  if (m[2] !== undefined && host !== 'localhost' && net.isIP(host) !== 4) {
    return `"${host}" is not an IPv4 address or localhost (write IPv6 addresses as "[::1]:PORT")`;
  }
  return { host, port };
}

/** The text form back ("[::1]:9101" for IPv6). */
export function formatAddress(a: MetricsAddress): string {
  return net.isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Every problem with one service setting's value (none when it is fine). */
export function checkServiceValue(key: ServiceKey, v: unknown): string | undefined {
  const f = SERVICE_FIELDS[key];
  if (typeof v !== 'string') return `must be a string, not ${JSON.stringify(v)}`;
  if (f.enum && !f.enum.includes(v)) return `must be one of ${f.enum.join(', ')}, not ${JSON.stringify(v)}`;
  if (key === 'metricsAddress') {
    const a = parseMetricsAddress(v);
    if (typeof a === 'string') return `${a}, not ${JSON.stringify(v)}`;
  }
  return undefined;
}
