// What a SIGHUP changes live, and what it only reports as needing a restart.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { planReload, specChanges, type RunningDevice } from '../../daemon/service/reload-plan';
import { validateAddOptions, type AddSpec } from '../../daemon/spec';
import type { Config as AnyConfig, DeviceConfig as AnyDeviceConfig } from '../../config/load-config';

type Config = AnyConfig<AddSpec>;
type DeviceConfig = AnyDeviceConfig<AddSpec>;

const dev = (name: string, raw: Record<string, string | boolean> = {}): DeviceConfig => ({
  name,
  spec: validateAddOptions({ target: 'null', ...raw }, { source: 'cli', cwd: '/' }),
  origin: `test: ${name}`,
});

const config = (devices: DeviceConfig[], over: Partial<Config> = {}): Config => ({
  logLevel: 'info',
  logFormat: 'json',
  metrics: { host: '127.0.0.1', port: 9101 },
  devices,
  files: [],
  origins: { logLevel: 'default', logFormat: 'default', metricsAddress: 'default' },
  ...over,
});

const applied = { logLevel: 'info' as const, logFormat: 'json' as const, metrics: { host: '127.0.0.1', port: 9101 } };

test('nothing changed: nothing to do', () => {
  const a = dev('a');
  const running = new Map<string, RunningDevice>([['a', { cfg: a, up: true }]]);
  assert.deepEqual(planReload(applied, running, config([dev('a')])), { restartNeeded: [], remove: [], add: [], changed: [] });
});

test('live: log level, devices added and removed, devices down come back', () => {
  const running = new Map<string, RunningDevice>([
    ['a', { cfg: dev('a'), up: true }],
    ['gone', { cfg: dev('gone'), up: true }],
    ['down', { cfg: dev('down'), up: false }],
  ]);
  const plan = planReload(applied, running, config([dev('a'), dev('new'), dev('down')], { logLevel: 'debug' }));
  assert.equal(plan.logLevel, 'debug');
  assert.deepEqual(plan.remove, ['gone']);
  assert.deepEqual(plan.add.map((d) => d.name), ['new', 'down']);
  assert.deepEqual(plan.changed, []);
});

test('restart needed: metrics address, log format, and a running device whose settings changed', () => {
  const running = new Map<string, RunningDevice>([['a', { cfg: dev('a', { queues: '1' }), up: true }]]);
  const plan = planReload(applied, running, config([dev('a', { queues: '2', zeroCopy: true })], { metrics: null, logFormat: 'pretty' }));
  assert.deepEqual(plan.restartNeeded, ['logFormat: json → pretty', 'metricsAddress: 127.0.0.1:9101 → off']);
  assert.deepEqual(plan.changed, [{ name: 'a', fields: ['queues', 'zeroCopy'] }]);
  assert.deepEqual(plan.add, []);
});

test('specChanges: foreground is not part of a spec; target options count', () => {
  assert.deepEqual(specChanges(dev('a').spec, dev('a', { foreground: true }).spec), []);
  assert.deepEqual(specChanges(dev('a').spec, dev('a', { size: '1G' }).spec), ['size']);
});
