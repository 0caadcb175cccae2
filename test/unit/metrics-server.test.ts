// The /metrics endpoint: what it answers, and failing to bind when the address is taken.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import { Registry, Gauge } from 'prom-client';
import { startMetricsServer } from '../../daemon/service/metrics-server';

function get(port: number, p: string, method = 'GET'): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('GET /metrics: the registry in the text format; / links to it; others 404/405', async () => {
  const reg = new Registry();
  new Gauge({ name: 'x_test', help: 'x', registers: [reg] }).set(3);
  const s = await startMetricsServer({ host: '127.0.0.1', port: 0 }, reg);
  try {
    assert.ok(s.address.port > 0, 'port 0 → the port actually bound');
    const m = await get(s.address.port, '/metrics');
    assert.equal(m.status, 200);
    assert.equal(m.type, 'text/plain; version=0.0.4; charset=utf-8');
    assert.match(m.body, /^x_test 3$/m);
    assert.equal((await get(s.address.port, '/')).status, 200);
    assert.equal((await get(s.address.port, '/nope')).status, 404);
    assert.equal((await get(s.address.port, '/metrics', 'POST')).status, 405);
  } finally {
    await s.close();
  }
});

test('a collection failure is a 500, the server keeps answering', async () => {
  const reg = new Registry();
  new Gauge({ name: 'x_bad', help: 'x', registers: [reg], collect() { throw new Error('boom'); } });
  const s = await startMetricsServer({ host: '127.0.0.1', port: 0 }, reg);
  try {
    const r = await get(s.address.port, '/metrics');
    assert.equal(r.status, 500);
    assert.match(r.body, /boom/);
  } finally {
    await s.close();
  }
});

test('an address in use rejects with EADDRINUSE', async () => {
  const reg = new Registry();
  const a = await startMetricsServer({ host: '127.0.0.1', port: 0 }, reg);
  try {
    await assert.rejects(startMetricsServer({ host: '127.0.0.1', port: a.address.port }, reg), { code: 'EADDRINUSE' });
  } finally {
    await a.close();
  }
});
