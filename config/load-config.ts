// Loads the configuration ONCE: command-line flags > environment (UBLK_TS_*) > config file(s) >
// defaults, merged into one typed, deeply frozen object. Every problem is collected and thrown
// together (ConfigError), each naming its source and the JSON path of the bad field, before
// anything touches the kernel.
//
// A config is a JSON file, or a directory whose *.json files (not recursive, dotfiles skipped) are
// read in name order as if they were one. Format: config/README.md; schema: ublk-ts.schema.json.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { optionLabel, validateAddOptions, type AddOptionKey, type AddSpec, type RawAddOptions } from '../daemon/add-options';
import { ConfigError, UsageError } from '../daemon/errors';
import type { LogFormat, LogLevel } from '../daemon/log';
import { getTarget, realFs, type TargetFs } from '../targets/index';
import { DEVICE_FIELDS, FIELD_KEYS, NAME_FIELD, configNameOf, fieldByConfigName, hasType, toRaw, typeName } from './device-fields';
import {
  CONFIG_ENV,
  DEFAULT_CONFIG_PATH,
  SERVICE_FIELDS,
  SERVICE_KEYS,
  checkServiceValue,
  parseMetricsAddress,
  type MetricsAddress,
  type ServiceKey,
} from './service-fields';

const TOP_KEYS = ['$schema', 'service', 'devices'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export interface DeviceConfig {
  /** unique in the config; logs, STATUS= and metrics use it; SIGHUP matches devices by it */
  readonly name: string;
  readonly spec: Readonly<AddSpec>;
  /** where it was declared, e.g. "/etc/ublk-ts/a.json: devices[0]" */
  readonly origin: string;
}

export { CONFIG_ENV, DEFAULT_CONFIG_PATH };

/** Where a service setting's value came from. */
export type Origin = 'cli' | 'env' | 'default' | `file ${string}`;

export interface Config {
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** null: no metrics endpoint */
  readonly metrics: Readonly<MetricsAddress> | null;
  readonly devices: readonly DeviceConfig[];
  /** the config files read, in order */
  readonly files: readonly string[];
  readonly origins: Readonly<Record<ServiceKey, Origin>>;
}

export interface LoadOptions {
  /** a file or a directory; default: $UBLK_TS_CONFIG, else /etc/ublk-ts */
  path?: string;
  /** service settings from the command line */
  cli?: Partial<Record<ServiceKey, string>>;
  env?: NodeJS.ProcessEnv;
  /** add options from the command line, applied over every device (`add --config FILE -q 4`) */
  deviceOverrides?: RawAddOptions;
  /** `add --config`: the config must declare exactly one device */
  exactlyOneDevice?: boolean;
  /** check backing files (default true); tests pass a fake file system */
  targetFs?: TargetFs | false;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const show = (v: unknown) => JSON.stringify(v);

/** The *.json files a config path stands for; problems when there are none to read. */
export function configFiles(p: string, problems: string[]): string[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push(`${p}: ${code === 'ENOENT' ? 'no such file or directory' : `cannot read (${code})`}`);
    return [];
  }
  if (!st.isDirectory()) return [p];
  return fs
    .readdirSync(p)
    .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
    .sort()
    .map((n) => path.join(p, n))
    .filter((f) => fs.statSync(f).isFile());
}

/** "line L, column C" for JSON.parse's "at position N". */
function whereInText(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return message;
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  const col = before.length - before.lastIndexOf('\n');
  return `${message.replace(/ in JSON at position \d+.*$/, '')} at line ${line}, column ${col}`;
}

function readJson(file: string, problems: string[]): Json | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return undefined;
  }
  try {
    return JSON.parse(text) as Json;
  } catch (err) {
    problems.push(`${file}: not valid JSON: ${whereInText(text, (err as Error).message)}`);
    return undefined;
  }
}

interface RawDevice {
  name: string;
  nameGiven: boolean;
  raw: RawAddOptions;
  file: string;
  at: string;
}

