// The `ublk-ts` command line: add, del, list, recover, features, help.
//
// Start-up cost matters (`list`/`features` run in scripts and udev rules): only commander and the
// option declarations load here; each command's module, and through it the addon and pino, is
// required inside its action.
//
// Errors end as one line `ublk-ts: <reason>` on stderr; exit 2 for bad usage or input, 1 for
// failures at run time, 0 otherwise.

import { Command, CommanderError, Option } from 'commander';
import { ADD_OPTIONS, type AddOptionKey, type RawAddOptions } from './add-options';
import { describeError, exitCodeFor } from './errors';
import { VERSION } from './version';
import { CONFIG_ENV, DEFAULT_CONFIG_PATH, SERVICE_FIELDS } from '../config/service-fields';


interface Outcome {
  code: number;
}

function addOptionsTo(cmd: Command): Map<string, AddOptionKey> {
  // commander keeps one long name per option: the other accepted spellings become hidden options
  // of their own, folded back onto the same key after parsing.
  const attrToKey = new Map<string, AddOptionKey>();
  for (const d of ADD_OPTIONS) {
    const value = d.arg ? ` ${d.arg}` : '';
    const main = new Option(`${d.short ? `${d.short}, ` : ''}${d.long}${value}`, d.description);
    cmd.addOption(main);
    attrToKey.set(main.attributeName(), d.key);
    for (const alias of d.aliases ?? []) {
      const hidden = new Option(`${alias}${value}`).hideHelp();
      cmd.addOption(hidden);
      attrToKey.set(hidden.attributeName(), d.key);
    }
  }
  return attrToKey;
}

function collectAdd(opts: Record<string, unknown>, attrToKey: Map<string, AddOptionKey>): RawAddOptions {
  const raw: RawAddOptions = {};
  for (const [attr, key] of attrToKey) {
    const v = opts[attr];
    if (v !== undefined) raw[key] = v as string | boolean;
  }
  return raw;
}

export function buildProgram(outcome: Outcome): Command {
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
  const attrToKey = addOptionsTo(add);
  add.option('--config <file>', 'take the device from a config file (exactly one device); options given here override it');
  add.action(async (opts: Record<string, unknown>) => {
    const { runAdd } = require('./commands/add') as typeof import('./commands/add');
    outcome.code = await runAdd(collectAdd(opts, attrToKey), {}, opts.config as string | undefined);
  });

  // The service settings' options come from the same table as the config file's "service" keys.
  const serve = program
    .command('serve')
    .description('run every device of a config (a file or a directory of *.json) in this process, for systemd')
    .option('--config <path>', `config file or directory (default: $${CONFIG_ENV}, else ${DEFAULT_CONFIG_PATH})`);
  for (const f of Object.values(SERVICE_FIELDS)) serve.option(`${f.cli} <${f.arg}>`, `${f.help} ($${f.env})`);
  serve.action(async (opts: Record<string, string | undefined>) => {
    const { runServe } = require('./commands/serve') as typeof import('./commands/serve');
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

  program
    .command('recover')
    .description('start a new server for a QUIESCED disk added with -r 1')
    .option('-n, --number <id>', 'device id')
    .option('--foreground', 'serve in this process until SIGTERM/SIGINT')
    .action(async (opts: { number?: string; foreground?: boolean }) => {
      const { runRecover } = require('./commands/recover') as typeof import('./commands/recover');
      outcome.code = await runRecover(opts);
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
  const program = buildProgram(outcome);
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
