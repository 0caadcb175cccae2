// The negotiation of the flags an `add` asks ADD_DEV for, and what the negotiated flags mean for
// the data path. Negotiation works from GET_FEATURES (what the running kernel supports), never
// from the kernel version string; versions (shared/kernel.ts) only make error messages useful.

import type { DataMode } from '../shared/binding';
import type { CommonSpec } from '../shared/add-options';
import { UblkError } from '../shared/errors';
import { feature, UBLK_F } from '../shared/kernel';

export interface Negotiated {
  /** what to ask ADD_DEV for */
  flags: bigint;
  mode: DataMode;
}

type NeedSpec = Pick<CommonSpec, 'zeroCopy' | 'userCopy' | 'recovery' | 'recoveryReissue' | 'recoveryFailIo'> & Partial<Pick<CommonSpec, 'batchIo' | 'threadsPerQueue'>>;

/**
 * The flags for ADD_DEV given what the kernel supports. Throws (UblkError, code ENOTSUP) naming
 * every missing feature and the kernel that brings it, before any device is created.
 */
export function negotiateFlags(kernelFeatures: bigint, spec: NeedSpec): Negotiated {
  const missing: string[] = [];
  let flags = 0n;
  const need = (name: string, why: string) => {
    const x = feature(name);
    const bit = 1n << BigInt(x.bit);
    if (kernelFeatures & bit) flags |= bit;
    else missing.push(`${why} needs UBLK_F_${x.name} (Linux ${x.since} or later)`);
  };

  // ioctl-encoded opcodes are the ones the addon sends; kernels built without legacy opcodes need
  // the flag to say so.
  if (kernelFeatures & UBLK_F.CMD_IOCTL_ENCODE) flags |= UBLK_F.CMD_IOCTL_ENCODE;

  let mode: DataMode = 'copy';
  if (spec.userCopy) {
    need('USER_COPY', '--usercopy');
    mode = 'user_copy';
  }
  if (spec.zeroCopy !== 'off') {
    need('SUPPORT_ZERO_COPY', '-z/--zerocopy');
    if (spec.zeroCopy === 'auto' && kernelFeatures & UBLK_F.AUTO_BUF_REG) {
      flags |= UBLK_F.AUTO_BUF_REG;
      mode = 'zc_auto';
    } else {
      mode = 'zc_explicit';
    }
  }
  // How requests reach the server, independent of how their data moves.
  if (spec.batchIo) need('BATCH_IO', '--batch-io');
  // Several threads per queue: each tag's commands come from the thread that fetched it.
  if ((spec.threadsPerQueue ?? 1) > 1) need('PER_IO_DAEMON', '--threads-per-queue above 1');
  if (spec.recovery) {
    need('USER_RECOVERY', '-r/--recovery 1');
    // Live upgrade (`ublk-ts upgrade`) needs QUIESCE_DEV; optional: without it a recoverable disk
    // still recovers after a crash.
    if (kernelFeatures & UBLK_F.QUIESCE) flags |= UBLK_F.QUIESCE;
  }
  if (spec.recoveryReissue) need('USER_RECOVERY_REISSUE', '-i/--recovery-reissue 1');
  if (spec.recoveryFailIo) need('USER_RECOVERY_FAIL_IO', '-e/--recovery-fail-io 1');

  if (missing.length > 0) {
    throw new UblkError(`this kernel's ublk driver lacks a feature: ${missing.join('; ')}`, {
      code: 'ENOTSUP',
      op: 'GET_FEATURES',
    });
  }
  return { flags, mode };
}

/** The data mode a device runs with, from its negotiated flags (for recovery and list). */
export function modeFromFlags(flags: bigint): DataMode {
  if (flags & UBLK_F.USER_COPY) return 'user_copy';
  if (flags & UBLK_F.AUTO_BUF_REG) return 'zc_auto';
  if (flags & UBLK_F.SUPPORT_ZERO_COPY) return 'zc_explicit';
  return 'copy';
}

/** What `-z` would do on a kernel with these features, for `ublk-ts features`. */
export function zeroCopyOutlook(kernelFeatures: bigint): string {
  if (!(kernelFeatures & UBLK_F.SUPPORT_ZERO_COPY)) {
    return `unavailable (needs UBLK_F_SUPPORT_ZERO_COPY, Linux ${feature('SUPPORT_ZERO_COPY').since} or later)`;
  }
  if (kernelFeatures & UBLK_F.AUTO_BUF_REG) return 'auto (AUTO_BUF_REG: buffers registered by the kernel)';
  return `explicit (REGISTER_IO_BUF per request; auto needs Linux ${feature('AUTO_BUF_REG').since})`;
}

/** The `zero_copy` value shown in list's target line. */
export function zeroCopyLabel(mode: DataMode): string {
  switch (mode) {
    case 'zc_auto':
      return 'auto';
    case 'zc_explicit':
      return 'explicit';
    default:
      return 'off';
  }
}
