// Loads the C++ addon on first use (commands that never talk to the kernel never pay for it),
// lets tests inject a fake, and turns the addon's errno-carrying errors into messages a user can
// act on.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NativeBinding, NativeError } from '../../shared/binding';
import { UblkError } from '../../shared/errors';

let injected: NativeBinding | undefined;
let loaded: NativeBinding | undefined;

/** Repository root, from dist/daemon/addon/ (compiled) or daemon/addon/ (ts-node style). */
function repoRoot(): string {
  const up3 = path.resolve(__dirname, '..', '..', '..');
  return fs.existsSync(path.join(up3, 'package.json')) ? up3 : path.resolve(__dirname, '..', '..');
}

/** Where the addon is looked for, in order. */
export function candidatePaths(env: NodeJS.ProcessEnv = process.env): string[] {
  const root = repoRoot();
  const out: string[] = [];
  if (env.UBLK_TS_ADDON) out.push(path.resolve(env.UBLK_TS_ADDON));
  out.push(path.join(root, 'build', 'Release', 'ublk_native.node'));
  out.push(path.join(root, 'build', 'Debug', 'ublk_native.node'));
  return out;
}

function looksLikeBinding(m: unknown): m is NativeBinding {
  const b = m as Partial<NativeBinding> | null;
  return !!b && typeof b.getFeatures === 'function' && typeof b.addDev === 'function' && typeof b.createServer === 'function';
}

/** The addon; loaded on the first call. Throws one UblkError naming every path tried. */
export function getBinding(): NativeBinding {
  if (injected) return injected;
  loaded ??= loadBinding(candidatePaths());
  return loaded;
}

/** Loads the first of `paths` that is the ublk-ts addon; throws one UblkError naming every path tried. */
export function loadBinding(paths: string[]): NativeBinding {
  const failures: string[] = [];
  for (const p of paths) {
    if (!fs.existsSync(p)) {
      failures.push(`${p}: not found`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const m: unknown = require(p);
      const b = looksLikeBinding(m) ? m : (m as { default?: unknown } | null)?.default;
      if (!looksLikeBinding(b)) {
        failures.push(`${p}: loaded, but it does not export the ublk-ts binding`);
        continue;
      }
      return b;
    } catch (err) {
      failures.push(`${p}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new UblkError(
    `cannot load the native addon (tried ${failures.join('; ')}); build it with ` +
      '`apt-get install liburing-dev pkg-config build-essential` then `npm run build:native`',
    { code: 'EADDON', op: 'load' },
  );
}

/** Replaces the addon (tests); `undefined` goes back to loading the real one. */
export function setBindingForTests(b: NativeBinding | undefined): void {
  injected = b;
}

export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).errno === 'number';
}

/** errno name of an error from the addon (or from Node), if any. */
export function errnoCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const e = err as Partial<NativeError>;
  return typeof e.code === 'string' ? e.code : undefined;
}

export interface ErrorContext {
  devId?: number;
}

/**
 * A UblkError with a message a user can act on, for an error from the addon. Errors that are not
 * native errors pass through unchanged.
 */
export function friendlyError(err: unknown, ctx: ErrorContext = {}): unknown {
  if (!isNativeError(err)) return err;
  const { op, code } = err;
  const errno = Math.abs(err.errno);
  const dev = ctx.devId !== undefined && ctx.devId >= 0 ? `device ${ctx.devId}` : 'the device';
  const mk = (message: string) => new UblkError(message, { errno, code, op, cause: err });

  if (op === 'ADD_DEV' && code === 'EEXIST') return mk(`device id ${ctx.devId ?? '?'} is already in use`);
  if (op === 'ADD_DEV' && code === 'ENOSPC') return mk('no free ublk device id (the driver allows at most its ublks_max devices)');
  if (op === 'ADD_DEV' && code === 'EINVAL') {
    return mk('the kernel refused ADD_DEV (EINVAL): queues, depth, buffer size or flags not accepted by this driver');
  }
  if (op === 'SET_PARAMS' && code === 'EINVAL') {
    return mk(`the kernel refused the disk parameters of ${dev} (EINVAL): check block size, size and max_io_buf_bytes`);
  }
  if (op === 'GET_FEATURES' && (code === 'EINVAL' || code === 'EOPNOTSUPP' || code === 'ENOTSUP')) {
    return mk("this kernel's ublk driver does not answer GET_FEATURES: Linux 6.5 or later is needed");
  }
  if (code === 'ENODEV') return mk(`${dev} does not exist`);
  if (code === 'EPERM' || code === 'EACCES') return mk(`${op} on ${dev}: permission denied (must be run as root)`);
  // control commands (upper-case op names) fail with ENOENT when /dev/ublk-control is missing
  if (code === 'ENOENT' && (/ublk-control/.test(err.message) || /^[A-Z0-9_]+$/.test(op))) {
    return mk('/dev/ublk-control not found: load the driver with `modprobe ublk_drv`');
  }
  if (code === 'EBUSY' && (op === 'open' || /ublkc/.test(err.message))) {
    return mk(`/dev/ublkc${ctx.devId ?? 'N'} is busy: another server is serving ${dev}`);
  }
  if (op === 'START_USER_RECOVERY' && code === 'EBUSY') {
    return mk(`${dev} is still held by its old server: wait for it to exit, then retry recover`);
  }
  // the addon's messages read "<op> failed: <strerror> (<detail>)": say which device instead
  const prefix = `${op} failed: `;
  const first = err.message.split('\n')[0];
  const rest = first.startsWith(prefix) ? first.slice(prefix.length) : first;
  const which = ctx.devId !== undefined && ctx.devId >= 0 ? ` for device ${ctx.devId}` : '';
  return mk(`${op || 'native call'} failed${which}: ${rest}`);
}
