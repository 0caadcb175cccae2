#!/usr/bin/env node
// The benchmark driver: runs next to a kernel with ublk_drv (in the QEMU guest that
// scripts/bench.mjs boots, or directly on a host that has /dev/ublk-control), as root, from the
// repo's root. Usage: node bench/run.mjs CONFIG.json
//   CONFIG: { runtime, ramp, rounds, rows: [names], jobs: [names], fileSize (bytes), workDir, out, hostLoad }
// It sets every row's device up (ublk rows through the product's CLI, `node bin/ublk-ts add`), then
// runs each job with fio on every row in turn, and tears the devices down. Results go to CONFIG.out as JSON, rewritten
// after every job, so that a run cut short still leaves what it measured.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROWS, JOBS } from './jobs.mjs';
import { median } from './report.mjs';

// The product's own reading of ADD_DEV flags (compiled by `npm run build`, which `add` needs too).
const { modeFromFlags } = createRequire(import.meta.url)('../dist/daemon/features.js');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const CLI = [process.execPath, 'bin/ublk-ts'];
// A row's CLI: this checkout's, or the baseline checkout's (BENCH_BASELINE, rows with impl 'baseline').
const cliOf = (row) => (row.impl === 'baseline' ? [process.execPath, path.join(cfg.baseline, 'bin', 'ublk-ts')] : CLI);
// BENCH_BACKING=nullb: the rows' "file" is a null_blk disk itself (see setUpNullb).
const NULLB = { dev: '/dev/nullb0', dir: '/sys/kernel/config/nullb/nullb0', completionNs: 20000 };
const FILE = cfg.backing === 'nullb' ? NULLB.dev : path.join(cfg.workDir, 'backing.img');
const CLK_TCK = Number(sh('getconf', ['CLK_TCK']).stdout.trim()) || 100;
const t0 = Date.now();

