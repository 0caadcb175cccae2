// A stand-in for build/Release/ublk_native.node, loadable through $UBLK_TS_ADDON: lets the CLI be
// exercised (and timed) on a machine without the addon or the driver.
// $UBLK_TS_FAKE_FEATURES sets what GET_FEATURES answers (default 0x7fff).

import { FakeBinding } from './fake-binding';

const binding = new FakeBinding(BigInt(process.env.UBLK_TS_FAKE_FEATURES ?? '0x7fff'));

export = binding;
