// A server the OOM killer takes wedges its disk: servers ask the kernel to kill anything else first.

import * as fs from 'node:fs';
import type { Log } from '../shared/log';

/** An OOM-killed server wedges its disk: ask the kernel to kill anything else first. */
export function protectFromOom(log: Log): void {
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', '-1000');
  } catch (err) {
    log.warn({ event: 'oom_score_adj', err: (err as Error).message }, 'cannot set oom_score_adj to -1000');
  }
}

