import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { deviceJson, formatDevice, parseCpuList, sortedJson, stateName, type ListEntry } from '../../daemon/list-format';
import type { DeviceState } from '../../daemon/state-store';
import type { CtrlDevInfo, UblkParams } from '../../shared/binding';
import { validateAddOptions } from '../../daemon/spec';

const info: CtrlDevInfo = {
  nrHwQueues: 2,
  queueDepth: 128,
  state: 1,
  maxIoBufBytes: 524288,
  devId: 0,
  ublksrvPid: 1239110,
  flags: 0x849n,
  ublksrvFlags: 0n,
  ownerUid: 0,
  ownerGid: 0,
};

const params: UblkParams = {
  basic: {
    attrs: 12,
    logicalBsShift: 12,
    physicalBsShift: 12,
    ioOptShift: 12,
    ioMinShift: 12,
    maxSectors: 1024,
    chunkSectors: 0,
    devSectors: 20480n,
    virtBoundaryMask: 0n,
  },
  devt: { charMajor: 240, charMinor: 0, diskMajor: 259, diskMinor: 3 },
};

const state: DeviceState = {
  version: 2,
  devId: 0,
  pid: 1239110,
  spec: { ...validateAddOptions({ target: 'loop', file: '10M', zeroCopy: true }, { source: 'cli', cwd: '/root' }), id: 0 },
  flags: '0x849',
  mode: 'zc_auto',
  tids: [1239111, 1239112],
  target: { name: 'loop', type: 0, backing_file: '/root/10M', dev_size: 10485760, direct_io: 1, offset: 0, read_only: 0 },
  createdAt: '2025-01-01T00:00:00.000Z',
  updatedAt: '2025-01-01T00:00:00.000Z',
};

test('text form, like ublksrv (with our state)', () => {
  const e: ListEntry = { info, params, state, queues: [{ tid: 1239111, affinity: [0] }, { tid: 1239112, affinity: [1, 2, 3] }] };
  assert.equal(
    formatDevice(e),
    'dev id 0: nr_hw_queues 2 queue_depth 128 block size 4096 dev_capacity 20480\n' +
      '\tmax rq size 524288 daemon pid 1239110 state LIVE\n' +
      '\tflags 0x849 [ SUPPORT_ZERO_COPY AUTO_ZC RECOVERY CMD_IOCTL_ENCODE ]\n' +
      '\tublkc: 240:0 ublkb: 259:3 owner: 0:0\n' +
      '\tqueue 0: tid 1239111 affinity(0 )\n' +
      '\tqueue 1: tid 1239112 affinity(1 2 3 )\n' +
      '\ttarget {"backing_file":"/root/10M","data_mode":"zc_auto","dev_size":10485760,"direct_io":1,"name":"loop","offset":0,"read_only":0,"type":0,"zero_copy":"auto"}\n',
  );
});

test('text form of a device that is not ours: no queue or target lines, as ublksrv without its json', () => {
  const e: ListEntry = { info: { ...info, state: 2, flags: 0x40n, nrHwQueues: 1, devId: 7 }, params };
  assert.equal(
    formatDevice(e),
    'dev id 7: nr_hw_queues 1 queue_depth 128 block size 4096 dev_capacity 20480\n' +
      '\tmax rq size 524288 daemon pid 1239110 state QUIESCED\n' +
      '\tflags 0x40 [ CMD_IOCTL_ENCODE ]\n' +
      '\tublkc: 240:0 ublkb: 259:3 owner: 0:0\n',
  );
});

test('no flags, no params, thread gone', () => {
  const e: ListEntry = { info: { ...info, flags: 0n, state: 0, nrHwQueues: 1 }, state: { ...state, tids: [55] } };
  assert.equal(
    formatDevice(e),
    'dev id 0: nr_hw_queues 1 queue_depth 128 block size 0 dev_capacity 0\n' +
      '\tmax rq size 524288 daemon pid 1239110 state DEAD\n' +
      '\tflags 0x0 [ ]\n' +
      '\tublkc: 0:0 ublkb: 0:0 owner: 0:0\n' +
      '\tqueue 0: tid 55 affinity()\n' +
      '\ttarget {"backing_file":"/root/10M","data_mode":"zc_auto","dev_size":10485760,"direct_io":1,"name":"loop","offset":0,"read_only":0,"type":0,"zero_copy":"auto"}\n',
  );
});

test('state names', () => {
  assert.deepEqual([0, 1, 2, 3, 9].map(stateName), ['DEAD', 'LIVE', 'QUIESCED', 'FAIL_IO', 'UNKNOWN']);
});

test('json form', () => {
  const j = deviceJson({ info, params, state, queues: [{ tid: 1239111, affinity: [0] }, { tid: 1239112 }] });
  assert.deepEqual(j, {
    dev_id: 0,
    nr_hw_queues: 2,
    queue_depth: 128,
    block_size: 4096,
    dev_capacity: 20480,
    dev_size: 10485760,
    max_rq_size: 524288,
    daemon_pid: 1239110,
    state: 'LIVE',
    flags: '0x849',
    flag_names: ['SUPPORT_ZERO_COPY', 'USER_RECOVERY', 'CMD_IOCTL_ENCODE', 'AUTO_BUF_REG'],
    ublkc: '240:0',
    ublkb: '259:3',
    owner: { uid: 0, gid: 0 },
    data_mode: 'zc_auto',
    zero_copy: 'auto',
    queues: [
      { qid: 0, tid: 1239111, affinity: [0] },
      { qid: 1, tid: 1239112, affinity: null },
    ],
    threads_per_queue: 1,
    busy_poll_us: 0,
    target: { ...state.target, zero_copy: 'auto', data_mode: 'zc_auto' },
    managed: true,
  });
  const foreign = deviceJson({ info: { ...info, flags: 0xc0n } });
  assert.equal(foreign.data_mode, 'user_copy');
  assert.equal(foreign.queues, null);
  assert.equal(foreign.target, null);
  assert.equal(foreign.threads_per_queue, null);
  const twoThreads = deviceJson({ info, params, state: { ...state, spec: { ...state.spec, threadsPerQueue: 2 } } });
  assert.equal(twoThreads.threads_per_queue, 2);
  const polling = deviceJson({ info, params, state: { ...state, spec: { ...state.spec, busyPoll: 200 } } });
  assert.equal(polling.busy_poll_us, 200);
  assert.equal(foreign.busy_poll_us, null);
  JSON.stringify(foreign); // no bigint left
});

test('helpers', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList(''), []);
  assert.equal(sortedJson({ b: 1, a: 'x', c: [2, { z: 1, y: 2 }] }), '{"a":"x","b":1,"c":[2,{"y":2,"z":1}]}');
});
