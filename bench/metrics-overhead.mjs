#!/usr/bin/env node
// The cost of the metrics endpoint to the data path: loop-device IOPS while Prometheus-style
// scrapes hit /metrics every second, against no scraping, in ONE run (one boot, one device),
// alternating the two so that drift hits both alike. Pass: the medians are within 3%.
//
// Needs ublk_drv (the QEMU guest, or a host with /dev/ublk-control), root, fio, from the repo root:
//   npm run build:ts && bash test/vm/run-in-vm.sh -- node bench/metrics-overhead.mjs
// Options (environment): ROUNDS (pairs, default 4), SECONDS (per round, default 10),
//   BS (default 4k), IODEPTH (default 32), OUT (JSON result file, optional).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const ROUNDS = Number(process.env.ROUNDS ?? 4);
const SECONDS = Number(process.env.SECONDS ?? 10);
const BS = process.env.BS ?? '4k';
const IODEPTH = Number(process.env.IODEPTH ?? 32);
const LIMIT = 0.03;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-mo-'));
const log = (m) => process.stdout.write(`metrics-overhead: ${m}\n`);

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

// One kept-alive connection, as Prometheus keeps one: the scraper shares the guest's two vCPUs
// with fio and the server, and a TCP set-up per scrape would bill its own cost to the service.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function scrape(url) {
  return new Promise((resolve) => {
    http.get(url, { agent }, (res) => {
      let n = 0;
      res.on('data', (d) => (n += d.length));
      res.on('end', () => resolve(n));
    }).on('error', () => resolve(-1));
  });
}

/** One fio round on the device, in a child process (this one keeps scraping); returns IOPS. */
function fio(dev) {
  const args = [
    '--output-format=json', '--name=mo', `--filename=${dev}`, '--ioengine=io_uring', '--direct=1',
    '--rw=randread', `--bs=${BS}`, `--iodepth=${IODEPTH}`, '--time_based', `--runtime=${SECONDS}`, '--ramp_time=1',
  ];
  return new Promise((resolve, reject) => {
    const c = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => {
      if (code !== 0) return reject(new Error(`fio exited ${code}: ${err}`));
      resolve(JSON.parse(out.slice(out.indexOf('{'))).jobs[0].read.iops);
    });
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  if (!fs.existsSync('/dev/ublk-control')) throw new Error('no /dev/ublk-control: run it in the VM (see the header)');
  const img = path.join(work, 'disk.img');
  sh('truncate', ['-s', '256M', img]);
  sh('dd', [`if=/dev/urandom`, `of=${img}`, 'bs=1M', 'count=256', 'conv=notrunc', 'status=none']);
  const cfg = path.join(work, 'mo.json');
  fs.writeFileSync(cfg, JSON.stringify({ service: { metricsAddress: '127.0.0.1:0' }, devices: [{ name: 'mo', target: 'loop', file: img }] }));
  const svc = spawn(process.execPath, ['dist/daemon/cli.js', 'serve', '--config', cfg, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  svc.stdout.on('data', (d) => (out += d));
  const records = () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const t0 = Date.now();
  while (!records().some((r) => r.event === 'service_ready')) {
    if (Date.now() - t0 > 120_000 || svc.exitCode !== null) throw new Error(`the service did not come up:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const devId = records().find((r) => r.event === 'live').devId;
  const url = `http://${records().find((r) => r.event === 'metrics_listening').address}/metrics`;
  const dev = `/dev/ublkb${devId}`;
  log(`device ${dev}, metrics ${url}; ${ROUNDS} x (no scrape, scrape every 1 s), ${SECONDS} s each, ${BS} randread QD${IODEPTH}`);

  // CPU time (ms) of a process, from /proc: what the scrapes cost, whatever the IOPS noise
  const tck = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  const cpuMs = (pid) => {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / tck;
  };
  const plain = [];
  const scraped = [];
  const cpu = { plain: [], scraped: [] };
  let scrapes = 0;
  let bytes = 0;
  try {
    for (let i = 0; i < ROUNDS; i++) {
      // order alternates between pairs too (A B, B A, ...), so neither side always goes first
      for (const withScrape of i % 2 === 0 ? [false, true] : [true, false]) {
        let timer;
        if (withScrape) {
          timer = setInterval(() => scrape(url).then((n) => { scrapes++; bytes = n; }), 1000);
        }
        const c0 = cpuMs(svc.pid);
        const s0 = process.cpuUsage();
        const w0 = Date.now();
        const iops = await fio(dev);
        if (timer) clearInterval(timer);
        const wall = (Date.now() - w0) / 1000;
        const s1 = process.cpuUsage(s0);
        // the service process (queue threads + main thread) and this scraper, in % of one CPU
        const svcPct = ((cpuMs(svc.pid) - c0) / 10) / wall;
        const scraperPct = ((s1.user + s1.system) / 1e4) / wall;
        (withScrape ? scraped : plain).push(iops);
        (withScrape ? cpu.scraped : cpu.plain).push({ service: svcPct, scraper: scraperPct });
        log(`round ${i + 1} ${withScrape ? 'scraped' : 'plain  '}: ${iops.toFixed(0)} IOPS; service ${svcPct.toFixed(1)}% CPU, scraper ${scraperPct.toFixed(1)}%`);
      }
    }
  } finally {
    svc.kill('SIGTERM');
    await new Promise((r) => svc.once('exit', r));
    fs.rmSync(work, { recursive: true, force: true });
  }
  const a = median(plain);
  const b = median(scraped);
  const delta = b / a - 1;
  const ratios = plain.map((p, i) => scraped[i] / p);
  const result = { bs: BS, iodepth: IODEPTH, seconds: SECONDS, rounds: ROUNDS, plain, scraped, pairRatios: ratios, cpu, medianPlain: a, medianScraped: b, delta, scrapes, exposition_bytes: bytes, limit: LIMIT, pass: Math.abs(delta) <= LIMIT };
  log(`median IOPS: plain ${a.toFixed(0)}, scraped ${b.toFixed(0)}: ${(delta * 100).toFixed(2)}% (${scrapes} scrapes of ${bytes} bytes) → ${result.pass ? 'PASS' : 'FAIL'} (limit ±${LIMIT * 100}%)`);
  log(`per-pair ratios scraped/plain: ${ratios.map((r) => r.toFixed(3)).join(' ')}`);
  if (process.env.OUT) fs.writeFileSync(process.env.OUT, JSON.stringify(result, null, 2));
  process.exitCode = result.pass ? 0 : 1;
}

main().catch((e) => {
  console.error(`metrics-overhead: ${e.stack ?? e}`);
  process.exit(2);
});
