// Options declared once. One declaration per option gives its command-line spelling, its
// config-file field, its JSON Schema (TypeBox schemas are JSON Schema objects, used as they are),
// its TypeScript type (Static<>), its help text and its check (Value.Check), and the message a
// bad value gets: "<option> must be <what the schema allows>, not <the value given>".
//
// A group of options is an object of declarations keyed by the option's name in the spec; the
// common add options (add-options.ts) and each target's options (targets/*.ts) are groups.
// readGroup() reads a group from what the user gave: strings from the command line, JSON values
// from a config file; every problem is collected, none stops the others.

import * as path from 'node:path';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** How an option is spelled on the command line (ublksrv's spellings first, where it has one). */
export interface CliSpelling {
  short?: string;
  long: string;
  /** other accepted long spellings, hidden in help */
  aliases?: string[];
  /** the value's placeholder, e.g. "<nq>"; absent for a switch */
  arg?: string;
  /** may be given several times: the values come as a list (`--set a=1 --set b=2`) */
  repeatable?: boolean;
}

/** Where raw values come from: the command line gives strings, a config file JSON values. */
export interface ReadContext {
  source: 'cli' | 'file';
  /** relative paths are taken from here: the command's directory, or the config file's */
  cwd: string;
  /** options given on the command line over a config file's (`add --config F -q 2`) */
  fromCli?: { keys: ReadonlySet<string>; cwd: string };
}

/** The context one option's value is read in (a command-line override reads as the command line). */
function contextFor(key: string, ctx: ReadContext): ReadContext {
  return ctx.fromCli?.keys.has(key) ? { source: 'cli', cwd: ctx.fromCli.cwd } : ctx;
}

/** How one kind of value is read, checked and described. */
export interface Kind<S extends TSchema = TSchema> {
  /** a valid value; Value.Check(schema, v) decides */
  schema: S;
  /** what a config file may write, when that differs from the value (bytes: 4096 or "4K") */
  input?: TSchema;
  /** the raw value as a candidate value (undefined when it cannot even be read) */
  read(raw: unknown, ctx: ReadContext): unknown;
  /** what a message says a value must be (it may say it differently for a config file) */
  expect: string | ((source: ReadContext['source']) => string);
}

export interface OptionDecl<S extends TSchema = TSchema> {
  description: string;
  kind: Kind<S>;
  /** absent: not on the command line */
  cli?: CliSpelling;
  /** the config file's field name (default: the option's key); false: not in config files */
  field?: string | false;
  default?: Static<S>;
}

export type OptionGroup = Record<string, OptionDecl>;

/** A group's values: an option with a default is always there, the others may be absent. */
export type ValuesOf<G extends OptionGroup> = {
  [K in keyof G]: G[K] extends OptionDecl<infer S> ? (G[K] extends { default: unknown } ? Static<S> : Static<S> | undefined) : never;
};

export type RawOptions = Record<string, unknown>;

export function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** "-q/--queues" for messages and help. */
export function cliLabel(c: CliSpelling): string {
  return c.short ? `${c.short}/${c.long}` : c.long;
}

/** "512, 1024, 2048 or 4096" */
function orList(values: readonly (string | number | boolean)[]): string {
  const s = values.map(String);
  return s.length > 1 ? `${s.slice(0, -1).join(', ')} or ${s[s.length - 1]}` : s.join('');
}

/** A whole decimal number with nothing around it, from the command line. */
function cliInteger(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  return /^\s*-?\d+\s*$/.test(raw) ? Number(raw.trim()) : raw;
}

const SIZE_SUFFIX: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
export const BYTES_PATTERN = '^\\s*\\d+\\s*([kKmMgGtT]([iI]?[bB])?)?\\s*$';

/** Bytes: a whole number, or a string of one with a binary suffix (K, M, G, T; KiB and KB too). */
export function readBytes(raw: unknown): unknown {
  if (typeof raw === 'number') return raw;
  if (typeof raw !== 'string') return undefined;
  const m = /^\s*(\d+)\s*(?:([kmgt])(?:i?b)?)?\s*$/i.exec(raw);
  if (!m) return raw;
  return Number(m[1]) * (m[2] ? SIZE_SUFFIX[m[2].toLowerCase()] : 1);
}

/** The kinds of values options take. */
export const kinds = {
  /** A whole number in [min, max]. */
  int(min: number, max: number) {
    return {
      schema: Type.Integer({ minimum: min, maximum: max }),
      read: (raw: unknown, ctx: ReadContext) => (ctx.source === 'cli' ? cliInteger(raw) : raw),
      expect: `must be a whole number from ${min} to ${max}`,
    };
  },
  /** One of a few values (strings or numbers). */
  oneOf<const T extends string | number | boolean>(values: readonly T[]) {
    const numeric = values.every((v) => typeof v === 'number');
    return {
      schema: Type.Union(values.map((v) => Type.Literal(v))),
      read: (raw: unknown, ctx: ReadContext) => (numeric && ctx.source === 'cli' ? cliInteger(raw) : raw),
      expect: `must be ${orList(values.map((v) => (typeof v === 'string' && !numeric && values.some((x) => typeof x !== 'string') ? JSON.stringify(v) : v)))}`,
    };
  },
  /** On or off: present or absent on the command line, true or false in a file. */
  switch() {
    return {
      schema: Type.Boolean(),
      read: (raw: unknown) => (raw === 'true' ? true : raw === 'false' ? false : raw),
      expect: (source: ReadContext['source']) => (source === 'cli' ? 'is a switch and takes no value' : 'must be true or false'),
    };
  },
  /** ublksrv's 0|1 options (-r 1): 0 or 1 on the command line, true or false in a file. */
  zeroOrOne() {
    return {
      schema: Type.Boolean(),
      read: (raw: unknown) => (raw === 0 || raw === '0' ? false : raw === 1 || raw === '1' ? true : raw),
      expect: (source: ReadContext['source']) => (source === 'cli' ? 'must be 0 or 1' : 'must be true or false'),
    };
  },
  /** Bytes: a whole number or "512K" (K, M, G, T), within [min, max] and a multiple of `multipleOf`. */
  bytes(min: number, max: number, multipleOf?: number, expect?: string) {
    return {
      schema: Type.Integer({ minimum: min, maximum: max, ...(multipleOf ? { multipleOf } : {}) }),
      input: Type.Union([Type.Integer({ minimum: min }), Type.String({ pattern: BYTES_PATTERN })]),
      read: readBytes,
      expect:
        expect ??
        (multipleOf
          ? `must be a multiple of ${multipleOf} from ${min} to ${max} bytes (K, M, G, T suffixes allowed)`
          : `must be a whole number of bytes from ${min} to ${max} (K, M, G, T suffixes allowed)`),
    };
  },
  /** A path; relative ones are taken from the context's directory. */
  path() {
    return {
      schema: Type.String({ minLength: 1 }),
      read: (raw: unknown, ctx: ReadContext) => (typeof raw === 'string' && raw !== '' ? path.resolve(ctx.cwd, raw) : raw),
      expect: 'needs a path',
    };
  },
  /** `key=value` pairs: a list of them on the command line (a repeatable option), an object in a file. */
  keyValues() {
    return {
      schema: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }), Type.String()),
      read: (raw: unknown) => {
        if (!Array.isArray(raw)) return raw;
        const out: Record<string, string> = {};
        for (const kv of raw) {
          const m = typeof kv === 'string' ? /^([A-Za-z0-9_.-]+)=(.*)$/s.exec(kv) : null;
          if (!m) return kv;
          out[m[1]] = m[2];
        }
        return out;
      },
      expect: (source: ReadContext['source']) => (source === 'cli' ? 'must be key=value (letters, digits, "_.-" before the =)' : 'must be an object of strings'),
    };
  },
  /** A word matching `pattern` (a scheduler name, a host). */
  text(pattern: string, expect: string) {
    return { schema: Type.String({ pattern }), read: (raw: unknown) => raw, expect };
  },
};

