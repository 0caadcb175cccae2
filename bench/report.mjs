// Turns what bench/run.mjs measured into the committed result: ratios against the kernel loop
// driver, the issue's goals (PASS/FAIL), and a Markdown rendering.
//   node bench/report.mjs RESULT.json   re-renders RESULT.md next to it (and prints it)
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ROWS, JOBS, CHECKS, METRIC_LABEL as metricOf, refOf } from './jobs.mjs';

/** The median of a non-empty list of numbers (also bench/run.mjs's, for the rounds' figures). */
export function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * `a` ÷ `b` in `metric`. With several rounds and res.config.ratios 'per-round': the median of the
 * rounds' own ratios. The host's speed drifts (the same job on the same row moved 2x within minutes
 * on a shared host, 2026-12-02), while the rows of one round run back to back, so a round's ratio
 * carries less of the drift than the medians of all rounds divided. Older results divide medians.
 */
function ratio(res, a, b, metric) {
  const byRound = new Map((b.rounds ?? []).filter((r) => ok(r) && r[metric] > 0).map((r) => [r.round, r[metric]]));
  if (res.config.ratios === 'per-round' && byRound.size) {
    const rs = (a.rounds ?? []).filter((r) => ok(r) && byRound.has(r.round)).map((r) => r[metric] / byRound.get(r.round));
    if (rs.length) return median(rs);
  }
  return a[metric] / b[metric];
}

/** Adds ratios and checks to a result (in place) and returns it. */
export function analyse(res) {
  for (const [rn, row] of Object.entries(res.rows)) {
    const base = res.rows[refOf(rn)];
    for (const [jn, rec] of Object.entries(row.jobs || {})) {
      const b = base?.jobs?.[jn];
      rec.ratio_vs_loop = ok(rec) && ok(b) && b.iops > 0 ? ratio(res, rec, b, 'iops') : null;
    }
  }
  // A check against an opt-in row (it only runs when asked for) is left out when that row did not
  // run, and so is an extra check (not one of the issue's goals) whose own row did not run.
  const optIn = (name) => ROWS.find((r) => r.name === name)?.optIn;
  res.checks = CHECKS.filter((c) => (res.rows[c.ref] || !optIn(c.ref)) && (res.rows[c.row] || !c.extra)).map((c) => {
    const a = res.rows[c.row]?.jobs?.[c.job];
    const r = res.rows[c.ref]?.jobs?.[c.job];
    const out = { id: c.id, text: c.text, row: c.row, ref: c.ref, job: c.job, metric: c.metric, min: c.min };
    if (!ok(a) || !ok(r) || !(r[c.metric] > 0)) {
      out.status = 'n/a';
      out.why = `${!ok(a) ? c.row : c.ref} ${c.job} not measured`;
    } else {
      out.value = ratio(res, a, r, c.metric);
      out.status = out.value >= c.min ? 'PASS' : 'FAIL';
    }
    return out;
  });
  return res;
}

function ok(rec) { return rec && !rec.error && typeof rec.iops === 'number'; }

const f0 = (x) => (x == null || !Number.isFinite(x) ? '-' : Math.round(x).toString());
const f1 = (x) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(1));
const f2 = (x) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(2));
const lat = (x) => (x == null || !Number.isFinite(x) ? '-' : x < 100 ? x.toFixed(1) : Math.round(x).toString());

function rowNames(res) { return ROWS.map((r) => r.name).filter((n) => res.rows[n]); }
function jobNames(res) { return JOBS.map((j) => j.name).filter((n) => res.config.jobs.includes(n)); }

