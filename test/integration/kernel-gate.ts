// Integration tests need the real ublk driver. They must FAIL without it, never pass or skip
// quietly: call requireKernel() first (in a `before` hook or at the top of each test).
import fs from 'node:fs';

export const UBLK_CONTROL = '/dev/ublk-control';

export function requireKernel(): void {
  let isChar = false;
  try {
    isChar = fs.statSync(UBLK_CONTROL).isCharacterDevice();
  } catch {
    isChar = false;
  }
  if (!isChar) {
    throw new Error(
      `no ${UBLK_CONTROL}: these tests need the ublk driver; run them through \`npm test\` (VM harness) or \`modprobe ublk_drv\``,
    );
  }
}

/** True inside the harness's QEMU guest (test/vm/run-in-vm.sh sets it). */
export const inVm = process.env.UBLK_TS_IN_VM === '1';
