// The add spec: the common options (shared/add-options.ts) plus the part of one target, read and
// checked in one place for the command line, config files, state files and `recover -t`. The
// target's options come from its descriptor in the registry; nothing here names a target.
//
//   AddSpec = CommonSpec & { target: { kind: 'loop', file, ... } }

import { COMMON_OPTIONS, readCommon, type CommonSpec } from '../shared/add-options';
import type { DeviceModel } from '../shared/device-model';
import { UsageError } from '../shared/errors';
import {
  cliLabel,
  fieldName,
  fieldSchemas,
  kinds,
  readGroup,
  show,
  type GroupContext,
  type OptionDecl,
  type RawOptions,
  type ReadContext,
} from '../shared/options';
import type { ResourceHolder } from '../shared/resources';
import { realFs, type AnyTarget, type TargetFs, type TargetPart, type TargetResource } from '../shared/target';
import { TARGETS, targetNamed } from '../targets/registry';
import { migrateSpec } from './spec-migrate';

export { migrateSpec } from './spec-migrate';

export type { CommonSpec } from '../shared/add-options';

/** A validated `add` request: everything a device server needs, kept in the state file for recovery. */
export type AddSpec = CommonSpec & { target: TargetPart };

const TARGET_NAMES = TARGETS.map((t) => t.name);
/** "loop, null or nbd" */
const TARGETS_TEXT = TARGET_NAMES.length > 1 ? `${TARGET_NAMES.slice(0, -1).join(', ')} or ${TARGET_NAMES[TARGET_NAMES.length - 1]}` : TARGET_NAMES.join('');

/** -t/--type: the target, one of the registry's names. */
export const TARGET_OPTION: OptionDecl = {
  cli: { short: '-t', long: '--type', arg: `<${TARGET_NAMES.join('|')}>` },
  field: 'target',
  description: `target type (required): ${TARGET_NAMES.map((n) => `${n} (${targetNamed(n)?.summary})`).join('; ')}`,
  kind: kinds.oneOf(TARGET_NAMES),
};

export interface AddOptionEntry {
  key: string;
  decl: OptionDecl;
  /** the targets that declare it; empty for the common options and -t */
  targets: string[];
  /** help text: the description, prefixed by the targets it is for ("loop: ...; null: ...") */
  help: string;
}

/**
 * Every add option once, by key: -t, the common ones, then each target's (an option two targets
 * declare, such as --size, is one entry naming both; they must spell it the same way).
 */
export function addOptions(): AddOptionEntry[] {
  const out: AddOptionEntry[] = [{ key: 'target', decl: TARGET_OPTION, targets: [], help: TARGET_OPTION.description }];
  for (const [key, decl] of Object.entries(COMMON_OPTIONS)) out.push({ key, decl: decl as OptionDecl, targets: [], help: decl.description });
  for (const t of TARGETS) {
    for (const [key, decl] of Object.entries(t.options as Record<string, OptionDecl>)) {
      const seen = out.find((e) => e.key === key);
      if (!seen) {
        out.push({ key, decl, targets: [t.name], help: `${t.name}: ${decl.description}` });
        continue;
      }
      if (seen.targets.length === 0 || JSON.stringify(seen.decl.cli) !== JSON.stringify(decl.cli) || fieldName(key, seen.decl) !== fieldName(key, decl)) {
        throw new Error(`target ${t.name}: option ${key} is declared differently elsewhere (${seen.targets.join(', ') || 'common'})`);
      }
      seen.targets.push(t.name);
      seen.help = seen.help.startsWith(`${seen.targets[0]}: ${decl.description}`)
        ? `${seen.targets.join(', ')}: ${decl.description}`
        : `${seen.help}; ${t.name}: ${decl.description}`;
    }
  }
  return out;
}

let entries: AddOptionEntry[] | undefined;
function entryOf(key: string): AddOptionEntry | undefined {
  entries ??= addOptions();
  return entries.find((e) => e.key === key);
}

/** How the command line names an option in messages: "-q/--queues". */
export function optionLabel(key: string): string {
  const c = entryOf(key)?.decl.cli;
  return c ? cliLabel(c) : key;
}

export interface SpecContext {
  source: 'cli' | 'file';
  cwd: string;
  fromCli?: ReadContext['fromCli'];
  /** how messages name an option (default: optionLabel; a config file passes its JSON paths) */
  label?: (key: string) => string;
}

