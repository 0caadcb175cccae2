// The logger: one level for the process and every child (SIGHUP changes it), pretty lines on a TTY.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger, prettyLine } from '../../shared/log';

function capture(level: string, format = 'json') {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-log-')), 'out');
  const fd = fs.openSync(file, 'w');
  const log = createLogger({ level, format, fd });
  const lines = () => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  return { log, lines, close: () => fs.closeSync(fd) };
}

test('setLevel applies to children made before the change', () => {
  const c = capture('info');
  const child = c.log.child({ device: 'a' });
  child.debug({ event: 'hidden' }, 'not yet');
  child.info({ event: 'shown', devId: 1 }, 'x');
  c.log.setLevel('debug');
  assert.equal(c.log.level, 'debug');
  child.debug({ event: 'now shown' }, 'y');
  c.log.setLevel('error');
  child.warn({ event: 'hidden again' }, 'z');
  const recs = c.lines().map((l) => JSON.parse(l));
  c.close();
  assert.deepEqual(recs.map((r) => r.event), ['shown', 'now shown']);
  assert.equal(recs[0].device, 'a');
  assert.equal(recs[0].level, 30);
  assert.equal(recs[1].level, 20, 'pino still writes the record with its own level');
});

test('an unknown level falls back to info', () => {
  const c = capture('loud');
  assert.equal(c.log.level, 'info');
  c.close();
});

test('pretty: one short line per record', () => {
  const line = prettyLine(JSON.stringify({ level: 30, time: Date.UTC(2025, 0, 1, 12, 0, 1, 5), pid: 1, name: 'ublk-ts', devId: 3, event: 'live', mode: 'copy', msg: 'live' }));
  assert.equal(line, '12:00:01.005 INFO  dev 3 live mode=copy\n');
  assert.equal(prettyLine('not json'), 'not json\n');
  const c = capture('info', 'pretty');
  c.log.warn({ event: 'x', devId: -1, n: 2 }, 'careful');
  assert.match(c.lines()[0], /^\d\d:\d\d:\d\d\.\d{3} WARN  careful n=2$/);
  c.close();
});
