// Runs the integration tests inside the QEMU guest (test/vm/run-in-vm.sh) and mirrors each guest
// test as a test of this host run, so one `node --test` summary covers unit and integration tests.
//
// The VM boots once: one `node --test` in the guest runs every compiled integration test file.
// Its spec output streams to our stderr as it runs; its results come back as JSON lines (written by
// test/vm/guest-reporter.mjs into the run's shared directory) and become host tests named
// "vm: <file> > <suite> > <test>" that pass, fail with the guest's error, or skip with its reason.
//
// When the VM cannot run the tests (no qemu, no kernel, no /dev/ublk-control): one test that fails
// with the reason under CI, and is skipped with the reason elsewhere. No results at all is a failure.
//
// Env: UBLK_TS_VM_TIMEOUT (s, whole VM run, default 4800), UBLK_TS_VM_TEST_TIMEOUT (ms, per guest
// test and per guest test file, default 1200000), UBLK_TS_VM_TESTS (comma-separated files instead of all of
// dist/test/integration), UBLK_TS_VM_KEEP=1 (keep .cache/vm-run/suite-*), and run-in-vm.sh's knobs.
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mirrorPlan, parseEvents } from './vm/mirror.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const onCI = !!process.env.CI && !['0', 'false'].includes(process.env.CI.toLowerCase());
const vmTimeout = Number(process.env.UBLK_TS_VM_TIMEOUT ?? 4800);
// Node 20 applies --test-timeout to each test AND to each whole file.
const testTimeout = Number(process.env.UBLK_TS_VM_TEST_TIMEOUT ?? 1200000);

function listTests(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Runs run-in-vm.sh, copying its output (the guest's) to our stderr live. Resolves to its exit code. */
function runInVm(args) {
  return new Promise((resolve) => {
    const child = spawn('bash', [path.join(repo, 'test/vm/run-in-vm.sh'), ...args], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // If this test process is stopped, stop the VM too (run-in-vm.sh kills QEMU on SIGTERM).
    const forward = (sig) => { child.kill(sig); };
    process.once('SIGTERM', forward);
    process.once('SIGINT', forward);
    child.stdout.on('data', (chunk) => process.stderr.write(chunk));
    child.stderr.on('data', (chunk) => process.stderr.write(chunk));
    child.on('error', (err) => resolve({ code: 97, spawnError: err }));
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal }));
  });
}

function environmentProblem(reason) {
  const name = 'vm: integration tests (VM harness)';
  if (onCI) {
    test(name, () => { throw new Error(`integration tests could not run: ${reason}`); });
  } else {
    test(name, { skip: `integration tests could not run (CI would fail here): ${reason}` }, () => {});
  }
}

const files = (process.env.UBLK_TS_VM_TESTS
  ? process.env.UBLK_TS_VM_TESTS.split(',').filter(Boolean).map((f) => path.resolve(repo, f))
  : listTests(path.join(repo, 'dist/test/integration')))
  .map((f) => path.relative(repo, f));

if (files.length === 0) {
  test('vm: integration tests (VM harness)', () => {
    throw new Error('no compiled integration tests in dist/test/integration: run `npm run build:ts` first');
  });
} else {
  const runDir = path.join(repo, '.cache', 'vm-run', `suite-${Date.now()}-${process.pid}`);
  fs.mkdirSync(runDir, { recursive: true });
  const eventsFile = path.join(runDir, 'events.jsonl');
  // The integration helpers log every command they run here, with timings: `tail -f` it to see
  // where a slow or stuck guest test is (it is printed on failure too).
  const traceFile = path.join(runDir, 'trace.log');
  process.env.UBLK_TS_TRACE ??= traceFile;
  const started = Date.now();
  const { code, signal, spawnError } = await runInVm([
    '--timeout', String(vmTimeout), '--share', runDir, '--',
    process.execPath, '--test', '--test-concurrency=1', `--test-timeout=${testTimeout}`,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=./test/vm/guest-reporter.mjs', `--test-reporter-destination=${eventsFile}`,
    ...files,
  ]);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const readOr = (f, fallback) => { try { return fs.readFileSync(f, 'utf8').trim(); } catch { return fallback; } };
  const reason = spawnError ? `cannot run bash: ${spawnError.message}`
    : readOr(path.join(runDir, 'host-reason'), `run-in-vm.sh exited ${code}${signal ? ` (${signal})` : ''}`);
  const events = parseEvents(readOr(eventsFile, ''));
  if (code !== 0) process.stderr.write(`vm-suite: last commands the tests ran:\n${readOr(traceFile, '(none)').split('\n').slice(-15).join('\n')}\n`);
  if (process.env.UBLK_TS_VM_KEEP === '1') {
    process.stderr.write(`vm-suite: kept ${runDir}\n`);
  } else {
    fs.rmSync(runDir, { recursive: true, force: true });
  }
  process.stderr.write(`vm-suite: guest run exited ${code} after ${seconds}s with ${events.length} result lines\n`);

  if (code === 97) {
    environmentProblem(reason);
  } else {
    const plan = mirrorPlan(events);
    for (const t of plan) {
      if (t.status === 'fail') {
        test(t.name, () => {
          const err = new Error(t.message);
          err.stack = t.message; // the guest's stack, not this file's
          throw err;
        });
      } else if (t.status === 'skip') {
        test(t.name, { skip: t.reason }, () => {});
      } else if (t.status === 'todo') {
        test(t.name, { todo: t.reason }, () => {});
      } else {
        test(t.name, () => {});
      }
    }
    if (code === 98) {
      test('vm: guest test run (timeout)', () => { throw new Error(reason); });
    } else if (plan.length === 0) {
      test('vm: guest test run', () => {
        throw new Error(`the guest run produced no test results (exit status ${code}); its output is above`);
      });
    } else if (code !== 0 && !plan.some((t) => t.status === 'fail')) {
      test('vm: guest test run', () => {
        throw new Error(`the guest's node --test exited ${code} although no guest test failed; its output is above`);
      });
    }
  }
}
