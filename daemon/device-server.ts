// The lifecycle of ONE ublk device, run inside its server process (server-main.ts, or `add
// --foreground`). The whole control sequence lives here, in order, so it can be read in one
// place and tested with a fake binding:
//
//   add:      describe target → GET_FEATURES → negotiate → ADD_DEV → SET_PARAMS
//             → queue threads FETCH every tag → START_DEV(pid) → state file → LIVE
//   recover:  GET_DEV_INFO (QUIESCED/FAIL_IO) → START_USER_RECOVERY → queue threads FETCH
//             → END_USER_RECOVERY(pid) → state file → LIVE
//   stop:     STOP_DEV → join queue threads → DEL_DEV → remove state file
//
// A failure at any step of `add` undoes the steps done so far, in reverse, and reports the
// original error: no half-created disk is left behind. Every native control call returns a
// promise (the addon runs them off the main thread: START_DEV and DEL_DEV can block).

import type {
  CtrlDevInfo,
  DataMode,
  NativeBinding,
  NativeServer,
  QueueExitEvent,
  QueueStats,
  ServeOptions,
  TestFaults,
} from '../shared/binding';
import type { TargetDescription, TargetFs } from '../shared/target';
import { DEV_STATE, flagNames, hex, stateName, UBLK_F } from '../shared/kernel';
import { modeFromFlags, negotiateFlags } from './features';
import { targetOf, type AddSpec } from './spec';
import { checkResources } from './resource-check';
import { errnoCode, friendlyError } from './addon/load-binding';
import { UblkError } from '../shared/errors';
import { STATE_VERSION, type DeviceState, type StateStore } from './state-store';
import { nullLogger, type Log } from '../shared/log';
import { checkRecoverable, recheckSavedSpec } from './recovery-checks';

export type Phase = 'idle' | 'starting' | 'live' | 'stopping' | 'stopped' | 'failed' | 'detached';

export interface DeviceServerDeps {
  binding: NativeBinding;
  store: StateStore;
  log?: Log;
  /** file access for the target's checks (tests pass a fake) */
  fs?: TargetFs;
  /** reported to the kernel as the server (START_DEV / END_USER_RECOVERY); default process.pid */
  pid?: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  /** how long START_USER_RECOVERY is retried while the old server's files are still open */
  recoveryBusyTimeoutMs?: number;
  /** `serve`: the device's name in the service's config, kept in the state file (del reads it) */
  serviceName?: string;
  /** faults for tests of paths the kernel seldom takes; never set from the CLI or a config */
  testFaults?: TestFaults;
  /** the object a library caller serves (createDevice: the js target's BlockTarget) */
  targetInstance?: unknown;
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface UndoStep {
  what: string;
  run: () => Promise<void> | void;
}

export class DeviceServer {
  /** -1 until ADD_DEV answered (or recover() was called) */
  devId = -1;
  phase: Phase = 'idle';
  state?: DeviceState;
  /** what the kernel accepted (ADD_DEV) or reported (recover); queue count and depth for metrics */
  info?: CtrlDevInfo;
  /** the data path the queue threads use */
  mode?: DataMode;
  /** what the target said the user should know (its description's notes) */
  notes: string[] = [];
  /** the target's description, while the device is served (attach / release) */
  private target?: { spec: AddSpec; d: TargetDescription };
  private server?: NativeServer;
  private nrQueues = 0;
  private readonly exitedQueues = new Set<number>();
  private queueFailed = false;
  private queueFailure = '';
  private stopping?: Promise<void>;
  private starting?: Promise<unknown>;
  private readonly stoppedCbs: Array<(reason: string) => void> = [];
  private readonly binding: NativeBinding;
  private readonly store: StateStore;
  private log: Log;
  private readonly pid: number;
  private readonly now: () => Date;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly spec: AddSpec | undefined,
    private readonly deps: DeviceServerDeps,
  ) {
    this.binding = deps.binding;
    this.store = deps.store;
    this.log = deps.log ?? nullLogger;
    this.pid = deps.pid ?? process.pid;
    this.now = deps.now ?? (() => new Date());
    this.sleep = deps.sleep ?? realSleep;
  }

