// `ublk-ts add`: validate everything that can be validated before touching the kernel, then start
// the device's own server process (detached: Node cannot fork) and wait for it to say the disk is
// LIVE, or why not. Prints the new device like `list`, as ublksrv's `ublk add` does.

import type { RawOptions } from '../../../shared/options';
import { UsageError } from '../../../shared/errors';
import { checkAddOptions, checkTarget, optionLabel, DEVICE_MODEL, type AddSpec } from '../../spec';
import { checkResources } from '../../resource-check';
import { StateStore } from '../../state-store';
import { spawnServer } from '../../server/spawn';
import { runInForeground } from '../../server/foreground';
import { printDevice } from '../device-view';
import { requireControl, requireRoot } from '../../checks';

export interface AddDeps {
  euid?: number;
  cwd?: string;
  checkControl?: () => void;
  /** devices already there (state files), for the shared-resource rule */
  store?: StateStore;
}

export interface PreparedAdd {
  spec: AddSpec;
  foreground: boolean;
  logOpts: { level?: string; format?: string };
}

/** Validation of `add`'s options: usage errors first, then the system (a config file with --config). */
export function prepareAdd(raw: RawOptions, deps: AddDeps = {}, configPath?: string): PreparedAdd {
  const cwd = deps.cwd ?? process.cwd();
  let spec: AddSpec;
  let foreground: boolean;
  let logOpts: PreparedAdd['logOpts'] = {};
  if (configPath !== undefined) {
    // the file's one device, with the options given on the command line over it; the whole file
    // is checked like `serve` checks it, every problem listed, before anything else
    const { loadConfig } = require('../../../config/load-config') as typeof import('../../../config/load-config');
    const config = loadConfig({
      model: DEVICE_MODEL,
      path: configPath,
      deviceOverrides: raw,
      overrideCwd: cwd,
      overrideLabel: optionLabel,
      exactlyOneDevice: true,
    });
    spec = config.devices[0].spec;
    foreground = raw.foreground === true;
    logOpts = { level: config.logLevel, format: config.logFormat };
  } else {
    const r = checkAddOptions(raw, { source: 'cli', cwd });
    if (!r.spec) throw new UsageError(r.problems);
    spec = r.spec;
    foreground = r.foreground;
  }
  requireRoot('euid' in deps ? deps.euid : process.geteuid?.());
  (deps.checkControl ?? (() => requireControl()))();
  if (configPath === undefined) {
    const problems = checkTarget(spec);
    if (problems.length > 0) throw new UsageError(problems);
  }
  checkResources(spec, deps.store ?? new StateStore());
  return { spec, foreground, logOpts };
}

export async function runAdd(raw: RawOptions, deps: AddDeps = {}, configPath?: string): Promise<number> {
  const { spec, foreground, logOpts } = prepareAdd(raw, deps, configPath);
  if (foreground) return runInForeground({ action: 'add', spec }, (id) => printDevice(id), logOpts);
  // the detached server reads its log level from the environment (the config's, unless set)
  const env = logOpts.level ? { ...process.env, UBLK_TS_LOG_LEVEL: logOpts.level } : undefined;
  const { devId, notes } = await spawnServer({ action: 'add', spec }, { env, store: deps.store });
  for (const n of notes) process.stderr.write(`ublk-ts: note: ${n}\n`);
  await printDevice(devId);
  return 0;
}
