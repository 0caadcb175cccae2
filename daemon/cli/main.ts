// The `ublk-ts` command line: add, del, list, recover, upgrade, features, serve, install-units.
//
// Start-up cost matters (`list`/`features` run in scripts): only commander loads here for every
// command. The add options (declared once in shared/add-options.ts and the targets' descriptors,
// with their TypeBox schemas) load only for the commands that take them; each command's module,
// and through it the addon and pino, is required inside its action.
//
// Errors end as one line `ublk-ts: <reason>` on stderr; exit 2 for bad usage or input, 1 for
// failures at run time, 0 otherwise.

import { Command, CommanderError, Option } from 'commander';
import { describeError, exitCodeFor } from '../../shared/errors';
import type { RawOptions } from '../../shared/options';
import { CONFIG_ENV, DEFAULT_CONFIG_PATH, SERVICE_FIELDS } from '../../config/service-settings';
import { VERSION } from '../version';

interface Outcome {
  code: number;
}

/** The commands whose options are the add options (loaded only for them, and for help). */
const WITH_ADD_OPTIONS = new Set(['add', 'recover', 'help']);

/**
 * Registers add options on `cmd` (all of them, or those `pick` keeps) and returns how commander's
 * attribute names map back to option keys. Commander keeps one long name per option: the other
 * accepted spellings become hidden options of their own, folded onto the same key.
 */
function addOptionsTo(cmd: Command, pick: (key: string, targets: string[]) => boolean = () => true): Map<string, string> {
  const { addOptions } = require('../spec') as typeof import('../spec');
  const attrToKey = new Map<string, string>();
  for (const e of addOptions()) {
    const c = e.decl.cli;
    if (!c || !pick(e.key, e.targets)) continue;
    const value = c.arg ? ` ${c.arg}` : '';
    const main = new Option(`${c.short ? `${c.short}, ` : ''}${c.long}${value}`, e.help);
    if (c.repeatable) main.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    cmd.addOption(main);
    attrToKey.set(main.attributeName(), e.key);
    for (const alias of c.aliases ?? []) {
      const hidden = new Option(`${alias}${value}`).hideHelp();
      cmd.addOption(hidden);
      attrToKey.set(hidden.attributeName(), e.key);
    }
  }
  return attrToKey;
}

function collect(opts: Record<string, unknown>, attrToKey: Map<string, string>): RawOptions {
  const raw: RawOptions = {};
  for (const [attr, key] of attrToKey) {
    const v = opts[attr];
    if (v !== undefined) raw[key] = v;
  }
  return raw;
}

/** The command named by argv (the first word after the script that is not an option). */
function commandIn(argv: string[]): string | undefined {
  return argv.slice(2).find((a) => !a.startsWith('-'));
}