  /** Called once when the device has been stopped and deleted (by stop() or on its own). */
  onStopped(cb: (reason: string) => void): void {
    this.stoppedCbs.push(cb);
  }

  private event(event: string, fields: Record<string, unknown> = {}, msg?: string): void {
    this.log.info({ event, devId: this.devId, ...fields }, msg ?? event);
  }

  // ---------------------------------------------------------------------------------------------
  // add

  start(): Promise<DeviceState> {
    if (this.phase !== 'idle') return Promise.reject(new Error(`DeviceServer.start() in phase ${this.phase}`));
    this.phase = 'starting';
    const p = this.doStart();
    this.starting = p;
    return p;
  }

  private async doStart(): Promise<DeviceState> {
    const spec = this.spec;
    if (!spec) throw new Error('DeviceServer.start() needs an AddSpec');
    const undo: UndoStep[] = [];
    try {
      // The target first: a missing or unusable backing store is reported before the kernel is
      // asked for anything, and so is a backing file another disk writes.
      const target = await this.describeTarget(spec);
      checkResources(spec, this.store);
      this.notes = target.notes;
      for (const note of target.notes) this.log.warn({ event: 'target_note', devId: -1 }, note);

      // Negotiate from what this kernel supports; a missing feature fails here, before ADD_DEV.
      const features = await this.binding.getFeatures();
      const { flags, mode } = negotiateFlags(features, spec);
      this.event('negotiated', { features: hex(features), flags: hex(flags), mode });

      // ADD_DEV creates /dev/ublkcN (no disk yet). The kernel may clamp queues/depth/buffer size
      // and writes back what it accepted: everything below uses its answer.
      const info = await this.binding.addDev({
        devId: spec.id,
        nrHwQueues: Math.min(spec.queues, target.maxQueues ?? spec.queues),
        queueDepth: spec.depth,
        maxIoBufBytes: spec.maxIoBufBytes,
        flags,
      });
      this.devId = info.devId;
      // (every record names devId itself: a child logger binding it too would print it twice)
      undo.push({ what: 'DEL_DEV', run: () => this.binding.delDev(info.devId) });
      this.event('added', {
        flags: hex(info.flags),
        nrHwQueues: info.nrHwQueues,
        queueDepth: info.queueDepth,
        maxIoBufBytes: info.maxIoBufBytes,
      });
      const dropped = flags & ~info.flags;
      if (dropped !== 0n) {
        throw new UblkError(`the kernel did not accept ${flagNames(dropped).join(', ')} for device ${info.devId}`, {
          code: 'ENOTSUP',
          op: 'ADD_DEV',
        });
      }

      // SET_PARAMS before the queue threads start: a refused parameter is cheap to undo now, and
      // the kernel only accepts it while the device is not LIVE.
      const params = this.fitParams(target, info);
      await this.binding.setParams(info.devId, params);
      this.event('params_set', { devSectors: params.basic.devSectors.toString(), lbsShift: params.basic.logicalBsShift });

      // The queue threads open /dev/ublkcN, create their rings and FETCH every tag; start()
      // resolves once all are in, which START_DEV waits for.
      const server = this.createServer(target, info, mode, spec);
      undo.push({ what: 'stop queue threads', run: async () => (await server.stop(true), await this.releaseTarget()) });
      const tids = await server.start();
      this.event('queues_ready', { tids });
      await this.attachTarget(server, info);

      // START_DEV adds /dev/ublkbN; the pid is the process that serves the device.
      await this.binding.startDev(info.devId, this.pid);
      undo.push({ what: 'STOP_DEV', run: () => this.binding.stopDev(info.devId) });
      // a queue that failed while START_DEV waited (the partition scan's reads met a dead store)
      if (this.queueFailed) throw new Error(`${this.queueFailure} (while the disk started)`);
      await this.applyIoScheduler(info.devId, spec.ioScheduler);

      // Only a LIVE device gets a state file; `list` and `recover` rely on it.
      const at = this.now().toISOString();
      const state: DeviceState = {
        version: STATE_VERSION,
        devId: info.devId,
        pid: this.pid,
        spec: { ...spec, id: info.devId },
        flags: hex(info.flags),
        mode,
        tids,
        target: target.queuesKey ? { ...target.json, [target.queuesKey]: info.nrHwQueues } : target.json,
        createdAt: at,
        updatedAt: at,
        ...(this.deps.serviceName !== undefined ? { service: this.deps.serviceName } : {}),
      };
      this.store.write(state);
      this.state = state;
      this.phase = 'live';
      this.event('live', { pid: this.pid, mode, flags: flagNames(info.flags) });
      if (this.exitedQueues.size > 0) this.actOnExitedQueues();
      return state;
    } catch (err) {
      const failure = friendlyError(err, { devId: this.devId >= 0 ? this.devId : spec.id });
      this.log.error({ event: 'add_failed', devId: this.devId, err: (failure as Error).message }, 'add failed');
      await this.rollback(undo);
      this.phase = 'failed';
      throw failure;
    }
  }

