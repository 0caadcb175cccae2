// Plays systemd's side of sd_notify for tests: binds a unix datagram socket (a path, or an
// abstract '@' name) and records every message with the time it arrived. Node has no unix
// datagram sockets, so a small python3 program does the receiving; tests skip without python3.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface NotifyMessage {
  /** Date.now() clock, when the datagram arrived */
  atMs: number;
  text: string;
  /** "KEY=value" lines as an object */
  fields: Record<string, string>;
}

const RECEIVER = `
import json, socket, sys, time
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(('\\0' + addr[1:]) if addr.startswith('@') else addr)
print('bound', flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({'t': time.time() * 1000, 'text': data.decode('utf-8', 'replace')}), flush=True)
`;

/** A python3 that can run the receiver, or undefined. */
export function python3(): string | undefined {
  for (const p of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(p, ['-c', 'import socket'], { stdio: 'ignore' });
    if (r.status === 0) return p;
  }
  return undefined;
}

export interface NotifyListener {
  /** the value for $NOTIFY_SOCKET */
  socket: string;
  messages: NotifyMessage[];
  /** resolves with the first message (from `from` on) that satisfies `pred` */
  waitFor(pred: (m: NotifyMessage) => boolean, timeoutMs: number, what: string, from?: number): Promise<NotifyMessage>;
  close(): void;
}

export async function listenNotify(opts: { abstract?: boolean } = {}): Promise<NotifyListener> {
  const py = python3();
  if (!py) throw new Error('python3 is needed to listen on a unix datagram socket');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ublk-ts-notify-'));
  const socket = opts.abstract ? `@ublk-ts-test-${process.pid}-${Date.now()}` : path.join(dir, 'notify.sock');
  const child: ChildProcess = spawn(py, ['-u', '-c', RECEIVER, socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages: NotifyMessage[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d));
  const bound = new Promise<void>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`notify receiver exited ${code}: ${stderr}`)));
    child.stdout?.on('data', (d: Buffer) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'bound') {
          resolve();
          continue;
        }
        const m = JSON.parse(line) as { t: number; text: string };
        const fields: Record<string, string> = {};
        for (const l of m.text.split('\n')) {
          const eq = l.indexOf('=');
          if (eq > 0) fields[l.slice(0, eq)] = l.slice(eq + 1);
        }
        messages.push({ atMs: m.t, text: m.text, fields });
        for (const w of waiters) w();
      }
    });
  });
  await bound;
  return {
    socket,
    messages,
    waitFor(pred, timeoutMs, what, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = messages.slice(from).find(pred);
          if (!hit) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no sd_notify message ${what} within ${timeoutMs} ms; got: ${JSON.stringify(messages.map((m) => m.text))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close() {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