export interface SpecResult {
  spec?: AddSpec;
  /**
   * With problems in the common options only: the spec with their defaults, so that the target's
   * own checks (its files) and the checks between devices still run and every problem is listed.
   */
  candidate?: AddSpec;
  /** `add --foreground` (how to run, not part of the spec) */
  foreground: boolean;
  problems: string[];
}

/**
 * Reads an add request (option values by key) into an AddSpec: every problem at once, each naming
 * its option, its range and the value given. Needs no system access (the target's files are
 * checked by checkTarget).
 */
export function checkAddOptions(raw: RawOptions, sctx: SpecContext): SpecResult {
  const label = sctx.label ?? optionLabel;
  const ctx: GroupContext = { source: sctx.source, cwd: sctx.cwd, fromCli: sctx.fromCli, label };
  const problems: string[] = [];
  entries ??= addOptions();
  for (const k of Object.keys(raw)) {
    if (raw[k] !== undefined && !entryOf(k)) problems.push(`unknown option "${k}"`);
  }

  // -t
  let target: AnyTarget | undefined;
  if (raw.target === undefined) problems.push(`${label('target')} is required (${TARGETS_TEXT})`);
  else {
    target = targetNamed(String(raw.target));
    if (!target || typeof raw.target !== 'string') {
      target = undefined;
      problems.push(`${label('target')} must be ${TARGETS_TEXT}, not ${show(raw.target)}`);
    }
  }

  const { common, foreground, problems: commonProblems } = readCommon(raw, ctx);
  problems.push(...commonProblems);
  if (!target) return { foreground, problems };

  // the target's own options; another target's options are refused by name
  const own = target.options as Record<string, OptionDecl>;
  const ownRaw: RawOptions = {};
  for (const e of entries) {
    if (e.targets.length === 0 || raw[e.key] === undefined) continue;
    if (own[e.key]) ownRaw[e.key] = raw[e.key];
    else problems.push(`${label(e.key)} is only for ${e.targets.map((n) => `${sctx.label ? `${label('target')} "${n}"` : `-t ${n}`}`).join(' or ')}`);
  }
  const { values, problems: targetProblems } = readGroup(own, ownRaw, ctx);
  problems.push(...targetProblems);
  const tLabel = sctx.label ? `${label('target')} "${target.name}"` : `-t ${target.name}`;
  for (const k of target.required ?? []) {
    if (ownRaw[k] === undefined) problems.push(`${tLabel} needs ${label(k)}${own[k].cli?.arg ? ` ${own[k].cli.arg.replace(/[<>]/g, '').toUpperCase()}` : ''}`);
  }
  if (targetProblems.length === 0) problems.push(...(target.check?.(values, common, label) ?? []));
  const built: AddSpec = { ...common, target: { kind: target.name, ...values } };
  const ownOk = targetProblems.length === 0 && (target.required ?? []).every((k) => ownRaw[k] !== undefined);

  // what the target can serve
  const caps = target.capabilities;
  const why = caps.whyNot ? `: ${caps.whyNot}` : '';
  if (common.zeroCopy !== 'off' && !caps.dataModes.includes(common.zeroCopy === 'auto' ? 'zc_auto' : 'zc_explicit')) {
    problems.push(`${label('zeroCopy')}: the ${target.name} target cannot use zero copy${why}`);
  }
  if (common.userCopy && !caps.dataModes.includes('user_copy')) problems.push(`${label('userCopy')}: the ${target.name} target cannot use user copy${why}`);
  if (!common.userCopy && common.zeroCopy === 'off' && !caps.dataModes.includes('copy')) problems.push(`the ${target.name} target needs -z or --usercopy${why}`);

  if (problems.length > 0) return { foreground, problems, ...(ownOk ? { candidate: built } : {}) };
  return { spec: built, foreground, problems };
}

/** checkAddOptions that throws one UsageError listing every problem. */
export function validateAddOptions(raw: RawOptions, sctx: SpecContext): AddSpec {
  const r = checkAddOptions(raw, sctx);
  if (!r.spec) throw new UsageError(r.problems);
  return r.spec;
}

/** The descriptor of a spec's target (validated specs name a known one). */
export function targetOf(spec: AddSpec): AnyTarget {
  const t = targetNamed(spec.target.kind);
  if (!t) throw new UsageError(`unknown target "${spec.target.kind}"`);
  return t;
}

/** The target's checks against the system (files, devices), as the target words them. */
export function checkTarget(spec: AddSpec, fs: TargetFs = realFs): string[] {
  return targetOf(spec).validate(spec.target, spec, fs);
}

export function resourcesOf(spec: AddSpec): TargetResource[] {
  return targetOf(spec).resources(spec.target, spec);
}