function log(msg) {
  const s = ((Date.now() - t0) / 1000).toFixed(0).padStart(4);
  process.stdout.write(`bench [${s}s] ${msg}\n`);
}

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  return { code: r.status ?? (r.signal ? 128 : 1), stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''), signal: r.signal };
}
function must(cmd, args, opts) {
  const r = sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
  return r;
}
const firstLine = (s) => (s || '').trim().split('\n')[0] || '';
// "ext4 on /dev/ram0": findmnt names the filesystem type and its device (stat -f's %T says
// "ext2/ext3" for ext4: the superblock magic is the same).
const backingFs = (dir) => {
  const [type, source] = firstLine(sh('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '--target', dir]).stdout).split(/\s+/);
  return type ? `${type} on ${source}` : firstLine(sh('stat', ['-f', '-c', '%T', dir]).stdout);
};

const result = {
  schema: 1,
  started: new Date().toISOString(),
  // ratios: 'per-round' = each ratio is the median over rounds of that round's row ÷ that round's
  // reference (bench/report.mjs); results without it (before 2026-12-02 s7) divided the medians.
  config: { runtime: cfg.runtime, ramp: cfg.ramp, rounds: Math.max(1, cfg.rounds || 1), rows: cfg.rows, jobs: cfg.jobs, fileSize: cfg.fileSize, ratios: 'per-round' },
  guest: {},
  fio_args: null,
  backing: {},
  rows: {},
  errors: [],
  complete: false,
};
function save() {
  result.elapsed_s = (Date.now() - t0) / 1000;
  const tmp = `${cfg.out}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(result, null, 2) + '\n');
  fs.renameSync(tmp, cfg.out);
}

// ---- environment ---------------------------------------------------------------------------------
function cpuModel() {
  const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  return m ? m[1].trim() : 'unknown';
}
result.guest = {
  kernel: os.release(),
  in_vm: process.env.UBLK_TS_IN_VM === '1',
  vcpus: os.cpus().length,
  mem_mib: Math.round(os.totalmem() / 1048576),
  cpu_model: cpuModel(),
  fio: firstLine(sh('fio', ['--version']).stdout),
  node: process.version,
  losetup: firstLine(sh('losetup', ['--version']).stdout),
  clk_tck: CLK_TCK,
  ublk_features: firstLine(sh(CLI[0], [CLI[1], 'features']).stdout),
  loop_control: fs.existsSync('/dev/loop-control'),
};
log(`kernel ${result.guest.kernel}, ${result.guest.vcpus} vCPUs, ${result.guest.fio}, ${result.guest.ublk_features}`);
if (!result.guest.loop_control) log('WARNING: /dev/loop-control is missing (loop module not loaded?): kernel-loop will fail');

// ---- backing file ------------------------------------------------------------------------------
fs.mkdirSync(cfg.workDir, { recursive: true });
// ext4-disk (the VM's default): ext4 on the virtio disk run-in-vm.sh attached (/dev/vda), whose
// data QEMU moves on the host: reads and writes complete later, by interrupt, with no copy on the
// guest's CPUs, as on a machine with an SSD. ext4-ram: ext4 on the brd RAM disk (/dev/ram0, loaded
// by the VM's init), where each read or write is a CPU copy done inline by the thread that
// submits it (for a ublk server, its queue thread). tmpfs has no NOWAIT reads or writes, so
// io_uring hands every backing-file I/O of a ublk server to an io-wq worker thread.
const FS_DEV = { 'ext4-ram': '/dev/ram0', 'ext4-disk': '/dev/vda' }[cfg.backing];
if (FS_DEV) {
  if (!fs.existsSync(FS_DEV)) throw new Error(`no ${FS_DEV} for BENCH_BACKING=${cfg.backing}`);
  must('mkfs.ext4', ['-q', '-F', FS_DEV]);
  must('mount', [FS_DEV, cfg.workDir]);
}
// A disk with no data and no copy: null_blk completes each request from a timer after
// NULLB.completionNs, as a fast SSD would by interrupt, and moves nothing. What is left of a row's
// cost is its own per-I/O work (the server's protocol, the loop driver's hand-offs), not the RAM
// copy that ext4-ram puts on whichever thread submits the backing I/O.
function setUpNullb() {
  const mib = Math.ceil(cfg.fileSize / 1048576);
  if (!fs.existsSync('/sys/kernel/config/nullb')) {
    sh('mount', ['-t', 'configfs', 'none', '/sys/kernel/config']);
    if (!fs.existsSync('/sys/kernel/config/nullb')) throw new Error('no /sys/kernel/config/nullb: is null_blk loaded (the VM init loads it)?');
  }
  fs.mkdirSync(NULLB.dir);
  // max_sectors: null_blk's default is 255 sectors, which splits every 128k request in two; a
  // NOWAIT bio that must be split fails with EAGAIN, and io_uring sends it to an io-wq worker
  // (seen as io_wq_enqueue in the queue thread's profile, 2026-12-03). 1 MiB, as a disk would have.
  const attrs = { size: mib, blocksize: 512, max_sectors: 2048, irqmode: 2, completion_nsec: NULLB.completionNs, hw_queue_depth: 256, submit_queues: 2, memory_backed: 0, power: 1 };
  for (const [k, v] of Object.entries(attrs)) fs.writeFileSync(path.join(NULLB.dir, k), String(v));
  if (!fs.existsSync(NULLB.dev)) throw new Error(`${NULLB.dev} did not appear after powering ${NULLB.dir} on`);
  fs.writeFileSync('/sys/block/nullb0/queue/scheduler', 'none');
  result.backing = { path: NULLB.dev, bytes: mib * 1048576, fill: 'none', fs: `null_blk (no data; timer completion after ${NULLB.completionNs / 1000} µs; ${attrs.submit_queues} queues of ${attrs.hw_queue_depth})`, fill_s: 0 };
  log(`backing ${NULLB.dev}: ${result.backing.fs}`);
}
function tearDownNullb() {
  try { fs.writeFileSync(path.join(NULLB.dir, 'power'), '0'); fs.rmdirSync(NULLB.dir); } catch (e) { log(`null_blk tear-down: ${e.message}`); }
}
if (cfg.backing === 'nullb') setUpNullb();
else {
  const mib = Math.ceil(cfg.fileSize / 1048576);
  const tf = Date.now();
  // Random data, written once; every row that needs a file uses this one.
  must('dd', ['if=/dev/urandom', `of=${FILE}`, 'bs=1M', `count=${mib}`, 'status=none', 'conv=fsync']);
  // dd left the file in the page cache; the first O_DIRECT writer over each range would have to
  // invalidate it (io_uring punts such writes to a worker): no row should pay for that.
  sh('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']);
  result.backing = { path: FILE, bytes: fs.statSync(FILE).size, fill: 'dd if=/dev/urandom bs=1M', fs: backingFs(cfg.workDir), fill_s: (Date.now() - tf) / 1000 };
  log(`backing file ${FILE}: ${mib} MiB of /dev/urandom on ${result.backing.fs} in ${result.backing.fill_s.toFixed(1)}s`);
}
save();

// ---- measurement helpers -------------------------------------------------------------------------
/** utime+stime (ticks) of every thread of `pid`, per tid. Threads are read from /proc/PID/task. */
function threadTicks(pid) {
  const out = {};
  let names;
  try { names = fs.readdirSync(`/proc/${pid}/task`); } catch { return null; }
  for (const tid of names) {
    let s;
    try { s = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'); } catch { continue; }
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] = state (field 3)
    out[tid] = { ticks: Number(f[11]) + Number(f[12]), comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')) }; // 14 utime, 15 stime
  }
  return out;
}
/** Busy and total ticks of the whole guest (every CPU, /proc/stat's cpu line; idle and iowait are not busy). */
function guestTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}
/** I/Os as submitted (completed requests + merged bios) of a block device, from /sys/block/X/stat. */
function diskIos(dev) {
  if (!dev) return null;
  try {
    const f = fs.readFileSync(`/sys/block/${path.basename(dev)}/stat`, 'utf8').trim().split(/\s+/).map(Number);
    return { ios: f[0] + f[4], merges: f[1] + f[5] };
  } catch { return null; }
}

function fioArgs(job, filename, outFile) {
  return [
    `--name=${job.name}`, `--filename=${filename}`,
    '--ioengine=io_uring', '--direct=1', `--rw=${job.rw}`, `--bs=${job.bs}`, `--iodepth=${job.qd}`,
    // a soak job (`ios`) runs a count of I/Os instead of a time
    ...(job.ios ? [`--io_size=${job.ios * parseInt(job.bs, 10) * 1024}`, '--runtime=600'] : ['--time_based', `--runtime=${cfg.runtime}`, `--ramp_time=${cfg.ramp}`]),
    '--numjobs=1', '--group_reporting',
    '--output-format=json', `--output=${outFile}`,
  ];
}
result.fio_args = fioArgs({ name: '<job>', rw: '<rw>', bs: '<bs>', qd: '<qd>' }, '<device>', '<out.json>').join(' ');

/**
 * With cfg.hostLoad (a TCG guest): the host writes its load (other QEMU guests, others' CPU use)
 * to a shared file every 2 s; a busy host halves what a TCG guest measures, so before each job
 * wait until it has been quiet for two samples, within the per-job and total budgets. Returns
 * seconds waited.
 */
let waitedTotal = 0;
function waitForQuietHost() {
  const h = cfg.hostLoad;
  if (!h) return 0;
  const ts = Date.now();
  const quiet = () => {
    try {
      const s = JSON.parse(fs.readFileSync(h.file, 'utf8')).slice(-2);
      return s.length === 2 && s.every((x) => x.foreign_qemu === 0 && x.foreign_pct < h.quietPct);
    } catch { return true; }
  };
  let said = false;
  while (!quiet()) {
    const w = (Date.now() - ts) / 1000;
    if (w >= h.jobWait || waitedTotal + w >= h.jobWaitTotal) break;
    if (!said) { log(`host busy (other QEMU guests or builds): waiting up to ${h.jobWait}s before the next job`); said = true; }
    spawnSync('sleep', ['2']);
  }
  const w = (Date.now() - ts) / 1000;
  waitedTotal += w;
  return w;
}

/**
 * Samples the server's resident memory (VmRSS) every 2 s while a job runs, from a shell loop beside
 * fio (the runner waits for fio synchronously). stop() gives { first, max, last, samples, series } in KiB
 * (series: every sample, 2 s apart, so a soak shows whether memory levels off).
 */
function rssSampler(pid) {
  const out = path.join(cfg.workDir, 'rss.txt');
  fs.writeFileSync(out, '');
  const loop = `while [ -r /proc/${pid}/status ]; do sed -n 's/^VmRSS:[[:space:]]*\\([0-9]*\\).*/\\1/p' /proc/${pid}/status >> ${out}; sleep 2; done`;
  const child = spawn('sh', ['-c', loop], { stdio: 'ignore' });
  return {
    stop() {
      child.kill();
      const kb = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map(Number);
      return kb.length ? { first: kb[0], max: Math.max(...kb), last: kb[kb.length - 1], samples: kb.length, series: kb } : null;
    },
  };
}

function runJob(job, target, server) {
  const outFile = path.join(cfg.workDir, 'fio.json');
  try { fs.unlinkSync(outFile); } catch { /* none */ }
  const before = server ? threadTicks(server.pid) : null;
  const gBefore = guestTicks();
  const dBefore = diskIos(target.dev);
  const tw = process.hrtime.bigint();
  const tStart = Date.now();
  const rss = server ? rssSampler(server.pid) : null;
  const r = sh('fio', fioArgs(job, target.filename, outFile), { timeout: (job.ios ? 720 : cfg.runtime + cfg.ramp + 120) * 1000 });
  const wall = Number(process.hrtime.bigint() - tw) / 1e9;
  const after = server ? threadTicks(server.pid) : null;
  const gAfter = guestTicks();
  const dAfter = diskIos(target.dev);
  const rec = { wall_s: +wall.toFixed(2), t_start: tStart, t_end: Date.now() };
  let j;
  try { j = JSON.parse(fs.readFileSync(outFile, 'utf8')); } catch (e) {
    rec.error = `fio exited ${r.code}${r.signal ? ` (${r.signal})` : ''}, no JSON: ${(r.stderr || r.stdout).trim().slice(0, 1000)}`;
    return rec;
  }
  const jj = j.jobs[0];
  const side = job.rw.includes('read') ? jj.read : jj.write;
  if (jj.error) rec.error = `fio job error ${jj.error}: ${(r.stderr || '').trim().slice(0, 500)}`;
  else if (r.code !== 0) rec.error = `fio exited ${r.code}: ${(r.stderr || '').trim().slice(0, 500)}`;
  Object.assign(rec, {
    iops: side.iops,
    mibps: side.bw_bytes / 1048576,
    clat_mean_us: side.clat_ns.mean / 1000,
    clat_p99_us: (side.clat_ns.percentile?.['99.000000'] ?? NaN) / 1000,
    ios: side.total_ios,
    fio_usr_cpu_pct: jj.usr_cpu,
    fio_sys_cpu_pct: jj.sys_cpu,
  });
  if (dBefore && dAfter) {
    rec.dev_ios = dAfter.ios - dBefore.ios; // requests the device completed, ramp included
    rec.dev_merges = dAfter.merges - dBefore.merges;
  }
  // the whole guest (fio, the server, an NBD server, kernel threads, softirq): comparable across
  // rows whose server is a process and rows whose server is in the kernel
  const gBusy = gAfter.busy - gBefore.busy;
  const gTotal = gAfter.total - gBefore.total;
  rec.guest_busy_pct = gTotal > 0 ? +(100 * gBusy / gTotal).toFixed(1) : null;
  const nIo = (rec.dev_ios ?? 0) + (rec.dev_merges ?? 0); // I/Os as fio submitted them, over the same window
  rec.guest_cpu_us_per_io = nIo > 0 ? (gBusy / CLK_TCK) * 1e6 / nIo : null;
  if (rss) rec.srv_rss_kb = rss.stop();
  if (server) {
    if (!after) {
      rec.error = (rec.error ? rec.error + '; ' : '') + `server pid ${server.pid} is gone`;
    } else {
      let tot = 0;
      let q = 0;
      let main = 0;
      const byName = {};
      for (const [tid, { ticks, comm }] of Object.entries(after)) {
        const d = ticks - (before?.[tid]?.ticks ?? 0);
        tot += d;
        // `list` gives one tid per queue; more threads of a queue (--threads-per-queue) by name
        const isQueue = server.tids.includes(Number(tid)) || /^ublk\d+-q\d+\.\d+$/.test(comm);
        if (isQueue) q += d;
        if (Number(tid) === server.pid) main += d;
        const k = isQueue ? `queue:${comm}` : Number(tid) === server.pid ? `main:${comm}` : comm.replace(/\d+$/, 'N');
        if (d) byName[k] = +((byName[k] ?? 0) + d / CLK_TCK).toFixed(2);
      }
      rec.srv_cpu_by_thread = byName;
      rec.srv_cpu_s = tot / CLK_TCK;
      rec.srv_queue_cpu_s = q / CLK_TCK;
      // the Node main thread: JavaScript (a js target's handlers and its hand-off), idle otherwise
      rec.srv_js_cpu_pct = tot > 0 ? +(100 * main / tot).toFixed(1) : null;
      rec.srv_cpu_pct_of_wall = +(100 * rec.srv_cpu_s / wall).toFixed(1);
      rec.srv_cpu_us_per_io = nIo > 0 ? (rec.srv_cpu_s * 1e6) / nIo : null;
    }
  }
  return rec;
}

/**
 * Waits (at most 15 s) until the new server process is idle: right after `add` returns, its Node
 * main thread is still busy for a few seconds (start-up), which would be billed to the first job.
 */
function settle(pid) {
  const ts = Date.now();
  const total = () => Object.values(threadTicks(pid) || {}).reduce((a, t) => a + t.ticks, 0);
  let prev = total();
  while (Date.now() - ts < 15000) {
    spawnSync('sleep', ['1']);
    const now = total();
    if (now - prev <= 2) break; // ≤ 2% of a CPU over the last second
    prev = now;
  }
  return (Date.now() - ts) / 1000;
}

// ---- rows ------------------------------------------------------------------------------------------
const added = []; // ublk ids / loop devices to clean up if we die
function parseDevId(text) {
  const m = /^dev id (\d+):/m.exec(text);
  return m ? Number(m[1]) : null;
}

// The NBD rows' server: one nbdkit (memory plugin, as large as the backing file) on TCP
// 127.0.0.1 (zero copy sends need TCP), started when the first NBD row is set up; every NBD row,
// the kernel's and ublk-ts's, uses it.
const NBD_PORT = 10809;
let nbdkit = null;
function nbdServer() {
  if (nbdkit) return;
  nbdkit = spawn('nbdkit', ['--foreground', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(NBD_PORT), 'memory', String(cfg.fileSize)], { stdio: 'ignore' });
  const listening = () => sh('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${NBD_PORT}`]).code === 0;
  for (let i = 0; i < 100 && !listening(); i++) spawnSync('sleep', ['0.1']);
  if (!listening()) throw new Error('nbdkit did not start (is it installed? scripts/test-deps.sh)');
  result.nbd_server = `nbdkit ${firstLine(sh('nbdkit', ['--version']).stdout)}, memory ${cfg.fileSize} bytes, TCP 127.0.0.1:${NBD_PORT}`;
  log(`NBD server: ${result.nbd_server}`);
}