/** A table as lines; `md` = Markdown pipes, else aligned plain text. First column left-aligned. */
function table(head, body, md) {
  if (md) {
    return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ':---' : '---:')).join('|')}|`, ...body.map((r) => `| ${r.join(' | ')} |`)];
  }
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)];
}

function cell(row, jn) {
  if (row.status !== 'ok') return null;
  return row.jobs?.[jn];
}

/** The per-job tables, the ratio matrix and the checks, as lines. */
export function tables(res, md) {
  const out = [];
  const rows = rowNames(res);
  const jobs = jobNames(res);
  const h = (s) => out.push(md ? `### ${s}` : `== ${s}`, '');
  for (const jn of jobs) {
    h(jn);
    const body = rows.map((rn) => {
      const row = res.rows[rn];
      const rec = cell(row, jn);
      if (!rec) return [rn, row.status === 'ok' ? 'not run' : row.status, '', '', '', '', '', '', '', ''];
      if (rec.error) return [rn, 'ERROR', '', '', '', '', '', '', '', ''];
      return [rn, f0(rec.iops) + (rec.contended ? '†' : ''), f1(rec.mibps), lat(rec.clat_mean_us), lat(rec.clat_p99_us),
        rec.srv_cpu_us_per_io != null ? f1(rec.srv_cpu_us_per_io) : '', rec.srv_js_cpu_pct != null ? f1(rec.srv_js_cpu_pct) : '',
        rec.guest_cpu_us_per_io != null ? f1(rec.guest_cpu_us_per_io) : '', rec.guest_busy_pct != null ? f1(rec.guest_busy_pct) : '', f2(rec.ratio_vs_loop)];
    });
    out.push(...table(['row', 'IOPS', 'MiB/s', 'clat mean µs', 'clat p99 µs', 'server CPU µs/IO', 'of it JS %', 'guest CPU µs/IO', 'guest busy %', '× ref'], body, md), '');
  }
  h('IOPS (= MiB/s) as a multiple of the row\'s reference (kernel-loop; nbd rows: the kernel nbd driver with as many connections; js rows: the native null target)');
  const body = rows.map((rn) => [rn, ...jobs.map((jn) => {
    const row = res.rows[rn];
    const rec = cell(row, jn);
    if (!rec) return row.status === 'ok' ? '' : row.status;
    return rec.error ? 'ERR' : f2(rec.ratio_vs_loop) + (rec.contended ? '†' : '');
  })]);
  out.push(...table(['row', ...jobs], body, md), '');
  if (rows.some((rn) => Object.values(res.rows[rn].jobs || {}).some((j) => j.contended))) {
    out.push(`† measured while the host was busy (${res.host?.contention?.rule ?? 'other load on the host'}): low and noisy`, '');
  }
  h('Goals from the issue (targets, not test assertions)');
  for (const c of res.checks) {
    const v = c.status === 'n/a' ? `n/a (${c.why})` : `${f2(c.value)}x`;
    out.push(`${md ? '- ' : ''}${c.status.padEnd(md ? 0 : 4)} ${c.text}: ${md && c.status !== 'n/a' ? `**${v}**` : v}`);
  }
  out.push('');
  return out;
}

