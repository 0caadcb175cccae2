// The config loader: precedence, directories, and every validation error at once with its path.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig as loadWithModel, type LoadOptions } from '../../config/load-config';
import { ConfigError, UsageError } from '../../shared/errors';
import { DEVICE_MODEL, optionLabel, type AddSpec } from '../../daemon/spec';

/** The loader with ublk-ts's own device model, as `serve` and `add --config` call it. */
function loadConfig(opts: Omit<LoadOptions<AddSpec>, 'model'>) {
  return loadWithModel({ model: DEVICE_MODEL, overrideLabel: optionLabel, ...opts });
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-cfg-'));
}

function write(dir: string, name: string, v: unknown): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, typeof v === 'string' ? v : JSON.stringify(v, null, 2));
  return f;
}

function backing(dir: string, name = 'disk.img', bytes = 1 << 20): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, Buffer.alloc(0));
  fs.truncateSync(f, bytes);
  return f;
}

/** The problems a config is rejected with. */
function problems(opts: Omit<LoadOptions<AddSpec>, 'model'>): string[] {
  try {
    loadConfig({ env: {}, ...opts });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${err}`);
    assert.ok(err instanceof UsageError, 'exit status 2');
    return err.problems;
  }
  assert.fail('the config was accepted');
}

test('defaults: a file with devices only', () => {
  const d = tmp();
  backing(d);
  const f = write(d, 'a.json', { devices: [{ target: 'loop', file: 'disk.img' }, { name: 'z', target: 'null', id: 3 }] });
  const c = loadConfig({ path: f, env: {} });
  assert.equal(c.logLevel, 'info');
  assert.equal(c.logFormat, 'auto');
  assert.deepEqual(c.metrics, { host: '127.0.0.1', port: 9101 });
  assert.deepEqual(c.origins, { logLevel: 'default', logFormat: 'default', metricsAddress: 'default' });
  assert.deepEqual(c.files, [f]);
  assert.deepEqual(c.devices.map((x) => x.name), ['a-0', 'z']);
  assert.equal(c.devices[0].spec.target.file, path.join(d, 'disk.img'), 'relative to the config file');
  assert.equal(c.devices[0].spec.id, -1);
  assert.equal(c.devices[1].spec.id, 3);
  assert.equal(c.devices[0].origin, `${f}: devices[0]`);
});

test('precedence: command line > environment > file > default, with origins', () => {
  const d = tmp();
  const f = write(d, 'a.json', { service: { logLevel: 'warn', logFormat: 'pretty', metricsAddress: '127.0.0.1:1' } });
  const c = loadConfig({
    path: f,
    env: { UBLK_TS_LOG_LEVEL: 'debug', UBLK_TS_METRICS_ADDRESS: '[::1]:2' },
    cli: { logLevel: 'error' },
  });
  assert.equal(c.logLevel, 'error');
  assert.deepEqual(c.metrics, { host: '::1', port: 2 });
  assert.equal(c.logFormat, 'pretty');
  assert.deepEqual(c.origins, { logLevel: 'cli', metricsAddress: 'env', logFormat: `file ${f}` });
  assert.equal(loadConfig({ path: f, env: {}, cli: { metricsAddress: 'off' } }).metrics, null);
});

test('the config path: $UBLK_TS_CONFIG when --config is not given', () => {
  const d = tmp();
  write(d, 'a.json', { devices: [{ target: 'null' }] });
  assert.equal(loadConfig({ env: { UBLK_TS_CONFIG: d } }).devices[0].name, 'a');
});

test('the result is deeply frozen', () => {
  const d = tmp();
  const c = loadConfig({ path: write(d, 'a.json', { devices: [{ target: 'null' }] }), env: {} });
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.devices) && Object.isFrozen(c.devices[0].spec) && Object.isFrozen(c.metrics));
  assert.throws(() => {
    (c as { logLevel: string }).logLevel = 'debug';
  }, TypeError);
});

test('a directory: its *.json files in name order, dotfiles and subdirectories skipped', () => {
  const d = tmp();
  write(d, 'b.json', { devices: [{ target: 'null', id: 2 }] });
  write(d, 'a.json', { service: { logLevel: 'debug' }, devices: [{ target: 'null', id: 1 }] });
  write(d, '.hidden.json', '{ broken');
  write(d, 'notes.txt', 'not config');
  fs.mkdirSync(path.join(d, 'instances'));
  write(path.join(d, 'instances'), 'x.json', { devices: [{ target: 'null', id: 1 }] });
  const c = loadConfig({ path: d, env: {} });
  assert.deepEqual(c.files, [path.join(d, 'a.json'), path.join(d, 'b.json')]);
  assert.deepEqual(c.devices.map((x) => [x.name, x.spec.id]), [['a', 1], ['b', 2]]);
  assert.equal(c.logLevel, 'debug');
});

test('every problem of a bad config is listed at once, each with its file and JSON path', () => {
  const d = tmp();
  backing(d, 'shared.img');
  const f = write(d, 'bad.json', {
    colour: 'blue',
    service: { logLevel: 'loud', metricsAddress: '0.0.0.0', port: 1 },
    devices: [
      { target: 'loop', file: 'missing.img', queues: '4', frob: 1 },
      { target: 'null', id: 5, depth: 0, zeroCopy: 'yes' },
      { target: 'null', id: 5, name: 'b' },
      { name: 'b', target: 'disk' },
      { target: 'loop', file: 'shared.img' },
      { target: 'loop', file: 'shared.img', recoveryReissue: true, recovery: false },
      'nope',
    ],
  });
  const p = problems({ path: f });
  const known =
    'name, target, id, queues, depth, logicalBlockSize, zeroCopy, userCopy, batchIo, threadsPerQueue, affinity, busyPoll, maxIoBufBytes, recovery, recoveryReissue, recoveryFailIo, readOnly, ioScheduler, shared, file, bufferedIo, offset, size, writeSubmit, mtimeStamp, host, port, unix, export, reconnectTimeout, ioTimeout, sendZc, module, set';
  const clash = 'two disks that write one file corrupt it (only read-only disks, or disks that all say --shared, may share one)';
  const expected = [
    `${f}: colour is not a setting (known: $schema, service, devices)`,
    `${f}: service.logLevel must be one of fatal, error, warn, info, debug, trace, silent, not "loud"`,
    `${f}: service.metricsAddress must be "HOST:PORT" (e.g. "127.0.0.1:9101", "[::1]:9101") or "off", not "0.0.0.0"`,
    `${f}: service.port is not a service setting (known: logLevel, logFormat, metricsAddress)`,
    `${f}: devices[0].queues must be a whole number from 1 to 64, not "4"`,
    `${f}: devices[0].frob is not a device setting (known: ${known})`,
    `${f}: devices[1].zeroCopy must be true, false, "auto" or "explicit", not "yes"`,
    `${f}: devices[6] must be an object, not "nope"`,
    `${f}: devices[0]: -f ${path.join(d, 'missing.img')}: no such file or directory`,
    `${f}: devices[1].depth must be a whole number from 1 to 4096, not 0`,
    `${f}: devices[2].id 5 is also the id of ${f}: devices[1]`,
    `${f}: devices[3].target must be loop, null, nbd or js, not "disk"`,
    `${f}: devices[3].name device name "b" is also used by ${f}: devices[2]`,
    `${f}: devices[5].recoveryReissue 1 needs devices[5].recovery 1`,
    `${f}: devices[5]: backing file "${path.join(d, 'shared.img')}" is also the backing file of ${f}: devices[4]: ${clash}`,
  ];
  for (const e of expected) assert.ok(p.includes(e), `missing: ${e}\n got:\n${p.join('\n')}`);
  assert.equal(p.length, expected.length, p.join('\n'));
});

test('two writable devices on one file are refused; two read-only ones are fine', () => {
  const d = tmp();
  backing(d);
  const f = write(d, 'a.json', { devices: [{ target: 'loop', file: 'disk.img' }, { target: 'loop', file: 'disk.img' }] });
  assert.deepEqual(problems({ path: f }), [
    `${f}: devices[1]: backing file "${path.join(d, 'disk.img')}" is also the backing file of ${f}: devices[0]: two disks that write one file corrupt it (only read-only disks, or disks that all say --shared, may share one)`,
  ]);
  const g = write(d, 'b.json', { devices: [{ target: 'loop', file: 'disk.img', readOnly: true }, { target: 'loop', file: 'disk.img', readOnly: true }] });
  assert.equal(loadConfig({ path: g, env: {} }).devices.length, 2);
  // shared on purpose: both say so
  const h = write(d, 'c.json', { devices: [{ target: 'loop', file: 'disk.img', shared: true }, { target: 'loop', file: 'disk.img', shared: true }] });
  assert.equal(loadConfig({ path: h, env: {} }).devices.length, 2);
  const i = write(d, 'e.json', { devices: [{ target: 'loop', file: 'disk.img', shared: true }, { target: 'loop', file: 'disk.img' }] });
  assert.equal(problems({ path: i }).length, 1, 'one of two saying --shared is not enough');
});

test('duplicate ids and names across the files of a directory', () => {
  const d = tmp();
  write(d, 'a.json', { devices: [{ name: 'x', target: 'null', id: 7 }] });
  write(d, 'b.json', { devices: [{ name: 'x', target: 'null', id: 7 }] });
  const a = path.join(d, 'a.json');
  const b = path.join(d, 'b.json');
  assert.deepEqual(problems({ path: d }), [
    `${b}: devices[0].name device name "x" is also used by ${a}: devices[0]`,
    `${b}: devices[0].id 7 is also the id of ${a}: devices[0]`,
  ]);
});

test('service settings: two files may not disagree; bad environment and command-line values are named', () => {
  const d = tmp();
  write(d, 'a.json', { service: { logLevel: 'debug' } });
  write(d, 'b.json', { service: { logLevel: 'warn' } });
  assert.deepEqual(problems({ path: d, env: { UBLK_TS_LOG_FORMAT: 'xml' }, cli: { metricsAddress: '127.0.0.1:99999' } }), [
    `${path.join(d, 'b.json')}: service.logLevel "warn" disagrees with "debug" in ${path.join(d, 'a.json')}`,
    '$UBLK_TS_LOG_FORMAT must be one of auto, json, pretty, not "xml"',
    '--metrics-address port 99999 is above 65535, not "127.0.0.1:99999"',
  ]);
});

test('unreadable input: missing path, broken JSON (with line and column), wrong top-level shapes', () => {
  const d = tmp();
  assert.deepEqual(problems({ path: path.join(d, 'nope.json') }), [`${path.join(d, 'nope.json')}: no such file or directory`]);
  const f = write(d, 'a.json', '{\n  "devices": [\n    { "target": "null", }\n  ]\n}\n');
  const p = problems({ path: f });
  assert.equal(p.length, 1);
  assert.match(p[0], new RegExp(`^${f}: not valid JSON: .* at line 3, column \\d+$`));
  const g = write(d, 'b.json', { service: 'x', devices: {} });
  assert.deepEqual(problems({ path: g }), [
    `${g}: service must be an object, not "x"`,
    `${g}: devices must be an array of devices, not {}`,
  ]);
  const h = write(d, 'c.json', [1]);
  assert.deepEqual(problems({ path: h }), [`${h}: (top level) must be an object with "service" and/or "devices", not [1]`]);
});

test('names: checked, and defaulted from the file name', () => {
  const d = tmp();
  const f = write(d, 'x.json', { devices: [{ target: 'null', name: 'has space' }] });
  assert.deepEqual(problems({ path: f }), [
    `${f}: devices[0].name must be 1-64 letters, digits, or "_.@-", starting with a letter or digit, not "has space"`,
  ]);
});

test('add --config: one device; command-line options override it and keep their own names', () => {
  const d = tmp();
  const f = write(d, 'one.json', { devices: [{ target: 'null', queues: 2, depth: 64 }] });
  const c = loadConfig({ path: f, env: {}, exactlyOneDevice: true, deviceOverrides: { queues: '4', foreground: true } });
  assert.equal(c.devices[0].spec.queues, 4);
  assert.equal(c.devices[0].spec.depth, 64);
  assert.deepEqual(problems({ path: f, exactlyOneDevice: true, deviceOverrides: { depth: '0' } }), [
    `${f}: -d/--depth must be a whole number from 1 to 4096, not "0"`,
  ]);
  const two = write(d, 'two.json', { devices: [{ target: 'null' }, { target: 'null' }] });
  assert.deepEqual(problems({ path: two, exactlyOneDevice: true }), [
    `${two}: must declare exactly one device for \`add --config\`, not 2`,
  ]);
  assert.deepEqual(problems({ path: d, exactlyOneDevice: true }), [`${d}: must be one file here, not a directory`]);
});