/** Checks a device entry's keys and JSON types; the values are validateAddOptions' business. */
function readDevice(v: Json, file: string, at: string, defaultName: string, problems: string[]): RawDevice | undefined {
  const err = (p: string, msg: string) => problems.push(`${file}: ${p} ${msg}`);
  if (!isObject(v)) {
    err(at, `must be an object, not ${show(v)}`);
    return undefined;
  }
  const raw: RawAddOptions = {};
  let name = defaultName;
  let nameGiven = false;
  for (const [k, value] of Object.entries(v)) {
    if (k === NAME_FIELD) {
      if (typeof value !== 'string' || !NAME_RE.test(value)) {
        err(`${at}.name`, `must be 1-64 letters, digits, or "_.@-", starting with a letter or digit, not ${show(value)}`);
      } else {
        name = value;
        nameGiven = true;
      }
      continue;
    }
    const key = fieldByConfigName(k);
    if (!key) {
      const known = [NAME_FIELD, ...FIELD_KEYS.map((f) => DEVICE_FIELDS[f].name)].join(', ');
      err(`${at}.${k}`, `is not a device setting (known: ${known})`);
      continue;
    }
    const f = DEVICE_FIELDS[key];
    if (!hasType(f.type, value)) {
      err(`${at}.${k}`, `must be ${typeName(f.type)}, not ${show(value)}`);
      continue;
    }
    toRaw(key, value, raw);
  }
  return { name, nameGiven, raw, file, at };
}

interface FileContent {
  service: Partial<Record<ServiceKey, string>>;
  devices: RawDevice[];
}

function readFile(file: string, problems: string[]): FileContent {
  const out: FileContent = { service: {}, devices: [] };
  const doc = readJson(file, problems);
  if (doc === undefined) return out;
  const err = (p: string, msg: string) => problems.push(`${file}: ${p} ${msg}`);
  if (!isObject(doc)) {
    err('(top level)', `must be an object with "service" and/or "devices", not ${show(doc)}`);
    return out;
  }
  for (const k of Object.keys(doc)) {
    if (!TOP_KEYS.includes(k)) err(k, `is not a setting (known: ${TOP_KEYS.join(', ')})`);
  }
  if (doc.service !== undefined) {
    if (!isObject(doc.service)) err('service', `must be an object, not ${show(doc.service)}`);
    else {
      for (const [k, v] of Object.entries(doc.service)) {
        if (!(SERVICE_KEYS as string[]).includes(k)) {
          err(`service.${k}`, `is not a service setting (known: ${SERVICE_KEYS.join(', ')})`);
          continue;
        }
        const bad = checkServiceValue(k as ServiceKey, v);
        if (bad) err(`service.${k}`, bad);
        else out.service[k as ServiceKey] = v as string;
      }
    }
  }
  if (doc.devices !== undefined) {
    if (!Array.isArray(doc.devices)) err('devices', `must be an array of devices, not ${show(doc.devices)}`);
    else {
      const stem = path.basename(file, '.json');
      const n = doc.devices.length;
      doc.devices.forEach((d, i) => {
        const dev = readDevice(d, file, `devices[${i}]`, n === 1 ? stem : `${stem}-${i}`, problems);
        if (dev) out.devices.push(dev);
      });
    }
  }
  return out;
}

