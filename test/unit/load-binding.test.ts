import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { candidatePaths, friendlyError, getBinding, loadBinding, setBindingForTests } from '../../daemon/addon/load-binding';
import { UblkError } from '../../shared/errors';
import { FakeBinding, nativeError } from './fake-binding';

const ROOT = path.resolve(__dirname, '..', '..', '..');

test('candidate paths: $UBLK_TS_ADDON, then build/Release, build/Debug', () => {
  assert.deepEqual(candidatePaths({ UBLK_TS_ADDON: 'x.node' }), [
    path.resolve('x.node'),
    path.join(ROOT, 'build', 'Release', 'ublk_native.node'),
    path.join(ROOT, 'build', 'Debug', 'ublk_native.node'),
  ]);
  assert.equal(candidatePaths({}).length, 2);
});

test('no addon: one error naming every path tried and what to do', () => {
  assert.throws(
    () => loadBinding(['/nonexistent/addon.node', '/nonexistent/build/Release/ublk_native.node']),
    (e: Error) =>
      e instanceof UblkError &&
      e.message ===
        'cannot load the native addon (tried /nonexistent/addon.node: not found; /nonexistent/build/Release/ublk_native.node: not found); ' +
          'build it with `apt-get install liburing-dev pkg-config build-essential` then `npm run build:native`',
  );
});

test('setBindingForTests injects a fake', () => {
  const fake = new FakeBinding();
  setBindingForTests(fake);
  try {
    assert.equal(getBinding(), fake);
  } finally {
    setBindingForTests(undefined);
  }
});

const friendly: Array<[Error, number | undefined, string]> = [
  [nativeError('ADD_DEV', 'EEXIST'), 3, 'device id 3 is already in use'],
  [nativeError('GET_DEV_INFO', 'ENODEV'), 3, 'device 3 does not exist'],
  [nativeError('GET_FEATURES', 'ENOENT', 'GET_FEATURES failed: No such file or directory'), undefined, '/dev/ublk-control not found: load the driver with `modprobe ublk_drv`'],
  [nativeError('GET_FEATURES', 'EINVAL'), undefined, "this kernel's ublk driver does not answer GET_FEATURES: Linux 6.5 or later is needed"],
  [nativeError('ADD_DEV', 'EPERM'), -1, 'ADD_DEV on the device: permission denied (must be run as root)'],
  [
    nativeError('start queues', 'EBUSY', 'start queues failed: Device or resource busy (open /dev/ublkc2)'),
    2,
    '/dev/ublkc2 is busy: another server is serving device 2',
  ],
  [nativeError('START_DEV', 'EIO', 'START_DEV failed: Input/output error'), 4, 'START_DEV failed for device 4: Input/output error'],
  [nativeError('SET_PARAMS', 'EINVAL'), 1, 'the kernel refused the disk parameters of device 1 (EINVAL): check block size, size and max_io_buf_bytes'],
];

for (const [err, devId, message] of friendly) {
  test(`friendly error: ${(err as { op?: string }).op} ${(err as { code?: string }).code}`, () => {
    const f = friendlyError(err, { devId });
    assert.ok(f instanceof UblkError);
    assert.equal(f.message, message);
    assert.equal(f.errno, (err as { errno?: number }).errno);
  });
}

test('non-native errors pass through', () => {
  const e = new Error('plain');
  assert.equal(friendlyError(e), e);
});