export function buildProgram(outcome: Outcome, argv: string[] = process.argv): Command {
  const withAddOptions = WITH_ADD_OPTIONS.has(commandIn(argv) ?? 'help') || argv.includes('--help') || argv.includes('-h');
  const program = new Command('ublk-ts');
  program
    .description('userspace block devices with the Linux ublk driver')
    .version(VERSION, '-v, --version', 'print the version')
    .exitOverride()
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    .configureOutput({
      outputError: (str, write) => write(`ublk-ts: ${str.replace(/^error: /, '')}`),
    })
    .addHelpText('after', '\nRun `ublk-ts help <command>` for the options of a command.');

  const add = program
    .command('add')
    .description('create a disk and start its server; prints it like `list` once it is live');
  const addKeys = withAddOptions ? addOptionsTo(add) : new Map<string, string>();
  add.option('--config <file>', 'take the device from a config file (exactly one device); options given here override it');
  add.action(async (opts: Record<string, unknown>) => {
    const { runAdd } = require('./commands/add') as typeof import('./commands/add');
    outcome.code = await runAdd(collect(opts, addKeys), {}, opts.config as string | undefined);
  });

  // The service settings' options come from the same table as the config file's "service" keys.
  const serve = program
    .command('serve')
    .description('run every device of a config (a file or a directory of *.json) in this process, for systemd')
    .option('--config <path>', `config file or directory (default: $${CONFIG_ENV}, else ${DEFAULT_CONFIG_PATH})`);
  for (const f of Object.values(SERVICE_FIELDS)) serve.option(`${f.cli} <${f.arg}>`, `${f.help} ($${f.env})`);
  serve.action(async (opts: Record<string, string | undefined>) => {
    const { runServe } = require('../service/run-service') as typeof import('../service/run-service');
    outcome.code = await runServe(opts);
  });

  program
    .command('install-units')
    .description('install the systemd units, modules-load.d and udev files (prints the systemctl steps)')
    .option('--root <dir>', 'install under this root (packaging; default /)')
    .option('--dry-run', 'show what would be written')
    .action(async (opts: { root?: string; dryRun?: boolean }) => {
      const { runInstallUnits } = require('./commands/install-units') as typeof import('./commands/install-units');
      outcome.code = runInstallUnits(opts);
    });

  program
    .command('del')
    .description('stop and delete a disk (its server first, directly when the server is gone)')
    .option('-n, --number <id>', 'device id')
    .option('-a, --all', 'every ublk device')
    .action(async (opts: { number?: string; all?: boolean }) => {
      const { runDel } = require('./commands/del') as typeof import('./commands/del');
      outcome.code = await runDel(opts);
    });

  program
    .command('list')
    .description('show ublk devices, as ublksrv\'s `ublk list`')
    .option('-n, --number <id>', 'only this device')
    .option('--json', 'JSON instead of text')
    .addOption(new Option('-v, --verbose').hideHelp())
    .action(async (opts: { number?: string; json?: boolean; verbose?: boolean }) => {
      const { runList } = require('./commands/list') as typeof import('./commands/list');
      outcome.code = await runList({ number: opts.number, json: opts.json || opts.verbose });
    });

  const recover = program
    .command('recover')
    .description('start a new server for a QUIESCED disk added with -r 1 (-t and target options, as ublksrv takes them, must match the disk)')
    .option('-n, --number <id>', 'device id')
    .option('--foreground', 'serve in this process until SIGTERM/SIGINT');
  // -t and the targets' own options: ublksrv's `recover -t loop -f FILE -n N`
  const recoverKeys = withAddOptions ? addOptionsTo(recover, (key, targets) => key === 'target' || targets.length > 0) : new Map<string, string>();
  recover.action(async (opts: Record<string, unknown>) => {
    const { runRecover } = require('./commands/recover') as typeof import('./commands/recover');
    outcome.code = await runRecover({ number: opts.number as string | undefined, foreground: opts.foreground === true, target: collect(opts, recoverKeys) });
  });

  program
    .command('upgrade')
    .description('live upgrade: hand a LIVE disk added with -r 1 to a new server (QUIESCE_DEV, Linux 6.16+)')
    .option('-n, --number <id>', 'device id')
    .option('--timeout <seconds>', 'how long the old server may take to let go (default 30)')
    .action(async (opts: { number?: string; timeout?: string }) => {
      const { runUpgrade } = require('./commands/upgrade') as typeof import('./commands/upgrade');
      outcome.code = await runUpgrade(opts);
    });

  program
    .command('features')
    .description('show what the running kernel\'s ublk driver supports')
    .option('--json', 'JSON instead of text')
    .action(async (opts: { json?: boolean }) => {
      const { runFeatures } = require('./commands/features') as typeof import('./commands/features');
      outcome.code = await runFeatures(opts);
    });

  return program;
}

/** Runs the CLI; resolves with the exit status (never rejects). */
export async function main(argv: string[] = process.argv): Promise<number> {
  const outcome: Outcome = { code: 0 };
  const program = buildProgram(outcome, argv);
  if (argv.length <= 2) {
    program.outputHelp({ error: true });
    return 2;
  }
  try {
    await program.parseAsync(argv);
    return outcome.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version end in an "error" too; commander has printed its message already
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return err.exitCode === 0 ? 0 : 2;
      }
      return 2;
    }
    process.stderr.write(`ublk-ts: ${describeError(err)}\n`);
    return exitCodeFor(err);
  }
}

/** Exits once stdout and stderr are flushed (pipes are asynchronous in Node). */
export function exitAfterFlush(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

if (require.main === module) void main().then(exitAfterFlush);
