// `ublk-ts serve --config FILE|DIR`: the service mode, in the foreground (systemd's Type=notify).
// Order matters, and is the point of this file:
//   1. load and check the whole config (exit 2 listing every problem; nothing touched yet)
//   2. root, driver, addon; oom_score_adj; watchdog pings
//   3. bind the metrics endpoint (an address in use fails here, before any device exists)
//   4. bring up every device (Service.start), then READY=1
//   5. SIGHUP reloads (serialised); SIGTERM/SIGINT: STOPPING=1, stop and delete all, exit 0/1

import type { Config, LoadOptions } from '../../config/load-config';
import { loadConfig } from '../../config/load-config';
import type { ServiceKey } from '../../config/service-settings';
import { formatAddress } from '../../config/service-settings';
import type { NativeBinding } from '../../shared/binding';
import { ConfigError, UblkError, describeError } from '../../shared/errors';
import { createLogger, type RootLog } from '../../shared/log';
import { getBinding } from '../addon/load-binding';
import { requireControl, requireRoot } from '../checks';
import { protectFromOom } from '../oom';
import { DEVICE_MODEL, type AddSpec } from '../spec';
import { StateStore } from '../state-store';
import { VERSION } from '../version';
import { Notifier } from './notify';
import { Service } from './service';
import type { MetricsServer } from './metrics-server';

export type ServeCliOptions = { config?: string } & Partial<Record<ServiceKey, string>>;

/** A running service, for tests (and anything else in this process that drives it). */
export interface ServeHandle {
  service: Service;
  config: Config;
  metrics?: MetricsServer;
  /** as SIGHUP */
  reload(): Promise<void>;
  /** as SIGTERM */
  stop(): void;
}

export interface ServeDeps {
  binding?: NativeBinding;
  store?: StateStore;
  env?: NodeJS.ProcessEnv;
  euid?: number;
  checkControl?: () => void;
  log?: RootLog;
  diskNode?: (devId: number) => Promise<boolean>;
  /** listen for SIGTERM/SIGINT/SIGHUP and crashes (default true; tests drive the handle instead) */
  handleSignals?: boolean;
  /** called once the service is started (or has failed to) */
  onStarted?: (h: ServeHandle) => void;
}

