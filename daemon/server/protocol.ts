// The request a device's server process is started with (its argv) and the one line it answers
// on fd 3 once the disk is LIVE or why not: the readiness handshake between `add` (spawn.ts) and
// the server (server-main.ts), which is also what systemd's READY=1 waits for.

import * as fs from 'node:fs';
import { UsageError } from '../../shared/errors';
import { reviveSpec, type AddSpec } from '../spec';

export type ServerRequest = { action: 'add'; spec: AddSpec } | { action: 'recover'; devId: number };

export type Readiness =
  | { event: 'live'; devId: number; notes?: string[] }
  | { event: 'error'; message: string; code?: string; exitCode: number };

export function parseRequest(text: string | undefined): ServerRequest {
  if (!text) throw new UsageError('server-main needs a request: {"action":"add","spec":{...}} or {"action":"recover","devId":N}');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError('server-main: the request is not valid JSON');
  }
  const r = v as { action?: unknown; spec?: unknown; devId?: unknown };
  if (r.action === 'add') {
    const { spec, problems } = reviveSpec(r.spec);
    if (!spec) throw new UsageError(`server-main: the request's spec is not usable: ${problems.join('; ')}`);
    return { action: 'add', spec };
  }
  if (r.action === 'recover' && typeof r.devId === 'number' && Number.isInteger(r.devId) && r.devId >= 0) {
    return { action: 'recover', devId: r.devId };
  }
  throw new UsageError('server-main: unrecognised request');
}

export function codeOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  if (typeof c === 'string') return c;
  return err instanceof UsageError ? 'EUSAGE' : undefined;
}

/** Writes the readiness line on fd 3 once and closes it (nothing to do when fd 3 is not open). */
export function fd3Reporter(): (r: Readiness) => void {
  let sent = false;
  return (r) => {
    if (sent) return;
    sent = true;
    try {
      fs.writeSync(3, `${JSON.stringify(r)}\n`);
    } catch {
      // run by hand without fd 3
    }
    try {
      fs.closeSync(3);
    } catch {
      // idem
    }
  };
}

