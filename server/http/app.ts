/**
 * The express app factory. `createApp(deps)` wires the request id, the hub API (/v1), the HF-compatible read
 * paths, /healthz, /metrics, /openapi.json (generated from the docs of every router it mounts), any extra routers
 * (the engine's inference routes), and ONE final error handler.
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
import { authenticate, requireRead, type AuthConfig } from './auth';
import { corsFor } from './cors';
import { HealthSchema, type Health } from '../../client-sdk/wire';
import { errorHandler, httpError, notFound, requestId } from './errors';
import { hfRouter } from './hf-routes';
import { hubRouter } from './hub-routes';
import { httpMetrics } from './metrics';
import { buildOpenApi, type RouteDoc, type RouterDocs } from './openapi';
import { webRouter } from './web';
import type { InferenceService } from '../runtime/inference';

export interface AppDeps {
  registry: Registry;
  /** Auth settings (default: anonymous reads allowed). */
  auth?: AuthConfig;
  /** Logger (default: pino at 'info'; pass `pino({ level: 'silent' })` in tests). */
  logger?: Logger;
  /** Prometheus registry served at /metrics (default: a fresh one with Node default metrics). */
  metrics?: client.Registry;
  /** Extra routers mounted after the hub's routes, before the 404 and error handlers (documented when they carry `docs`). */
  routers?: Array<{ path: string; router: Router & { docs?: RouterDocs } }>;
  /** The inference service, when this server runs the engine (the web pages' "Try it" and base panel). */
  inference?: InferenceService;
  /** Origins whose pages may call the API from a browser (cors.ts); none by default. */
  corsOrigins?: string[];
  /**
   * The URL clients reach this hub at (`--public-url`), or a function giving it once the server listens. Absolute
   * links (the HF list's `Link: rel="next"`, snippets on the web pages) are built from it, never from the request's
   * Host header, which any client can set. Without it links are relative.
   */
  publicUrl?: string | (() => string | undefined);
}

/**
 * Checks and normalises a public URL: http(s), no credentials, query or fragment; without a trailing slash.
 * Throws RangeError naming what is wrong.
 */
export function normalizePublicUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new RangeError(`'--public-url' must be an absolute http(s) URL such as https://hub.example.com, got '${raw}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RangeError(`'--public-url' must use http or https, got '${u.protocol}'`);
  if (u.username || u.password || u.search || u.hash) throw new RangeError(`'--public-url' must not carry credentials, a query or a fragment, got '${raw}'`);
  return u.toString().replace(/\/+$/, '');
}

/** The app's own routes, for /openapi.json. */
const SERVICE_ROUTE_DOCS: RouteDoc[] = [
  { method: 'get', path: '/healthz', summary: 'Liveness', access: 'public', responses: { '200': { description: 'ok', schema: HealthSchema } } },
  { method: 'get', path: '/readyz', summary: 'Readiness: the catalog answers; with the engine, warm-up done and not draining', access: 'public', errors: ['NOT_READY'], responses: { '200': { description: 'ready', bytes: 'application/json' } } },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics (needs a read token when anonymous reads are off)', access: 'read', responses: { '200': { description: 'text exposition format', bytes: 'text/plain' } } },
  { method: 'get', path: '/openapi.json', summary: 'This document (OpenAPI 3.1)', access: 'public', responses: { '200': { description: 'OpenAPI 3.1', bytes: 'application/json' } } },
];

export function createApp(deps: AppDeps): Express {
  const logger = deps.logger ?? pino({ name: 'modhub' });
  const auth: AuthConfig = { anonymousRead: true, ...deps.auth };
  const configured = deps.publicUrl;
  const fixed = typeof configured === 'string' ? normalizePublicUrl(configured) : undefined;
  /** The public origin (+ path prefix) for absolute links, or '' for relative ones. */
  const publicUrl = (): string => fixed ?? (typeof configured === 'function' ? (configured() ?? '').replace(/\/+$/, '') : '');
  let metrics = deps.metrics;
  if (!metrics) {
    metrics = new client.Registry();
    client.collectDefaultMetrics({ register: metrics });
  }
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.set('etag', false); // downloads set their own strong ETags
  if (deps.corsOrigins?.length) app.use(corsFor(deps.corsOrigins));
  app.use(requestId());
  app.use(httpMetrics(metrics));

  app.get('/healthz', (_req, res) => {
    const answer: Health = { status: 'ok' };
    res.json(answer);
  });
  // Readiness: the catalog answers (a replica whose database is unreachable leaves the load balancer's rotation)
  // and, on a server that runs the engine, the base is loaded and warmed up and the server is not draining.
  app.get('/readyz', async (_req, res) => {
    try {
      await deps.registry.listBases();
    } catch (e) {
      throw httpError('NOT_READY', `the catalog is unreachable: ${(e as Error).message}`);
    }
    const inference = deps.inference;
    if (inference?.draining) throw httpError('NOT_READY', 'the server is draining for shutdown', { 'Retry-After': '5' });
    if (inference && !inference.ready) throw httpError('NOT_READY', 'the inference engine is warming up', { 'Retry-After': '1' });
    res.json({ status: 'ready' });
  });
  const promRegistry = metrics;
  // Metrics name modules and traffic: behind --no-anonymous-read they need a read token like everything else.
  app.get('/metrics', authenticate(deps.registry), requireRead(auth), async (_req, res) => {
    res.setHeader('Content-Type', promRegistry.contentType);
    res.send(await promRegistry.metrics());
  });
  const hub = hubRouter({ registry: deps.registry, auth, logger });
  const hf = hfRouter({ registry: deps.registry, auth, logger, publicUrl });
  const extra = deps.routers ?? [];
  for (const x of extra) if (!x.router.docs) logger.warn({ path: x.path }, 'a router without docs is mounted: its routes are missing from /openapi.json (see documented())');
  let openapi: unknown = null; // built on first request: the routers are all known by then
  app.get('/openapi.json', (_req, res) => {
    openapi ??= buildOpenApi([
      { prefix: '', docs: { routes: SERVICE_ROUTE_DOCS } },
      { prefix: '/v1', docs: hub.docs },
      ...extra.filter((x) => x.router.docs).map((x) => ({ prefix: x.path.replace(/\/$/, ''), docs: x.router.docs! })),
      { prefix: '', docs: hf.docs },
    ]);
    res.json(openapi);
  });

  app.use(authenticate(deps.registry));
  app.use('/v1', hub);
  for (const { path, router } of extra) app.use(path, router);
  app.use(hf);
  app.use(webRouter({ registry: deps.registry, auth, logger, inference: deps.inference, publicUrl }));

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
  const { auth, logger, metrics, routers, inference, corsOrigins, publicUrl, ...regOpts } = options;
  const registry = await openStore(regOpts);
  const app = createApp({ registry, auth, logger, metrics, routers, inference, corsOrigins, publicUrl });
  return { app, registry, store: registry.description, close: () => registry.close() };
}
