/**
 * Prometheus metrics for the HTTP layer (prom-client): request count and duration histogram labelled by method,
 * route pattern (never the raw URL, to bound cardinality) and status. Metrics live in the registry passed in, so
 * the engine can add its own to the same registry and one `/metrics` serves all.
 * Example: `app.use(httpMetrics(promRegistry))`.
 */
import type { RequestHandler } from 'express';
import client from 'prom-client';

function metric<T extends client.Metric<string>>(reg: client.Registry, name: string, make: () => T): T {
  return (reg.getSingleMetric(name) as T | undefined) ?? make();
}

/** Records every request once it finishes. */
export function httpMetrics(reg: client.Registry): RequestHandler {
  const labelNames = ['method', 'route', 'status'] as const;
  const count = metric(reg, 'modhub_http_requests_total', () => new client.Counter({ name: 'modhub_http_requests_total', help: 'HTTP requests', labelNames, registers: [reg] }));
  const duration = metric(
    reg,
    'modhub_http_request_duration_seconds',
    () =>
      new client.Histogram({
        name: 'modhub_http_request_duration_seconds',
        help: 'HTTP request duration in seconds',
        labelNames,
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers: [reg],
      }),
  );
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const routePath = (req.route as { path?: unknown } | undefined)?.path;
      const route = typeof routePath === 'string' ? `${req.baseUrl}${routePath}` : 'unmatched';
      const labels = { method: req.method, route, status: String(res.statusCode) };
      count.inc(labels);
      duration.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
    });
    next();
  };
}
