// `ublk-ts features`: what the running kernel's ublk driver supports (GET_FEATURES), printed like
// ublksrv's `ublk features`, plus which zero-copy mode `add -z` would use here.
//
//   ublk_drv features: 0x7fff
//   \tZERO_COPY           : 0x1
//   ...
//   zero copy (-z): auto (AUTO_BUF_REG: buffers registered by the kernel)

import type { NativeBinding } from '../../../shared/binding';
import { friendlyError, getBinding } from '../../addon/load-binding';
import { FEATURES, flagNames, hex } from '../../../shared/kernel';
import { zeroCopyOutlook } from '../../features';
import { requireControl } from '../../checks';

export function formatFeatures(features: bigint): string {
  const lines = [`ublk_drv features: ${hex(features)}`];
  for (let bit = 0; bit < 64; bit++) {
    const v = 1n << BigInt(bit);
    if (!(features & v)) continue;
    const name = FEATURES[bit]?.featureName ?? 'unknown';
    lines.push(`\t${name.padEnd(20)}: ${hex(v)}`);
  }
  lines.push(`zero copy (-z): ${zeroCopyOutlook(features)}`);
  return `${lines.join('\n')}\n`;
}

export function featuresJson(features: bigint): Record<string, unknown> {
  return {
    features: hex(features),
    names: flagNames(features),
    zero_copy: zeroCopyOutlook(features),
  };
}

export interface FeaturesDeps {
  binding: () => NativeBinding;
  out: (t: string) => void;
  checkControl: () => void;
}

export async function runFeatures(opts: { json?: boolean }, partial: Partial<FeaturesDeps> = {}): Promise<number> {
  const deps: FeaturesDeps = {
    binding: getBinding,
    out: (t) => process.stdout.write(t),
    checkControl: () => requireControl(),
    ...partial,
  };
  deps.checkControl();
  let features: bigint;
  try {
    features = await deps.binding().getFeatures();
  } catch (err) {
    throw friendlyError(err);
  }
  deps.out(opts.json ? `${JSON.stringify(featuresJson(features), null, 2)}\n` : formatFeatures(features));
  return 0;
}
