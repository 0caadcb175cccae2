// The systemd files: `systemd-analyze verify` on every unit (as shipped and as installed by
// `ublk-ts install-units`), the settings the issue asks for, and the installer's path rewriting.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { INSTALLED_FILES, renderUnit, runInstallUnits } from '../../daemon/cli/commands/install-units';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const UNITS = ['ublk-ts.service', 'ublk-ts@.service'];

function analyzeAvailable(): string | undefined {
  const r = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : 'systemd-analyze is not installed (Debian: apt-get install systemd)';
}

/** Verifies a unit file; templates are verified as an instance (copied to NAME@test.service). */
function verify(file: string): { status: number | null; out: string } {
  let f = file;
  if (path.basename(file).endsWith('@.service')) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-unit-'));
    f = path.join(dir, path.basename(file).replace('@.service', '@test.service'));
    fs.copyFileSync(file, f);
  }
  const r = spawnSync('systemd-analyze', ['verify', f], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('the shipped units carry what the service needs', () => {
  for (const u of UNITS) {
    const text = fs.readFileSync(path.join(ROOT, 'systemd', u), 'utf8');
    for (const line of ['Type=notify', 'NotifyAccess=main', 'PrivateMounts=yes', 'OOMScoreAdjust=-1000', 'ExecReload=/bin/kill -HUP $MAINPID']) {
      assert.ok(text.split('\n').includes(line), `${u}: ${line}`);
    }
    const exec = text.split('\n').find((l) => l.startsWith('ExecStart='))!;
    assert.match(exec, /^ExecStart=\/usr\/bin\/node \/usr\/lib\/ublk-ts\/bin\/ublk-ts serve --config /, 'node directly, never npm');
  }
  assert.match(fs.readFileSync(path.join(ROOT, 'systemd/ublk-ts.service'), 'utf8'), /serve --config \/etc\/ublk-ts\/$/m);
  assert.match(fs.readFileSync(path.join(ROOT, 'systemd/ublk-ts@.service'), 'utf8'), /serve --config \/etc\/ublk-ts\/instances\/%i\.json$/m);
  assert.equal(fs.readFileSync(path.join(ROOT, 'systemd/modules-load.d/ublk-ts.conf'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).join(), 'ublk_drv');
  const rules = fs.readFileSync(path.join(ROOT, 'systemd/udev/60-ublk-ts.rules'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  assert.ok(rules.some((r) => r.includes('KERNEL=="ublkb[0-9]*"')) && rules.some((r) => r.includes('KERNEL=="ublkc[0-9]*"')));
  for (const r of rules) assert.match(r, /^(\w+(\{[^}]*\})?(==|!=|\+=|=)"[^"]*"(, )?)+$/, `udev rule syntax: ${r}`);
});

for (const u of UNITS) {
  test(`systemd-analyze verify ${u} (as shipped)`, (t) => {
    const why = analyzeAvailable();
    if (why) return t.skip(why);
    const r = verify(path.join(ROOT, 'systemd', u));
    assert.equal(r.status, 0, r.out);
    assert.equal(r.out.trim(), '', 'no warnings either');
  });
}

test('install-units writes every file under --root with this node and this ublk-ts; verify passes on them', (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-root-'));
  const out: string[] = [];
  assert.equal(runInstallUnits({ root, out: (s) => out.push(s) }), 0);
  for (const f of INSTALLED_FILES) assert.ok(fs.existsSync(path.join(root, f.dest)), f.dest);
  assert.ok(fs.statSync(path.join(root, 'etc/ublk-ts/instances')).isDirectory());
  const unit = fs.readFileSync(path.join(root, 'etc/systemd/system/ublk-ts.service'), 'utf8');
  assert.ok(unit.includes(`ExecStart=${process.execPath} ${ROOT}/bin/ublk-ts serve --config /etc/ublk-ts/`), unit);
  assert.ok(!unit.includes('/usr/lib/ublk-ts'));
  assert.match(out.join(''), /systemctl enable --now ublk-ts/);
  const why = analyzeAvailable();
  if (why) return t.skip(why);
  for (const u of UNITS) {
    const r = verify(path.join(root, 'etc/systemd/system', u));
    assert.equal(r.status, 0, `${u}: ${r.out}`);
  }
});

test('install-units --dry-run writes nothing; renderUnit only touches ExecStart\'s node and the prefix', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-root-'));
  const out: string[] = [];
  runInstallUnits({ root, dryRun: true, out: (s) => out.push(s) });
  assert.deepEqual(fs.readdirSync(root), []);
  assert.match(out.join(''), /would write .*ublk-ts\.service/);
  assert.equal(
    renderUnit('ExecStart=/usr/bin/node /usr/lib/ublk-ts/x.js\nExecStartPre=/usr/bin/node-other\nDocumentation=file:///usr/lib/ublk-ts/README', '/opt/node', '/srv/u'),
    'ExecStart=/opt/node /srv/u/x.js\nExecStartPre=/usr/bin/node-other\nDocumentation=file:///srv/u/README',
  );
});
