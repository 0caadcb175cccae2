// Every target ublk-ts knows, in one list: a new target adds its descriptor file here (and its
// native file to native/target_registry.cc). Nothing else names a target.

import type { AnyTarget } from '../shared/target';
import { loopTarget } from './loop';
import { jsTarget } from './js';
import { nbdTarget } from './nbd';
import { nullTarget } from './null';

export const TARGETS: readonly AnyTarget[] = [
  loopTarget,
  nullTarget,
  nbdTarget,
  jsTarget,
];

export function targetNamed(name: string): AnyTarget | undefined {
  return TARGETS.find((t) => t.name === name);
}
