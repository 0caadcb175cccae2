// node:test reporter used inside the VM: one JSON line per finished test, so that the host
// (test/vm-suite.test.mjs) can mirror each guest test as a host test.
//
// Line shape (see mirror.mjs for how it is read):
//   { type: "pass"|"fail", name, nesting, parents: [names of enclosing tests/suites],
//     file, line, column, suite: bool, skip: string|true|undefined, todo: string|true|undefined,
//     duration_ms, error?: { message, failureType, code, stack, cause?: { message, stack } },
//     output?: last lines the file's process wrote (only on a failure of the whole file) }
//   { type: "diagnostic", message, nesting, file }
//
// node:test emits test:start in definition order right before the test's pass/fail (Node 20), so
// a stack indexed by nesting gives each result its parents. A whole test file is itself reported
// as a test named after the file (its path) at nesting 0.

const OUTPUT_TAIL = 8192; // bytes of stdout/stderr kept per file, attached to a failing file

function errorInfo(err) {
  if (err == null) return undefined;
  if (typeof err !== 'object') return { message: String(err) };
  const info = {
    message: String(err.message ?? err),
    failureType: err.failureType,
    code: err.code,
    stack: typeof err.stack === 'string' ? err.stack : undefined,
  };
  // node:test wraps what the test threw in an ERR_TEST_FAILURE whose cause is the real error.
  const cause = err.cause;
  if (cause != null) {
    info.cause = typeof cause === 'object'
      ? { message: String(cause.message ?? cause), stack: typeof cause.stack === 'string' ? cause.stack : undefined }
      : { message: String(cause) };
  }
  return info;
}

export default async function* guestReporter(source) {
  const stacks = new Map(); // file -> names by nesting
  const output = new Map(); // file -> recent stdout/stderr text
  for await (const event of source) {
    const data = event.data ?? {};
    const file = data.file;
    switch (event.type) {
      case 'test:start': {
        const stack = stacks.get(file) ?? [];
        stack.length = data.nesting;
        stack[data.nesting] = data.name;
        stacks.set(file, stack);
        break;
      }
      case 'test:stdout':
      case 'test:stderr': {
        if (!file) break;
        const text = (output.get(file) ?? '') + String(data.message ?? '');
        output.set(file, text.length > OUTPUT_TAIL ? text.slice(-OUTPUT_TAIL) : text);
        break;
      }
      case 'test:pass':
      case 'test:fail': {
        const stack = stacks.get(file) ?? [];
        const details = data.details ?? {};
        const record = {
          type: event.type === 'test:pass' ? 'pass' : 'fail',
          name: data.name,
          nesting: data.nesting,
          parents: stack.slice(0, data.nesting),
          file,
          line: data.line,
          column: data.column,
          suite: details.type === 'suite',
          skip: data.skip,
          todo: data.todo,
          duration_ms: details.duration_ms,
          error: errorInfo(details.error),
        };
        if (record.type === 'fail' && data.name === file && output.get(file)) {
          record.output = output.get(file);
        }
        yield `${JSON.stringify(record)}\n`;
        break;
      }
      case 'test:diagnostic':
        yield `${JSON.stringify({ type: 'diagnostic', message: data.message, nesting: data.nesting, file })}\n`;
        break;
      default:
        break;
    }
  }
}
