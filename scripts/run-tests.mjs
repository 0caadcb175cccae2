#!/usr/bin/env node
// What `npm test` runs after `tsc`: ONE `node --test` whose summary covers every test.
//   unit tests:        dist/test/unit/**/*.test.js
//   integration tests: dist/test/integration/**/*.test.js directly, when this host has
//                      /dev/ublk-control; otherwise test/vm-suite.test.mjs, which runs them in a
//                      QEMU guest with a ublk-capable kernel and mirrors their results here.
// UBLK_TS_TEST_MODE=vm|host forces a mode. Extra arguments go to `node --test`.
// Node 20's `node --test` does not expand globs, so the files are listed here.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function listTests(dir) {
  const abs = path.join(repo, dir);
  if (!fs.existsSync(abs)) return [];
  return fs.readdirSync(abs, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join(dir, f));
}

function hasUblk() {
  try { return fs.statSync('/dev/ublk-control').isCharacterDevice(); } catch { return false; }
}

const forced = process.env.UBLK_TS_TEST_MODE;
let mode;
let why;
if (forced === 'vm' || forced === 'host') {
  mode = forced;
  why = `UBLK_TS_TEST_MODE=${forced}`;
} else if (hasUblk()) {
  mode = 'host';
  why = 'this host has /dev/ublk-control';
} else {
  mode = 'vm';
  why = 'this host has no /dev/ublk-control (no ublk_drv)';
}

const unit = listTests('dist/test/unit');
const integration = mode === 'host' ? listTests('dist/test/integration') : ['test/vm-suite.test.mjs'];
console.log(mode === 'host'
  ? `run-tests: ${unit.length} unit + ${integration.length} integration test files on this host, because ${why}`
  : `run-tests: ${unit.length} unit test files here + integration tests in a QEMU guest (test/vm-suite.test.mjs), because ${why}`);

const files = [...unit, ...integration];
if (files.length === 0) {
  console.error('run-tests: no test files found; did `npm run build:ts` run?');
  process.exit(1);
}
const child = spawn(process.execPath, ['--test', ...process.argv.slice(2), ...files], { cwd: repo, stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('close', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
