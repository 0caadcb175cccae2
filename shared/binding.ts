// The contract between the TypeScript control plane and the C++ addon (native/addon.cc).
// Everything the daemon needs from the kernel goes through one object of this shape, so tests of
// TypeScript logic can inject a fake (see test/unit/fake-binding.ts) while integration tests in
// the VM use the real addon against the real driver. Loaded by daemon/addon/load-binding.ts.

/** struct ublksrv_ctrl_dev_info, as the kernel reports it. */
export interface CtrlDevInfo {
  nrHwQueues: number;
  queueDepth: number;
  /** UBLK_S_DEV_*: 0 DEAD, 1 LIVE, 2 QUIESCED, 3 FAIL_IO */
  state: number;
  maxIoBufBytes: number;
  devId: number;
  ublksrvPid: number;
  /** UBLK_F_* negotiated with the kernel */
  flags: bigint;
  ublksrvFlags: bigint;
  ownerUid: number;
  ownerGid: number;
}

export interface AddDevRequest {
  /** -1 lets the kernel choose */
  devId: number;
  nrHwQueues: number;
  queueDepth: number;
  maxIoBufBytes: number;
  flags: bigint;
  ublksrvFlags?: bigint;
}

export interface BasicParams {
  /** UBLK_ATTR_*: READ_ONLY 1, ROTATIONAL 2, VOLATILE_CACHE 4, FUA 8 */
  attrs: number;
  logicalBsShift: number;
  physicalBsShift: number;
  ioOptShift: number;
  ioMinShift: number;
  maxSectors: number;
  chunkSectors: number;
  devSectors: bigint;
  virtBoundaryMask: bigint;
}

export interface DiscardParams {
  discardAlignment: number;
  discardGranularity: number;
  maxDiscardSectors: number;
  maxWriteZeroesSectors: number;
  maxDiscardSegments: number;
}

export interface DevtParams {
  charMajor: number;
  charMinor: number;
  diskMajor: number;
  diskMinor: number;
}

export interface DmaParams {
  alignment: number;
}

export interface SegmentParams {
  segBoundaryMask: bigint;
  maxSegmentSize: number;
  maxSegments: number;
}

/** struct ublk_params; which members are present decides `types`. */
export interface UblkParams {
  basic: BasicParams;
  discard?: DiscardParams;
  /** read-only, returned by GET_PARAMS; never sent */
  devt?: DevtParams;
  dma?: DmaParams;
  seg?: SegmentParams;
}

/** How the queue threads move data; the native side picks its path from this, in one place. */
export type DataMode = 'copy' | 'user_copy' | 'zc_auto' | 'zc_explicit';

/** A target's options as its native init reads them: names to strings, numbers, booleans, number lists. */
export type TargetOptions = Record<string, string | number | boolean | number[]>;

export interface TestFaults {
  /** AUTO_BUF_REG: every Nth tag asks for a buffer-table index past the table's end (NEED_REG_BUF) */
  autoBufMissEvery?: number;
}

export interface ServeOptions {
  devId: number;
  nrQueues: number;
  depth: number;
  maxIoBufBytes: number;
  mode: DataMode;
  /** UBLK_F_BATCH_IO was negotiated: PREP / FETCH / COMMIT_IO_CMDS instead of per-tag commands */
  batchIo?: boolean;
  /** threads per queue, the queue's tags split between them (needs UBLK_F_PER_IO_DAEMON); default 1 */
  threadsPerQueue?: number;
  /** where the queue threads run (add-options' QueueAffinity); absent: the scheduler decides */
  affinity?: 'cpu' | 'queue' | 'none';
  /** µs a queue polls its ring after a pass that had work, before it sleeps; absent or 0: never */
  busyPollUs?: number;
  /** writes, discards and write-zeroes fail with EROFS before the target sees them */
  readOnly?: boolean;
  /** the target: its name picks the native operations table, its options go to its init */
  target: { name: string; options: TargetOptions };
  /** faults for tests, only through the programmatic API (never the CLI or a config file) */
  testFaults?: TestFaults;
}

/** One queue's counters, read from native memory on demand (never pushed per I/O). */
export interface QueueStats {
  queueId: number;
  tid: number;
  /** per op name: read, write, flush, discard, write_zeroes, other */
  ops: Record<string, number>;
  bytes: Record<string, number>;
  errors: Record<string, number>;
  inflight: number;
  /** latency histogram: count of I/Os whose latency is <= bucketsUs[i] microseconds; last is +Inf */
  latencyBucketsUs: number[];
  latencyCounts: number[];
  latencySumUs: number;
  /** calls into JavaScript made from this queue thread (must stay 0) */
  jsCalls: number;
  /**
   * zero copy with AUTO_BUF_REG: requests the kernel could not register in the buffer table
   * (NEED_REG_BUF), registered by the server instead; 0 in the other modes
   */
  zcFallbackRegs: number;
  /** the target's own counters by name (TargetOps::counters): reconnects, bytes on a wire... */
  target: Record<string, number>;
}

