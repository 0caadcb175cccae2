#!/usr/bin/env node
// `npm run bench`: boots the QEMU guest ONCE (test/vm/run-in-vm.sh) and runs bench/run.mjs in it,
// which measures raw file / kernel loop / ublk-ts rows side by side with fio; then prints the
// tables here and writes bench/results/<date>-<kernel>-<tag>.{json,md}. See bench/README.md.
//
// Knobs (environment):
//   BENCH_RUNTIME=S      fio --runtime per job (default 8)      BENCH_RAMP=S   --ramp_time (default 2)
//   BENCH_ROWS=a,b       subset of rows                         BENCH_JOBS=a,b subset of jobs
//   BENCH_ROUNDS=N       run every row x job N times, interleaved, and report medians (default 1)
//   BENCH_FILE_SIZE=1G   backing file size (K/M/G suffixes)     BENCH_TAG=name result name suffix (default runN)
//   BENCH_OUT=DIR        where results go (default bench/results)
//   BENCH_BACKING=K      ext4-disk (default in the VM): ext4 on a virtio disk whose data QEMU moves
//                        on the host (a sparse file in /dev/shm, removed at the end); or ext4-ram:
//                        ext4 on the guest's brd RAM disk; or tmpfs; or nullb: the null_blk
//                        device itself (no data, completions by timer)
//   BENCH_VM_TIMEOUT=S   total VM timeout (default: generous estimate from the above)
//   BENCH_WAIT_QUIET=S   wait up to S s for other QEMU guests/builds on this host to end before booting,
//                        and up to S s in all (180 s per job) before jobs while the host is busy
//                        (default 900, 0 = never wait)
//   BENCH_MODE=vm|host   host = run directly (needs root and /dev/ublk-control); default: host when
//                        this machine has /dev/ublk-control and we are root, else vm
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROWS, JOBS, pick } from '../bench/jobs.mjs';
import { analyse, tables, markdown } from '../bench/report.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const t0 = Date.now();

function die(msg, code = 2) { console.error(`bench: ${msg}`); process.exit(code); }
function num(name, def, min = 0) {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) die(`${name}=${v} is not a number >= ${min}`);
  return n;
}
function size(name, def) {
  const v = env[name];
  if (!v) return def;
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(v.trim());
  if (!m) die(`${name}=${v}: use bytes or a K/M/G suffix`);
  const n = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
  if (n < 16 << 20 || n % (1 << 20)) die(`${name}=${v}: use a whole number of MiB, at least 16M`);
  return n;
}

let rows, jobs;
try {
  rows = pick(env.BENCH_ROWS, ROWS, 'BENCH_ROWS', env);
  jobs = pick(env.BENCH_JOBS, JOBS, 'BENCH_JOBS');
} catch (e) { die(e.message); }
// Rows of another server run only when told where it is (an absolute path the guest sees too).
const ublksrv = env.BENCH_UBLKSRV ? path.resolve(env.BENCH_UBLKSRV) : null;
if (ublksrv && !fs.existsSync(ublksrv)) die(`BENCH_UBLKSRV=${env.BENCH_UBLKSRV}: no such file`);
// Another ublk-ts checkout (built: dist/ and build/Release/), for the base-* rows.
const baseline = env.BENCH_BASELINE ? path.resolve(env.BENCH_BASELINE) : null;
if (baseline && !fs.existsSync(path.join(baseline, 'bin', 'ublk-ts'))) die(`BENCH_BASELINE=${env.BENCH_BASELINE}: no bin/ublk-ts there`);
const OPT_IN_WHAT = {
  BENCH_UBLKSRV: "the path of ublksrv's `ublk` CLI",
  BENCH_BASELINE: 'the path of another, built ublk-ts checkout',
  BENCH_JS: '1: the JavaScript target rows',
  BENCH_NBD: '1: an nbdkit server in the guest, nbd-client and the nbd module (scripts/test-deps.sh installs them)',
};
for (const rn of rows) {
  const r = ROWS.find((x) => x.name === rn);
  if (r.optIn && !env[r.optIn]) die(`BENCH_ROWS: ${rn} needs ${r.optIn} (${OPT_IN_WHAT[r.optIn]})`);
}
const runtime = num('BENCH_RUNTIME', 8, 1);
const ramp = num('BENCH_RAMP', 2, 0);
const rounds = num('BENCH_ROUNDS', 1, 1);
const fileSize = size('BENCH_FILE_SIZE', 1 << 30);
const outDir = path.resolve(repo, env.BENCH_OUT || 'bench/results');
const hasUblk = (() => { try { return fs.statSync('/dev/ublk-control').isCharacterDevice(); } catch { return false; } })();
const mode = env.BENCH_MODE || (hasUblk && process.getuid?.() === 0 ? 'host' : 'vm');
// In the VM the backing file is on ext4 on a virtio disk (ext4-disk): QEMU moves its data on the
// host, so a read or write completes later, by interrupt, with no copy on the guest's CPUs, as on
// a machine with an SSD. ext4-ram (ext4 on a RAM disk) puts a memory copy in whichever thread
// submits each backing I/O; tmpfs sends every backing I/O of a ublk server to io-wq workers.
// See bench/README.md.
const backing = env.BENCH_BACKING || (mode === 'vm' ? 'ext4-disk' : 'tmpfs');
if (!['tmpfs', 'ext4-ram', 'nullb', 'ext4-disk'].includes(backing)) die(`BENCH_BACKING must be tmpfs, ext4-ram, nullb or ext4-disk, not "${backing}"`);
if (backing !== 'tmpfs' && mode !== 'vm') die(`BENCH_BACKING=${backing} needs the VM (its init loads brd and null_blk; run-in-vm.sh attaches the disk)`);
if (!['vm', 'host'].includes(mode)) die(`BENCH_MODE=${mode}: use vm or host`);
const waitQuiet = num('BENCH_WAIT_QUIET', 900, 0);
const partial = rows.length < ROWS.length || jobs.length < JOBS.length;

