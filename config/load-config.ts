// Loads the configuration ONCE: command-line flags > environment (UBLK_TS_*) > config file(s) >
// defaults, merged into one typed, deeply frozen object. Every problem is collected and thrown
// together (ConfigError), each naming its source and the JSON path of the bad field, before
// anything touches the kernel.
//
// A config is a JSON file, or a directory whose *.json files (not recursive, dotfiles skipped) are
// read in name order as if they were one. Format: config/README.md; schema: ublk-ts.schema.json.
//
// What a device entry may hold is the caller's DeviceModel (the daemon's is daemon/spec.ts): this
// file knows the file format, the service settings and the rules between devices, no target.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DeviceModel } from '../shared/device-model';
import { ConfigError } from '../shared/errors';
import type { LogFormat, LogLevel } from '../shared/log';
import type { RawOptions } from '../shared/options';
import { resourceClashes, type ResourceHolder } from '../shared/resources';
import type { TargetFs } from '../shared/target';
import {
  CONFIG_ENV,
  DEFAULT_CONFIG_PATH,
  SERVICE_FIELDS,
  SERVICE_KEYS,
  checkServiceValue,
  parseMetricsAddress,
  type MetricsAddress,
  type ServiceKey,
} from './service-settings';

const TOP_KEYS = ['$schema', 'service', 'devices'];
/** A device entry's own field besides its add options. */
export const NAME_FIELD = 'name';
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export interface DeviceConfig<Spec = unknown> {
  /** unique in the config; logs, STATUS= and metrics use it; SIGHUP matches devices by it */
  readonly name: string;
  readonly spec: Readonly<Spec>;
  /** where it was declared, e.g. "/etc/ublk-ts/a.json: devices[0]" */
  readonly origin: string;
}

export { CONFIG_ENV, DEFAULT_CONFIG_PATH };

/** Where a service setting's value came from. */
export type Origin = 'cli' | 'env' | 'default' | `file ${string}`;

export interface Config<Spec = unknown> {
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** null: no metrics endpoint */
  readonly metrics: Readonly<MetricsAddress> | null;
  readonly devices: readonly DeviceConfig<Spec>[];
  /** the config files read, in order */
  readonly files: readonly string[];
  readonly origins: Readonly<Record<ServiceKey, Origin>>;
}

export interface LoadOptions<Spec> {
  /** what a device entry may hold and how it is checked */
  model: DeviceModel<Spec>;
  /** a file or a directory; default: $UBLK_TS_CONFIG, else /etc/ublk-ts */
  path?: string;
  /** service settings from the command line */
  cli?: Partial<Record<ServiceKey, string>>;
  env?: NodeJS.ProcessEnv;
  /** add options from the command line (by key), applied over every device (`add --config FILE -q 4`) */
  deviceOverrides?: RawOptions;
  /** how messages name an overriding option ("-q/--queues") */
  overrideLabel?: (key: string) => string;
  /** where relative paths among the overrides are taken from (the command's directory) */
  overrideCwd?: string;
  /** `add --config`: the config must declare exactly one device */
  exactlyOneDevice?: boolean;
  /** check the targets against the system, their files (default true); tests pass a fake file system */
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
  /** option values by key */
  raw: RawOptions;
  file: string;
  at: string;
}

/** A device entry's fields as option values by key; unknown fields are problems. */
function readDevice<Spec>(v: Json, file: string, at: string, defaultName: string, model: DeviceModel<Spec>, problems: string[]): RawDevice | undefined {
  const err = (p: string, msg: string) => problems.push(`${file}: ${p} ${msg}`);
  if (!isObject(v)) {
    err(at, `must be an object, not ${show(v)}`);
    return undefined;
  }
  const raw: RawOptions = {};
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
    const key = model.keyOfField(k);
    if (!key) {
      err(`${at}.${k}`, `is not a device setting (known: ${[NAME_FIELD, ...model.fieldNames()].join(', ')})`);
      continue;
    }
    raw[key] = value;
  }
  return { name, nameGiven, raw, file, at };
}

interface FileContent {
  service: Partial<Record<ServiceKey, string>>;
  devices: RawDevice[];
}

function readFile<Spec>(file: string, model: DeviceModel<Spec>, problems: string[]): FileContent {
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
        const dev = readDevice(d, file, `devices[${i}]`, n === 1 ? stem : `${stem}-${i}`, model, problems);
        if (dev) out.devices.push(dev);
      });
    }
  }
  return out;
}

/** A target's message ("-f /x: no such file or directory") said with the entry's JSON path. */
function targetProblem(p: string, at: string): string {
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
export function loadConfig<Spec>(opts: LoadOptions<Spec>): Config<Spec> {
  const model = opts.model;
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const configPath = path.resolve(opts.path ?? (env[CONFIG_ENV] || DEFAULT_CONFIG_PATH));
  const files = configFiles(configPath, problems);
  if (opts.exactlyOneDevice && files.length > 1) problems.push(`${configPath}: must be one file here, not a directory`);
  const contents = files.map((f) => ({ file: f, ...readFile(f, model, problems) }));

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
  const devices: DeviceConfig<Spec>[] = [];
  const byName = new Map<string, string>();
  const byId = new Map<number, string>();
  const holders: ResourceHolder[] = [];
  const overrides = opts.deviceOverrides ?? {};
  const all = contents.flatMap((c) => c.devices);
  if (opts.exactlyOneDevice && files.length === 1 && all.length !== 1) {
    problems.push(`${files[0]}: must declare exactly one device for \`add --config\`, not ${all.length}`);
  }
  for (const d of all) {
    const where = `${d.file}: ${d.at}`;
    const raw: RawOptions = { ...d.raw };
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) raw[k] = v;
    // options given on the command line keep their command-line names in messages
    const label = (k: string) => (overrides[k] !== undefined && opts.overrideLabel ? opts.overrideLabel(k) : `${d.at}.${model.fieldOfKey(k)}`);
    // values from the command line were made absolute where they were given
    const fromCli = { keys: new Set(Object.keys(overrides).filter((k) => overrides[k] !== undefined)), cwd: opts.overrideCwd ?? process.cwd() };
    const { spec, candidate, problems: p } = model.check(raw, { source: 'file', cwd: path.dirname(d.file), label, fromCli });
    for (const x of p) problems.push(`${d.file}: ${x}`);
    // a device with bad common options still gets its target and its clashes checked
    const checked = spec ?? candidate;
    if (checked && opts.targetFs !== false) {
      for (const x of model.checkTarget(checked, opts.targetFs)) problems.push(`${d.file}: ${targetProblem(x, d.at)}`);
    }
    const seenName = byName.get(d.name);
    if (seenName) {
      problems.push(`${d.file}: ${d.at}${d.nameGiven ? '.name' : ''} device name ${show(d.name)} is also used by ${seenName}`);
    } else byName.set(d.name, where);
    if (checked) {
      const devId = model.idOf(checked);
      if (devId >= 0) {
        const seenId = byId.get(devId);
        if (seenId) problems.push(`${d.file}: ${label('id')} ${devId} is also the id of ${seenId}`);
        else byId.set(devId, where);
      }
      const holder = model.holder(checked, where);
      for (const x of resourceClashes(holder, holders, (r) => `${d.at}: ${r.what} ${show(r.path)}`)) problems.push(`${d.file}: ${x}`);
      holders.push(holder);
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
