// The smallest disk there is: every request succeeds at once and moves no data (reads leave the
// request's buffer as it is). `ublk-ts add -t js --module examples/null-disk.mjs --set size=1G`.
// The benchmark's `ublk-js-null` row: what the hand-off between the queue thread and JavaScript
// costs, beside the native null target.
export default function nullDisk(options) {
  const size = Number(options.size ?? 2 ** 30);
  return {
    size,
    read() {},
    write() {},
    flush() {},
  };
}
