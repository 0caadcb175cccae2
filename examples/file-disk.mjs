// A disk kept in a file, written in JavaScript (the loop target does this natively and faster; this
// one shows a target that keeps its data across a crash: `-r 1` + `ublk-ts recover` work with it).
//   ublk-ts add -t js --module examples/file-disk.mjs --set file=/var/tmp/disk.img -r 1
import { open } from 'node:fs/promises';

export default async function fileDisk(options) {
  if (!options.file) throw new Error('file-disk needs --set file=PATH');
  const fh = await open(options.file, 'r+');
  const { size } = await fh.stat();
  return {
    size: size - (size % 4096),
    async read(offset, length, into) {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(into, done, length - done, offset + done);
        if (bytesRead === 0) throw Object.assign(new Error('past the end of the file'), { code: 'EIO' });
        done += bytesRead;
      }
    },
    async write(offset, data) {
      await fh.write(data, 0, data.length, offset);
    },
    async flush() {
      await fh.datasync();
    },
    async close() {
      await fh.close();
    },
  };
}