/** The kernel's nbd driver on the NBD rows' server: nbd-client, one /dev/nbdN per row. */
let nextNbd = 0;
function setUpNbdKernel(row) {
  nbdServer();
  const dev = `/dev/nbd${nextNbd++}`;
  if (!fs.existsSync(dev)) throw new Error(`${dev} does not exist (is the nbd module loaded?)`);
  must('nbd-client', ['127.0.0.1', String(NBD_PORT), dev, '-b', '512', ...(row.connections > 1 ? ['-C', String(row.connections)] : [])]);
  added.push({ nbd: dev });
  const b = path.basename(dev);
  try { fs.writeFileSync(`/sys/block/${b}/queue/scheduler`, 'none'); } catch { /* not every kernel */ }
  const rd = (f) => { try { return fs.readFileSync(`/sys/block/${b}/${f}`, 'utf8').trim(); } catch { return null; } };
  return { target: { filename: dev, dev }, info: { dev, connections: row.connections, scheduler: rd('queue/scheduler'), nr_hw_queues: fs.readdirSync(`/sys/block/${b}/mq`).length } };
}

function setUp(row) {
  if (row.kind === 'raw') return { target: { filename: FILE, dev: null }, info: { file: FILE } };
  if (row.kind === 'nbd-kernel') return setUpNbdKernel(row);
  if (row.kind === 'loop') {
    const dev = must('losetup', ['--direct-io=on', '-f', '--show', FILE]).stdout.trim();
    added.push({ loop: dev });
    const b = path.basename(dev);
    const rd = (f) => { try { return fs.readFileSync(`/sys/block/${b}/${f}`, 'utf8').trim(); } catch { return null; } };
    const info = { dev, dio: rd('loop/dio'), max_sectors_kb: rd('queue/max_sectors_kb'), scheduler: rd('queue/scheduler') };
    if (info.dio !== '1') log(`WARNING: ${dev} has dio=${info.dio}: the kernel loop driver is NOT doing direct I/O`);
    return { target: { filename: dev, dev }, info };
  }
  if (row.cli.includes('@NBDPORT')) nbdServer();
  const args = row.cli.map((a) =>
    a === '@FILE' ? FILE : a === '@NBDPORT' ? String(NBD_PORT) : a.replace('@SIZE', String(cfg.fileSize)).replace('@EXAMPLES', path.resolve('examples')));
  if (row.kind === 'ublksrv') return setUpUblksrv(row, args);
  const ta = Date.now();
  const C = cliOf(row);
  const r = sh(C[0], [C[1], 'add', ...args]);
  const addS = (Date.now() - ta) / 1000;
  const id = parseDevId(r.stdout);
  if (id !== null) added.push({ ublk: id, cli: C });
  if (r.code !== 0 || id === null) {
    const why = (r.stderr || r.stdout).trim().split('\n').filter(Boolean).slice(-3).join(' | ');
    const e = new Error(`ublk-ts add ${args.join(' ')} exited ${r.code}: ${why}`);
    e.na = /lacks a feature|needs UBLK_F_/i.test(why); // the CLI refused: this kernel cannot do it

    throw e;
  }
  const lj = JSON.parse(must(C[0], [C[1], 'list', '-n', String(id), '--json']).stdout);
  const d = Array.isArray(lj) ? lj[0] : lj;
  const server = { pid: d.daemon_pid, tids: (d.queues || []).map((q) => q.tid) };
  const info = {
    cli: `${row.impl === 'baseline' ? `${cfg.baseline}/bin/` : ''}ublk-ts add ${args.join(' ')}`, add_s: addS, dev_id: id, dev: `/dev/ublkb${id}`,
    data_mode: d.data_mode, zero_copy: d.zero_copy, flags: d.flags, flag_names: d.flag_names,
    nr_hw_queues: d.nr_hw_queues, queue_depth: d.queue_depth, max_rq_size: d.max_rq_size,
    daemon_pid: server.pid, queue_tids: server.tids, target: d.target,
  };
  const st = { target: { filename: info.dev, dev: info.dev }, info, server };
  if (![row.mode].flat().includes(d.data_mode)) {
    // e.g. -z on a kernel with zero copy but without AUTO_BUF_REG gives zc_explicit: not this row.
    tearDown(row, st);
    const e = new Error(`the CLI chose data mode ${d.data_mode} for \`${info.cli}\`, this row measures ${row.mode}`);
    e.na = true;
    throw e;
  }
  if (!fs.existsSync(info.dev)) throw new Error(`${info.dev} does not exist after add`);
  return st;
}