export async function runServe(opts: ServeCliOptions, deps: ServeDeps = {}): Promise<number> {
  const env = deps.env ?? process.env;
  const cli: Partial<Record<ServiceKey, string>> = {};
  for (const k of ['logLevel', 'logFormat', 'metricsAddress'] as const) if (opts[k] !== undefined) cli[k] = opts[k];
  const loadOpts: LoadOptions<AddSpec> = { model: DEVICE_MODEL, path: opts.config, cli, env };
  const config = loadConfig(loadOpts);

  requireRoot('euid' in deps ? deps.euid : process.geteuid?.());
  (deps.checkControl ?? (() => requireControl()))();
  const log = deps.log ?? createLogger({ level: config.logLevel, format: config.logFormat });
  log.info(
    {
      event: 'config_loaded',
      files: config.files,
      origins: config.origins,
      devices: config.devices.map((d) => ({ name: d.name, origin: d.origin })),
      metrics: config.metrics ? formatAddress(config.metrics) : 'off',
    },
    `configuration: ${config.devices.length} device(s) from ${config.files.length} file(s)`,
  );
  if (config.devices.length === 0) log.warn({ event: 'no_devices' }, 'the configuration declares no device');

  const binding = deps.binding ?? getBinding();
  protectFromOom(log);
  const notifier = new Notifier({ send: (s) => binding.sdNotify(s), env, log });
  notifier.startWatchdog();
  const service = new Service(config, {
    binding,
    store: deps.store ?? new StateStore(),
    log,
    setLogLevel: (l) => log.setLevel(l),
    notifier,
    diskNode: deps.diskNode,
  });

  let metrics: MetricsServer | undefined;
  if (config.metrics) {
    // prom-client is loaded here only: no other command pays for it
    const { createMetricsRegistry } = require('./metrics') as typeof import('./metrics');
    const { startMetricsServer } = require('./metrics-server') as typeof import('./metrics-server');
    const registry = createMetricsRegistry(() => service.metricsDevices(), { version: VERSION, ...binding.versions() });
    try {
      metrics = await startMetricsServer(config.metrics, registry, log);
    } catch (err) {
      notifier.stopWatchdog();
      const e = err as NodeJS.ErrnoException;
      throw new UblkError(`cannot serve metrics on ${formatAddress(config.metrics)}: ${e.code ?? e.message}`, { code: e.code });
    }
    log.info({ event: 'metrics_listening', address: formatAddress(metrics.address) }, `metrics on http://${formatAddress(metrics.address)}/metrics`);
  }

  return new Promise<number>((resolve, reject) => {
    // The native servers may hold no reference on the event loop: stay alive until stopped.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    let finished = false;
    const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
    const handleSignals = deps.handleSignals !== false;

    const cleanup = async () => {
      clearInterval(keepAlive);
      notifier.stopWatchdog();
      if (handleSignals) {
        for (const s of signals) process.removeListener(s, onSignal);
        process.removeListener('uncaughtException', onCrash);
        process.removeListener('unhandledRejection', onCrash);
      }
      await metrics?.close();
    };
    const finish = (code: number, err?: unknown) => {
      if (finished) return;
      finished = true;
      log.info({ event: 'service_exit', code }, 'service exiting');
      void cleanup().then(() => (err === undefined ? resolve(code) : reject(err)));
    };

    const startDone = service.start();
    // reloads wait for the start and for each other
    let chain: Promise<unknown> = startDone.catch(() => undefined);
    const reload = (): Promise<void> => {
      const p = chain.then(async () => {
        if (service.isStopping) return;
        notifier.reloading();
        log.info({ event: 'reloading' }, 'reloading the configuration');
        let next: Config<AddSpec>;
        try {
          next = loadConfig(loadOpts);
        } catch (err) {
          const problems = err instanceof ConfigError ? err.problems : [describeError(err)];
          log.error({ event: 'reload_failed', problems }, 'the new configuration is invalid; nothing changed');
          notifier.ready(`${service.statusLine()}; last reload failed: invalid configuration`);
          return;
        }
        await service.reload(next);
        notifier.ready(service.statusLine());
      });
      chain = p.catch((err) => log.error({ event: 'reload_failed', err: describeError(err) }, 'reload failed'));
      return p;
    };
    const stop = (why: string) => {
      service.stop(why).then((ok) => finish(ok ? 0 : 1));
    };
    const onSignal = (sig: NodeJS.Signals) => {
      log.info({ event: 'signal', signal: sig }, `received ${sig}`);
      if (sig === 'SIGHUP') void reload().catch(() => undefined);
      else stop(`signal ${sig}`);
    };
    const onCrash = (err: unknown) => {
      log.error({ event: 'crash', err: (err as Error)?.stack ?? String(err) }, 'service crashed');
      notifier.stopping('crashed');
      // recoverable devices stay QUIESCED for the next start; the others are stopped and deleted
      const t = setTimeout(() => process.exit(1), 30_000);
      t.unref();
      void service.abandon('crash').finally(() => process.exit(1));
    };
    if (handleSignals) {
      for (const s of signals) process.on(s, onSignal);
      process.on('uncaughtException', onCrash);
      process.on('unhandledRejection', onCrash);
    }

    startDone.then(
      () => deps.onStarted?.({ service, config, metrics, reload, stop: () => stop('stop requested') }),
      (err) => {
        // Service.start has stopped whatever it had brought up
        deps.onStarted?.({ service, config, metrics, reload, stop: () => undefined });
        finish(1, err);
      },
    );
  });
}