// Expected: boot, the random fill (~45 s/GiB in TCG), CLI add/list/del (~30 s per ublk row), the jobs
// (fio start-up ~4 s each). The VM timeout is twice that, plus the time we may wait for a quiet host.
const ublkRows = rows.filter((n) => ROWS.find((r) => r.name === n).kind === 'ublk').length;
const est = 60 + 45 * (fileSize / 2 ** 30) + ublkRows * 30 + rounds * rows.length * jobs.length * (runtime + ramp + 4);
const vmTimeout = Math.round(num('BENCH_VM_TIMEOUT', Math.max(1200, 2 * est) + waitQuiet, 60));

const knobs = Object.keys(env).filter((k) => k.startsWith('BENCH_')).sort().map((k) => `${k}=${env[k]}`);
const command = [...knobs, env.npm_lifecycle_event === 'bench' ? 'npm run bench' : 'node scripts/bench.mjs'].join(' ');

const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
const share = path.join(repo, '.cache', 'bench', `${stamp}-${process.pid}`);
fs.mkdirSync(share, { recursive: true });
const cfgFile = path.join(share, 'config.json');
// ext4-disk: the guest's /dev/vda, a sparse file in the host's RAM (so the host's own disk does not
// set the pace), with room for the filesystem around the backing file.
const diskFile = backing === 'ext4-disk' ? path.join('/dev/shm', `ublk-ts-bench-${process.pid}.img`) : null;
if (diskFile) {
  const need = fileSize + (512 << 20);
  const st = fs.statfsSync('/dev/shm');
  if (st.bavail * st.bsize < need) die(`BENCH_BACKING=ext4-disk needs ${need >> 20} MiB free in /dev/shm for the guest's disk, and it has ${Math.floor((st.bavail * st.bsize) / 1048576)} MiB; free some, or use BENCH_BACKING=ext4-ram`);
  fs.writeFileSync(diskFile, '');
  fs.truncateSync(diskFile, need);
  process.on('exit', () => fs.rmSync(diskFile, { force: true }));
}
const rawFile = path.join(share, 'raw.json');
fs.writeFileSync(cfgFile, JSON.stringify({
  runtime, ramp, rounds, rows, jobs, fileSize, backing, ublksrv, baseline,
  workDir: mode === 'vm' ? '/tmp/ublk-bench' : path.join(os.tmpdir(), `ublk-bench-${process.pid}`),
  out: rawFile,
  // Per-job gate on host load (vm mode): wait up to jobWait s before a job, jobWaitTotal s in all.
  hostLoad: mode === 'vm' && waitQuiet > 0 ? { file: path.join(share, 'host-load.json'), quietPct: 30, jobWait: 180, jobWaitTotal: waitQuiet } : null,
}, null, 2));

console.log(`bench: ${rows.length} rows x ${jobs.length} jobs${rounds > 1 ? ` x ${rounds} rounds` : ''}, fio ${runtime}s + ${ramp}s ramp, ${fileSize >> 20} MiB backing file; ` +
  (mode === 'vm' ? `in a QEMU guest (timeout ${vmTimeout}s, ~${Math.round(est / 60)} min expected)` : 'on this host'));
