// What reading a config file's devices needs to know about add specs, handed to the config loader
// (config/load-config.ts) by whoever loads a config (daemon/spec.ts makes the one ublk-ts uses):
// config/ imports only shared/, and the target registry stays a detail of the daemon.

import type { GroupContext, RawOptions } from './options';
import type { ResourceHolder } from './resources';
import type { TargetFs } from './target';

export interface DeviceModel<Spec> {
  /** a config file's field name → the option's key (undefined: not a device setting) */
  keyOfField(field: string): string | undefined;
  /** the field name of an option key, for messages */
  fieldOfKey(key: string): string;
  /** every field a device entry may have */
  fieldNames(): string[];
  /**
   * Checks one device's options (by key); every problem, each naming its option by ctx.label.
   * `candidate`: a spec good enough for the remaining checks when only some options were bad.
   */
  check(raw: RawOptions, ctx: GroupContext): { spec?: Spec; candidate?: Spec; problems: string[] };
  /** checks the device's target against the system (its files); problems as the target words them */
  checkTarget(spec: Spec, fs?: TargetFs): string[];
  /** what the device holds, for the clash rule (resources.ts) */
  holder(spec: Spec, name: string): ResourceHolder;
  /** the device's id; -1: the kernel chooses */
  idOf(spec: Spec): number;
  /** the JSON Schema of a device entry's options */
  schema(): Record<string, unknown>;
}
