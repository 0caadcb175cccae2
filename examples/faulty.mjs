// A fault injector: wraps another js target module and fails or delays chosen requests. The
// project's own tests use it for the error paths of the js target.
//   ublk-ts add -t js --module examples/faulty.mjs --set inner=examples/memory-disk.mjs \
//     --set size=64M --set fail=read:0-4096:EIO --set delay=write:*:50ms --set share=0.01
// fail / delay: OP:FROM-TO:WHAT (OP read, write, flush, discard, writeZeroes or *; bytes FROM-TO or
// *; an errno name, or a delay in ms; "hang": never settles); share: the fraction of all requests
// that fail with EIO; throw: "sync" (the handler throws) or "reject" (the default) for failures.
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

export default async function faulty(options) {
  const { inner, fail, delay, share, throw: how = 'reject', ...rest } = options;
  if (!inner) throw new Error('faulty needs --set inner=MODULE');
  const m = await import(pathToFileURL(path.resolve(inner)).href);
  const target = await (typeof m.default === 'function' ? m.default(rest) : m.default);
  const rules = [...parse(fail, 'fail'), ...parse(delay, 'delay')];
  const p = Number(share ?? 0);

  function rulesFor(op, offset, length) {
    return rules.filter((r) => (r.op === '*' || r.op === op) && (r.from === undefined || (offset < r.to && offset + length > r.from)));
  }

  function wrap(op, fn) {
    if (!fn) return undefined;
    return function (...args) {
      const offset = typeof args[0] === 'number' ? args[0] : 0;
      const length = typeof args[1] === 'number' ? args[1] : args[1]?.length ?? 0;
      const hit = rulesFor(op, offset, length);
      const failing = hit.find((r) => r.kind === 'fail') ?? (p > 0 && Math.random() < p ? { what: 'EIO' } : undefined);
      const waiting = hit.find((r) => r.kind === 'delay');
      if (failing) {
        const err = Object.assign(new Error(`injected ${failing.what} (${op} at ${offset})`), { code: failing.what });
        if (how === 'sync') throw err;
        return Promise.reject(err);
      }
      if (waiting?.what === 'hang') return new Promise(() => {});
      if (waiting) return new Promise((r) => setTimeout(r, parseInt(waiting.what, 10))).then(() => fn.apply(target, args));
      return fn.apply(target, args);
    };
  }

  return {
    size: target.size,
    blockSize: target.blockSize,
    readOnly: target.readOnly,
    read: wrap('read', target.read),
    write: wrap('write', target.write),
    flush: wrap('flush', target.flush),
    discard: wrap('discard', target.discard),
    writeZeroes: wrap('writeZeroes', target.writeZeroes),
    close: target.close?.bind(target),
  };
}

function parse(spec, kind) {
  if (!spec) return [];
  return spec.split(',').map((one) => {
    const [op, range, what] = one.split(':');
    const r = { kind, op, what };
    if (range && range !== '*') [r.from, r.to] = range.split('-').map(Number);
    return r;
  });
}
