// The nbd target: a disk served by any NBD server (nbdkit and its plugins, qemu-nbd, a storage
// system's gateway) over TCP or a unix socket, one connection per queue, on the queue threads'
// rings (native/targets/nbd.cc). What the disk is (size, read-only, block sizes, largest request,
// flush / FUA / discard / write-zeroes, several connections or one) comes from the server: the
// native half's probe asks it (fixed newstyle handshake, NBD_OPT_GO with NBD_INFO_BLOCK_SIZE).
// ublksrv's spellings (--export_name, --send_zc, --read_only) are accepted.

import type { UblkParams } from '../shared/binding';
import { UsageError } from '../shared/errors';
import { ATTR } from '../shared/kernel';
import { kinds } from '../shared/options';
import { basicParams, defineTarget, type TargetDescription } from '../shared/target';

/** NBD transmission flags (NBD_FLAG_*), bit numbers from the protocol. */
const TX = { READ_ONLY: 1 << 1, SEND_FLUSH: 1 << 2, SEND_FUA: 1 << 3, ROTATIONAL: 1 << 4, SEND_TRIM: 1 << 5, SEND_WRITE_ZEROES: 1 << 6, CAN_MULTI_CONN: 1 << 8 };

/** What the server said about its export (TargetOps::probe of nbd.cc). */
export interface NbdFacts {
  size: number;
  flags: number;
  /** 0: the server did not say */
  minBlock: number;
  preferredBlock: number;
  maxBlock: number;
}

const OPTIONS = {
  host: {
    cli: { long: '--host', arg: '<host>' },
    description: 'the NBD server, by name or address (with --port); or --unix',
    kind: kinds.text('^[A-Za-z0-9_.:%-]{1,253}$', 'must be a host name or an IP address'),
  },
  port: {
    cli: { long: '--port', arg: '<port>' },
    description: 'TCP port of the NBD server (default: 10809)',
    kind: kinds.int(1, 65535),
    default: 10809,
  },
  unix: {
    cli: { long: '--unix', arg: '<socket>' },
    description: "the NBD server's unix socket (instead of --host)",
    kind: kinds.path(),
  },
  export: {
    cli: { long: '--name', aliases: ['--export_name', '--export-name'], arg: '<export>' },
    description: 'the export to use (default: the server\'s default export, "")',
    kind: kinds.text('^[^\\u0000]{0,4096}$', 'must be an export name'),
    default: '',
  },
  reconnectTimeout: {
    cli: { long: '--reconnect-timeout', arg: '<seconds>' },
    description:
      'with -r 1: for how long a lost connection is tried again (backoff up to 2 s) while I/O waits, before the disk is left QUIESCED for `recover` (default: 60)',
    kind: kinds.int(1, 86400),
    default: 60,
  },
  ioTimeout: {
    cli: { long: '--io-timeout', arg: '<seconds>' },
    description: 'a request the server has not answered after this long ends the connection (0: never; default: 30)',
    kind: kinds.int(0, 86400),
    default: 30,
  },
  sendZc: {
    cli: { long: '--send_zc', aliases: ['--send-zc'] },
    description: "copy mode: send write data with SEND_ZC from the tag's buffer instead of copying it into the socket (-z always sends the request's own pages)",
    kind: kinds.switch(),
    default: false,
  },
};

function problemsOf(o: { host?: string; unix?: string }): string[] {
  if (o.host === undefined && o.unix === undefined) return ['-t nbd needs --host HOST or --unix SOCKET'];
  if (o.host !== undefined && o.unix !== undefined) return ['--host and --unix cannot be used together'];
  return [];
}