  /** The target's description of the disk, with what its native half can learn (probe). */
  private async describeTarget(spec: AddSpec): Promise<TargetDescription> {
    const t = targetOf(spec);
    const d = await t.describe(spec.target, spec, {
      fs: this.deps.fs,
      probe: (options) => this.binding.probeTarget(t.name, options),
      instance: this.deps.targetInstance,
    });
    this.target = { spec, d };
    return d;
  }

  /** The queue threads are up, the disk is not live yet: a target with a JavaScript side starts it. */
  private async attachTarget(server: NativeServer, info: CtrlDevInfo): Promise<void> {
    if (!this.target) return;
    const t = targetOf(this.target.spec);
    await t.attach?.(server, this.target.d, {
      devId: () => this.devId,
      threads: info.nrHwQueues * (this.target.spec.threadsPerQueue ?? 1),
      maxIoBufBytes: info.maxIoBufBytes,
      log: this.log,
    });
  }

  /** The queue threads are gone: the target lets go of what its JavaScript side holds. */
  private async releaseTarget(): Promise<void> {
    const held = this.target;
    this.target = undefined;
    if (!held) return;
    try {
      await targetOf(held.spec).release?.(held.d);
    } catch (err) {
      this.log.warn({ event: 'target_release', devId: this.devId, err: (err as Error).message }, 'the target did not let go cleanly');
    }
  }

  /** The disk's I/O scheduler, before the device counts as live; a refusal fails the add. */
  private async applyIoScheduler(devId: number, name: string): Promise<void> {
    if (name === 'kernel') return;
    try {
      await this.binding.setIoScheduler(devId, name);
    } catch (err) {
      const code = errnoCode(err) ?? (err as Error).message;
      const why = code === 'EINVAL' ? 'this kernel has no such scheduler (see /sys/block/ublkbN/queue/scheduler)' : code;
      throw new UblkError(`cannot set the I/O scheduler of /dev/ublkb${devId} to "${name}": ${why}`, { code, op: 'set I/O scheduler' });
    }
    this.event('io_scheduler', { scheduler: name });
  }

  /** Undo in reverse; an undo step that fails is logged, never hides the original error. */
  private async rollback(undo: UndoStep[]): Promise<void> {
    for (const step of undo.reverse()) {
      try {
        await step.run();
        this.event('rollback', { step: step.what });
      } catch (e) {
        this.log.error({ event: 'rollback_failed', devId: this.devId, step: step.what, err: (e as Error).message }, 'rollback step failed');
      }
    }
  }

  /** max_sectors must fit the buffer size the kernel accepted. */
  private fitParams(target: TargetDescription, info: CtrlDevInfo) {
    const params = { ...target.params, basic: { ...target.params.basic } };
    params.basic.maxSectors = Math.min(params.basic.maxSectors, info.maxIoBufBytes >>> 9);
    return params;
  }

