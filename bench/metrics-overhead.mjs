#!/usr/bin/env node
// The cost of the metrics endpoint to the data path: loop-device IOPS while /metrics is scraped
// every second, against no scraping, in ONE run (one boot, one device, one fio job).
//
// fio runs without a break; the run is cut into windows that alternate "no scraping" and "a
// scrape every second" (A B B A A B ...: neither side always goes first). Each window's IOPS come
// from the disk's own completion counter (/sys/block/ublkbN/stat) read at its edges; the first
// second of a window is left out (the change of regime). Neighbouring windows make a pair, so the
// drift of an emulated machine hits both sides alike. Pass: the median of the pair ratios is
// within 3% of 1.
//
// The scraper stands in for Prometheus (a Go process, usually on another machine): a minimal
// HTTP/1.1 keep-alive GET that reads the body to its Content-Length and parses nothing. Node's own
// http client took ~18 ms of the guest's CPU per scrape, a cost of this harness, not the service.
// Both the service's and the scraper's CPU are reported per window.
//
// Needs ublk_drv (the QEMU guest, or a host with /dev/ublk-control), root, fio, from the repo root:
//   npm run build:ts && bash test/vm/run-in-vm.sh --timeout 900 -- node bench/metrics-overhead.mjs
// Options (environment): PAIRS (default 16), WINDOW (seconds per window, default 6), BS (default
//   4k), IODEPTH (default 32), RW (default randread), OUT (JSON result file, optional),
//   AA=1 (calibration: the "scraped" windows do not scrape, so the ratios show the method's own
//   noise and bias), SCRAPE_PATH (default /metrics; `/` isolates the HTTP exchange from the
//   rendering), SERVICE_BATCH=main|all (diagnosis: the service's main thread, or every thread but
//   the queue threads, put in SCHED_BATCH with chrt once the device is live), SERVICE_NODE_FLAGS
//   (diagnosis: node/V8 flags for the service, e.g. "--single-threaded-gc").
// Per window it also counts the guest's TLB-shootdown, rescheduling and function-call interrupts
// (/proc/interrupts TLB, RES, CAL): what one thread of a process does to its other threads' CPUs.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const PAIRS = Number(process.env.PAIRS ?? 16);
const WINDOW = Number(process.env.WINDOW ?? 6);
const SETTLE = 1; // seconds left out at the start of every window
const BS = process.env.BS ?? '4k';
const IODEPTH = Number(process.env.IODEPTH ?? 32);
const RW = process.env.RW ?? 'randread';
const LIMIT = 0.03;
const AA = process.env.AA === '1';
const SCRAPE_PATH = process.env.SCRAPE_PATH ?? '/metrics';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-mo-'));
const log = (m) => process.stdout.write(`metrics-overhead: ${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A keep-alive HTTP/1.1 client for one path; reconnects when the server closed an idle socket. */
class Scraper {
  constructor(host, port, p) {
    Object.assign(this, { host, port, p, sock: null, buf: Buffer.alloc(0), want: -1, done: null });
    this.scrapes = 0;
    this.bytes = 0;
    this.failures = 0;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.port, this.host, () => resolve(s));
      s.once('error', reject);
      s.on('data', (d) => this.onData(d));
      s.on('close', () => {
        if (this.sock === s) this.sock = null;
        if (this.done) this.finish(-1);
      });
    });
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    if (this.want < 0) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(this.buf.subarray(0, end).toString('latin1'));
      if (!m) return this.finish(-1);
      this.want = end + 4 + Number(m[1]);
    }
    if (this.buf.length >= this.want) this.finish(Number(this.want));
  }

  finish(n) {
    const done = this.done;
    this.done = null;
    this.buf = Buffer.alloc(0);
    this.want = -1;
    if (n < 0) this.failures++;
    else {
      this.scrapes++;
      this.bytes = n;
    }
    done?.(n);
  }

  async get() {
    if (this.done) return -1; // the previous scrape is still running: skip, as Prometheus would
    try {
      if (!this.sock) this.sock = await this.connect();
    } catch {
      this.failures++;
      return -1;
    }
    return new Promise((resolve) => {
      this.done = resolve;
      this.sock.write(`GET ${this.p} HTTP/1.1\r\nHost: ${this.host}\r\nAccept: text/plain\r\n\r\n`);
    });
  }

  close() {
    this.sock?.destroy();
  }
}

const tck = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** CPU time (ms) of a whole process, from /proc. */
const cpuMs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / tck;
};
/** Requests the disk completed (reads + writes), from /sys/block/NAME/stat. */
/** Sums of some inter-processor interrupt lines of /proc/interrupts, over every CPU. */
const ipis = () => {
  const out = { TLB: 0, RES: 0, CAL: 0 };
  for (const line of fs.readFileSync('/proc/interrupts', 'utf8').split('\n')) {
    const m = /^\s*(TLB|RES|CAL):((?:\s+\d+)+)/.exec(line);
    if (m) out[m[1]] = m[2].trim().split(/\s+/).reduce((a, b) => a + Number(b), 0);
  }
  return out;
};
const completions = (name) => {
  const f = fs.readFileSync(`/sys/block/${name}/stat`, 'utf8').trim().split(/\s+/).map(Number);
  return f[0] + f[4];
};

async function main() {
  if (!fs.existsSync('/dev/ublk-control')) throw new Error('no /dev/ublk-control: run it in the VM (see the header)');
  const img = path.join(work, 'disk.img');
  sh('truncate', ['-s', '256M', img]);
  sh('dd', [`if=/dev/urandom`, `of=${img}`, 'bs=1M', 'count=256', 'conv=notrunc', 'status=none']);
  const cfg = path.join(work, 'mo.json');
  fs.writeFileSync(cfg, JSON.stringify({ service: { metricsAddress: '127.0.0.1:0' }, devices: [{ name: 'mo', target: 'loop', file: img }] }));
  const nodeFlags = (process.env.SERVICE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const svc = spawn(process.execPath, [...nodeFlags, 'dist/daemon/cli/main.js', 'serve', '--config', cfg, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  svc.stdout.on('data', (d) => (out += d));
  let fio = null;
  let fioExit = null;
  let scraper = null;
  const rows = [];
  try {
    const records = () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const t0 = Date.now();
    while (!records().some((r) => r.event === 'service_ready')) {
      if (Date.now() - t0 > 120_000 || svc.exitCode !== null) throw new Error(`the service did not come up:\n${out}`);
      await sleep(100);
    }
    const devId = records().find((r) => r.event === 'live').devId;
    const address = records().find((r) => r.event === 'metrics_listening').address;
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const name = `ublkb${devId}`;
    if (process.env.SERVICE_BATCH) {
      const tids = fs.readdirSync(`/proc/${svc.pid}/task`).filter((t) =>
        process.env.SERVICE_BATCH === 'main' ? t === String(svc.pid) : !fs.readFileSync(`/proc/${svc.pid}/task/${t}/comm`, 'utf8').startsWith('ublk'));
      for (const t of tids) sh('chrt', ['-b', '-p', '0', t]);
      log(`SCHED_BATCH: ${tids.length} thread(s) of the service`);
    }
    scraper = new Scraper(host, port, SCRAPE_PATH);
    if ((await scraper.get()) <= 0) throw new Error(`no answer from http://${address}${SCRAPE_PATH}`);

    const windows = 2 * PAIRS;
    const runtime = windows * WINDOW + 30; // room for fio's start-up; fio is stopped after the last window
    log(`/dev/${name}, scraping http://${address}${SCRAPE_PATH}; one fio ${RW} ${BS} QD${IODEPTH} for ${runtime} s cut into ${PAIRS} pairs of ${WINDOW}-s windows (no scrape / scrape every 1 s), first ${SETTLE} s of each left out${AA ? '; A/A CALIBRATION: no window scrapes' : ''}`);
    fio = spawn('fio', [
      '--name=mo', `--filename=/dev/${name}`, '--ioengine=io_uring', '--direct=1', `--rw=${RW}`, `--bs=${BS}`,
      `--iodepth=${IODEPTH}`, '--time_based', `--runtime=${runtime}`, '--output-format=terse',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let fioErr = '';
    fio.stderr.on('data', (d) => (fioErr += d));
    fioExit = new Promise((r) => fio.once('close', r));
    // fio's start-up takes seconds in an emulated guest: the first window starts once the disk's
    // counter has moved in two half-seconds running, and 2 s after that
    for (let moving = 0, last = completions(name), t = Date.now(); moving < 2; ) {
      await sleep(500);
      const now = completions(name);
      moving = now > last ? moving + 1 : 0;
      last = now;
      if (Date.now() - t > 120_000) throw new Error(`fio did not start I/O on /dev/${name} within 120 s: ${fioErr}`);
      if (fio.exitCode !== null) throw new Error(`fio exited ${fio.exitCode}: ${fioErr}`);
    }
    await sleep(2000);

    for (let w = 0; w < windows; w++) {
      // A B B A A B B A ...
      const scraped = (Math.floor((w + 1) / 2) % 2) === 1;
      const scrape = scraped && !AA;
      const timer = scrape ? setInterval(() => scraper.get(), 1000) : null;
      if (scrape) scraper.get();
      await sleep(SETTLE * 1000);
      const c0 = completions(name);
      const i0 = ipis();
      const s0 = cpuMs(svc.pid);
      const p0 = process.cpuUsage();
      const w0 = performance.now();
      await sleep((WINDOW - SETTLE) * 1000);
      const secs = (performance.now() - w0) / 1000;
      const iops = (completions(name) - c0) / secs;
      const i1 = ipis();
      const perSec = Object.fromEntries(Object.keys(i1).map((k) => [k, Math.round((i1[k] - i0[k]) / secs)]));
      const svcPct = (cpuMs(svc.pid) - s0) / 10 / secs;
      const p1 = process.cpuUsage(p0);
      const scraperPct = (p1.user + p1.system) / 1e4 / secs;
      if (timer) clearInterval(timer);
      if (fio.exitCode !== null) throw new Error(`fio stopped early (${fio.exitCode}): ${fioErr}`);
      rows.push({ window: w, scraped, iops, servicePct: svcPct, benchPct: scraperPct, ipisPerSec: perSec });
      log(`window ${String(w + 1).padStart(2)} ${scraped ? 'scraped' : 'plain  '}: ${iops.toFixed(0)} IOPS; service ${svcPct.toFixed(1)}% CPU, this process ${scraperPct.toFixed(1)}%; IPIs/s TLB ${perSec.TLB} RES ${perSec.RES} CAL ${perSec.CAL}`);
    }
  } finally {
    fio?.kill('SIGTERM');
    await fioExit;
    scraper?.close();
    svc.kill('SIGTERM');
    await new Promise((r) => (svc.exitCode !== null ? r() : svc.once('exit', r)));
    fs.rmSync(work, { recursive: true, force: true });
  }

  const ratios = [];
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const [a, b] = rows[i].scraped ? [rows[i + 1], rows[i]] : [rows[i], rows[i + 1]];
    ratios.push(b.iops / a.iops);
  }
  const plain = rows.filter((r) => !r.scraped).map((r) => r.iops);
  const scraped = rows.filter((r) => r.scraped).map((r) => r.iops);
  const mratio = median(ratios);
  const delta = mratio - 1;
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const cpu = (k, s) => mean(rows.filter((r) => r.scraped === s).map((r) => r[k]));
  const result = {
    calibration: AA, path: SCRAPE_PATH, rw: RW, bs: BS, iodepth: IODEPTH, window: WINDOW, settle: SETTLE, pairs: PAIRS, rows, pairRatios: ratios,
    medianPlain: median(plain), medianScraped: median(scraped), medianPairRatio: mratio, meanPairRatio: mean(ratios), delta,
    servicePct: { plain: cpu('servicePct', false), scraped: cpu('servicePct', true) },
    benchPct: { plain: cpu('benchPct', false), scraped: cpu('benchPct', true) },
    ipisPerSec: Object.fromEntries(['TLB', 'RES', 'CAL'].map((k) => [k, { plain: mean(rows.filter((r) => !r.scraped).map((r) => r.ipisPerSec[k])), scraped: mean(rows.filter((r) => r.scraped).map((r) => r.ipisPerSec[k])) }])),
    scrapes: scraper.scrapes, scrapeFailures: scraper.failures, exposition_bytes: scraper.bytes, limit: LIMIT, pass: Math.abs(delta) <= LIMIT,
  };
  log(`per-pair ratios scraped/plain: ${ratios.map((r) => r.toFixed(3)).join(' ')}`);
  log(`service CPU ${result.servicePct.plain.toFixed(1)}% → ${result.servicePct.scraped.toFixed(1)}% of a CPU; scraper (this process) ${result.benchPct.plain.toFixed(1)}% → ${result.benchPct.scraped.toFixed(1)}%; ${scraper.scrapes} scrapes of ${scraper.bytes} bytes, ${scraper.failures} failed`);
  log(`IPIs/s plain → scraped: ${Object.entries(result.ipisPerSec).map(([k, v]) => `${k} ${v.plain.toFixed(0)} → ${v.scraped.toFixed(0)}`).join(', ')}`);
  log(`median IOPS plain ${result.medianPlain.toFixed(0)}, scraped ${result.medianScraped.toFixed(0)}; median pair ratio ${mratio.toFixed(4)} (mean ${result.meanPairRatio.toFixed(4)}): ${(delta * 100).toFixed(2)}% → ${result.pass ? 'PASS' : 'FAIL'} (limit ±${LIMIT * 100}%)`);
  if (process.env.OUT) fs.writeFileSync(process.env.OUT, JSON.stringify(result, null, 2));
  process.exitCode = result.pass ? 0 : 1;
}

main().catch((e) => {
  console.error(`metrics-overhead: ${e.stack ?? e}`);
  process.exit(2);
});
