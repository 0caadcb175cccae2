// Error types shared by the CLI, the per-device server and the commands, and the one mapping from
// an error to an exit status (cli.ts): 2 for bad usage or bad input, 1 for everything that went
// wrong at run time.

/** The user asked for something invalid. Carries every problem found, not just the first. */
export class UsageError extends Error {
  readonly problems: string[];
  readonly exitCode = 2;

  constructor(problems: string | string[]) {
    const list = Array.isArray(problems) ? problems : [problems];
    super(list.join('; '));
    this.name = 'UsageError';
    this.problems = list;
  }
}

/**
 * A configuration that cannot be used: every problem, each naming its file and the JSON path of
 * the bad field. Printed as one line per problem (a config can have many; journald keeps lines).
 */
export class ConfigError extends UsageError {
  constructor(problems: string[]) {
    super(problems);
    this.name = 'ConfigError';
    this.message = ConfigError.format(problems);
  }

  static format(problems: string[]): string {
    const n = problems.length;
    return `invalid configuration (${n} problem${n === 1 ? '' : 's'}):\n${problems.map((p) => `  - ${p}`).join('\n')}`;
  }
}

/** A failure at run time: a kernel command, a missing driver, a server that did not come up. */
export class UblkError extends Error {
  readonly exitCode = 1;
  /** positive errno when the failure came from the kernel or a syscall */
  readonly errno?: number;
  /** errno name (EEXIST) or a project code (ENOTSUP for a missing feature, ETIMEDOUT...) */
  readonly code?: string;
  /** the ublk command or step that failed, e.g. "ADD_DEV" */
  readonly op?: string;

  constructor(message: string, opts: { errno?: number; code?: string; op?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'UblkError';
    this.errno = opts.errno;
    this.code = opts.code;
    this.op = opts.op;
  }
}

export function isUsageError(err: unknown): err is UsageError {
  return err instanceof UsageError || (err instanceof Error && err.name === 'UsageError');
}

/** Exit status for an error: 2 for usage errors, 1 otherwise. */
export function exitCodeFor(err: unknown): number {
  return isUsageError(err) ? 2 : 1;
}

/** One line for stderr, without the "ublk-ts: " prefix. */
export function describeError(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  if (err instanceof UsageError) return err.problems.join('; ');
  if (err instanceof Error) return err.message.split('\n')[0] || err.name;
  return String(err);
}