  private createServer(target: TargetDescription, info: CtrlDevInfo, mode: DataMode, spec: AddSpec): NativeServer {
    const opts: ServeOptions = {
      target: target.serve,
      readOnly: target.readOnly,
      devId: info.devId,
      nrQueues: info.nrHwQueues,
      depth: info.queueDepth,
      maxIoBufBytes: info.maxIoBufBytes,
      mode,
      // From the device's flags, not the spec: a recovered device serves as it was added.
      batchIo: (info.flags & UBLK_F.BATCH_IO) !== 0n,
      // From the spec (add's, or the one saved for recover): the device's flags do not say it.
      threadsPerQueue: spec.threadsPerQueue,
      affinity: spec.affinity,
      busyPollUs: spec.busyPoll,
      ...(this.deps.testFaults ? { testFaults: this.deps.testFaults } : {}),
    };
    const server = this.binding.createServer(opts);
    this.server = server;
    this.info = info;
    this.mode = mode;
    this.nrQueues = info.nrHwQueues;
    this.exitedQueues.clear();
    this.queueFailed = false;
    server.onQueueExit((ev) => this.queueExited(ev));
    // the target's own rare events (a connection lost, a reconnect), as log lines
    server.onTargetReport((r) => {
      const log = r.level === 'error' ? this.log.error : r.level === 'warn' ? this.log.warn : this.log.info;
      log.call(this.log, { event: 'target', devId: this.devId, queueId: r.queueId }, r.message);
    });
    return server;
  }

  /** Queue threads end on their own when the device is stopped by someone else (or fail). */
  private queueExited(ev: QueueExitEvent): void {
    this.exitedQueues.add(ev.queueId);
    const fields = { queueId: ev.queueId, error: ev.error, message: ev.message };
    if (ev.error !== 0) this.log.error({ event: 'queue_exit', devId: this.devId, ...fields }, 'queue thread failed');
    else this.event('queue_exit', fields);
    if (ev.error !== 0 && !this.queueFailed) {
      this.queueFailed = true;
      this.queueFailure = `queue ${ev.queueId} failed: ${ev.message}`;
    }
    // before LIVE (a queue can fail while START_DEV waits: the partition scan's reads), add and
    // recover act on it once the device is LIVE
    if (this.phase === 'live') this.actOnExitedQueues();
  }

  private actOnExitedQueues(): void {
    if (this.queueFailed) {
      // A queue that failed on its own (its target lost its store: an NBD server gone for good)
      // cannot serve its share of the disk any more: the device goes as a crashed server's would.
      // With -r 1 it is left QUIESCED (FAIL_IO with -e 1) for `recover`; without, deleted.
      const recoverable = this.info !== undefined && (this.info.flags & UBLK_F.USER_RECOVERY) !== 0n;
      if (recoverable) void this.detach('queue failed').catch(() => undefined);
      else void this.stop(this.queueFailure).catch(() => undefined);
      return;
    }
    if (this.exitedQueues.size >= this.nrQueues) void this.afterQueuesExited().catch(() => undefined);
  }

  /**
   * Every queue thread ended without our asking. Either someone stopped the device (STOP_DEV: the
   * kernel already marked it DEAD) and we delete it, or someone quiesced it for a live upgrade
   * (QUIESCE_DEV, `ublk-ts upgrade`: still LIVE, with recovery) and we hand it over: close
   * /dev/ublkcN so the disk goes QUIESCED, keep the state file, and let the new server recover it.
   */
  private async afterQueuesExited(): Promise<void> {
    if (!this.queueFailed && this.info && this.info.flags & UBLK_F.USER_RECOVERY) {
      const now = await this.binding.getDevInfo(this.devId).catch(() => undefined);
      if (this.phase === 'live' && now && now.state !== DEV_STATE.DEAD) {
        this.phase = 'detached';
        this.event('handover', { state: stateName(now.state) }, 'quiesced: handing the device over to a new server');
        try {
          await this.server?.stop(true);
        } finally {
          await this.releaseTarget();
          this.notifyStopped('handover');
        }
        return;
      }
    }
    await this.stop('every queue thread exited');
  }

  // ---------------------------------------------------------------------------------------------
  // recover