/** A target's log line from a queue thread (a connection lost, a reconnect). */
export interface TargetReport {
  queueId: number;
  level: 'info' | 'warn' | 'error';
  message: string;
}

export interface QueueExitEvent {
  queueId: number;
  /** 0 for a normal exit (device stopped), negative errno otherwise */
  error: number;
  message: string;
}

/** The native server of one device: its /dev/ublkcN, its queue threads and rings. */
export interface NativeServer {
  /**
   * Opens /dev/ublkcN, starts one thread per queue; each creates its ring, mmaps its descriptors
   * and FETCHes every tag. Resolves with the queue threads' tids once every queue is ready, i.e.
   * when START_DEV may be sent.
   */
  start(): Promise<number[]>;
  /**
   * Ends the queue threads and joins them. Call after STOP_DEV (the kernel aborts the fetched
   * commands); with `force` the threads are told to leave even if commands are still pending.
   */
  stop(force?: boolean): Promise<void>;
  stats(): QueueStats[];
  /** A queue thread ended on its own (device stopped or error). Called from the main thread. */
  onQueueExit(cb: (ev: QueueExitEvent) => void): void;
  /** The target's log lines (rare events), on the main thread. */
  onTargetReport(cb: (r: TargetReport) => void): void;
  /** A target's signal from queue thread `index` (the js target: requests arrived up to `value`). */
  onTargetSignal(cb: (index: number, value: number) => void): void;
  /** What queue thread `index` shares with JavaScript, by name ("buffers" in copy mode; a target's own). */
  memory(index: number): Record<string, ArrayBuffer>;
  /** Wakes queue thread `index`: its target's handle_event runs (work JavaScript finished). */
  wake(index: number): void;
}

/** What a native target can serve (its TargetCaps); the TypeScript descriptor declares the same. */
export interface NativeTargetCaps {
  name: string;
  dataModes: DataMode[];
  flush: boolean;
  discard: boolean;
  writeZeroes: boolean;
  fua: boolean;
}

export interface NativeBinding {
  /** Addon and liburing versions, for `ublk-ts features` and build info. */
  versions(): { addon: string; liburing: string };
  /** Whether /dev/ublk-control exists (the driver is loaded). */
  controlPresent(): boolean;
  /** The native targets and what each can serve. */
  targets(): NativeTargetCaps[];
  /** UBLK_F_* the running kernel supports (GET_FEATURES). */
  getFeatures(): Promise<bigint>;
  addDev(req: AddDevRequest): Promise<CtrlDevInfo>;
  delDev(devId: number): Promise<void>;
  startDev(devId: number, pid: number): Promise<void>;
  stopDev(devId: number): Promise<void>;
  setParams(devId: number, params: UblkParams): Promise<void>;
  getParams(devId: number): Promise<UblkParams>;
  getDevInfo(devId: number): Promise<CtrlDevInfo>;
  startUserRecovery(devId: number): Promise<void>;
  endUserRecovery(devId: number, pid: number): Promise<void>;
  /**
   * QUIESCE_DEV (needs the device's UBLK_F_QUIESCE): the kernel stops handing requests to the
   * server and aborts its idle commands, so the queue threads drain and exit without a STOP_DEV;
   * once the server closes /dev/ublkcN the disk waits QUIESCED for `recover`. EBUSY when some
   * queue had no idle tag within timeoutMs.
   */
  quiesceDev(devId: number, timeoutMs: number): Promise<void>;
  /** Writes `name` to /sys/block/ublkbN/queue/scheduler (the disk must exist: after START_DEV). */
  setIoScheduler(devId: number, name: string): Promise<void>;
  createServer(opts: ServeOptions): NativeServer;
  /**
   * What a native target learns of its store before any device exists (an NBD server's size and
   * flags), off the main thread. Rejects with the target's reason.
   */
  probeTarget(name: string, options: TargetOptions): Promise<Record<string, unknown>>;
  /** sd_notify(3) without libsystemd: sends `state` to $NOTIFY_SOCKET; false when unset. */
  sdNotify(state: string): boolean;
}

/** Errors from the addon carry the kernel's errno. */
export interface NativeError extends Error {
  errno: number;
  code: string;
  /** the ublk command or syscall that failed, e.g. "ADD_DEV" */
  op: string;
}