test('every device setting reaches the AddSpec', () => {
  const d = tmp();
  backing(d, 'disk.img', 8 << 20);
  const f = write(d, 'a.json', {
    devices: [
      {
        target: 'loop',
        file: 'disk.img',
        id: 4,
        queues: 2,
        depth: 32,
        logicalBlockSize: 4096,
        zeroCopy: 'explicit',
        batchIo: true,
        maxIoBufBytes: '1M',
        bufferedIo: true,
        offset: 8,
        size: '4M',
        recovery: true,
        recoveryFailIo: true,
        readOnly: true,
        ioScheduler: 'mq-deadline',
      },
    ],
  });
  const s = loadConfig({ path: f, env: {} }).devices[0].spec;
  assert.deepEqual(
    { ...s },
    {
      target: { kind: 'loop', file: path.join(d, 'disk.img'), bufferedIo: true, offset: 8, size: 4 << 20, writeSubmit: 'auto', mtimeStamp: 'on' },
      id: 4,
      queues: 2,
      depth: 32,
      logicalBlockSize: 4096,
      maxIoBufBytes: 1 << 20,
      zeroCopy: 'explicit',
      userCopy: false,
      batchIo: true,
      threadsPerQueue: 1,
      affinity: 'cpu',
      busyPoll: 0,
      recovery: true,
      recoveryReissue: false,
      recoveryFailIo: true,
      readOnly: true,
      ioScheduler: 'mq-deadline',
      shared: false,
    },
  );
  const z = write(d, 'z.json', { devices: [{ target: 'null', zeroCopy: true }, { target: 'null', zeroCopy: false, userCopy: true }] });
  const [a, b] = loadConfig({ path: z, env: {} }).devices;
  assert.equal(a.spec.zeroCopy, 'auto');
  assert.equal(b.spec.zeroCopy, 'off');
  assert.equal(b.spec.userCopy, true);
  // batchIo above takes one thread per queue; threadsPerQueue on its own
  const t = write(d, 't.json', { devices: [{ target: 'null', zeroCopy: true, threadsPerQueue: 2 }] });
  assert.equal(loadConfig({ path: t, env: {} }).devices[0].spec.threadsPerQueue, 2);
  const a2 = write(d, 'a.json', { devices: [{ target: 'null', affinity: 'none' }] });
  assert.equal(loadConfig({ path: a2, env: {} }).devices[0].spec.affinity, 'none');
});

test('the example configs load (backing files not checked: they name paths on a real host)', () => {
  const dir = path.resolve(__dirname, '..', '..', '..', 'config', 'examples');
  const files = fs.readdirSync(dir).filter((n) => n.endsWith('.json'));
  assert.ok(files.length >= 2);
  for (const n of files) {
    const c = loadConfig({ path: path.join(dir, n), env: {}, targetFs: false });
    assert.ok(c.devices.length >= 1, n);
  }
});
