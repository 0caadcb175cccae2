// The kernel's ublk constants that TypeScript needs, in one place: device states, feature flags
// (UBLK_F_*, with the kernel that brought each and how ublksrv spells them), and the disk
// attributes of SET_PARAMS. The native side has its own copy (native/ublk_cmd.h); both follow
// include/uapi/linux/ublk_cmd.h.

/** UBLK_S_DEV_*: what GET_DEV_INFO reports as `state`. */
export const DEV_STATE = { DEAD: 0, LIVE: 1, QUIESCED: 2, FAIL_IO: 3 } as const;

export const STATE_NAMES = ['DEAD', 'LIVE', 'QUIESCED', 'FAIL_IO'] as const;

export function stateName(state: number): string {
  return STATE_NAMES[state] ?? 'UNKNOWN';
}

/** UBLK_ATTR_* of ublk_param_basic.attrs */
export const ATTR = { READ_ONLY: 1, ROTATIONAL: 2, VOLATILE_CACHE: 4, FUA: 8 } as const;

export interface FeatureInfo {
  bit: number;
  /** the kernel's name, without UBLK_F_ */
  name: string;
  /** how ublksrv's `ublk list` spells it in the flags line */
  listName: string;
  /** how ublksrv's `ublk features` spells it */
  featureName: string;
  /** first mainline kernel with it (some inferred from commit dates) */
  since: string;
}

const f = (bit: number, name: string, since: string, listName = name, featureName = name): FeatureInfo => ({
  bit,
  name,
  listName,
  featureName,
  since,
});

export const FEATURES: readonly FeatureInfo[] = [
  f(0, 'SUPPORT_ZERO_COPY', '6.15', 'SUPPORT_ZERO_COPY', 'ZERO_COPY'),
  f(1, 'URING_CMD_COMP_IN_TASK', '6.0', 'URING_CMD_COMP_IN_TASK', 'COMP_IN_TASK'),
  f(2, 'NEED_GET_DATA', '6.0', 'NEED_GET_DATA', 'GET_DATA'),
  f(3, 'USER_RECOVERY', '6.1', 'RECOVERY', 'USER_RECOVERY'),
  f(4, 'USER_RECOVERY_REISSUE', '6.1', 'RECOVERY_REISSUE', 'RECOVERY_REISSUE'),
  f(5, 'UNPRIVILEGED_DEV', '6.3'),
  f(6, 'CMD_IOCTL_ENCODE', '6.4'),
  f(7, 'USER_COPY', '6.5'),
  f(8, 'ZONED', '6.6'),
  f(9, 'USER_RECOVERY_FAIL_IO', '6.13', 'RECOVERY_FAIL_IO', 'RECOVERY_FAIL_IO'),
  f(10, 'UPDATE_SIZE', '6.16'),
  f(11, 'AUTO_BUF_REG', '6.16', 'AUTO_ZC', 'AUTO_ZC'),
  f(12, 'QUIESCE', '6.16'),
  f(13, 'PER_IO_DAEMON', '6.16'),
  f(14, 'BUF_REG_OFF_DAEMON', '6.17'),
  f(15, 'BATCH_IO', '7.0'),
  f(16, 'INTEGRITY', '7.0'),
  f(17, 'SAFE_STOP_DEV', '7.0'),
  f(18, 'NO_AUTO_PART_SCAN', '7.0'),
  f(19, 'SHMEM_ZC', 'a release after 7.0'),
];

const byName = new Map(FEATURES.map((x) => [x.name, x]));

export function feature(name: string): FeatureInfo {
  const x = byName.get(name);
  if (!x) throw new Error(`unknown ublk feature ${name}`);
  return x;
}

/** The UBLK_F_ bit of a feature, by kernel name (without UBLK_F_). */
export function flagBit(name: string): bigint {
  return 1n << BigInt(feature(name).bit);
}

export const UBLK_F = {
  SUPPORT_ZERO_COPY: flagBit('SUPPORT_ZERO_COPY'),
  URING_CMD_COMP_IN_TASK: flagBit('URING_CMD_COMP_IN_TASK'),
  NEED_GET_DATA: flagBit('NEED_GET_DATA'),
  USER_RECOVERY: flagBit('USER_RECOVERY'),
  USER_RECOVERY_REISSUE: flagBit('USER_RECOVERY_REISSUE'),
  UNPRIVILEGED_DEV: flagBit('UNPRIVILEGED_DEV'),
  CMD_IOCTL_ENCODE: flagBit('CMD_IOCTL_ENCODE'),
  USER_COPY: flagBit('USER_COPY'),
  ZONED: flagBit('ZONED'),
  USER_RECOVERY_FAIL_IO: flagBit('USER_RECOVERY_FAIL_IO'),
  UPDATE_SIZE: flagBit('UPDATE_SIZE'),
  AUTO_BUF_REG: flagBit('AUTO_BUF_REG'),
  QUIESCE: flagBit('QUIESCE'),
  PER_IO_DAEMON: flagBit('PER_IO_DAEMON'),
  BUF_REG_OFF_DAEMON: flagBit('BUF_REG_OFF_DAEMON'),
  BATCH_IO: flagBit('BATCH_IO'),
  INTEGRITY: flagBit('INTEGRITY'),
  SAFE_STOP_DEV: flagBit('SAFE_STOP_DEV'),
  NO_AUTO_PART_SCAN: flagBit('NO_AUTO_PART_SCAN'),
  SHMEM_ZC: flagBit('SHMEM_ZC'),
} as const;

/**
 * ublksrv's `ublk list` prints the flags in this order (not bit order): zero copy first, then
 * AUTO_ZC, then UNPRIVILEGED_DEV before the recovery flags. Kept so `list` output matches.
 */
const LIST_ORDER = [0, 11, 1, 2, 5, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19];

export type NameStyle = 'kernel' | 'list' | 'features';

/**
 * Names of the bits set in `flags`. 'kernel' (default): UBLK_F_ names without the prefix, bit
 * order. 'list': ublksrv `list` spelling and order. 'features': ublksrv `features` spelling, bit
 * order. Bits nobody knows come out as "BIT_n" ('list' leaves them out, as ublksrv does).
 */
export function flagNames(flags: bigint, style: NameStyle = 'kernel'): string[] {
  const out: string[] = [];
  if (style === 'list') {
    for (const bit of LIST_ORDER) if (flags & (1n << BigInt(bit))) out.push(FEATURES[bit].listName);
    return out;
  }
  for (let bit = 0; bit < 64; bit++) {
    if (!(flags & (1n << BigInt(bit)))) continue;
    const x = FEATURES[bit];
    out.push(x ? (style === 'features' ? x.featureName : x.name) : `BIT_${bit}`);
  }
  return out;
}

export function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}


/** The driver's control device: it exists once `modprobe ublk_drv` has loaded the driver. */
export const CONTROL_PATH = '/dev/ublk-control';
