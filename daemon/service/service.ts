// `ublk-ts serve`: every device of a config in this one process (one DeviceServer each, one
// addon), kept up until SIGTERM/SIGINT stops and deletes them all. SIGHUP reloads the config and
// applies what can change live (reload-plan.ts). This class holds the devices and their order of
// events; commands/serve.ts wires it to the process (signals, metrics endpoint, exit status).
//
// A device of the config that has an id is brought back rather than re-created when it can be:
// with recovery, a disk whose server (a previous run of this service) died is QUIESCED and is
// recovered; without, our own dead device left behind is deleted first, so ADD_DEV does not
// fail with "id in use" after a crash.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeviceServer } from '../device-server';
import type { NativeBinding } from '../../shared/binding';
import type { StateStore } from '../state-store';
import { pidAlive as realPidAlive } from '../state-store';
import type { Log, LogLevel } from '../../shared/log';
import { describeError } from '../../shared/errors';
import { errnoCode } from '../addon/load-binding';
import { DEV_STATE, UBLK_F } from '../../shared/kernel';
import { deleteDevice, defaultDelDeps } from '../delete-device';
import type { Notifier } from './notify';
import type { Config as AnyConfig, DeviceConfig as AnyDeviceConfig } from '../../config/load-config';
import type { AddSpec } from '../spec';
import { planReload, type AppliedSettings, type ReloadPlan, type RunningDevice } from './reload-plan';
import type { MetricsDevice } from './metrics';

type Config = AnyConfig<AddSpec>;
type DeviceConfig = AnyDeviceConfig<AddSpec>;

export interface ServiceDeps {
  binding: NativeBinding;
  store: StateStore;
  log: Log;
  /** changes the process's log level (a reload with a new logLevel) */
  setLogLevel?: (level: LogLevel) => void;
  notifier: Notifier;
  /** resolves once /dev/ublkbN exists (false after a timeout); tests pass a fake */
  diskNode?: (devId: number) => Promise<boolean>;
  pidAlive?: (pid: number) => boolean;
  /** this process (default process.pid): a state file naming it is one of our live devices */
  pid?: number;
}

interface Entry {
  cfg: DeviceConfig;
  ds: DeviceServer;
}

