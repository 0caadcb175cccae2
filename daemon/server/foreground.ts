// `add --foreground` and `recover --foreground`: this process is the device's server until
// SIGTERM/SIGINT or until the device stops (systemd's Type=notify units run it this way).

import { UblkError, UsageError } from '../../shared/errors';
import type { ServerRequest } from './protocol';

/** --foreground: this process is the server until SIGTERM/SIGINT or until the device stops. */
export async function runInForeground(
  req: ServerRequest,
  printDevice: (devId: number) => Promise<void>,
  logOpts: { level?: string; format?: string } = {},
): Promise<number> {
  const { serve } = require('./server-main') as typeof import('./server-main');
  const { createLogger } = require('../../shared/log') as typeof import('../../shared/log');
  return new Promise<number>((resolve, reject) => {
    let live = false;
    serve(req, {
      log: createLogger(logOpts),
      report: (r) => {
        if (r.event === 'live') {
          live = true;
          printDevice(r.devId).catch(() => undefined);
        } else {
          reject(r.exitCode === 2 ? new UsageError(r.message) : new UblkError(r.message, { code: r.code }));
        }
      },
      exit: (code) => {
        if (live || code === 0) resolve(code);
      },
    }).catch(reject);
  });
}