  recover(devId: number): Promise<DeviceState> {
    if (this.phase !== 'idle') return Promise.reject(new Error(`DeviceServer.recover() in phase ${this.phase}`));
    this.phase = 'starting';
    const p = this.doRecover(devId);
    this.starting = p;
    return p;
  }

  private async doRecover(devId: number): Promise<DeviceState> {
    this.devId = devId;
    let server: NativeServer | undefined;
    try {
      const saved = this.store.read(devId);
      if (!saved) {
        throw new UblkError(`no ublk-ts state for device ${devId}: only devices added by ublk-ts can be recovered`, {
          code: 'ENOENT',
          op: 'recover',
        });
      }

      // Only a disk whose server died with USER_RECOVERY is waiting for a new one.
      const info = await this.binding.getDevInfo(devId);
      checkRecoverable(info);

      // Check the target again before touching the device: its store may have gone or shrunk.
      // The saved spec passes the add validator again: a damaged file stops here.
      const spec: AddSpec = recheckSavedSpec(saved.spec, devId, this.store.fileFor(devId));
      const target = await this.describeTarget(spec);
      const savedSize = Number(saved.target.dev_size);
      if (Number.isFinite(savedSize) && target.sizeBytes < savedSize) {
        throw new UblkError(
          `the backing store of device ${devId} shrank from ${savedSize} to ${target.sizeBytes} bytes: refusing to recover`,
          { code: 'EINVAL', op: 'recover' },
        );
      }
      const mode = modeFromFlags(info.flags);

      // START_USER_RECOVERY answers EBUSY until the dead server's /dev/ublkcN is fully released.
      await this.startUserRecovery(devId);
      this.event('recovery_started', { state: stateName(info.state) });

      // A new set of queue threads re-opens /dev/ublkcN, re-maps the descriptors and FETCHes.
      server = this.createServer(target, info, mode, spec);
      const tids = await server.start();
      this.event('queues_ready', { tids });
      await this.attachTarget(server, info);

      // END_USER_RECOVERY makes the disk LIVE again with this process as its server.
      await this.binding.endUserRecovery(devId, this.pid);

      const state: DeviceState = {
        ...saved,
        version: STATE_VERSION,
        spec,
        pid: this.pid,
        tids,
        mode,
        flags: hex(info.flags),
        updatedAt: this.now().toISOString(),
        ...(this.deps.serviceName !== undefined ? { service: this.deps.serviceName } : {}),
      };
      this.store.write(state);
      this.state = state;
      this.phase = 'live';
      this.event('recovered', { pid: this.pid, mode });
      if (this.exitedQueues.size > 0) this.actOnExitedQueues();
      return state;
    } catch (err) {
      const failure = friendlyError(err, { devId });
      this.log.error({ event: 'recover_failed', devId, err: (failure as Error).message }, 'recover failed');
      // The device itself is left as it was (QUIESCED or FAIL_IO): a later recover can retry.
      if (server) {
        try {
          await server.stop(true);
        } catch (e) {
          this.log.error({ event: 'rollback_failed', devId, step: 'stop queue threads', err: (e as Error).message }, 'rollback step failed');
        }
      }
      await this.releaseTarget();
      this.phase = 'failed';
      throw failure;
    }
  }

