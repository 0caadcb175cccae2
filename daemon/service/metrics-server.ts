// The HTTP endpoint Prometheus scrapes: GET /metrics on the configured address (127.0.0.1:9101
// by default: the metrics stay on the host unless the operator opens them up). Bound before any
// device is created, so an address in use fails the start with nothing to undo.

import * as http from 'node:http';
import type { Registry } from 'prom-client';
import type { Log } from '../log';
import { nullLogger } from '../log';
import type { MetricsAddress } from '../../config/service-fields';

export interface MetricsServer {
  /** where it listens (the real port when 0 was asked for) */
  readonly address: MetricsAddress;
  close(): Promise<void>;
}

export function startMetricsServer(addr: MetricsAddress, registry: Registry, log: Log = nullLogger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end('<html><body><a href="/metrics">/metrics</a></body></html>\n');
      return;
    }
    if (url !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        log.error({ event: 'metrics_failed', err: err.message }, 'metrics collection failed');
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics collection failed: ${err.message}\n`);
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