export const nbdTarget = defineTarget({
  name: 'nbd',
  summary: 'a disk served by an NBD server (TCP or unix socket)',
  options: OPTIONS,
  capabilities: {
    dataModes: ['copy', 'zc_auto', 'zc_explicit'],
    whyNot: "nbd sends from the tag's buffer or the request's own pages (copy or -z)",
    flush: true,
    discard: true,
    writeZeroes: true,
    fua: true,
  },

  check(o, common, label) {
    const out = problemsOf(o);
    // one connection per queue, served by one thread
    if (common.threadsPerQueue > 1) out.push(`${label('threadsPerQueue')} above 1: an nbd queue's connection is served by one thread`);
    // SEND_ZC (the only send from registered pages) is refused by unix sockets (EOPNOTSUPP)
    const zcWhy = 'a unix socket cannot send from pinned pages (SEND_ZC is for TCP): use --host, or copy mode';
    if (o.unix !== undefined && common.zeroCopy !== 'off') out.push(`${label('zeroCopy')} with --unix: ${zcWhy}`);
    else if (o.unix !== undefined && o.sendZc) out.push(`${label('sendZc')} with --unix: ${zcWhy}`);
    return out;
  },

  resources: (o) => (o.unix ? [{ what: 'NBD socket', path: o.unix, exclusive: false }] : []),

  validate: (o) => problemsOf(o),

  async describe(o, common, ctx = {}): Promise<TargetDescription> {
    const p = problemsOf(o);
    if (p.length > 0) throw new UsageError(p);
    if (!ctx.probe) throw new Error('the nbd target needs its native probe');
    const where = o.unix ?? `${o.host}:${o.port}`;
    const options = {
      ...(o.unix ? { unix: o.unix } : { host: o.host as string, port: o.port }),
      name: o.export,
      reconnect: common.recovery ? 1 : 0,
      reconnectTimeoutMs: o.reconnectTimeout * 1000,
      ioTimeoutMs: o.ioTimeout * 1000,
      sendZc: o.sendZc,
    };
    let facts: NbdFacts;
    try {
      facts = (await ctx.probe(options)) as unknown as NbdFacts;
    } catch (err) {
      // the server's own words (unknown export, refused option, not NBD at all): bad input
      throw new UsageError(`NBD server ${where}${o.export ? `, export "${o.export}"` : ''}: ${(err as Error).message.replace(/^probe nbd failed: /, '')}`);
    }
    const notes: string[] = [];
    const lbs = Math.max(common.logicalBlockSize, facts.minBlock || 0);
    if (lbs !== common.logicalBlockSize) notes.push(`the server's smallest block is ${facts.minBlock} bytes: the disk's logical block size is ${lbs}`);
    if (lbs > 4096 || (lbs & (lbs - 1)) !== 0) throw new UsageError(`NBD server ${where}: its smallest block, ${facts.minBlock} bytes, is not a block size a disk can have`);
    if (facts.size <= 0) throw new UsageError(`NBD server ${where}: the export is empty`);
    if (facts.size % lbs !== 0) {
      throw new UsageError(`NBD server ${where}: the export's size, ${facts.size} bytes, is not a multiple of the block size ${lbs}`);
    }
    const readOnly = common.readOnly || (facts.flags & TX.READ_ONLY) !== 0;
    if (readOnly && !common.readOnly) notes.push(`the server exports ${where} read-only: the disk is read-only`);
    const multiConn = (facts.flags & TX.CAN_MULTI_CONN) !== 0;
    if (!multiConn && common.queues > 1) {
      notes.push(`the server does not allow several connections (no NBD_FLAG_CAN_MULTI_CONN): one queue, not ${common.queues}`);
    }
    const maxBytes = Math.min(common.maxIoBufBytes, facts.maxBlock || common.maxIoBufBytes);
    const attrs =
      (readOnly ? ATTR.READ_ONLY : 0) |
      (facts.flags & TX.SEND_FLUSH ? ATTR.VOLATILE_CACHE : 0) |
      (facts.flags & TX.SEND_FUA ? ATTR.FUA : 0) |
      (facts.flags & TX.ROTATIONAL ? ATTR.ROTATIONAL : 0);
    const params: UblkParams = { basic: basicParams({ ...common, logicalBlockSize: lbs, maxIoBufBytes: maxBytes }, facts.size, attrs) };
    params.basic.physicalBsShift = Math.max(params.basic.logicalBsShift, Math.log2(Math.max(lbs, facts.preferredBlock || 4096)) | 0);
    const trim = (facts.flags & TX.SEND_TRIM) !== 0;
    const zeroes = (facts.flags & TX.SEND_WRITE_ZEROES) !== 0;
    if (!readOnly && (trim || zeroes)) {
      const max = maxBytes >>> 9;
      params.discard = {
        discardAlignment: 0,
        discardGranularity: Math.max(lbs, facts.preferredBlock || 4096),
        maxDiscardSectors: trim ? max : 0,
        maxWriteZeroesSectors: zeroes ? max : 0,
        maxDiscardSegments: 1,
      };
    }
    return {
      serve: { name: 'nbd', options },
      readOnly,
      params,
      json: {
        name: 'nbd',
        type: 0,
        server: where,
        export: o.export,
        dev_size: facts.size,
        nbd_flags: facts.flags,
        block_size: lbs,
        max_request: maxBytes,
        read_only: readOnly ? 1 : 0,
      },
      sizeBytes: facts.size,
      notes,
      queuesKey: 'connections',
      ...(multiConn ? {} : { maxQueues: 1 }),
    };
  },
});
