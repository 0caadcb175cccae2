// ublk-ts as a package: `npm pack` of this checkout installs in an empty project (offline here:
// the VM has no network; setup.sh filled npm's cache with scripts/warm-package-cache.sh), builds
// its addon, and the library example (examples/library-example.ts, TypeScript) compiles against
// the published types and serves a disk from the project's own process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { requireKernel } from './kernel-gate';
import { REPO, sh, shResult, sleep, trace, workDir } from './helpers';
import { assertClean } from './fault-helpers';

test('npm pack → npm install in an empty project → the TypeScript example serves a disk', { timeout: 1_200_000 }, async () => {
  requireKernel();
  const dir = path.join(workDir(), 'consumer');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const tgz = sh(`cd ${REPO} && npm pack --silent --pack-destination ${dir}`, 300_000).trim().split('\n').pop()!;
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  const install = shResult(`cd ${dir} && npm install --offline --no-audit --no-fund ./${tgz} typescript@~5.9.3 @types/node@^20.19.0 2>&1`, 900_000);
  trace(`npm install: ${install.stdout.split('\n').slice(-5).join(' | ')}`);
  assert.equal(install.code, 0, install.stdout);
  assert.ok(fs.existsSync(path.join(dir, 'node_modules', 'ublk-ts', 'build', 'Release', 'ublk_native.node')), 'the addon was built on install');

  fs.copyFileSync(path.join(REPO, 'examples', 'library-example.ts'), path.join(dir, 'example.ts'));
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'node16', moduleResolution: 'node16', strict: true, skipLibCheck: true } }),
  );
  const tsc = shResult(`cd ${dir} && npx tsc -p .`, 300_000);
  assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);

  const child = spawn(process.execPath, ['example.js'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  try {
    const end = Date.now() + 120_000;
    while (!/serving (\/dev\/ublkb\d+)/.test(out)) {
      if (child.exitCode !== null || Date.now() > end) assert.fail(`the example did not serve a disk:\n${out}`);
      await sleep(200);
    }
    const dev = /serving (\/dev\/ublkb\d+)/.exec(out)![1];
    // a write and a read back through the disk the program serves
    sh(`head -c 1M /dev/urandom > ${dir}/data && dd if=${dir}/data of=${dev} bs=64k oflag=direct status=none`);
    sh(`dd if=${dev} of=${dir}/back bs=64k count=16 iflag=direct status=none && cmp ${dir}/data ${dir}/back`);
    child.kill('SIGINT');
    assert.equal(await exited, 0, out);
    assert.ok(!fs.existsSync(dev), 'stop() deleted the disk');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  assertClean('after the example');
});
