// The layering of the TypeScript code, checked by `npm run lint:deps` (part of `npm test`):
//   shared/   the leaf: types, errors, the addon contract, kernel constants, option machinery
//   targets/  target descriptors and their registry: import shared/ only
//   config/   config files and service settings: import shared/ only
//   daemon/   everything else; daemon/cli/commands/* are imported by daemon/cli/main.ts only,
//             and neither the per-device server (daemon/server/) nor the service
//             (daemon/service/) imports the CLI
// and no import cycle anywhere, type-only imports included.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'modules that import each other, directly or around a circle',
      from: {},
      to: { circular: true },
    },
    {
      name: 'shared-is-a-leaf',
      severity: 'error',
      comment: 'shared/ is what everyone may import; it imports nothing of the project but itself',
      from: { path: '^shared/' },
      to: { path: '^(daemon|targets|config|test|bench)/' },
    },
    {
      name: 'targets-import-shared-only',
      severity: 'error',
      from: { path: '^targets/' },
      to: { path: '^(daemon|config|test|bench)/' },
    },
    {
      name: 'config-imports-shared-only',
      severity: 'error',
      from: { path: '^config/' },
      to: { path: '^(daemon|targets|test|bench)/' },
    },
    {
      name: 'only-the-cli-imports-commands',
      severity: 'error',
      comment: 'a command module is an entry point: what two places need lives outside daemon/cli/commands/',
      from: { path: '^(?!daemon/cli/main\\.ts$)', pathNot: '^test/' },
      to: { path: '^daemon/cli/commands/' },
    },
    {
      name: 'server-and-service-do-not-import-the-cli',
      severity: 'error',
      from: { path: '^daemon/(server|service)/' },
      to: { path: '^daemon/cli/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules|build)/' },
  },
};
