// A saved device state (the run dir's NNNN.json) for unit tests: a null disk served by `pid`,
// with whatever a test needs to differ given in `extra`.
import { validateAddOptions } from '../../daemon/spec';
import type { DeviceState } from '../../daemon/state-store';

export function savedState(devId: number, pid: number, extra: Partial<DeviceState> = {}): DeviceState {
  return {
    version: 2,
    devId,
    pid,
    spec: { ...validateAddOptions({ target: 'null' }, { source: 'cli', cwd: '/' }), id: devId },
    flags: '0x40',
    mode: 'copy',
    tids: [pid + 1],
    target: { name: 'null', type: 0, dev_size: 1 << 30 },
    createdAt: 'a',
    updatedAt: 'b',
    ...extra,
  };
}
