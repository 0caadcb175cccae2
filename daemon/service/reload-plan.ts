// What a SIGHUP reload does, decided apart from doing it (so it can be tested alone): compare
// the settings and devices in force with a freshly loaded config.
//   live:             log level; devices added to the config; devices removed from it; devices
//                     of the config that are down (failed, or stopped from outside) come back.
//   restart needed:   the metrics address and log format; a running device whose settings
//                     changed keeps running as it is (re-creating it would take its disk away).

import type { AddSpec } from '../spec';

type Config = AnyConfig<AddSpec>;
type DeviceConfig = AnyDeviceConfig<AddSpec>;
import type { LogLevel } from '../../shared/log';
import type { Config as AnyConfig, DeviceConfig as AnyDeviceConfig } from '../../config/load-config';
import { formatAddress } from '../../config/service-settings';

export interface RunningDevice {
  cfg: DeviceConfig;
  /** starting or live (false: failed, or stopped from outside) */
  up: boolean;
}

export interface ReloadPlan {
  logLevel?: LogLevel;
  /** settings that changed in the file but only apply after a restart, as "what: old → new" */
  restartNeeded: string[];
  remove: string[];
  add: DeviceConfig[];
  /** running devices whose settings changed: their new settings wait for a restart */
  changed: Array<{ name: string; fields: string[] }>;
}

export type AppliedSettings = Pick<Config, 'logLevel' | 'logFormat' | 'metrics'>;

const metricsText = (m: Config['metrics']) => (m ? formatAddress(m) : 'off');

/** AddSpec fields whose values differ (foreground is how a server runs, not what it serves). */
export function specChanges(a: AddSpec, b: AddSpec): string[] {
  const flat = (s: AddSpec): Record<string, unknown> => {
    const { target, ...common } = s;
    return { ...common, ...Object.fromEntries(Object.entries(target).map(([k, v]) => [k === 'kind' ? 'target' : k, v])) };
  };
  const fa = flat(a);
  const fb = flat(b);
  const keys = new Set([...Object.keys(fa), ...Object.keys(fb)]);
  return [...keys].filter((k) => JSON.stringify(fa[k]) !== JSON.stringify(fb[k])).sort();
}

export function planReload(applied: AppliedSettings, running: ReadonlyMap<string, RunningDevice>, next: Config): ReloadPlan {
  const plan: ReloadPlan = { restartNeeded: [], remove: [], add: [], changed: [] };
  if (next.logLevel !== applied.logLevel) plan.logLevel = next.logLevel;
  if (next.logFormat !== applied.logFormat) plan.restartNeeded.push(`logFormat: ${applied.logFormat} → ${next.logFormat}`);
  if (metricsText(next.metrics) !== metricsText(applied.metrics)) {
    plan.restartNeeded.push(`metricsAddress: ${metricsText(applied.metrics)} → ${metricsText(next.metrics)}`);
  }
  const wanted = new Map(next.devices.map((d) => [d.name, d]));
  for (const name of running.keys()) if (!wanted.has(name)) plan.remove.push(name);
  for (const d of next.devices) {
    const r = running.get(d.name);
    if (!r || !r.up) {
      plan.add.push(d);
      continue;
    }
    const fields = specChanges(r.cfg.spec, d.spec);
    if (fields.length > 0) plan.changed.push({ name: d.name, fields });
  }
  return plan;
}
