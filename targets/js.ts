// The js target: a disk served by JavaScript. `ublk-ts add -t js --module ./my-disk.mjs --set k=v`
// imports the module, whose default export makes a BlockTarget (js-api.ts) from the --set options;
// `createDevice(target, options)` (daemon/library.ts) hands one over directly. The queues' rings
// stay native (native/targets/js.cc), served on this thread's event loop, and pass requests to
// js-host.ts in batches. Copy mode only:
// the JavaScript handlers read and write the requests' bytes.

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { UblkParams } from '../shared/binding';
import { UsageError } from '../shared/errors';
import { ATTR } from '../shared/kernel';
import { kinds } from '../shared/options';
import { basicParams, defineTarget, type TargetDescription } from '../shared/target';
import type { BlockTarget } from './js-api';
import { JsHost } from './js-host';

const OPTIONS = {
  module: {
    cli: { long: '--module', arg: '<file>' },
    description: 'the module that makes the disk (its default export: a function of the --set options that returns a BlockTarget)',
    kind: kinds.path(),
  },
  set: {
    cli: { long: '--set', arg: '<key=value>', repeatable: true },
    description: "an option for the module's function, key=value (again for more); in a config file an object",
    kind: kinds.keyValues(),
    default: {},
  },
  ioTimeout: {
    cli: { long: '--io-timeout', arg: '<seconds>' },
    description: 'a request the target has not settled after this long fails with ETIMEDOUT (0: never; default: 30)',
    kind: kinds.int(0, 86400),
    default: 30,
  },
};

/** What describe() keeps for attach() and release(). */
interface Runtime {
  target: BlockTarget;
  host?: JsHost;
}

async function load(file: string, options: Record<string, string>): Promise<BlockTarget> {
  let m: { default?: unknown };
  try {
    m = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new UsageError(`--module ${file}: cannot load it: ${(err as Error).message.split('\n')[0]}`);
  }
  const d = m.default;
  if (typeof d === 'function') return (await (d as (o: Record<string, string>) => unknown)(options)) as BlockTarget;
  if (d && typeof d === 'object') return d as BlockTarget;
  throw new UsageError(`--module ${file}: its default export must be a function that makes the disk (or the disk object)`);
}

/** Every reason `t` is not a usable BlockTarget. */
export function targetProblems(t: unknown, lbs: number, where: string): string[] {
  const o = t as Partial<BlockTarget> | null;
  if (!o || typeof o !== 'object') return [`${where}: the disk is not an object`];
  const out: string[] = [];
  for (const m of ['read', 'write'] as const) if (typeof o[m] !== 'function') out.push(`${where}: the disk has no ${m}() method`);
  for (const m of ['flush', 'discard', 'writeZeroes', 'close'] as const) {
    if (o[m] !== undefined && typeof o[m] !== 'function') out.push(`${where}: the disk's ${m} is not a function`);
  }
  if (o.blockSize !== undefined && ![512, 1024, 2048, 4096].includes(o.blockSize)) out.push(`${where}: blockSize must be 512, 1024, 2048 or 4096, not ${o.blockSize}`);
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size <= 0) out.push(`${where}: size must be a whole number of bytes above 0, not ${String(o.size)}`);
  else if (o.size % lbs !== 0) out.push(`${where}: size ${o.size} is not a multiple of the block size ${lbs}`);
  return out;
}

export const jsTarget = defineTarget({
  name: 'js',
  summary: 'a disk served by a JavaScript module (--module FILE)',
  options: OPTIONS,
  capabilities: {
    dataModes: ['copy'],
    whyNot: "a JavaScript target reads and writes the requests' bytes itself: copy mode only",
    flush: true,
    discard: true,
    writeZeroes: true,
    fua: true,
  },

  resources: (o) => (o.module ? [{ what: 'module', path: o.module, exclusive: false }] : []),

  validate: () => [],

  async describe(o, common, ctx = {}): Promise<TargetDescription> {
    let target: BlockTarget;
    const where = o.module ? `--module ${o.module}` : 'the disk';
    if (ctx.instance !== undefined) target = ctx.instance as BlockTarget;
    else if (o.module) target = await load(o.module, o.set);
    else throw new UsageError('-t js needs --module FILE');
    const lbs = target.blockSize ?? common.logicalBlockSize;
    const p = targetProblems(target, lbs, where);
    if (p.length > 0) throw new UsageError(p);
    const readOnly = common.readOnly || target.readOnly === true;
    const attrs = (readOnly ? ATTR.READ_ONLY : 0) | (target.flush ? ATTR.VOLATILE_CACHE | ATTR.FUA : 0);
    const params: UblkParams = { basic: basicParams({ logicalBlockSize: lbs, maxIoBufBytes: common.maxIoBufBytes }, target.size, attrs) };
    if (!readOnly && (target.discard || target.writeZeroes)) {
      const max = common.maxIoBufBytes >>> 9;
      params.discard = {
        discardAlignment: 0,
        discardGranularity: Math.max(lbs, 4096),
        maxDiscardSectors: target.discard ? max : 0,
        maxWriteZeroesSectors: target.writeZeroes ? max : 0,
        maxDiscardSegments: 1,
      };
    }
    const runtime: Runtime = { target };
    return {
      serve: { name: 'js', options: {} },
      readOnly,
      params,
      json: { name: 'js', type: 0, module: o.module ? path.resolve(o.module) : '(library)', dev_size: target.size, io_timeout: o.ioTimeout },
      sizeBytes: target.size,
      notes: [],
      runtime,
    };
  },

  attach(server, d, ctx) {
    const rt = d.runtime as Runtime;
    const ioTimeout = Number((d.json as Record<string, unknown>).io_timeout ?? 30);
    rt.host = new JsHost(rt.target, server, { ioTimeoutMs: ioTimeout * 1000, maxIoBufBytes: ctx.maxIoBufBytes, threads: ctx.threads, log: ctx.log, devId: ctx.devId });
    rt.host.start();
  },

  async release(d) {
    const rt = d.runtime as Runtime;
    rt.host?.close();
    await rt.target.close?.();
  },
});