  private async startUserRecovery(devId: number): Promise<void> {
    const deadline = Date.now() + (this.deps.recoveryBusyTimeoutMs ?? 30_000);
    for (;;) {
      try {
        await this.binding.startUserRecovery(devId);
        return;
      } catch (err) {
        if (errnoCode(err) !== 'EBUSY') throw err;
        // EBUSY also answers a device that another `recover` has already brought back
        const now = await this.binding.getDevInfo(devId).catch(() => undefined);
        if (now && now.state !== DEV_STATE.QUIESCED && now.state !== DEV_STATE.FAIL_IO) {
          throw new UblkError(
            `device ${devId} became ${stateName(now.state)} (server pid ${now.ublksrvPid}) while this recover waited: ` +
              'another recover got there first',
            { code: 'EBUSY', op: 'START_USER_RECOVERY' },
          );
        }
        if (Date.now() >= deadline) {
          throw new UblkError(
            `START_USER_RECOVERY of device ${devId} still answers EBUSY after ${Math.round((this.deps.recoveryBusyTimeoutMs ?? 30_000) / 1000)} s: ` +
              `is the old server (pid ${now?.ublksrvPid ?? '?'}) still holding /dev/ublkc${devId}?`,
            { code: 'EBUSY', op: 'START_USER_RECOVERY', cause: err },
          );
        }
        await this.sleep(100);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // counters

  /**
   * The queue threads' counters, read from native memory now (metrics call this at scrape time).
   * Empty unless the device is live: the native server is not read once its threads are joined.
   */
  stats(): QueueStats[] {
    return this.phase === 'live' && this.server ? this.server.stats() : [];
  }

  // ---------------------------------------------------------------------------------------------
  // detach

  /**
   * Lets go of a live device without stopping it, as a dying server would: the queue threads end
   * and /dev/ublkcN closes, but no STOP_DEV. With -r 1 the kernel keeps the disk QUIESCED (FAIL_IO
   * with -e 1) for `recover`; without, it stops the disk (DEAD) and `del` removes it. The state
   * file stays. For handing a device to another server, and for tests of recovery.
   */
  async detach(reason = 'detached'): Promise<void> {
    if (this.phase !== 'live') throw new Error(`DeviceServer.detach() in phase ${this.phase}`);
    this.phase = 'detached';
    this.event('detaching', { reason });
    try {
      await this.server?.stop(true);
    } finally {
      await this.releaseTarget();
      this.event('detached');
      this.notifyStopped(reason);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // stop

  /**
   * Stops and deletes the device: STOP_DEV (the kernel aborts the fetched commands, so the queue
   * threads can leave) → join the threads → DEL_DEV (needs /dev/ublkcN closed) → remove state.
   * Idempotent: later calls share the first one's promise. Throws the first failure after
   * trying every step; the state file stays when the device could not be deleted.
   */
  stop(reason = 'stop requested'): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    // A stop asked for while add/recover is under way waits for it to settle: a failed start has
    // already cleaned up after itself, a successful one is stopped normally.
    if (this.phase === 'starting') await this.starting?.catch(() => undefined);
    if (this.phase !== 'live') {
      // idle, or failed (rolled back, or a recovery that left the device as it was), or detached
      // (left to another server): nothing of ours to delete; DEL_DEV on the id now could hit
      // someone else's device.
      this.phase = this.phase === 'failed' || this.phase === 'detached' ? this.phase : 'stopped';
      this.notifyStopped(reason);
      return;
    }
    this.phase = 'stopping';
    this.event('stopping', { reason });
    let firstError: unknown;
    const gone = (err: unknown) => errnoCode(err) === 'ENODEV';
    let deleted = false;

    try {
      await this.binding.stopDev(this.devId);
    } catch (err) {
      if (!gone(err)) firstError ??= friendlyError(err, { devId: this.devId });
    }
    if (this.server) {
      try {
        await this.server.stop();
      } catch (err) {
        firstError ??= err;
        try {
          await this.server.stop(true);
        } catch {
          // already reported
        }
      }
    }
    await this.releaseTarget();
    try {
      await this.binding.delDev(this.devId);
      deleted = true;
      this.event('deleted');
    } catch (err) {
      if (gone(err)) deleted = true;
      else firstError ??= friendlyError(err, { devId: this.devId });
    }
    if (deleted) {
      try {
        this.store.remove(this.devId);
      } catch (err) {
        firstError ??= err;
      }
    }
    this.phase = 'stopped';
    if (firstError) {
      this.log.error({ event: 'stop_failed', devId: this.devId, err: (firstError as Error).message }, 'stop failed');
    } else {
      this.event('stopped', { reason });
    }
    this.notifyStopped(reason);
    if (firstError) throw firstError;
  }

  private notifyStopped(reason: string): void {
    for (const cb of this.stoppedCbs) {
      try {
        cb(reason);
      } catch {
        // a listener's problem
      }
    }
  }
}
