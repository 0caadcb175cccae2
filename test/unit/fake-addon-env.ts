// The environment that runs the real CLI (bin/ublk-ts) against fake-addon.js: no driver, sd_notify
// through the real addon, state under `dir`/run. For tests that spawn the CLI as a process.
import * as path from 'node:path';

export function fakeAddonEnv(dir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    UBLK_TS_ADDON: path.join(__dirname, 'fake-addon.js'),
    UBLK_TS_FAKE_SDNOTIFY: 'real',
    UBLK_TS_CONTROL: '/dev/null',
    UBLK_TS_RUN_DIR: path.join(dir, 'run'),
    ...extra,
  };
}