/** A target's message ("-f /x: no such file or directory") said with the field's JSON path. */
function targetProblem(p: string, at: string): string {
  const f = /^-f (.*?): (.*)$/.exec(p);
  if (f) return `${at}.file ${show(f[1])}: ${f[2]}`;
  const s = /^--size (.*)$/.exec(p);
  if (s) return `${at}.size ${s[1]}`;
  return `${at}: ${p}`;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Loads, merges and checks the configuration; throws ConfigError listing every problem. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const configPath = path.resolve(opts.path ?? (env[CONFIG_ENV] || DEFAULT_CONFIG_PATH));
  const files = configFiles(configPath, problems);
  if (opts.exactlyOneDevice && files.length > 1) problems.push(`${configPath}: must be one file here, not a directory`);
  const contents = files.map((f) => ({ file: f, ...readFile(f, problems) }));

  // service settings: cli > env > file(s) > default; two files may not disagree
  const values = {} as Record<ServiceKey, string>;
  const origins = {} as Record<ServiceKey, Origin>;
  for (const key of SERVICE_KEYS) {
    const f = SERVICE_FIELDS[key];
    let fromFile: { v: string; file: string } | undefined;
    for (const c of contents) {
      const v = c.service[key];
      if (v === undefined) continue;
      if (fromFile && fromFile.v !== v) {
        problems.push(`${c.file}: service.${key} ${show(v)} disagrees with ${show(fromFile.v)} in ${fromFile.file}`);
      } else fromFile ??= { v, file: c.file };
    }
    const cli = opts.cli?.[key];
    const fromEnv = env[f.env];
    if (cli !== undefined) {
      const bad = checkServiceValue(key, cli);
      if (bad) problems.push(`${f.cli} ${bad}`);
      [values[key], origins[key]] = [cli, 'cli'];
    } else if (fromEnv !== undefined && fromEnv !== '') {
      const bad = checkServiceValue(key, fromEnv);
      if (bad) problems.push(`$${f.env} ${bad}`);
      [values[key], origins[key]] = [fromEnv, 'env'];
    } else if (fromFile) {
      [values[key], origins[key]] = [fromFile.v, `file ${fromFile.file}`];
    } else {
      [values[key], origins[key]] = [f.default, 'default'];
    }
  }

  // devices: each checked alone, then against each other
  const devices: DeviceConfig[] = [];
  const byName = new Map<string, string>();
  const byId = new Map<number, string>();
  const byFile = new Map<string, { where: string; readOnly: boolean }>();
  const overrides = opts.deviceOverrides ?? {};
  const all = contents.flatMap((c) => c.devices);
  if (opts.exactlyOneDevice && files.length === 1 && all.length !== 1) {
    problems.push(`${files[0]}: must declare exactly one device for \`add --config\`, not ${all.length}`);
  }
  for (const d of all) {
    const where = `${d.file}: ${d.at}`;
    const raw: RawAddOptions = { ...d.raw };
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) raw[k] = v;
    // options given on the command line keep their command-line names in messages
    const label = (k: AddOptionKey) => (overrides[k] !== undefined ? optionLabel(k) : `${d.at}.${configNameOf(k)}`);
    let spec: AddSpec | undefined;
    try {
      spec = validateAddOptions(raw, { cwd: path.dirname(d.file), label });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      for (const p of err.problems) problems.push(`${d.file}: ${p}`);
    }
    if (spec && opts.targetFs !== false) {
      for (const p of getTarget(spec.target).validate(spec, opts.targetFs ?? realFs)) {
        problems.push(`${d.file}: ${targetProblem(p, d.at)}`);
      }
    }
    // Clashes between devices are checked even for a device with other problems (from its raw
    // values then): every problem is listed in one go.
    const devId = spec ? spec.devId : typeof raw.number === 'number' ? raw.number : -1;
    const file = spec ? spec.file : typeof raw.file === 'string' && raw.file ? path.resolve(path.dirname(d.file), raw.file) : undefined;
    const readOnly = spec ? spec.readOnly : raw.readOnly === true;
    const seenName = byName.get(d.name);
    if (seenName) {
      problems.push(`${d.file}: ${d.at}${d.nameGiven ? '.name' : ''} device name ${show(d.name)} is also used by ${seenName}`);
    } else byName.set(d.name, where);
    if (devId >= 0) {
      const seenId = byId.get(devId);
      if (seenId) problems.push(`${d.file}: ${label('number')} ${devId} is also the id of ${seenId}`);
      else byId.set(devId, where);
    }
    if (file) {
      const seenFile = byFile.get(file);
      if (seenFile && !(seenFile.readOnly && readOnly)) {
        problems.push(
          `${d.file}: ${label('file')} ${show(file)} is also the backing file of ${seenFile.where} (only read-only devices may share one)`,
        );
      } else if (!seenFile) byFile.set(file, { where, readOnly });
    }
    if (spec) devices.push({ name: d.name, spec, origin: where });
  }

  if (problems.length > 0) throw new ConfigError(problems);
  const metrics = parseMetricsAddress(values.metricsAddress) as MetricsAddress | null;
  return deepFreeze({
    logLevel: values.logLevel as LogLevel,
    logFormat: values.logFormat as LogFormat,
    metrics,
    devices,
    files,
    origins,
  });
}
