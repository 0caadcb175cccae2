import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { modeFromFlags, negotiateFlags, zeroCopyOutlook } from '../../daemon/features';
import { flagNames, UBLK_F } from '../../shared/kernel';
import { UblkError } from '../../shared/errors';
import { formatFeatures } from '../../daemon/cli/commands/features';

const base: { zeroCopy: 'off' | 'auto' | 'explicit'; userCopy: boolean; recovery: boolean; recoveryReissue: boolean; recoveryFailIo: boolean } = { zeroCopy: 'off', userCopy: false, recovery: false, recoveryReissue: false, recoveryFailIo: false };
const ALL = (1n << 20n) - 1n;
/** what a 6.15 kernel offers: everything up to bit 9, no AUTO_BUF_REG */
const K615 = (1n << 10n) - 1n;

test('bits and names', () => {
  assert.equal(UBLK_F.SUPPORT_ZERO_COPY, 1n);
  assert.equal(UBLK_F.CMD_IOCTL_ENCODE, 0x40n);
  assert.equal(UBLK_F.USER_COPY, 0x80n);
  assert.equal(UBLK_F.USER_RECOVERY_FAIL_IO, 0x200n);
  assert.equal(UBLK_F.AUTO_BUF_REG, 0x800n);
  assert.equal(UBLK_F.SHMEM_ZC, 1n << 19n);
  assert.deepEqual(flagNames(0x849n), ['SUPPORT_ZERO_COPY', 'USER_RECOVERY', 'CMD_IOCTL_ENCODE', 'AUTO_BUF_REG']);
  assert.deepEqual(flagNames(0x849n, 'list'), ['SUPPORT_ZERO_COPY', 'AUTO_ZC', 'RECOVERY', 'CMD_IOCTL_ENCODE']);
  assert.deepEqual(flagNames(0x807n, 'features'), ['ZERO_COPY', 'COMP_IN_TASK', 'GET_DATA', 'AUTO_ZC']);
  assert.deepEqual(flagNames(1n << 40n), ['BIT_40']);
  assert.deepEqual(flagNames(1n << 40n, 'list'), []);
});

test('copy mode: only CMD_IOCTL_ENCODE', () => {
  assert.deepEqual(negotiateFlags(ALL, base), { flags: UBLK_F.CMD_IOCTL_ENCODE, mode: 'copy' });
  assert.deepEqual(negotiateFlags(0n, base), { flags: 0n, mode: 'copy' });
});

test('-z auto: AUTO_BUF_REG when the kernel has it, else explicit', () => {
  assert.deepEqual(negotiateFlags(ALL, { ...base, zeroCopy: 'auto' }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.SUPPORT_ZERO_COPY | UBLK_F.AUTO_BUF_REG,
    mode: 'zc_auto',
  });
  assert.deepEqual(negotiateFlags(K615, { ...base, zeroCopy: 'auto' }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.SUPPORT_ZERO_COPY,
    mode: 'zc_explicit',
  });
});

test('-z --zc-mode explicit never asks for AUTO_BUF_REG', () => {
  assert.deepEqual(negotiateFlags(ALL, { ...base, zeroCopy: 'explicit' }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.SUPPORT_ZERO_COPY,
    mode: 'zc_explicit',
  });
});

test('usercopy and recovery flags', () => {
  assert.deepEqual(negotiateFlags(ALL, { ...base, userCopy: true }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.USER_COPY,
    mode: 'user_copy',
  });
  assert.equal(
    negotiateFlags(ALL, { ...base, recovery: true, recoveryReissue: true }).flags,
    UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.USER_RECOVERY | UBLK_F.USER_RECOVERY_REISSUE | UBLK_F.QUIESCE,
  );
  assert.equal(
    negotiateFlags(ALL, { ...base, recovery: true, recoveryFailIo: true }).flags,
    UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.USER_RECOVERY | UBLK_F.USER_RECOVERY_FAIL_IO | UBLK_F.QUIESCE,
  );
});