/** The whole Markdown document. */
export function markdown(res) {
  const g = res.guest;
  const L = [];
  L.push(`# ublk-ts benchmark ${res.name}`, '');
  L.push(`- date: ${res.date} (${res.started} – ${res.finished ?? 'unfinished'})`);
  L.push(`- command: \`${res.command}\``);
  L.push(`- wall time: ${f0(res.wall_s)} s (guest driver ${f0(res.elapsed_s)} s)`);
  L.push(`- guest kernel: ${g.kernel}${g.in_vm ? ` in QEMU TCG (${res.host.qemu}), ${g.vcpus} vCPUs, ${g.mem_mib} MiB` : ` (on the host, ${g.vcpus} CPUs)`}`);
  L.push(`- host CPU: ${res.host.cpu_model} (${res.host.cpus} CPUs), host kernel ${res.host.kernel}`);
  L.push(`- ${g.fio}, node ${g.node}, ${g.losetup}; ${g.ublk_features}`);
  const mib = res.backing.bytes / 1048576;
  const what = res.backing.fill === 'none' // BENCH_BACKING=nullb: a device, no data
    ? `backing: ${res.backing.path}, ${mib} MiB, ${res.backing.fs}`
    : `backing file: ${mib} MiB of random data (${res.backing.fill}) on the guest's ${res.backing.fs} ${res.backing.path}`;
  L.push(`- ${what}; raw-file, kernel-loop and the ublk loop rows all use it; null rows are ${mib} MiB too`);
  L.push(`- fio: \`fio ${res.fio_args}\` (runtime ${res.config.runtime} s after ${res.config.ramp} s ramp)${res.config.rounds > 1 ? `; every row × job ran ${res.config.rounds} times, interleaved (odd rounds in reverse row order): the tables show medians${res.config.ratios === 'per-round' ? ', and every ratio (× loop, checks) is the median of the rounds\' own ratios (a row ÷ its reference in the same round)' : ''}` : ''}`);
  const anyU = rowNames(res).map((n) => res.rows[n]).find((r) => r.info?.queue_depth);
  if (anyU) L.push(`- ublk devices: ${anyU.info.nr_hw_queues} queue, depth ${anyU.info.queue_depth}, max request ${anyU.info.max_rq_size} B (CLI defaults)`);
  L.push('- server CPU µs/IO: Δ(utime+stime) summed over /proc/PID/task/*/stat of the server process across the fio run, ÷ I/Os the ublk disk saw in that window (/sys/block/ublkbN/stat completions + merges, ramp included)');
  L.push('- guest CPU µs/IO and guest busy %: the whole guest\'s busy time (/proc/stat, all CPUs, idle and iowait excluded: fio, the server, an NBD server, kernel threads, softirq) across the fio run, ÷ the same I/Os; busy % of all vCPUs. Comparable between a server in the kernel and one in a process');
  const hc = res.host?.contention;
  if (hc) L.push(`- host load from others while measuring: mean ${hc.foreign_cpu_pct_mean}% / max ${hc.foreign_cpu_pct_max}% of a CPU, up to ${hc.foreign_qemu_max} other QEMU guest(s); ${hc.contended_jobs} contended job(s) (marked †); waited ${hc.waited_s} s for a quiet host`);
  L.push('- one boot; every device set up first, then each job run on every row back to back; the same job moves ~30% between boots (more on a busy host): compare rows within this file, not across files', '');
  L.push('## Rows', '');
  for (const rn of rowNames(res)) {
    const r = res.rows[rn];
    const def = ROWS.find((x) => x.name === rn);
    let d = def.what ?? '';
    if (r.info?.cli) d = `\`${r.info.cli.replace(res.backing.path, 'FILE')}\` → data mode ${r.info.data_mode}, flags ${r.info.flags}`;
    if (r.info?.dio != null) d += ` (${r.info.dev}, dio=${r.info.dio})`;
    L.push(`- **${rn}**: ${r.status === 'ok' ? d : `${r.status}: ${r.reason}`}`);
  }
  L.push('', '## Results', '');
  L.push(...tables(res, true));
  const uRows = rowNames(res).filter((rn) => ['ublk', 'ublksrv'].includes(res.rows[rn].kind) && res.rows[rn].status === 'ok');
  if (uRows.length) {
    L.push('### Server CPU seconds by thread over each fio run (queue:* = the queue thread, iou-wrk-N = io_uring workers)', '');
    const jobs = jobNames(res);
    L.push(...table(['row', ...jobs], uRows.map((rn) => [rn, ...jobs.map((jn) => {
      const t = res.rows[rn].jobs?.[jn]?.srv_cpu_by_thread;
      return t ? Object.entries(t).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ') : '';
    })]), true), '');
  }
  if (res.errors?.length) L.push('## Errors', '', ...res.errors.map((e) => `- ${e}`), '');
  if (res.dmesg?.length) L.push('## Kernel messages during the run', '', '```', ...res.dmesg, '```', '');
  return L.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) { console.error('usage: node bench/report.mjs RESULT.json'); process.exit(2); }
  const res = analyse(JSON.parse(fs.readFileSync(file, 'utf8')));
  const md = markdown(res);
  fs.writeFileSync(file.replace(/\.json$/, '.md'), md);
  process.stdout.write(md);
}