console.log(`bench: work dir ${path.relative(repo, share)}`);

// ---- host contention: other QEMU guests or builds on this machine slow a TCG guest down badly ------
// (measured: the same job at half speed with two other guests running). Wait for a quiet host before
// booting, then sample the CPU that is not ours all along the run; jobs measured while the host was
// busy are marked in the tables.
function procStatBusy() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
}
/** QEMU processes on this host: { pid, ours, ticks }. */
function qemus() {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (!fs.readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('qemu-system')) continue;
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(d), ours: cmd.includes(share), ticks: Number(f[11]) + Number(f[12]) });
    } catch { /* gone */ }
  }
  return out;
}
const HZ = 100; // USER_HZ for /proc/stat and /proc/PID/stat on Linux
function sampler() {
  let prev = { t: Date.now(), busy: procStatBusy(), q: qemus() };
  return () => {
    const now = { t: Date.now(), busy: procStatBusy(), q: qemus() };
    const dt = (now.t - prev.t) / 1000;
    let ours = 0;
    for (const q of now.q.filter((x) => x.ours)) ours += q.ticks - (prev.q.find((p) => p.pid === q.pid)?.ticks ?? q.ticks);
    const s = {
      t: now.t,
      busy_pct: +((100 * (now.busy - prev.busy)) / HZ / dt).toFixed(0), // % of one CPU
      foreign_pct: +Math.max(0, (100 * (now.busy - prev.busy - ours)) / HZ / dt).toFixed(0),
      foreign_qemu: now.q.filter((x) => !x.ours).length,
    };
    prev = now;
    return s;
  };
}
const QUIET_PCT = 30; // % of one CPU that others may use and the host still counts as quiet
let waited = 0;
if (mode === 'vm' && waitQuiet > 0) {
  const sample = sampler();
  let quietRuns = 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000));
    waited += 5;
    const s = sample();
    quietRuns = s.foreign_qemu === 0 && s.foreign_pct < QUIET_PCT ? quietRuns + 1 : 0;
    if (quietRuns >= 2) break;
    if (waited >= waitQuiet) {
      console.log(`bench: the host is still busy after ${waited}s (${s.foreign_qemu} other QEMU, ${s.foreign_pct}% CPU); measuring anyway, expect slow and noisy numbers`);
      break;
    }
    if (waited === 5 || waited % 60 === 0) {
      console.log(`bench: waiting for a quiet host (${s.foreign_qemu} other QEMU guest(s), ${s.foreign_pct}% of a CPU busy); BENCH_WAIT_QUIET=${waitQuiet}s`);
    }
  }
  if (waited > 10) console.log(`bench: waited ${waited}s for a quiet host`);
}
const samples = [];
const sample = sampler();
const loadFile = path.join(share, 'host-load.json');
const monitor = setInterval(() => {
  const s = sample();
  samples.push(s);
  // The guest reads this before every job and waits while the host is busy (bench/run.mjs).
  try { fs.writeFileSync(`${loadFile}.tmp`, JSON.stringify(samples.slice(-3))); fs.renameSync(`${loadFile}.tmp`, loadFile); } catch { /* next time */ }
}, 2000);

const argv = mode === 'vm'
  ? ['bash', [path.join(repo, 'test/vm/run-in-vm.sh'), '--timeout', String(vmTimeout), '--share', share, ...(diskFile ? ['--disk', diskFile] : []), '--', 'node', 'bench/run.mjs', cfgFile]]
  : [process.execPath, [path.join(repo, 'bench/run.mjs'), cfgFile]];
