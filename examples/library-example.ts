// ublk-ts as a library: a 1 GiB RAM disk written in TypeScript, served from this program.
// Run as root: `npx tsc && node library-example.js` (tsconfig: module node16), then use /dev/ublkbN.
import { createDevice, type BlockTarget } from 'ublk-ts';

const data = new Map<number, Buffer>(); // 4 KiB pages that were written; the rest reads as zeros
const page = (i: number) => data.get(i) ?? Buffer.alloc(4096);

const ramDisk: BlockTarget = {
  size: 1 << 30,
  read(offset, length, into) {
    for (let o = 0; o < length; o += 4096) page((offset + o) / 4096).copy(into, o);
  },
  write(offset, bytes) {
    for (let o = 0; o < bytes.length; o += 4096) data.set((offset + o) / 4096, Buffer.from(bytes.subarray(o, o + 4096)));
  },
};

const disk = await createDevice(ramDisk, { queues: 2 });
console.log(`serving ${disk.path}; Ctrl-C to stop`);
process.once('SIGINT', () => void disk.stop());