export function holderOf(spec: AddSpec, name: string): ResourceHolder {
  return { name, resources: resourcesOf(spec), shared: spec.shared };
}

/** The spec as the option values `add` would have been given for it (by key). */
export function specToRaw(spec: AddSpec): RawOptions {
  const { target, zeroCopy, recovery, recoveryReissue, recoveryFailIo, ...common } = spec;
  const { kind, ...own } = target;
  const raw: RawOptions = { ...common, target: kind, recovery };
  if (recoveryReissue) raw.recoveryReissue = true;
  if (recoveryFailIo) raw.recoveryFailIo = true;
  if (zeroCopy !== 'off') {
    raw.zeroCopy = true;
    raw.zcMode = zeroCopy;
  }
  for (const [k, v] of Object.entries(own)) if (v !== undefined) raw[k] = v;
  return raw;
}

/** Reads a spec kept in a state file (or a spawn argument) back, checking it like new input. */
export function reviveSpec(v: unknown): SpecResult {
  if (typeof v !== 'object' || v === null) return { foreground: false, problems: ['no device spec'] };
  const spec = migrateSpec(v as Record<string, unknown>);
  const raw = specToRaw(spec as AddSpec);
  return checkAddOptions(raw, { source: 'file', cwd: '/', label: (k) => k });
}

function deviceSchema(): Record<string, unknown> {
  const common: Record<string, unknown> = { target: { ...TARGET_OPTION.kind.schema, description: TARGET_OPTION.description } };
  Object.assign(common, fieldSchemas(COMMON_OPTIONS as Record<string, OptionDecl>));
  return {
    type: 'object',
    required: ['target'],
    properties: common,
    // each target's own fields, allowed only with its name (unevaluatedProperties sees through if/then)
    allOf: TARGETS.map((t) => ({
      if: { properties: { target: { const: t.name } }, required: ['target'] },
      then: {
        properties: fieldSchemas(t.options as Record<string, OptionDecl>),
        ...(t.required?.length ? { required: t.required.map((k) => fieldName(k, (t.options as Record<string, OptionDecl>)[k])) } : {}),
      },
    })),
    unevaluatedProperties: false,
  };
}

/** The device model config files are read with (config/load-config.ts). */
export const DEVICE_MODEL: DeviceModel<AddSpec> = {
  keyOfField(field) {
    entries ??= addOptions();
    return entries.find((e) => fieldName(e.key, e.decl) === field)?.key;
  },
  fieldOfKey(key) {
    const e = entryOf(key);
    return (e && fieldName(key, e.decl)) ?? key;
  },
  fieldNames() {
    entries ??= addOptions();
    return entries.flatMap((e) => fieldName(e.key, e.decl) ?? []);
  },
  check(raw, ctx) {
    return checkAddOptions(raw, { source: ctx.source, cwd: ctx.cwd, fromCli: ctx.fromCli, label: ctx.label });
  },
  checkTarget,
  holder: holderOf,
  idOf: (spec) => spec.id,
  schema: deviceSchema,
};

/**
 * `recover -t TYPE TARGET-OPTIONS` (as ublksrv's recover is called): the target and each option
 * given must be what the disk was added with. Throws UsageError naming every difference.
 */
export function checkSameTarget(given: RawOptions, saved: AddSpec, devId: number, cwd: string): void {
  const problems: string[] = [];
  const kind = given.target;
  if (kind !== undefined && kind !== saved.target.kind) {
    problems.push(`device ${devId} is a ${saved.target.kind} disk, not ${show(kind)}`);
  } else {
    const own = targetOf(saved).options as Record<string, OptionDecl>;
    const raw: RawOptions = {};
    for (const [k, v] of Object.entries(given)) {
      if (k === 'target' || v === undefined) continue;
      if (!own[k]) problems.push(`${optionLabel(k)} is not an option of a ${saved.target.kind} disk`);
      else raw[k] = v;
    }
    const { values, problems: p } = readGroup(own, raw, { source: 'cli', cwd, label: optionLabel });
    problems.push(...p);
    for (const k of Object.keys(raw)) {
      const want = (saved.target as Record<string, unknown>)[k];
      const got = (values as Record<string, unknown>)[k];
      if (p.length === 0 && JSON.stringify(want) !== JSON.stringify(got)) {
        problems.push(`device ${devId} was added with ${optionLabel(k)} ${show(want)}, not ${show(got)}`);
      }
    }
  }
  if (problems.length > 0) throw new UsageError([...problems, 'refusing to recover a disk with other options than it was added with']);
}