const child = spawn(argv[0], argv[1], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
const rc = await new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
clearInterval(monitor);

if (!fs.existsSync(rawFile)) die(`no results: the ${mode === 'vm' ? 'VM run' : 'driver'} exited ${rc} before measuring anything (see above)`, rc || 1);
const raw = JSON.parse(fs.readFileSync(rawFile, 'utf8'));

const first = (cmd, args) => { const r = spawnSync(cmd, args, { encoding: 'utf8' }); return (r.stdout || '').split('\n')[0].trim() || null; };
const cpuModel = (/^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8')) || [])[1]?.trim() ?? 'unknown';
const date = new Date(t0).toISOString().slice(0, 10);
const kernel = raw.guest.kernel;
let tag = env.BENCH_TAG;
if (!tag) {
  let n = 1;
  while (fs.existsSync(path.join(outDir, `${date}-${kernel}-run${n}.json`)) || fs.existsSync(path.join(outDir, `${date}-${kernel}-run${n}-partial.json`))) n++;
  tag = `run${n}`;
}
if (partial) tag += '-partial';
if (!raw.complete) tag += '-incomplete';
const name = `${date}-${kernel}-${tag}`;

const res = analyse({
  name,
  date,
  command,
  mode,
  wall_s: (Date.now() - t0) / 1000,
  vm_exit: rc,
  host: {
    cpu_model: cpuModel,
    cpus: os.cpus().length,
    kernel: os.release(),
    qemu: mode === 'vm' ? first('qemu-system-x86_64', ['--version']) : null,
    vm: mode === 'vm' ? { accel: 'tcg,thread=multi', cpu: 'max', harness: 'test/vm/run-in-vm.sh' } : null,
  },
  ...raw,
});
// Host load per job, from the samples taken while it ran (the guest's clock follows the host's).
const CONTENDED_PCT = 25;
function markLoad(rec) {
  if (!rec.t_start) return;
  const w = samples.filter((s) => s.t > rec.t_start && s.t <= rec.t_end + 2000);
  if (!w.length) return;
  rec.host_foreign_cpu_pct = Math.round(w.reduce((a, s) => a + s.foreign_pct, 0) / w.length);
  rec.host_foreign_qemu = Math.max(...w.map((s) => s.foreign_qemu));
  rec.contended = rec.host_foreign_cpu_pct > CONTENDED_PCT || rec.host_foreign_qemu > 0;
}
for (const row of Object.values(res.rows)) {
  for (const rec of Object.values(row.jobs || {})) {
    if (!rec.rounds) { markLoad(rec); continue; }
    rec.rounds.forEach(markLoad);
    // A median is contended when most of its rounds were.
    rec.contended = rec.rounds.filter((r) => r.contended).length * 2 > rec.rounds.length;
    delete rec.host_foreign_cpu_pct;
    delete rec.host_foreign_qemu;
  }
}
const fp = samples.map((s) => s.foreign_pct);
res.host.contention = {
  waited_s: waited,
  samples: samples.length,
  foreign_cpu_pct_mean: fp.length ? Math.round(fp.reduce((a, b) => a + b, 0) / fp.length) : null,
  foreign_cpu_pct_max: fp.length ? Math.max(...fp) : null,
  foreign_qemu_max: samples.length ? Math.max(...samples.map((s) => s.foreign_qemu)) : null,
  contended_jobs: Object.values(res.rows).flatMap((r) => Object.values(r.jobs || {})).filter((j) => j.contended).length,
  rule: `a job is contended when, while it ran, another QEMU ran or others used > ${CONTENDED_PCT}% of a host CPU`,
};

fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(res, null, 2) + '\n');
fs.writeFileSync(path.join(outDir, `${name}.md`), markdown(res));

console.log('');
console.log(`ublk-ts benchmark ${name}: kernel ${kernel}, ${raw.guest.vcpus} vCPUs${mode === 'vm' ? `, ${res.host.qemu}` : ''}, host ${cpuModel}`);
console.log(`${raw.guest.fio}; fio ${runtime}s + ${ramp}s ramp per job${rounds > 1 ? `, median of ${rounds} rounds` : ''}; ratios are against kernel-loop in this same boot`);
console.log('');
console.log(tables(res, false).join('\n'));
for (const [rn, r] of Object.entries(res.rows)) if (r.status !== 'ok') console.log(`${rn}: ${r.status}: ${r.reason}`);
const hc = res.host.contention;
if (hc.contended_jobs) console.log(`\nWARNING: ${hc.contended_jobs} job(s) ran while the host was busy (marked †): other load averaged ${hc.foreign_cpu_pct_mean}% of a CPU, up to ${hc.foreign_qemu_max} other QEMU guest(s); their numbers are low and noisy`);
if (res.errors.length) console.log(`\nerrors:\n${res.errors.map((e) => `  ${e}`).join('\n')}`);
console.log(`\nbench: wrote ${path.relative(repo, path.join(outDir, name))}.{json,md} in ${Math.round(res.wall_s)}s`);
if (!raw.complete) die(`the run did not finish (exit ${rc}); the files above hold what was measured`, rc || 1);
if (rc !== 0) die(`the driver finished but ${mode === 'vm' ? 'test/vm/run-in-vm.sh' : 'bench/run.mjs'} exited ${rc} (see above)`, rc);
if (res.errors.length) process.exit(1);
fs.rmSync(share, { recursive: true, force: true });
