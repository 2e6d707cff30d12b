/**
 * The express app factory. `createApp(deps)` wires the hub API (/v1), the HF-compatible read paths, /healthz,
 * /metrics, /openapi.json, any extra routers (the engine's inference routes), and ONE final error handler.
 * `createHubServer(options)` opens the registry in a data dir and returns the app plus a close function — what
 * the `serve` command needs.
 * Example:
 *   const { app, close } = await createHubServer({ dataDir: './data' });
 *   const server = app.listen(8080); // ... server.close(); await close();
 */
import express, { type Express, type Router } from 'express';
import pino, { type Logger } from 'pino';
import client from 'prom-client';
import { openStore, type OpenStoreOptions, type Registry, type StoreDescription } from '../../modules-store';
import { authenticate, type AuthConfig } from './auth';
import { errorHandler, notFound } from './errors';
import { hfRouter } from './hf-routes';
import { hubRouter } from './hub-routes';
import { httpMetrics } from './metrics';
import { openapi } from './openapi';

export interface AppDeps {
  registry: Registry;
  /** Auth settings (default: anonymous reads allowed). */
  auth?: AuthConfig;
  /** Logger (default: pino at 'info'; pass `pino({ level: 'silent' })` in tests). */
  logger?: Logger;
  /** Prometheus registry served at /metrics (default: a fresh one with Node default metrics). */
  metrics?: client.Registry;
  /** Extra routers mounted after the hub's routes, before the 404 and error handlers. */
  routers?: Array<{ path: string; router: Router }>;
}

export function createApp(deps: AppDeps): Express {
  const logger = deps.logger ?? pino({ name: 'modhub' });
  const auth: AuthConfig = { anonymousRead: true, ...deps.auth };
  let metrics = deps.metrics;
  if (!metrics) {
    metrics = new client.Registry();
    client.collectDefaultMetrics({ register: metrics });
  }
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.set('etag', false); // downloads set their own strong ETags
  app.use(httpMetrics(metrics));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Readiness: the catalog answers (a replica whose database is unreachable leaves the load balancer's rotation).
  app.get('/readyz', async (_req, res) => {
    try {
      await deps.registry.listBases();
      res.json({ status: 'ready' });
    } catch (e) {
      res.status(503).json({ error: { code: 'NOT_READY', message: `the catalog is unreachable: ${(e as Error).message}` } });
    }
  });
  const promRegistry = metrics;
  app.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', promRegistry.contentType);
    res.send(await promRegistry.metrics());
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });

  app.use(authenticate(deps.registry));
  app.use('/v1', hubRouter({ registry: deps.registry, auth, logger }));
  for (const { path, router } of deps.routers ?? []) app.use(path, router);
  app.use(hfRouter({ registry: deps.registry, auth, logger }));

  app.use((req) => {
    throw notFound('ROUTE_NOT_FOUND', `no route for ${req.method} ${req.path}; see /openapi.json`);
  });
  app.use(errorHandler(logger));
  return app;
}

export interface HubServerOptions extends Omit<OpenStoreOptions, 'dataDir'>, Omit<AppDeps, 'registry'> {
  /** Folder holding catalog.sqlite and blobs/ (created when missing; unused parts when PostgreSQL / S3 are configured). */
  dataDir: string;
}

/**
 * Opens the registry (in `dataDir`, or on the PostgreSQL database / S3 bucket the options or environment name;
 * sweeping leftovers of a crash) and builds the app around it.
 */
export async function createHubServer(
  options: HubServerOptions,
): Promise<{ app: Express; registry: Registry; store: StoreDescription; close: () => Promise<void> }> {
  const { auth, logger, metrics, routers, ...regOpts } = options;
  const registry = await openStore(regOpts);
  const app = createApp({ registry, auth, logger, metrics, routers });
  return { app, registry, store: registry.description, close: () => registry.close() };
}
