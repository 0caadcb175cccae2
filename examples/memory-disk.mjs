// A sparse in-memory disk: `ublk-ts add -t js --module examples/memory-disk.mjs --set size=1G`.
// Only the 64 KiB chunks that were written take memory; the rest reads as zeros.
const CHUNK = 64 * 1024;

export default function memoryDisk(options) {
  const size = parseSize(options.size ?? '256M');
  const chunks = new Map();
  const zero = Buffer.alloc(CHUNK);

  // calls fn(chunk index, offset in the chunk, length, offset in the request) for each piece
  function pieces(offset, length, fn) {
    for (let done = 0; done < length; ) {
      const at = offset + done;
      const i = Math.floor(at / CHUNK);
      const o = at % CHUNK;
      const n = Math.min(CHUNK - o, length - done);
      fn(i, o, n, done);
      done += n;
    }
  }

  return {
    size,
    read(offset, length, into) {
      pieces(offset, length, (i, o, n, at) => (chunks.get(i) ?? zero).copy(into, at, o, o + n));
    },
    write(offset, data) {
      pieces(offset, data.length, (i, o, n, at) => {
        let c = chunks.get(i);
        if (!c) chunks.set(i, (c = Buffer.alloc(CHUNK)));
        data.copy(c, o, at, at + n);
      });
    },
    discard(offset, length) {
      pieces(offset, length, (i, o, n) => {
        if (n === CHUNK) chunks.delete(i);
        else chunks.get(i)?.fill(0, o, o + n);
      });
    },
    writeZeroes(offset, length) {
      this.discard(offset, length);
    },
  };
}

function parseSize(s) {
  const m = /^(\d+)([KMGT]?)$/i.exec(String(s).trim());
  if (!m) throw new Error(`size must be bytes or K/M/G/T, not "${s}"`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}
