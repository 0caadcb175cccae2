// A stand-in for build/Release/ublk_native.node, loadable through $UBLK_TS_ADDON: lets the CLI be
// exercised (and timed) on a machine without the addon or the driver.
// $UBLK_TS_FAKE_FEATURES sets what GET_FEATURES answers (default 0x7fff);
// $UBLK_TS_FAKE_NO_CONTROL=1 makes /dev/ublk-control "missing" (no driver).
// $UBLK_TS_FAKE_SDNOTIFY=real sends sd_notify messages through the real addon (which needs no
// driver for that), so a test playing systemd can listen to a fake-driven service.

import * as path from 'node:path';
import { FakeBinding } from './fake-binding';
import type { NativeBinding } from '../../shared/binding';

const binding = new FakeBinding(BigInt(process.env.UBLK_TS_FAKE_FEATURES ?? '0x7fff'));
binding.control = process.env.UBLK_TS_FAKE_NO_CONTROL !== '1';
if (process.env.UBLK_TS_FAKE_SDNOTIFY === 'real') {
  const real = require(path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'ublk_native.node')) as NativeBinding;
  binding.sdNotify = (state: string) => {
    binding.notifications.push(state);
    return real.sdNotify(state);
  };
}

export = binding;
