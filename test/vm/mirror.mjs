// Turns the guest's result lines (written by guest-reporter.mjs) into the list of host tests that
// test/vm-suite.test.mjs declares. Pure, so test/unit/vm-harness.test.ts can check it.
import path from 'node:path';

/** Parses a JSONL text; lines that are not JSON (a truncated last line after a crash) are skipped. */
export function parseEvents(text) {
  const events = [];
  for (const line of String(text).split('\n')) {
    if (!line.trim()) continue;
    try { events.push(JSON.parse(line)); } catch { /* partial line */ }
  }
  return events;
}

function errorText(error, output) {
  if (!error) return output ? `failed in the guest\n${output}` : 'failed in the guest';
  let text = error.message;
  const causeAddsNothing = error.cause && error.cause.message === error.message && !error.cause.stack;
  if (error.cause && !causeAddsNothing) {
    text += error.cause.stack && error.cause.stack.includes(error.cause.message)
      ? `\n${error.cause.stack}` : `\ncaused by: ${error.cause.message}${error.cause.stack ? `\n${error.cause.stack}` : ''}`;
  } else if (error.stack && !error.stack.startsWith('Error: test failed')) {
    text += `\n${error.stack}`;
  }
  if (output) text += `\n--- output of the test file in the guest:\n${output}`;
  return text;
}

/**
 * @param {object[]} events  parsed guest-reporter lines
 * @returns {{name: string, status: 'pass'|'fail'|'skip'|'todo', reason?: string, message?: string}[]}
 *
 * Mirrored: every leaf test (one with no reported children), and a parent (suite, test with
 * subtests, whole file) only when it failed for its own reason (a hook, a crash of the file),
 * not merely because a child failed ("subtestsFailed"), which the child already reports.
 * Names: "vm: <file basename> > <parents...> > <name>"; a whole file is "vm: <file basename>".
 */
export function mirrorPlan(events) {
  const results = events.filter((e) => e.type === 'pass' || e.type === 'fail');
  const key = (file, names) => `${file}\u0000${names.join('\u0000')}`;
  const isFile = (e) => e.nesting === 0 && e.name === e.file;
  const parentKeys = new Set();
  const filesWithTests = new Set();
  for (const e of results) {
    if (isFile(e)) continue;
    filesWithTests.add(e.file);
    for (let i = 1; i <= e.parents.length; i += 1) parentKeys.add(key(e.file, e.parents.slice(0, i)));
  }
  const plan = [];
  const used = new Map();
  for (const e of results) {
    const fileNode = isFile(e);
    const leaf = fileNode ? !filesWithTests.has(e.file) : !parentKeys.has(key(e.file, [...e.parents, e.name]));
    const ownFailure = e.type === 'fail' && e.error?.failureType !== 'subtestsFailed';
    if (!leaf && !ownFailure) continue;
    const base = path.basename(String(e.file ?? 'unknown file'));
    let name = fileNode ? `vm: ${base}` : ['vm: ' + base, ...e.parents, e.name].join(' > ');
    const n = (used.get(name) ?? 0) + 1;
    used.set(name, n);
    if (n > 1) name += ` [${n}]`;
    if (e.type === 'fail') {
      plan.push({ name, status: 'fail', message: errorText(e.error, e.output) });
    } else if (e.skip !== undefined && e.skip !== false) {
      plan.push({ name, status: 'skip', reason: typeof e.skip === 'string' ? e.skip : 'skipped in the guest' });
    } else if (e.todo !== undefined && e.todo !== false) {
      plan.push({ name, status: 'todo', reason: typeof e.todo === 'string' ? e.todo : 'todo in the guest' });
    } else {
      plan.push({ name, status: 'pass' });
    }
  }
  return plan;
}
