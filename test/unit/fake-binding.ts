// A fake NativeBinding for unit tests: keeps a small model of the driver's devices, records every
// call in order, and fails any step on demand.

import type {
  AddDevRequest,
  CtrlDevInfo,
  NativeBinding,
  NativeError,
  NativeServer,
  NativeTargetCaps,
  QueueExitEvent,
  TargetOptions,
  TargetReport,
  QueueStats,
  ServeOptions,
  UblkParams,
} from '../../shared/binding';

const ERRNO: Record<string, number> = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
};

export function nativeError(op: string, code: string, message?: string): NativeError {
  const err = new Error(message ?? `${op}: ${code}`) as NativeError;
  err.errno = ERRNO[code] ?? 5;
  err.code = code;
  err.op = op;
  return err;
}

export type FakeOp =
  | 'getFeatures'
  | 'addDev'
  | 'delDev'
  | 'startDev'
  | 'stopDev'
  | 'setParams'
  | 'getParams'
  | 'getDevInfo'
  | 'startUserRecovery'
  | 'endUserRecovery'
  | 'quiesceDev'
  | 'setIoScheduler'
  | 'createServer'
  | 'probeTarget'
  | 'server.start'
  | 'server.stop';

export interface Call {
  op: FakeOp;
  args: unknown[];
}

interface FakeDevice {
  info: CtrlDevInfo;
  params?: UblkParams;
}

export class FakeServer implements NativeServer {
  started = false;
  stops: Array<boolean | undefined> = [];
  private exitCb?: (ev: QueueExitEvent) => void;
  private reportCb?: (r: TargetReport) => void;

  constructor(
    readonly opts: ServeOptions,
    private readonly owner: FakeBinding,
  ) {}

  async start(): Promise<number[]> {
    this.owner.record('server.start', [this.opts.devId]);
    this.owner.maybeFail('server.start');
    this.started = true;
    return Array.from({ length: this.opts.nrQueues }, (_, i) => 1000 + this.opts.devId * 10 + i);
  }

  async stop(force?: boolean): Promise<void> {
    this.owner.record('server.stop', [force === true]);
    this.stops.push(force);
    this.owner.maybeFail('server.stop');
    this.started = false;
  }

  stats(): QueueStats[] {
    return this.owner.statsFn?.(this.opts) ?? [];
  }

  onQueueExit(cb: (ev: QueueExitEvent) => void): void {
    this.exitCb = cb;
  }

  onTargetReport(cb: (r: TargetReport) => void): void {
    this.reportCb = cb;
  }

  /** what memory(i) answers (a fake js target's shared memory) */
  mem: Array<Record<string, ArrayBuffer>> = [];
  signalCb?: (index: number, value: number) => void;
  wakes: number[] = [];

  onTargetSignal(cb: (index: number, value: number) => void): void {
    this.signalCb = cb;
  }

  memory(index: number): Record<string, ArrayBuffer> {
    return this.mem[index] ?? {};
  }

  wake(index: number): void {
    this.wakes.push(index);
  }

  /** Simulates a target's log line from a queue thread. */
  report(r: TargetReport): void {
    this.reportCb?.(r);
  }

  /** Simulates a queue thread ending on its own. */
  exitQueue(queueId: number, error = 0, message = 'device stopped'): void {
    this.exitCb?.({ queueId, error, message });
  }
}

export class FakeBinding implements NativeBinding {
  calls: Call[] = [];
  devices = new Map<number, FakeDevice>();
  servers: FakeServer[] = [];
  /** failures by op: an error (or a factory), used `times` times (Infinity = always) */
  private failures = new Map<FakeOp, { err: Error | (() => Error); times: number }>();
  /** flags the kernel "drops" from ADD_DEV (to test the check) */
  dropFlags = 0n;
  /** runs while START_DEV "waits" (a queue thread that fails during the partition scan) */
  duringStartDev?: () => void;
  notifications: string[] = [];
  /** what every server's stats() answers (default: nothing) */
  statsFn?: (opts: ServeOptions) => QueueStats[];

  /** whether /dev/ublk-control "exists" */
  control = true;

  constructor(public features: bigint = 0x7fffn) {}

  controlPresent(): boolean {
    return this.control;
  }

  targets(): NativeTargetCaps[] {
    const all = ['copy', 'user_copy', 'zc_auto', 'zc_explicit'] as const;
    return ['loop', 'null'].map((name) => ({ name, dataModes: [...all], flush: true, discard: true, writeZeroes: true, fua: true }));
  }

  record(op: FakeOp, args: unknown[]): void {
    this.calls.push({ op, args });
  }

  /** Makes `op` fail with a native error of `code` (or the given error), `times` times. */
  fail(op: FakeOp, codeOrErr: string | Error, times = Infinity): this {
    const err = typeof codeOrErr === 'string' ? () => nativeError(opName(op), codeOrErr) : codeOrErr;
    this.failures.set(op, { err, times });
    return this;
  }

  maybeFail(op: FakeOp): void {
    const f = this.failures.get(op);
    if (!f || f.times <= 0) return;
    f.times--;
    throw typeof f.err === 'function' ? f.err() : f.err;
  }

  ops(): FakeOp[] {
    return this.calls.map((c) => c.op);
  }

  /** Adds a device as if someone had created it (state 1 = LIVE). */
  addDevice(devId: number, over: Partial<CtrlDevInfo> = {}, params?: UblkParams): CtrlDevInfo {
    const info: CtrlDevInfo = {
      nrHwQueues: 1,
      queueDepth: 128,
      state: 1,
      maxIoBufBytes: 524288,
      devId,
      ublksrvPid: 4242,
      flags: 0x40n,
      ublksrvFlags: 0n,
      ownerUid: 0,
      ownerGid: 0,
      ...over,
    };
    this.devices.set(devId, { info, params });
    return info;
  }