/** A device of the reference C server: `ublk add` prints its list entry once the disk is live. */
function setUpUblksrv(row, args) {
  const ta = Date.now();
  const r = sh(cfg.ublksrv, ['add', ...args], { timeout: 60000 });
  const addS = (Date.now() - ta) / 1000;
  const id = parseDevId(r.stdout);
  if (id !== null) added.push({ ublksrv: id });
  if (r.code !== 0 || id === null) throw new Error(`${cfg.ublksrv} add ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  const pid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
  const flags = /flags (0x[0-9a-f]+)/.exec(r.stdout)?.[1] ?? '0x0';
  const tids = [...r.stdout.matchAll(/queue \d+: tid (\d+)/g)].map((m) => Number(m[1]));
  const mode = modeFromFlags(BigInt(flags));
  const info = {
    cli: `ublksrv ${path.basename(cfg.ublksrv)} add ${args.join(' ')}`, add_s: addS, dev_id: id, dev: `/dev/ublkb${id}`,
    data_mode: mode, flags, daemon_pid: pid, queue_tids: tids, list: r.stdout.trim().split('\n'),
  };
  const st = { target: { filename: info.dev, dev: info.dev }, info, server: { pid, tids } };
  if (mode !== row.mode) {
    tearDown(row, st);
    const e = new Error(`ublksrv gave data mode ${mode} (flags ${flags}), this row measures ${row.mode}`);
    e.na = true;
    throw e;
  }
  for (let i = 0; i < 50 && !fs.existsSync(info.dev); i++) spawnSync('sleep', ['0.1']);
  if (!fs.existsSync(info.dev)) throw new Error(`${info.dev} does not exist after add`);
  // The scheduler every other row has (ublk-ts sets it, the kernel loop driver picks it): the
  // kernel's mq-deadline for a one-queue disk would measure kblockd, not the server.
  const sched = `/sys/block/ublkb${id}/queue/scheduler`;
  try { fs.writeFileSync(sched, 'none'); } catch (e) { log(`WARNING: ${sched}: ${e.message}`); }
  info.scheduler = fs.readFileSync(sched, 'utf8').trim();
  return st;
}

function tearDown(row, st) {
  if (row.kind === 'nbd-kernel') {
    must('nbd-client', ['-d', st.target.dev]);
    added.splice(added.findIndex((a) => a.nbd === st.target.dev), 1);
  } else if (row.kind === 'loop') {
    must('losetup', ['-d', st.target.dev]);
    added.splice(added.findIndex((a) => a.loop === st.target.dev), 1);
  } else if (row.kind === 'ublk') {
    const id = st.info.dev_id;
    const C = cliOf(row);
    must(C[0], [C[1], 'del', '-n', String(id)], { timeout: 120000 });
    added.splice(added.findIndex((a) => a.ublk === id), 1);
  } else if (row.kind === 'ublksrv') {
    const id = st.info.dev_id;
    must(cfg.ublksrv, ['del', '-n', String(id)], { timeout: 120000 });
    added.splice(added.findIndex((a) => a.ublksrv === id), 1);
  }
}

/** Removes one device `added` recorded, ignoring failures (cleanup after an error). */
function removeQuietly(a) {
  if (a.loop) sh('losetup', ['-d', a.loop]);
  if (a.nbd) sh('nbd-client', ['-d', a.nbd]);
  if (a.ublk !== undefined) sh((a.cli ?? CLI)[0], [(a.cli ?? CLI)[1], 'del', '-n', String(a.ublk)], { timeout: 120000 });
  if (a.ublksrv !== undefined) sh(cfg.ublksrv, ['del', '-n', String(a.ublksrv)], { timeout: 120000 });
}
function cleanupAll() {
  for (const a of added.splice(0)) removeQuietly(a);
}
process.on('SIGTERM', () => { cleanupAll(); process.exit(143); });
process.on('SIGINT', () => { cleanupAll(); process.exit(130); });

const dmesgBefore = sh('dmesg', []).stdout.split('\n').length;

// Every device is set up first and stays up (an idle server sleeps in io_uring_enter); then each
// job runs on every row back to back. A TCG guest's speed follows the host's load, which drifts
// over minutes: rows compared within one job are measured within a minute or two of each other.
const live = []; // { name, row, st }
for (const name of cfg.rows) {
  const row = ROWS.find((r) => r.name === name);
  const rr = (result.rows[name] = { kind: row.kind, status: 'ok', jobs: {} });
  const before = added.length;
  try {
    const st = setUp(row);
    rr.info = st.info;
    if (st.server) st.info.settle_s = settle(st.server.pid);
    live.push({ name, row, st });
    log(`${name}: ${st.target.filename}${st.server ? ` (server pid ${st.server.pid}, queue tids ${st.server.tids.join(',')}, mode ${st.info.data_mode}, add took ${st.info.add_s.toFixed(1)}s, idle after ${st.info.settle_s.toFixed(0)}s)` : ''}`);
  } catch (e) {
    rr.status = e.na ? 'n/a' : 'error';
    rr.reason = e.message;
    log(`${name}: ${rr.status.toUpperCase()}: ${e.message}`);
    if (!e.na) result.errors.push(`${name}: set-up: ${e.message}`);
    for (const a of added.splice(before)) removeQuietly(a); // whatever this row left behind
  }
  save();
}

/** Several rounds of one row × job: the median of each figure, and the round nearest the median IOPS for the rest. */
function aggregate(list) {
  if (list.length === 1) return list[0];
  const ok = list.filter((r) => !r.error);
  if (!ok.length) return { ...list[list.length - 1], rounds: list };
  const med = (k) => {
    const v = ok.map((r) => r[k]).filter((x) => typeof x === 'number');
    return v.length ? median(v) : undefined;
  };
  const mi = med('iops');
  const near = ok.reduce((a, b) => (Math.abs(b.iops - mi) < Math.abs(a.iops - mi) ? b : a));
  const out = { ...near, rounds: list, rounds_ok: ok.length };
  delete out.round;
  for (const k of ['iops', 'mibps', 'clat_mean_us', 'clat_p99_us', 'srv_cpu_us_per_io', 'srv_cpu_pct_of_wall', 'srv_js_cpu_pct', 'fio_usr_cpu_pct', 'fio_sys_cpu_pct', 'guest_busy_pct', 'guest_cpu_us_per_io']) {
    const m = med(k);
    if (m !== undefined) out[k] = m;
  }
  const errs = list.filter((r) => r.error).map((r) => `round ${r.round + 1}: ${r.error}`);
  if (errs.length) out.round_errors = errs;
  return out;
}

const rounds = Math.max(1, cfg.rounds || 1);
const perRound = {};
for (let round = 0; round < rounds; round++) {
  // Odd rounds go through the rows backwards, so that no row is always first after a pause.
  const order = round % 2 ? [...live].reverse() : live;
  for (const jn of cfg.jobs) {
    const job = JOBS.find((j) => j.name === jn);
    const waited = waitForQuietHost();
    for (const { name, st } of order) {
      const rec = runJob(job, st.target, st.server);
      rec.waited_for_quiet_s = +waited.toFixed(0);
      rec.round = round;
      const key = `${name} ${jn}`;
      (perRound[key] ??= []).push(rec);
      result.rows[name].jobs[jn] = aggregate(perRound[key]);
      const tag = rounds > 1 ? ` [round ${round + 1}/${rounds}]` : '';
      if (rec.error) {
        result.errors.push(`${name} ${jn}${tag}: ${rec.error}`);
        log(`${jn} ${name}${tag}: ERROR ${rec.error}`);
      } else {
        const cpu = rec.srv_cpu_us_per_io != null ? `, server ${rec.srv_cpu_us_per_io.toFixed(1)} µs/IO (${rec.srv_cpu_pct_of_wall}% of wall)` : '';
        const guest = rec.guest_cpu_us_per_io != null ? `, guest ${rec.guest_cpu_us_per_io.toFixed(1)} µs/IO (${rec.guest_busy_pct}% busy)` : '';
        log(`${jn} ${name}${tag}: ${rec.iops.toFixed(0)} IOPS, ${rec.mibps.toFixed(1)} MiB/s, clat ${rec.clat_mean_us.toFixed(0)}/${rec.clat_p99_us.toFixed(0)} µs mean/p99${cpu}${guest}`);
      }
      save();
    }
  }
}

for (const { name, row, st } of live.reverse()) {
  try { tearDown(row, st); } catch (e) {
    result.errors.push(`${name}: tear-down: ${e.message}`);
    log(`${name}: tear-down failed: ${e.message}`);
  }
}
cleanupAll();
save();

const dm = sh('dmesg', []).stdout.split('\n').slice(dmesgBefore).filter((l) => /ublk|loop|blk|io_uring|WARNING|BUG|error/i.test(l));
result.dmesg = dm.slice(-60);
result.complete = true;
result.finished = new Date().toISOString();
save();
log(`done in ${((Date.now() - t0) / 1000).toFixed(0)}s, ${result.errors.length} error(s)`);
try { fs.rmSync(cfg.workDir, { recursive: true, force: true }); } catch { /* tmpfs anyway */ }
if (nbdkit) nbdkit.kill();
if (FS_DEV) sh('umount', [cfg.workDir]);
if (cfg.backing === 'nullb') tearDownNullb();