/** Polls for the disk node; START_DEV has added the disk, so it appears at once with devtmpfs. */
export async function waitForDiskNode(devId: number, devDir = process.env.UBLK_TS_DEV_DIR || '/dev', timeoutMs = 5_000): Promise<boolean> {
  const node = path.join(devDir, `ublkb${devId}`);
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (fs.existsSync(node)) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Service {
  private readonly entries = new Map<string, Entry>();
  /** the devices of the config in force (start() brings them up; reload() replaces the list) */
  private pending: readonly DeviceConfig[];
  private applied: AppliedSettings;
  private stopping?: Promise<boolean>;
  private readonly log: Log;
  private readonly pidAlive: (pid: number) => boolean;
  private readonly me: number;

  constructor(
    config: Config,
    private readonly deps: ServiceDeps,
  ) {
    this.applied = { logLevel: config.logLevel, logFormat: config.logFormat, metrics: config.metrics };
    this.log = deps.log;
    const me = deps.pid ?? process.pid;
    const alive = deps.pidAlive ?? realPidAlive;
    this.pidAlive = (pid) => pid === me || alive(pid);
    this.me = me;
    this.pending = config.devices;
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /**
   * Brings up every device of the config, in order; READY=1 once all are LIVE. When one cannot be
   * brought up, the ones already up are stopped and deleted again and the error is thrown: the
   * service either runs its whole config or nothing.
   */
  async start(): Promise<void> {
    this.log.info({ event: 'service_starting', devices: this.pending.map((d) => d.name) }, 'starting devices');
    for (const cfg of this.pending) {
      if (this.stopping) break;
      this.deps.notifier.status(`starting ${cfg.name}; ${this.statusLine()}`);
      try {
        await this.bringUp(cfg);
      } catch (err) {
        this.log.error({ event: 'service_start_failed', device: cfg.name, err: describeError(err) }, `device ${cfg.name} could not be brought up`);
        await this.stop(`device ${cfg.name} failed to start`);
        throw err;
      }
    }
    if (this.stopping) return;
    this.deps.notifier.ready(this.statusLine());
    this.log.info({ event: 'service_ready', devices: this.deviceSummary() }, this.statusLine());
  }

  /** One device: recover it, or clear our stale leftover, then add; wait for its disk node. */
  private async bringUp(cfg: DeviceConfig): Promise<void> {
    const ds = new DeviceServer(cfg.spec, {
      binding: this.deps.binding,
      store: this.deps.store,
      log: this.log.child({ device: cfg.name }),
      serviceName: cfg.name,
    });
    const entry: Entry = { cfg, ds };
    this.entries.set(cfg.name, entry);
    ds.onStopped((reason) => this.stoppedOnItsOwn(entry, reason));
    const id = cfg.spec.id;
    if (id >= 0 && (await this.recoverable(id))) await ds.recover(id);
    else {
      if (id >= 0) await this.clearStale(id);
      await ds.start();
    }
    const diskNode = this.deps.diskNode ?? ((n: number) => waitForDiskNode(n));
    if (!(await diskNode(ds.devId))) {
      this.log.warn({ event: 'disk_node_missing', devId: ds.devId, device: cfg.name }, `/dev/ublkb${ds.devId} did not appear (no devtmpfs?)`);
    }
  }

  /** A QUIESCED/FAIL_IO disk of ours whose server is gone: recover it instead of adding. */
  private async recoverable(devId: number): Promise<boolean> {
    let saved;
    try {
      saved = this.deps.store.read(devId);
    } catch {
      return false;
    }
    if (!saved) return false;
    try {
      const info = await this.deps.binding.getDevInfo(devId);
      // a dead server's, or one of ours that let go of it (a queue failed: detached)
      const ours = saved.pid === this.me && ![...this.entries.values()].some((e) => e.ds.devId === devId && e.ds.phase === 'live');
      return (
        (info.flags & UBLK_F.USER_RECOVERY) !== 0n &&
        (info.state === DEV_STATE.QUIESCED || info.state === DEV_STATE.FAIL_IO) &&
        (ours || !this.pidAlive(saved.pid))
      );
    } catch {
      return false;
    }
  }

  /** Our own device whose server died without recovery: delete it so the id is free again. */
  private async clearStale(devId: number): Promise<void> {
    let saved;
    try {
      saved = this.deps.store.read(devId);
    } catch {
      return;
    }
    if (!saved) return;
    let info;
    try {
      info = await this.deps.binding.getDevInfo(devId);
    } catch (err) {
      if (errnoCode(err) === 'ENODEV') this.deps.store.remove(devId);
      return;
    }
    // only when the kernel names our dead server as the device's server: never someone else's
    if (info.ublksrvPid !== saved.pid || this.pidAlive(saved.pid)) return;
    this.log.warn({ event: 'stale_device', devId, pid: saved.pid }, `deleting device ${devId} left by a dead server (pid ${saved.pid})`);
    await deleteDevice(devId, { ...defaultDelDeps(), binding: () => this.deps.binding, store: this.deps.store });
  }

  /** A device stopped without being asked to (STOP_DEV from outside, every queue thread gone). */
  private stoppedOnItsOwn(entry: Entry, reason: string): void {
    const lost = entry.ds.phase === 'stopped' || (entry.ds.phase === 'detached' && reason === 'queue failed');
    if (this.stopping || this.entries.get(entry.cfg.name) !== entry || !lost) return;
    this.log.warn(
      { event: 'device_lost', device: entry.cfg.name, devId: entry.ds.devId, reason },
      `device ${entry.cfg.name} stopped on its own (${reason}); a reload (SIGHUP) brings it back`,
    );
    this.deps.notifier.status(this.statusLine());
  }

  /** SIGHUP: applies what can change live; logs what needs a restart. Returns the plan. */
  async reload(next: Config): Promise<ReloadPlan> {
    const running = new Map<string, RunningDevice>();
    for (const [name, e] of this.entries) running.set(name, { cfg: e.cfg, up: e.ds.phase === 'live' || e.ds.phase === 'starting' });
    const plan = planReload(this.applied, running, next);
    this.pending = next.devices;
    if (plan.logLevel) {
      this.deps.setLogLevel?.(plan.logLevel);
      this.log.info({ event: 'log_level', level: plan.logLevel }, `log level is now ${plan.logLevel}`);
      this.applied = { ...this.applied, logLevel: plan.logLevel };
    }
    for (const r of plan.restartNeeded) {
      this.log.warn({ event: 'reload_needs_restart', setting: r }, `${r}: applies after a restart of the service`);
    }
    for (const c of plan.changed) {
      this.log.warn(
        { event: 'reload_needs_restart', device: c.name, fields: c.fields },
        `device ${c.name} changed (${c.fields.join(', ')}): it keeps running as it is until the service restarts (or remove it, reload, add it back)`,
      );
    }
    for (const name of plan.remove) {
      const e = this.entries.get(name);
      if (!e) continue;
      this.entries.delete(name);
      this.log.info({ event: 'device_removed', device: name, devId: e.ds.devId }, `device ${name} left the configuration: stopping it`);
      await e.ds.stop('removed from the configuration').catch((err) =>
        this.log.error({ event: 'stop_failed', device: name, devId: e.ds.devId, err: describeError(err) }, `device ${name} could not be stopped`),
      );
    }
    for (const cfg of plan.add) {
      if (this.stopping) break;
      this.entries.delete(cfg.name);
      try {
        await this.bringUp(cfg);
      } catch (err) {
        this.log.error({ event: 'device_failed', device: cfg.name, err: describeError(err) }, `device ${cfg.name} could not be brought up`);
      }
    }
    this.log.info({ event: 'reloaded', devices: this.deviceSummary() }, this.statusLine());
    return plan;
  }

  /** Stops and deletes every device (in parallel); resolves false when one could not be. */
  stop(reason: string): Promise<boolean> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.deps.notifier.stopping(`stopping ${this.entries.size} device(s): ${reason}`);
      this.log.info({ event: 'service_stopping', reason, devices: [...this.entries.keys()] }, `stopping: ${reason}`);
      const results = await Promise.allSettled([...this.entries.values()].map((e) => e.ds.stop(reason)));
      let ok = true;
      results.forEach((r, i) => {
        if (r.status === 'rejected') {
          ok = false;
          const name = [...this.entries.keys()][i];
          this.log.error({ event: 'stop_failed', device: name, err: describeError(r.reason) }, `device ${name} could not be stopped`);
        }
      });
      this.log.info({ event: 'service_stopped', ok }, 'every device stopped');
      return ok;
    })();
    return this.stopping;
  }

  /** After a crash: stop the devices that would not survive us; leave recoverable ones QUIESCED. */
  async abandon(reason: string): Promise<void> {
    await Promise.allSettled(
      [...this.entries.values()].filter((e) => !e.cfg.spec.recovery).map((e) => e.ds.stop(reason)),
    );
  }

  /** For STATUS= and logs: "2/3 devices live: data=ublkb0, scratch=ublkb10; down: fast". */
  statusLine(): string {
    const all = [...this.entries.values()];
    const live = all.filter((e) => e.ds.phase === 'live');
    const down = all.filter((e) => e.ds.phase === 'failed' || e.ds.phase === 'stopped');
    const total = Math.max(all.length, this.pending.length);
    let s = `${live.length}/${total} devices live`;
    if (live.length) s += `: ${live.map((e) => `${e.cfg.name}=ublkb${e.ds.devId}`).join(', ')}`;
    if (down.length) s += `; down: ${down.map((e) => e.cfg.name).join(', ')}`;
    return s;
  }

  deviceSummary(): Array<{ name: string; devId: number; phase: string }> {
    return [...this.entries.values()].map((e) => ({ name: e.cfg.name, devId: e.ds.devId, phase: e.ds.phase }));
  }

  /** What the metrics read at scrape time. */
  metricsDevices(): MetricsDevice[] {
    return [...this.entries.values()].map((e) => ({
      name: e.cfg.name,
      devId: e.ds.devId,
      target: e.cfg.spec.target.kind,
      phase: e.ds.phase,
      depth: e.ds.info?.queueDepth,
      mode: e.ds.mode,
      stats: () => e.ds.stats(),
    }));
  }

  /** For tests and logs. */
  device(name: string): DeviceServer | undefined {
    return this.entries.get(name)?.ds;
  }
}
