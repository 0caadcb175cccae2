// The HTTP endpoint Prometheus scrapes: GET /metrics on the configured address (127.0.0.1:9101
// by default: the metrics stay on the host unless the operator opens them up). Bound before any
// device is created, so an address in use fails the start with nothing to undo.

import * as http from 'node:http';
import type { Registry } from 'prom-client';
import type { Log } from '../../shared/log';
import { nullLogger } from '../../shared/log';
import type { MetricsAddress } from '../../config/service-settings';

export interface MetricsServer {
  /** where it listens (the real port when 0 was asked for) */
  readonly address: MetricsAddress;
  close(): Promise<void>;
}

/** A length, not chunked encoding: one write, and the scraper knows where the body ends. */
function send(res: http.ServerResponse, status: number, type: string, text: string, method?: string): void {
  const body = Buffer.from(text, 'utf8');
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length });
  res.end(method === 'HEAD' ? undefined : body);
}

export function startMetricsServer(addr: MetricsAddress, registry: Registry, log: Log = nullLogger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/') {
      send(res, 200, 'text/html; charset=utf-8', '<html><body><a href="/metrics">/metrics</a></body></html>\n', req.method);
      return;
    }
    if (url !== '/metrics') {
      send(res, 404, 'text/plain', 'not found: try /metrics\n', req.method);
      return;
    }
    registry.metrics().then(
      (text) => send(res, 200, registry.contentType, text, req.method),
      (err: Error) => {
        log.error({ event: 'metrics_failed', err: err.message }, 'metrics collection failed');
        send(res, 500, 'text/plain', `metrics collection failed: ${err.message}\n`, req.method);
      },
    );
  });
  // Scrapes are short; idle keep-alive sockets must not hold a stopping service back.
  server.keepAliveTimeout = 5_000;

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.removeListener('error', reject);
      server.on('error', (err) => log.error({ event: 'metrics_server_error', err: err.message }, 'metrics server error'));
      server.unref(); // the service keeps itself alive while it has devices; not this socket
      const a = server.address();
      const port = typeof a === 'object' && a ? a.port : addr.port;
      resolve({
        address: { host: addr.host, port },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
