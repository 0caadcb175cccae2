// The loop target: a disk backed by a regular file or a block device, served with O_DIRECT
// (or through the page cache with --buffered_io) by the native queue threads
// (native/targets/loop.cc).

import type { UblkParams } from '../shared/binding';
import type { CommonSpec } from '../shared/add-options';
import { UsageError } from '../shared/errors';
import { ATTR } from '../shared/kernel';
import { kinds, type ValuesOf } from '../shared/options';
import { basicParams, defineTarget, realFs, type TargetDescription, type TargetFs } from '../shared/target';

const OPTIONS = {
  file: {
    cli: { short: '-f', long: '--file', arg: '<file>' },
    description: 'backing file or block device (in a config file, a relative path is relative to the file)',
    kind: kinds.path(),
  },
  bufferedIo: {
    cli: { long: '--buffered_io', aliases: ['--buffered-io'] },
    description: 'use the page cache instead of O_DIRECT',
    kind: kinds.switch(),
    default: false,
  },
  offset: {
    cli: { short: '-o', long: '--offset', arg: '<sectors>' },
    description: 'where the disk starts in the file, in 512-byte sectors (default: 0)',
    kind: { ...kinds.int(0, Math.floor(Number.MAX_SAFE_INTEGER / 512)), expect: 'must be a whole number of 512-byte sectors' },
    default: 0,
  },
  size: {
    cli: { long: '--size', arg: '<bytes>' },
    description: "disk size in bytes, K/M/G/T suffixes allowed (default: the file's size after the offset)",
    kind: kinds.bytes(1, Number.MAX_SAFE_INTEGER, undefined, 'must be a whole number of bytes greater than 0 (K, M, G, T suffixes allowed)'),
  },
  writeSubmit: {
    cli: { long: '--write-submit', arg: '<auto|alone|batched>' },
    description:
      'how backing writes are submitted: alone (one system call each: a RAM-backed file), batched (with the rest of a pass: a disk), auto watches which completes inline (default: auto; bench/README.md)',
    kind: kinds.oneOf(['auto', 'alone', 'batched'] as const),
    default: 'auto',
  },
  mtimeStamp: {
    cli: { long: '--mtime-stamp', arg: '<on|off>' },
    description:
      "stamp the backing file's mtime once per clock tick so writes need not (off: every write updates it, and many go to io-wq; default: on)",
    kind: kinds.oneOf(['on', 'off'] as const),
    default: 'on',
  },
};

type LoopOptions = ValuesOf<typeof OPTIONS>;

/** UINT_MAX >> 9, as ublksrv's loop: the largest discard the block layer may send in one go. */
const MAX_DISCARD_SECTORS = 0xffffffff >>> 9;
const DISCARD_GRANULARITY = 4096;

interface Backing {
  problems: string[];
  notes: string[];
  kind: 'file' | 'block';
  /** bytes of the file or device */
  total: number;
  /** bytes the disk exposes */
  size: number;
  readOnly: boolean;
  canDiscard: boolean;
  /** DMA alignment mask O_DIRECT on the backing store needs from request buffers (511, 4095...) */
  dmaMask: number;
}

function sysBlock(fsx: TargetFs, major: number, minor: number, attr: string): string | undefined {
  // /sys/dev/block/M:m links to the device's directory; a partition's queue/ is in its parent.
  const base = `/sys/dev/block/${major}:${minor}`;
  return fsx.readText(`${base}/${attr}`) ?? (attr.startsWith('queue/') ? fsx.readText(`${base}/../${attr}`) : undefined);
}

function sysNumber(fsx: TargetFs, major: number, minor: number, attr: string): number | undefined {
  const t = sysBlock(fsx, major, minor, attr);
  if (t === undefined || !/^\s*\d+\s*$/.test(t)) return undefined;
  return Number(t.trim());
}

