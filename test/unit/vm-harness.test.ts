// Unit tests of the VM harness's pure parts: the guest reporter (node:test events -> JSON lines)
// and the mirror plan (JSON lines -> host tests). The modules are .mjs files run as they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const vmDir = path.resolve(__dirname, '../../../test/vm');
const load = (name: string): Promise<any> => import(pathToFileURL(path.join(vmDir, name)).href);

const FILE = '/repo/dist/test/integration/a.test.js';

function ev(type: string, data: Record<string, unknown>) {
  return { type, data: { file: FILE, ...data } };
}

async function report(events: object[]): Promise<any[]> {
  const { default: reporter } = await load('guest-reporter.mjs');
  async function* source() { yield* events; }
  const lines: string[] = [];
  for await (const line of reporter(source())) lines.push(line);
  return lines.map((l) => JSON.parse(l));
}

const boom = Object.assign(new Error('test failed'), {
  failureType: 'testCodeFailure', code: 'ERR_TEST_FAILURE', cause: new Error('boom'),
});
const subtests = Object.assign(new Error('1 subtest failed'), { failureType: 'subtestsFailed' });
const hook = Object.assign(new Error('failed running before hook'), {
  failureType: 'hookFailed', cause: new Error('hookboom'),
});

// The order node:test 20 reports in: start right before each result, children before parents.
const guestEvents = [
  ev('test:start', { nesting: 0, name: 'suite A' }),
  ev('test:start', { nesting: 1, name: 'passes' }),
  ev('test:pass', { nesting: 1, name: 'passes', details: { duration_ms: 1 } }),
  ev('test:start', { nesting: 1, name: 'fails' }),
  ev('test:fail', { nesting: 1, name: 'fails', details: { duration_ms: 2, error: boom } }),
  ev('test:start', { nesting: 1, name: 'skips' }),
  ev('test:pass', { nesting: 1, name: 'skips', skip: 'no driver feature', details: {} }),
  ev('test:start', { nesting: 1, name: 'inner' }),
  ev('test:start', { nesting: 2, name: 'deep' }),
  ev('test:pass', { nesting: 2, name: 'deep', details: {} }),
  ev('test:pass', { nesting: 1, name: 'inner', details: { type: 'suite' } }),
  ev('test:fail', { nesting: 0, name: 'suite A', details: { type: 'suite', error: subtests } }),
  ev('test:start', { nesting: 0, name: 'hooked' }),
  ev('test:start', { nesting: 1, name: 'x' }),
  ev('test:fail', { nesting: 1, name: 'x', details: { error: { message: 'cancelled', failureType: 'cancelledByParent' } } }),
  ev('test:fail', { nesting: 0, name: 'hooked', details: { type: 'suite', error: hook } }),
  ev('test:start', { nesting: 0, name: 'plain' }),
  ev('test:pass', { nesting: 0, name: 'plain', todo: true, details: {} }),
  ev('test:stderr', { message: 'noise\n' }),
  ev('test:start', { nesting: 0, name: FILE }),
  ev('test:fail', { nesting: 0, name: FILE, details: { error: subtests } }),
  ev('test:diagnostic', { nesting: 0, message: 'tests 6' }),
];

test('guest reporter writes one line per result with its parents', async () => {
  const lines = await report(guestEvents);
  const results = lines.filter((l) => l.type !== 'diagnostic');
  assert.equal(results.length, 10);
  const deep = results.find((l) => l.name === 'deep');
  assert.deepEqual(deep.parents, ['suite A', 'inner']);
  assert.equal(deep.file, FILE);
  const fails = results.find((l) => l.name === 'fails');
  assert.equal(fails.type, 'fail');
  assert.equal(fails.error.cause.message, 'boom');
  assert.match(fails.error.cause.stack, /boom/);
  assert.equal(results.find((l) => l.name === 'skips').skip, 'no driver feature');
  assert.equal(results.find((l) => l.name === FILE).output, 'noise\n');
  assert.deepEqual(lines.at(-1), { type: 'diagnostic', message: 'tests 6', nesting: 0, file: FILE });
});

test('mirror plan keeps leaves and parents that failed on their own', async () => {
  const { mirrorPlan } = await load('mirror.mjs');
  const plan = mirrorPlan(await report(guestEvents));
  assert.deepEqual(plan.map((t: any) => [t.name, t.status]), [
    ['vm: a.test.js > suite A > passes', 'pass'],
    ['vm: a.test.js > suite A > fails', 'fail'],
    ['vm: a.test.js > suite A > skips', 'skip'],
    ['vm: a.test.js > suite A > inner > deep', 'pass'],
    ['vm: a.test.js > hooked > x', 'fail'],
    ['vm: a.test.js > hooked', 'fail'],
    ['vm: a.test.js > plain', 'todo'],
  ]);
  assert.match(plan[1].message, /boom/);
  assert.match(plan[5].message, /hookboom/);
  assert.equal(plan[2].reason, 'no driver feature');
});

test('mirror plan: a file that crashed before any test is one failing test with its output', async () => {
  const { mirrorPlan, parseEvents } = await load('mirror.mjs');
  const text = [
    JSON.stringify({ type: 'fail', name: FILE, nesting: 0, parents: [], file: FILE,
      error: { message: 'test failed', failureType: 'testCodeFailure' }, output: 'SyntaxError: nope\n' }),
    '{"type":"pass","name":"trunc', // a line cut short by a crash is ignored
  ].join('\n');
  const plan = mirrorPlan(parseEvents(text));
  assert.equal(plan.length, 1);
  assert.equal(plan[0].name, 'vm: a.test.js');
  assert.equal(plan[0].status, 'fail');
  assert.match(plan[0].message, /SyntaxError: nope/);
});

test('mirror plan: duplicate names get a counter, empty input gives an empty plan', async () => {
  const { mirrorPlan } = await load('mirror.mjs');
  const same = { type: 'pass', name: 't', nesting: 0, parents: [], file: FILE };
  assert.deepEqual(mirrorPlan([same, same]).map((t: any) => t.name), ['vm: a.test.js > t', 'vm: a.test.js > t [2]']);
  assert.deepEqual(mirrorPlan([]), []);
});