const missing: Array<[string, bigint, Partial<typeof base>, string]> = [
  ['zero copy on 6.14', (1n << 10n) - 2n, { zeroCopy: 'auto' }, '-z/--zerocopy needs UBLK_F_SUPPORT_ZERO_COPY (Linux 6.15 or later)'],
  ['user copy on 6.4', 0x7fn, { userCopy: true }, '--usercopy needs UBLK_F_USER_COPY (Linux 6.5 or later)'],
  ['recovery', 0x40n, { recovery: true }, '-r/--recovery 1 needs UBLK_F_USER_RECOVERY (Linux 6.1 or later)'],
  [
    'fail io on 6.12',
    0x1ffn,
    { recovery: true, recoveryFailIo: true },
    '-e/--recovery-fail-io 1 needs UBLK_F_USER_RECOVERY_FAIL_IO (Linux 6.13 or later)',
  ],
];
for (const [name, feats, want, message] of missing) {
  test(`missing feature: ${name}`, () => {
    assert.throws(
      () => negotiateFlags(feats, { ...base, ...want }),
      (e: Error) =>
        e instanceof UblkError && e.code === 'ENOTSUP' && e.message === `this kernel's ublk driver lacks a feature: ${message}`,
    );
  });
}

test('--batch-io asks for BATCH_IO with any data mode, and names Linux 7.0 when missing', () => {
  assert.deepEqual(negotiateFlags(ALL, { ...base, zeroCopy: 'auto', batchIo: true }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.SUPPORT_ZERO_COPY | UBLK_F.AUTO_BUF_REG | UBLK_F.BATCH_IO,
    mode: 'zc_auto',
  });
  assert.deepEqual(negotiateFlags(ALL, { ...base, batchIo: true }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.BATCH_IO,
    mode: 'copy',
  });
  // a 6.17 kernel: everything up to BUF_REG_OFF_DAEMON
  assert.throws(
    () => negotiateFlags((1n << 15n) - 1n, { ...base, zeroCopy: 'auto', batchIo: true }),
    (e: unknown) => e instanceof UblkError && /--batch-io needs UBLK_F_BATCH_IO \(Linux 7\.0 or later\)/.test(e.message),
  );
});

test('--threads-per-queue above 1 asks for PER_IO_DAEMON, and names Linux 6.16 when missing', () => {
  assert.deepEqual(negotiateFlags(ALL, { ...base, zeroCopy: 'auto', threadsPerQueue: 2 }), {
    flags: UBLK_F.CMD_IOCTL_ENCODE | UBLK_F.SUPPORT_ZERO_COPY | UBLK_F.AUTO_BUF_REG | UBLK_F.PER_IO_DAEMON,
    mode: 'zc_auto',
  });
  // one thread per queue needs nothing new
  assert.deepEqual(negotiateFlags((1n << 13n) - 1n, { ...base, threadsPerQueue: 1 }), { flags: UBLK_F.CMD_IOCTL_ENCODE, mode: 'copy' });
  // a 6.15 kernel: everything below PER_IO_DAEMON
  assert.throws(
    () => negotiateFlags((1n << 13n) - 1n, { ...base, threadsPerQueue: 2 }),
    (e: unknown) =>
      e instanceof UblkError && /--threads-per-queue above 1 needs UBLK_F_PER_IO_DAEMON \(Linux 6\.16 or later\)/.test(e.message),
  );
});

test('every missing feature is named', () => {
  assert.throws(
    () => negotiateFlags(0n, { ...base, zeroCopy: 'auto', recovery: true, recoveryReissue: true }),
    (e: Error) => /SUPPORT_ZERO_COPY.*USER_RECOVERY \(.*USER_RECOVERY_REISSUE/.test(e.message),
  );
});

test('data mode from flags', () => {
  assert.equal(modeFromFlags(0x40n), 'copy');
  assert.equal(modeFromFlags(0xc0n), 'user_copy');
  assert.equal(modeFromFlags(0x841n), 'zc_auto');
  assert.equal(modeFromFlags(0x41n), 'zc_explicit');
});

test('features output, like ublksrv', () => {
  assert.equal(
    formatFeatures(0x849n),
    [
      'ublk_drv features: 0x849',
      '\tZERO_COPY           : 0x1',
      '\tUSER_RECOVERY       : 0x8',
      '\tCMD_IOCTL_ENCODE    : 0x40',
      '\tAUTO_ZC             : 0x800',
      'zero copy (-z): auto (AUTO_BUF_REG: buffers registered by the kernel)',
      '',
    ].join('\n'),
  );
  assert.match(zeroCopyOutlook(0x41n), /^explicit/);
  assert.match(zeroCopyOutlook(0x40n), /^unavailable \(needs UBLK_F_SUPPORT_ZERO_COPY, Linux 6.15/);
});
