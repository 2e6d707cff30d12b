/**
 * The hub's web pages, served by the same express app as the API: search (`/`), a module page
 * (`/modules/:ns/:name`), "Try it" (`/modules/:ns/:name/try`), the base page (`/base`), publishing (`/publish`) and
 * the static assets (`/assets/*`). Server-rendered templates (html.ts escapes every value), a strict
 * Content-Security-Policy (scripts and styles only from /assets; no inline code), and HTML error pages for the
 * routes here. Pages read through the registry functions the JSON API uses; the browser-side scripts call the
 * JSON API itself (POST /v1/infer, POST /v1/modules).
 * Example: `app.use(webRouter({ registry, auth, logger, inference: service }))`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response, type Router } from 'express';
import type { Logger } from 'pino';
import { assertName, type Registry } from '../../../modules-store';
import type { InferenceService } from '../../runtime/inference';
import { requireRead, type AuthConfig } from '../auth';
import { badRequest, toHttpError } from '../errors';
import { html } from './html';
import { page } from './layout';
import { basePage, type ServedBaseInfo } from './pages/base';
import { loadModule, modulePage } from './pages/module';
import { publishPage } from './pages/publish';
import { readSearchForm, searchPage } from './pages/search';
import { tryPage } from './pages/try';

export interface WebDeps {
  registry: Registry;
  auth: AuthConfig;
  logger: Logger;
  /** The inference service when this server runs the engine: enables "Try it" and the loaded-base panel. */
  inference?: InferenceService;
}

/** The policy every page and asset is served with: nothing inline, nothing from other origins. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The assets folder: beside this file in the sources, copied next to the compiled file by `npm run build`. */
export function assetsDir(): string {
  const here = path.join(__dirname, 'static');
  if (fs.existsSync(here)) return here;
  return path.resolve(__dirname, '..', '..', '..', '..', 'server', 'http', 'web', 'static');
}

const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  next();
};

function sendPage(res: Response, body: string, status = 200): void {
  res.status(status).type('html').setHeader('Cache-Control', 'no-store');
  res.send(body);
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  return Array.isArray(v) ? v.join('/') : String(v);
}

function optionalQuery(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string' || v.length > 256) throw badRequest('INVALID_QUERY', `query parameter '${name}' must be given once, as a string of at most 256 characters`);
  return v;
}

function pageNumber(req: Request): number {
  const p = optionalQuery(req, 'page') ?? '1';
  if (!/^\d{1,7}$/.test(p) || Number(p) < 1) throw badRequest('INVALID_QUERY', `page must be a positive integer, got '${p}'`);
  return Number(p);
}

function servedBase(service: InferenceService | undefined): ServedBaseInfo | undefined {
  if (!service) return undefined;
  const b = service.engine.base;
  const c = b.config;
  return {
    family: c.family,
    fingerprint: b.fingerprint,
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    intermediateSize: c.intermediateSize,
    vocabSize: c.vocabSize,
    maxLength: c.maxSequenceLength,
    device: service.engine.device,
    maskToken: b.tokenizer.maskToken,
  };
}

/** The HTML error page for errors thrown by the routes here (the API keeps its JSON errors). */
function htmlErrors(logger: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) return next(err);
    const h = toHttpError(err);
    if (!h) logger.error({ err, path: req.path }, 'web page failed');
    const status = h?.status ?? 500;
    const code = h?.code ?? 'INTERNAL';
    const message = h?.message ?? 'the page could not be built; the server log has the details';
    if (h) for (const [k, v] of Object.entries(h.headers)) res.setHeader(k, v);
    res.setHeader('X-Modhub-Error-Code', code);
    const title = status === 404 ? 'Not found' : status < 500 ? 'Bad request' : 'Server error';
    sendPage(res, page({ title, body: html`<h1>${title}</h1><p class="error" role="alert"><code>${code}</code> ${message}</p><p><a href="/">Search modules</a></p>` }), status);
  };
}

/** The web pages and their assets. */
export function webRouter(deps: WebDeps): Router {
  const { registry, inference } = deps;
  const r = express.Router();
  const read = requireRead(deps.auth);
  const served = servedBase(inference);

  r.use('/assets', securityHeaders, express.static(assetsDir(), { fallthrough: false, index: false, maxAge: '10m', dotfiles: 'deny' }));

  const pages = express.Router();
  pages.use(securityHeaders);

  pages.get('/', read, async (req, res) => {
    sendPage(res, await searchPage(registry, readSearchForm(req.query as Record<string, unknown>)));
  });

  pages.get('/modules/:ns/:name', read, async (req, res) => {
    const ns = param(req, 'ns');
    const name = param(req, 'name');
    assertName(ns, 'namespace');
    assertName(name, 'module name');
    const view = await loadModule(registry, ns, name, optionalQuery(req, 'version'));
    sendPage(res, await modulePage(registry, view, `${req.protocol}://${req.get('host') ?? 'localhost'}`, served?.maskToken));
  });

  pages.get('/modules/:ns/:name/try', read, async (req, res) => {
    const ns = param(req, 'ns');
    const name = param(req, 'name');
    assertName(ns, 'namespace');
    assertName(name, 'module name');
    const view = await loadModule(registry, ns, name, optionalQuery(req, 'version'));
    const isLatest = view.info.tags.latest === view.m.version;
    sendPage(res, await tryPage(registry, view.m, isLatest, { inference: !!inference, maskToken: served?.maskToken, servedFingerprint: served?.fingerprint }));
  });

  pages.get('/base', read, async (req, res) => {
    sendPage(res, await basePage(registry, served, optionalQuery(req, 'fingerprint'), pageNumber(req)));
  });

  pages.get('/publish', (_req, res) => {
    sendPage(res, publishPage(registry.maxPackageBytes));
  });

  pages.use(htmlErrors(deps.logger));
  // Only the page paths get HTML errors; anything else falls through to the API's routes and JSON 404.
  r.use((req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    if (req.path === '/' || req.path === '/base' || req.path === '/publish' || /^\/modules\/[^/]+\/[^/]+(\/try)?\/?$/.test(req.path)) return pages(req, res, next);
    next();
  });
  return r;
}
