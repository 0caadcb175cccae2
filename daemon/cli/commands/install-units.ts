// `ublk-ts install-units [--root DIR] [--dry-run]`: puts the systemd units, the modules-load.d
// file and the udev rule in place, with ExecStart pointing at THIS node and THIS ublk-ts (the
// files in systemd/ name /usr/bin/node and /usr/lib/ublk-ts, a packaged install). It runs no
// systemctl itself: it prints the steps, so nothing starts behind the operator's back.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireRoot } from '../../checks';

export const PACKAGED_NODE = '/usr/bin/node';
export const PACKAGED_PREFIX = '/usr/lib/ublk-ts';

export const INSTALLED_FILES: ReadonlyArray<{ src: string; dest: string }> = [
  { src: 'systemd/ublk-ts.service', dest: 'etc/systemd/system/ublk-ts.service' },
  { src: 'systemd/ublk-ts@.service', dest: 'etc/systemd/system/ublk-ts@.service' },
  { src: 'systemd/modules-load.d/ublk-ts.conf', dest: 'etc/modules-load.d/ublk-ts.conf' },
  { src: 'systemd/udev/60-ublk-ts.rules', dest: 'etc/udev/rules.d/60-ublk-ts.rules' },
];

/** The repository (or installed package) root: dist/daemon/cli/commands/ → ../../../.. */
export function packageRoot(): string {
  return path.resolve(__dirname, '..', '..', '..', '..');
}

/** A unit's text with the packaged paths replaced by where node and ublk-ts really are. */
export function renderUnit(text: string, node: string, prefix: string): string {
  return text
    .split('\n')
    .map((line) => (line.startsWith('ExecStart=') ? line.replace(`=${PACKAGED_NODE} `, `=${node} `) : line))
    .join('\n')
    .split(PACKAGED_PREFIX)
    .join(prefix);
}

export interface InstallOptions {
  root?: string;
  dryRun?: boolean;
  node?: string;
  prefix?: string;
  out?: (t: string) => void;
  euid?: number;
}

export function runInstallUnits(opts: InstallOptions): number {
  const out = opts.out ?? ((t: string) => process.stdout.write(t));
  const root = path.resolve(opts.root ?? '/');
  if (root === '/' && !opts.dryRun) requireRoot('euid' in opts ? opts.euid : process.geteuid?.());
  const node = opts.node ?? process.execPath;
  const prefix = opts.prefix ?? packageRoot();
  if (!fs.existsSync(path.join(prefix, 'dist', 'daemon', 'cli', 'main.js'))) {
    out(`warning: ${prefix}/dist/daemon/cli/main.js does not exist: run \`npm run build\` first\n`);
  }
  for (const f of INSTALLED_FILES) {
    const dest = path.join(root, f.dest);
    const text = renderUnit(fs.readFileSync(path.join(prefix, f.src), 'utf8'), node, prefix);
    if (opts.dryRun) {
      out(`would write ${dest}\n`);
      continue;
    }
    fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o755 });
    fs.writeFileSync(dest, text, { mode: 0o644 });
    out(`wrote ${dest}\n`);
  }
  const confDir = path.join(root, 'etc', 'ublk-ts', 'instances');
  if (opts.dryRun) out(`would create ${confDir}/\n`);
  else fs.mkdirSync(confDir, { recursive: true, mode: 0o755 });
  out(
    [
      '',
      'Next steps:',
      '  systemctl daemon-reload && udevadm control --reload',
      '  systemctl restart systemd-modules-load     # or: modprobe ublk_drv',
      `  put devices in ${path.join(root, 'etc/ublk-ts')}/*.json (examples: ${prefix}/config/examples/)`,
      '  systemctl enable --now ublk-ts             # every device of /etc/ublk-ts/*.json',
      '  systemctl enable --now ublk-ts@NAME        # or one device per /etc/ublk-ts/instances/NAME.json',
      '',
    ].join('\n'),
  );
  return 0;
}