  versions() {
    return { addon: 'fake', liburing: 'fake' };
  }

  async getFeatures(): Promise<bigint> {
    this.record('getFeatures', []);
    this.maybeFail('getFeatures');
    return this.features;
  }

  async addDev(req: AddDevRequest): Promise<CtrlDevInfo> {
    this.record('addDev', [req]);
    this.maybeFail('addDev');
    let id = req.devId;
    if (id >= 0 && this.devices.has(id)) throw nativeError('ADD_DEV', 'EEXIST');
    if (id < 0) for (id = 0; this.devices.has(id); id++);
    const info = this.addDevice(id, {
      nrHwQueues: req.nrHwQueues,
      queueDepth: req.queueDepth,
      maxIoBufBytes: req.maxIoBufBytes,
      flags: req.flags & ~this.dropFlags,
      state: 0,
      ublksrvPid: -1,
    });
    return { ...info };
  }

  private dev(op: string, devId: number): FakeDevice {
    const d = this.devices.get(devId);
    if (!d) throw nativeError(op, 'ENODEV');
    return d;
  }

  async delDev(devId: number): Promise<void> {
    this.record('delDev', [devId]);
    this.maybeFail('delDev');
    this.dev('DEL_DEV', devId);
    this.devices.delete(devId);
  }

  async startDev(devId: number, pid: number): Promise<void> {
    this.record('startDev', [devId, pid]);
    this.maybeFail('startDev');
    this.duringStartDev?.();
    const d = this.dev('START_DEV', devId);
    d.info.state = 1;
    d.info.ublksrvPid = pid;
  }

  async stopDev(devId: number): Promise<void> {
    this.record('stopDev', [devId]);
    this.maybeFail('stopDev');
    this.dev('STOP_DEV', devId).info.state = 0;
  }

  async setParams(devId: number, params: UblkParams): Promise<void> {
    this.record('setParams', [devId, params]);
    this.maybeFail('setParams');
    const d = this.dev('SET_PARAMS', devId);
    d.params = { ...params, devt: { charMajor: 240, charMinor: devId, diskMajor: 259, diskMinor: devId } };
  }

  async getParams(devId: number): Promise<UblkParams> {
    this.record('getParams', [devId]);
    this.maybeFail('getParams');
    const d = this.dev('GET_PARAMS', devId);
    if (!d.params) throw nativeError('GET_PARAMS', 'EINVAL');
    return d.params;
  }

  async getDevInfo(devId: number): Promise<CtrlDevInfo> {
    this.record('getDevInfo', [devId]);
    this.maybeFail('getDevInfo');
    return { ...this.dev('GET_DEV_INFO', devId).info };
  }

  async startUserRecovery(devId: number): Promise<void> {
    this.record('startUserRecovery', [devId]);
    this.maybeFail('startUserRecovery');
    const d = this.dev('START_USER_RECOVERY', devId);
    if (d.info.state !== 2 && d.info.state !== 3) throw nativeError('START_USER_RECOVERY', 'EINVAL');
  }

  async endUserRecovery(devId: number, pid: number): Promise<void> {
    this.record('endUserRecovery', [devId, pid]);
    this.maybeFail('endUserRecovery');
    const d = this.dev('END_USER_RECOVERY', devId);
    d.info.state = 1;
    d.info.ublksrvPid = pid;
  }

  async quiesceDev(devId: number, timeoutMs: number): Promise<void> {
    this.record('quiesceDev', [devId, timeoutMs]);
    this.maybeFail('quiesceDev');
    const d = this.dev('QUIESCE_DEV', devId);
    if (!(d.info.flags & (1n << 12n))) throw nativeError('QUIESCE_DEV', 'EOPNOTSUPP');
  }

  /** the scheduler last set per device (the kernel's default until set) */
  readonly schedulers = new Map<number, string>();

  async setIoScheduler(devId: number, name: string): Promise<void> {
    this.record('setIoScheduler', [devId, name]);
    this.maybeFail('setIoScheduler');
    this.dev('set I/O scheduler', devId);
    if (!['none', 'mq-deadline', 'kyber', 'bfq'].includes(name)) throw nativeError('set I/O scheduler', 'EINVAL');
    this.schedulers.set(devId, name);
  }

  createServer(opts: ServeOptions): NativeServer {
    this.record('createServer', [opts]);
    this.maybeFail('createServer');
    const s = new FakeServer(opts, this);
    this.servers.push(s);
    return s;
  }

  sdNotify(state: string): boolean {
    this.notifications.push(state);
    return false;
  }

  /** what probeTarget answers, by target name (default: no probe) */
  probes: Record<string, (options: TargetOptions) => Record<string, unknown>> = {};

  async probeTarget(name: string, options: TargetOptions): Promise<Record<string, unknown>> {
    this.record('probeTarget', [name, options]);
    this.maybeFail('probeTarget');
    const p = this.probes[name];
    if (!p) throw new TypeError(`target '${name}' has no probe`);
    return p(options);
  }
}

function opName(op: FakeOp): string {
  const m: Partial<Record<FakeOp, string>> = {
    getFeatures: 'GET_FEATURES',
    addDev: 'ADD_DEV',
    delDev: 'DEL_DEV',
    startDev: 'START_DEV',
    stopDev: 'STOP_DEV',
    setParams: 'SET_PARAMS',
    getParams: 'GET_PARAMS',
    getDevInfo: 'GET_DEV_INFO',
    startUserRecovery: 'START_USER_RECOVERY',
    endUserRecovery: 'END_USER_RECOVERY',
  };
  return m[op] ?? op;
}