/** Every option key a group declares for the command line, by its long spelling (and aliases). */
export function cliSpellings(group: OptionGroup): Array<{ key: string; decl: OptionDecl }> {
  return Object.entries(group)
    .filter(([, d]) => d.cli)
    .map(([key, decl]) => ({ key, decl }));
}

/** The config-file field name of an option, or undefined when it has none. */
export function fieldName(key: string, d: OptionDecl): string | undefined {
  return d.field === false ? undefined : (d.field ?? key);
}

/** The JSON Schema of a group's config-file fields, each with its description. */
export function fieldSchemas(group: OptionGroup): Record<string, TSchema> {
  const out: Record<string, TSchema> = {};
  for (const [key, d] of Object.entries(group)) {
    const name = fieldName(key, d);
    if (name === undefined) continue;
    out[name] = { ...(d.kind.input ?? d.kind.schema), description: d.description } as TSchema;
  }
  return out;
}

export interface GroupContext extends ReadContext {
  /** how a message names an option: "-q/--queues", or a config file's "devices[0].queues" */
  label(key: string): string;
}

/**
 * Reads every option of `group` that `raw` gives (by key), with defaults for the rest. A value
 * that does not read or check gets one message naming the option, what it must be and what was
 * given. Keys of `raw` that the group does not declare are left to the caller.
 */
export function readGroup<G extends OptionGroup>(group: G, raw: RawOptions, ctx: GroupContext): { values: ValuesOf<G>; problems: string[] } {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, d] of Object.entries(group)) {
    const given = raw[key];
    if (given === undefined) {
      if (d.default !== undefined) values[key] = d.default;
      continue;
    }
    const v = d.kind.read(given, contextFor(key, ctx));
    if (v === undefined || !Value.Check(d.kind.schema, v)) {
      const c = contextFor(key, ctx);
      const expect = typeof d.kind.expect === 'function' ? d.kind.expect(c.source) : d.kind.expect;
      problems.push(`${ctx.label(key)} ${expect}, not ${show(given)}`);
      if (d.default !== undefined) values[key] = d.default;
      continue;
    }
    values[key] = v;
  }
  return { values: values as ValuesOf<G>, problems };
}
