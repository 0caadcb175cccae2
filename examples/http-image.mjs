// A read-only disk image served by any HTTP server that answers range requests, with a local block
// cache: boot or mount an image straight from a web server.
//   ublk-ts add -t js --module examples/http-image.mjs --set url=http://host/disk.img [--set cache=64M]
// Reads fetch whole 64 KiB blocks (Range: bytes=...), keep the most recently used ones up to
// `cache` bytes, and share a fetch when several requests want the same block.
const BLOCK = 64 * 1024;

export default async function httpImage(options) {
  if (!options.url) throw new Error('http-image needs --set url=http://...');
  const url = options.url;
  const cacheBlocks = Math.max(1, Math.floor(parseSize(options.cache ?? '64M') / BLOCK));
  const head = await fetch(url, { method: 'HEAD' });
  if (!head.ok) throw new Error(`HEAD ${url}: ${head.status} ${head.statusText}`);
  const size = Number(head.headers.get('content-length'));
  if (!Number.isSafeInteger(size) || size <= 0) throw new Error(`${url}: no Content-Length`);
  if (!/bytes/.test(head.headers.get('accept-ranges') ?? '')) throw new Error(`${url}: the server does not answer range requests`);
  if (size % 512 !== 0) throw new Error(`${url}: ${size} bytes is not a whole number of 512-byte sectors`);

  const cache = new Map(); // block index -> Buffer, in use order (oldest first)
  const fetching = new Map(); // block index -> Promise<Buffer>

  async function fetchBlock(i) {
    const from = i * BLOCK;
    const to = Math.min(size, from + BLOCK) - 1;
    const r = await fetch(url, { headers: { Range: `bytes=${from}-${to}` } });
    if (r.status !== 206) throw Object.assign(new Error(`GET ${url} bytes ${from}-${to}: ${r.status}`), { code: 'EIO' });
    const b = Buffer.from(await r.arrayBuffer());
    if (b.length !== to - from + 1) throw Object.assign(new Error(`GET ${url}: short range`), { code: 'EIO' });
    return b;
  }

  function block(i) {
    const hit = cache.get(i);
    if (hit) {
      cache.delete(i);
      cache.set(i, hit);
      return hit;
    }
    let p = fetching.get(i);
    if (!p) {
      p = fetchBlock(i).then(
        (b) => {
          fetching.delete(i);
          cache.set(i, b);
          if (cache.size > cacheBlocks) cache.delete(cache.keys().next().value);
          return b;
        },
        (err) => {
          fetching.delete(i);
          throw err;
        },
      );
      fetching.set(i, p);
    }
    return p;
  }

  return {
    size,
    readOnly: true,
    async read(offset, length, into) {
      const first = Math.floor(offset / BLOCK);
      const last = Math.floor((offset + length - 1) / BLOCK);
      const blocks = await Promise.all(Array.from({ length: last - first + 1 }, (_, k) => block(first + k)));
      blocks.forEach((b, k) => {
        const start = (first + k) * BLOCK;
        const from = Math.max(offset, start);
        const to = Math.min(offset + length, start + b.length);
        b.copy(into, from - offset, from - start, to - start);
      });
    },
    write() {
      throw Object.assign(new Error('read-only image'), { code: 'EROFS' });
    },
  };
}

function parseSize(s) {
  const m = /^(\d+)([KMGT]?)$/i.exec(String(s).trim());
  if (!m) throw new Error(`cache must be bytes or K/M/G/T, not "${s}"`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}
