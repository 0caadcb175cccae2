// The JavaScript half of the js target's data path: takes each queue's requests from the memory
// it shares (native/targets/js.cc has the layout), calls the target's handlers with views of the
// requests' own buffers, writes the completions back and has them committed once per batch.
//
// The queues are served on this thread (native: TargetOps::on_event_loop). Per pass of a queue's
// ring: one signal in (the number after its last request), one wake out (after the completions
// written in one turn of the microtasks: the native side commits them at once). Per request: no copy, and no
// allocation in the hand-off once a tag has seen a length (its views are kept); what the handler
// itself allocates (its promise) is its own.

import * as os from 'node:os';
import type { NativeServer } from '../shared/binding';
import type { Log } from '../shared/log';
import type { BlockTarget } from './js-api';

const HEADER = 4;
const TAG_WORDS = 8;
const OP = { READ: 0, WRITE: 1, FLUSH: 2, DISCARD: 3, WRITE_ZEROES: 5 } as const;
const EIO = os.constants.errno.EIO;

/** The errno a handler's failure maps to, negative; EIO when it says none. */
export function errnoOf(err: unknown): number {
  const e = err as { errno?: unknown; code?: unknown } | null;
  if (e && typeof e.errno === 'number' && Number.isInteger(e.errno) && e.errno !== 0) return -Math.abs(e.errno);
  if (e && typeof e.code === 'string') {
    const n = (os.constants.errno as Record<string, number>)[e.code];
    if (n) return -n;
  }
  return -EIO;
}

interface HostQueue {
  index: number;
  words: Uint32Array;
  n: number;
  buffers: Uint8Array;
  /** requests taken from the ring */
  consumed: number;
  /** completions written */
  doneTail: number;
  wakeQueued: boolean;
  /** per tag: the request number (0: none in flight) and when it was handed to the handler */
  gen: Uint32Array;
  started: Float64Array;
  views: Array<Map<number, Buffer> | undefined>;
}

export interface JsHostOptions {
  /** a request not settled after this long fails with ETIMEDOUT (0: never) */
  ioTimeoutMs: number;
  maxIoBufBytes: number;
  threads: number;
  log: Log;
  devId: () => number;
}

export class JsHost {
  private readonly queues: HostQueue[] = [];
  private timer?: NodeJS.Timeout;
  private nextGen = 1;
  private closed = false;

  constructor(
    private readonly target: BlockTarget,
    private readonly server: NativeServer,
    private readonly opts: JsHostOptions,
  ) {}

  /** Before START_DEV: the shared memory of every thread, and the signal that brings requests. */
  start(): void {
    for (let i = 0; i < this.opts.threads; i++) {
      const mem = this.server.memory(i);
      const words = new Uint32Array(mem.requests);
      const n = words[0];
      this.queues.push({
        index: i,
        words,
        n,
        buffers: new Uint8Array(mem.buffers),
        consumed: 0,
        doneTail: 0,
        wakeQueued: false,
        gen: new Uint32Array(n),
        started: new Float64Array(n),
        views: new Array(n),
      });
    }
    this.server.onTargetSignal((index, end) => {
      if (!this.closed) this.take(this.queues[index], end);
    });
    if (this.opts.ioTimeoutMs > 0) {
      this.timer = setInterval(() => this.expire(), Math.min(1000, this.opts.ioTimeoutMs));
      this.timer.unref();
    }
  }

  /** The device is gone: no more completions are written (late settles are dropped). */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    // let go of the views, so the threads' memory goes with the next garbage collection
    this.queues.length = 0;
  }

  private take(q: HostQueue, end: number): void {
    while (q.consumed !== end) {
      const tag = q.words[HEADER + (q.consumed % q.n)];
      q.consumed = (q.consumed + 1) >>> 0;
      this.serve(q, tag);
    }
  }

  private view(q: HostQueue, tag: number, len: number): Buffer {
    let m = q.views[tag];
    if (!m) q.views[tag] = m = new Map();
    let v = m.get(len);
    if (!v) m.set(len, (v = Buffer.from(q.buffers.buffer, q.buffers.byteOffset + tag * this.opts.maxIoBufBytes, len)));
    return v;
  }

  private serve(q: HostQueue, tag: number): void {
    const w = HEADER + 3 * q.n + tag * TAG_WORDS;
    const op = q.words[w];
    const offset = q.words[w + 2] + q.words[w + 3] * 2 ** 32;
    const len = q.words[w + 4];
    const gen = (this.nextGen = (this.nextGen + 1) >>> 0 || 1);
    q.gen[tag] = gen;
    q.started[tag] = Date.now();
    let p: Promise<void> | void;
    try {
      const t = this.target;
      switch (op) {
        case OP.READ:
          p = t.read(offset, len, this.view(q, tag, len));
          break;
        case OP.WRITE:
          p = t.write(offset, this.view(q, tag, len));
          break;
        case OP.FLUSH:
          p = t.flush?.();
          break;
        case OP.DISCARD:
          p = t.discard ? t.discard(offset, len) : Promise.reject(Object.assign(new Error('no discard'), { code: 'EOPNOTSUPP' }));
          break;
        case OP.WRITE_ZEROES:
          p = t.writeZeroes ? t.writeZeroes(offset, len) : Promise.reject(Object.assign(new Error('no writeZeroes'), { code: 'EOPNOTSUPP' }));
          break;
        default:
          p = Promise.reject(Object.assign(new Error(`op ${op}`), { code: 'EOPNOTSUPP' }));
      }
    } catch (err) {
      this.done(q, tag, gen, errnoOf(err));
      return;
    }
    const bytes = op === OP.FLUSH ? 0 : len;
    if (p && typeof (p as Promise<void>).then === 'function') {
      (p as Promise<void>).then(
        () => this.done(q, tag, gen, bytes),
        (err) => this.done(q, tag, gen, errnoOf(err)),
      );
    } else this.done(q, tag, gen, bytes);
  }

  /** Writes one completion (unless the request timed out already) and queues a wake. */
  private done(q: HostQueue, tag: number, gen: number, result: number): void {
    if (this.closed || q.gen[tag] !== gen) return;
    q.gen[tag] = 0;
    q.started[tag] = 0;
    const c = HEADER + q.n + 2 * (q.doneTail % q.n);
    q.words[c] = tag;
    q.words[c + 1] = result >>> 0;
    q.doneTail = (q.doneTail + 1) >>> 0;
    q.words[1] = q.doneTail;
    if (!q.wakeQueued) {
      q.wakeQueued = true;
      // every completion of this turn of the event loop goes with one wake
      queueMicrotask(() => {
        q.wakeQueued = false;
        if (!this.closed) this.server.wake(q.index);
      });
    }
  }

  private expire(): void {
    const limit = Date.now() - this.opts.ioTimeoutMs;
    for (const q of this.queues) {
      for (let tag = 0; tag < q.n; tag++) {
        if (q.gen[tag] === 0 || q.started[tag] > limit) continue;
        const w = HEADER + 3 * q.n + tag * TAG_WORDS;
        this.opts.log.warn(
          { event: 'io_timeout', devId: this.opts.devId(), queue: q.index, tag, op: q.words[w], offset: q.words[w + 2] + q.words[w + 3] * 2 ** 32 },
          `a request was not settled within ${this.opts.ioTimeoutMs / 1000} s: failed with ETIMEDOUT`,
        );
        this.done(q, tag, q.gen[tag], -os.constants.errno.ETIMEDOUT);
      }
    }
  }
}