function inspect(o: LoopOptions, common: CommonSpec, fsx: TargetFs): Backing {
  const b: Backing = { problems: [], notes: [], kind: 'file', total: 0, size: 0, readOnly: common.readOnly, canDiscard: false, dmaMask: 511 };
  const file = o.file;
  if (!file) {
    b.problems.push('-t loop needs -f/--file FILE');
    return b;
  }
  const lbs = common.logicalBlockSize;

  let st;
  try {
    st = fsx.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    b.problems.push(code === 'ENOENT' ? `-f ${file}: no such file or directory` : `-f ${file}: cannot stat (${code})`);
    return b;
  }
  if (st.kind === 'directory') {
    b.problems.push(`-f ${file}: is a directory`);
    return b;
  }
  if (st.kind === 'other') {
    b.problems.push(`-f ${file}: not a regular file or block device`);
    return b;
  }
  b.kind = st.kind;

  // Open it the way the server will: read-write unless asked for read-only; a file we may only
  // read becomes a read-only disk rather than an error.
  if (!common.readOnly) {
    const rw = fsx.tryOpen(file, true);
    if (rw !== undefined) {
      const ro = fsx.tryOpen(file, false);
      if (ro !== undefined) {
        b.problems.push(`-f ${file}: cannot open for reading (${ro})`);
        return b;
      }
      b.readOnly = true;
      b.notes.push(`${file} is not writable (${rw}): the disk is read-only`);
    }
  } else {
    const ro = fsx.tryOpen(file, false);
    if (ro !== undefined) {
      b.problems.push(`-f ${file}: cannot open for reading (${ro})`);
      return b;
    }
  }

  // O_DIRECT on the backing store needs offsets and lengths in its logical block size and buffers
  // at its DMA alignment: the block device itself, or the device under the file's filesystem
  // (tmpfs and other device-less filesystems have no such limit beyond 512).
  const [dm, dn, under] =
    st.kind === 'block' ? [st.major, st.minor, ''] : [st.fsMajor ?? 0, st.fsMinor ?? 0, ` (on device ${st.fsMajor}:${st.fsMinor})`];
  if (dm !== 0) {
    const devLbs = sysNumber(fsx, dm, dn, 'queue/logical_block_size');
    if (devLbs !== undefined && devLbs > lbs && !o.bufferedIo) {
      b.problems.push(`-f ${file}${under}: its logical block size is ${devLbs}, larger than ${lbs}; use -b ${devLbs} or --buffered_io`);
    }
    // With zero copy the request's own pages reach that O_DIRECT I/O: the disk must ask the block
    // layer for buffers aligned as the backing device needs them.
    const dma = sysNumber(fsx, dm, dn, 'queue/dma_alignment');
    b.dmaMask = Math.max(511, (devLbs ?? 512) - 1, dma ?? 0);
  }

  if (st.kind === 'block') {
    const sectors = sysNumber(fsx, st.major, st.minor, 'size');
    if (sectors === undefined) {
      b.problems.push(`-f ${file}: cannot read its size from /sys/dev/block/${st.major}:${st.minor}/size`);
      return b;
    }
    b.total = sectors * 512;
    b.canDiscard = (sysNumber(fsx, st.major, st.minor, 'queue/discard_max_bytes') ?? 0) > 0;
  } else {
    b.total = st.size;
    b.canDiscard = true; // fallocate(PUNCH_HOLE)
  }

  if (b.total === 0) {
    b.problems.push(`-f ${file}: is empty`);
    return b;
  }
  const offsetBytes = o.offset * 512;
  if (offsetBytes >= b.total) {
    b.problems.push(
      `--offset ${o.offset} sectors (${offsetBytes} bytes) is at or beyond the end of ${file} (${b.total} bytes)`,
    );
    return b;
  }
  const avail = b.total - offsetBytes;
  if (o.size !== undefined) {
    if (o.size > avail) {
      b.problems.push(`--size ${o.size} is larger than the ${avail} bytes of ${file} after the offset`);
    }
    b.size = o.size;
  } else {
    if (avail % lbs !== 0) {
      b.problems.push(
        `-f ${file}: ${avail} bytes (after the offset) is not a multiple of the logical block size ${lbs}; use --size to trim it`,
      );
    }
    b.size = avail;
  }
  if (b.readOnly) b.canDiscard = false;
  return b;
}

export const loopTarget = defineTarget({
  name: 'loop',
  summary: 'a disk backed by a file or block device',
  options: OPTIONS,
  required: ['file'],
  capabilities: { dataModes: ['copy', 'user_copy', 'zc_auto', 'zc_explicit'], flush: true, discard: true, writeZeroes: true, fua: true },

  check(o, common, label) {
    const out: string[] = [];
    // O_DIRECT needs every file offset aligned to the logical block size
    if (!o.bufferedIo && (o.offset * 512) % common.logicalBlockSize !== 0) {
      out.push(
        `${label('offset')} ${o.offset} sectors (${o.offset * 512} bytes) is not a multiple of the logical block size ${common.logicalBlockSize}; align it or use ${label('bufferedIo')}`,
      );
    }
    if (o.size !== undefined && o.size % common.logicalBlockSize !== 0) {
      out.push(`${label('size')} ${o.size} is not a multiple of the logical block size ${common.logicalBlockSize}`);
    }
    return out;
  },

  resources(o, common) {
    return o.file ? [{ what: 'backing file', path: o.file, exclusive: !common.readOnly }] : [];
  },

  validate(o, common, fsx = realFs) {
    return inspect(o, common, fsx).problems;
  },

  describe(o, common, ctx = {}): TargetDescription {
    const b = inspect(o, common, ctx.fs ?? realFs);
    if (b.problems.length > 0) throw new UsageError(b.problems);
    const zeroCopy = common.zeroCopy !== 'off';

    const params: UblkParams = {
      basic: basicParams(common, b.size, ATTR.VOLATILE_CACHE | ATTR.FUA | (b.readOnly ? ATTR.READ_ONLY : 0)),
    };
    if (b.canDiscard) {
      params.discard = {
        discardAlignment: 0,
        discardGranularity: DISCARD_GRANULARITY,
        maxDiscardSectors: MAX_DISCARD_SECTORS,
        maxWriteZeroesSectors: MAX_DISCARD_SECTORS,
        maxDiscardSegments: 1,
      };
    }
    // With zero copy the request pages go straight to the backing file's O_DIRECT I/O: the block
    // layer must keep every buffer segment aligned as the backing device needs (511 for 512-byte
    // devices and tmpfs, as ublksrv's loop; 4095 under a 4K-sector device). No segment limits
    // are needed beyond that: a fixed buffer takes the request's whole bvec, whatever its segment
    // count, and the backing device's own block layer splits the I/O to its limits; what one
    // READ/WRITE_FIXED does not finish is resumed at the offset it reached (data_path.cc).
    if (zeroCopy) params.dma = { alignment: b.dmaMask };

    return {
      serve: {
        name: 'loop',
        options: {
          path: o.file ?? '',
          directIo: !o.bufferedIo,
          readOnly: b.readOnly,
          offset: o.offset * 512,
          writeSubmit: o.writeSubmit,
          mtimeStamp: o.mtimeStamp === 'on',
        },
      },
      readOnly: b.readOnly,
      params,
      json: {
        name: 'loop',
        type: 0,
        backing_file: o.file ?? '',
        dev_size: b.size,
        direct_io: o.bufferedIo ? 0 : 1,
        offset: o.offset,
        read_only: b.readOnly ? 1 : 0,
      },
      sizeBytes: b.size,
      notes: b.notes,
    };
  },
});
