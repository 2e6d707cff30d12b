/**
 * Inference API: `POST /v1/infer` runs texts through the base with a composition of hub modules, `GET /v1/base`
 * describes the loaded base; `readinessRouter` serves `GET /readyz`. Mounted by `modhub serve` through createApp's
 * `routers`. A client that closes its connection aborts its request: rows still waiting are dropped unrun.
 * Example body: {"inputs": [{"text": "Hallo Welt"}], "composition": {"stack": ["lang/de", "task/topic"]}}
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import type { Logger } from 'pino';
import type client from 'prom-client';
import { ModuleError } from '../model/modules';
import { ClientGoneError, type InferRequest, DeadlineError, QueueFullError, RequestTooLargeError, UnavailableError, type InferenceService } from '../runtime/inference';
import { AGGREGATIONS, POOLINGS } from '../runtime/outputs';
import { requireRead, type AuthConfig } from './auth';
import { HttpError, badRequest } from './errors';
import { addOpenApiPaths } from './openapi';

const MAX_INPUTS = 256;
const MAX_TEXT = 100_000;

const inferBody = z.object({
  inputs: z
    .array(z.object({ text: z.string().max(MAX_TEXT), text_pair: z.string().max(MAX_TEXT).optional() }).strict())
    .min(1)
    .max(MAX_INPUTS),
  composition: z.unknown().optional(),
  head: z.string().min(1).max(300).optional(),
  task: z.enum(['auto', 'embedding', 'fill_mask']).optional(),
  top_k: z.number().int().min(1).max(1000).optional(),
  max_length: z.number().int().min(2).max(1_000_000).optional(),
  aggregation_strategy: z.enum(AGGREGATIONS as [string, ...string[]]).optional(),
  pooling: z.enum(POOLINGS as [string, ...string[]]).optional(),
  normalize: z.boolean().optional(),
  timeout_ms: z.number().int().min(1).max(3_600_000).optional(),
}).strict();

/**
 * Maps engine and queue errors to HTTP: a module for another base or competing heads 422, a malformed composition
 * 400, a full queue 429 with Retry-After (from the measured drain rate), a request larger than the queue 413, a
 * passed deadline 504, not ready / shutting down 503.
 */
function toHttp(err: unknown): unknown {
  if (err instanceof ModuleError) {
    const status = err.code === 'INVALID_COMPOSITION' ? 400 : 422;
    return new HttpError(status, err.code, err.message);
  }
  if (err instanceof QueueFullError) return new HttpError(429, 'QUEUE_FULL', err.message, { 'Retry-After': String(err.retryAfterSeconds) });
  if (err instanceof RequestTooLargeError) return new HttpError(413, 'REQUEST_TOO_LARGE', err.message);
  if (err instanceof DeadlineError) return new HttpError(504, 'DEADLINE_EXCEEDED', err.message);
  if (err instanceof UnavailableError) return new HttpError(503, err.reason === 'starting' ? 'NOT_READY' : 'SHUTTING_DOWN', err.message, { 'Retry-After': err.reason === 'starting' ? '1' : '5' });
  if (err instanceof RangeError || err instanceof TypeError) return badRequest('INVALID_INPUT', err.message);
  return err;
}

export interface InferenceRouterDeps {
  service: InferenceService;
  auth: AuthConfig;
  logger: Logger;
  metrics?: client.Registry;
}

export function inferenceRouter(deps: InferenceRouterDeps): Router {
  const r = express.Router();
  const json = express.json({ limit: '8mb' });
  const base = deps.service.engine.base;

  r.get('/base', requireRead(deps.auth), (_req, res) => {
    const c = base.config;
    res.json({
      family: c.family,
      fingerprint: base.fingerprint,
      hidden_size: c.hiddenSize,
      num_layers: c.numLayers,
      num_heads: c.numHeads,
      intermediate_size: c.intermediateSize,
      vocab_size: c.vocabSize,
      max_length: c.maxSequenceLength,
      device: deps.service.engine.device,
    });
  });

  r.post('/infer', requireRead(deps.auth), json, async (req, res, next) => {
    try {
      const parsed = inferBody.safeParse(req.body);
      if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
        throw badRequest('INVALID_BODY', `request body is invalid: ${problems}`);
      }
      const started = process.hrtime.bigint();
      // The response closing before it was written means the client left: abort, so its waiting rows never run.
      const gone = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) gone.abort(new ClientGoneError());
      });
      const out = await deps.service.infer(parsed.data as InferRequest, gone.signal);
      res.json({ ...out, took_ms: Number(process.hrtime.bigint() - started) / 1e6 });
    } catch (e) {
      if (e instanceof ClientGoneError) return; // nobody to answer
      next(toHttp(e));
    }
  });

  addOpenApiPaths({
    '/v1/base': {
      get: { summary: 'The base model this server runs', responses: { '200': { description: 'family, dimensions, fingerprint, device' } } },
    },
    '/v1/infer': {
      post: {
        summary: 'Run texts through the base composed with hub modules',
        description:
          'composition uses AdapterHub blocks: a module ref ("ns/name", "ns/name@1.0.0", "ns/name@tag"), {"stack": [...]}, {"sum": [...]}, ' +
          '{"fuse": [...], "fusion": "ns/f"}, {"parallel": [...]}, {"average": [...], "weights": [...]}. Concurrent requests are batched together.',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['inputs'],
                properties: {
                  inputs: { type: 'array', maxItems: MAX_INPUTS, items: { type: 'object', required: ['text'], properties: { text: { type: 'string' }, text_pair: { type: 'string' } } } },
                  composition: {},
                  head: { type: 'string', description: 'module (ns/name[@version]) whose head to use when the composition brings two heads of one kind' },
                  task: { type: 'string', enum: ['auto', 'embedding', 'fill_mask'] },
                  top_k: { type: 'integer', minimum: 1 },
                  max_length: { type: 'integer', minimum: 2 },
                  aggregation_strategy: { type: 'string', enum: [...AGGREGATIONS], description: 'token classification: how tokens group into entities (HF pipelines; default simple)' },
                  pooling: { type: 'string', enum: [...POOLINGS], description: 'embeddings: cls, mean (default) or max' },
                  normalize: { type: 'boolean', description: 'embeddings: unit L2 norm (default false)' },
                  timeout_ms: { type: 'integer', minimum: 1, description: 'deadline from arrival; 504 DEADLINE_EXCEEDED past it (default: serve --timeout-ms)' },
                },
              },
            },
          },
        },
        responses: {
          '200': { description: '{results: [{branches: [prediction]}], modules: [[id@version]], took_ms}' },
          '400': { description: 'INVALID_BODY, INVALID_COMPOSITION, INVALID_INPUT' },
          '404': { description: 'MODULE_NOT_FOUND, VERSION_NOT_FOUND, TAG_NOT_FOUND' },
          '422': { description: 'INCOMPATIBLE_BASE, INVALID_MODULE, INVALID_HEAD (competing heads: name one with "head")' },
          '413': { description: 'REQUEST_TOO_LARGE (more rows/tokens than the queue holds)' },
          '429': { description: 'QUEUE_FULL (Retry-After from the measured drain rate)' },
          '503': { description: 'NOT_READY (warming up), SHUTTING_DOWN (draining)' },
          '504': { description: 'DEADLINE_EXCEEDED (timeout_ms passed)' },
        },
      },
    },
  });
  return r;
}

export interface ReadinessDeps {
  service: InferenceService;
  /** Whether the module registry is open. */
  registryOpen: () => boolean;
}

/** `GET /readyz`: 200 once the base is loaded, the registry open and the warm-up done; 503 otherwise and while draining. */
export function readinessRouter(deps: ReadinessDeps): Router {
  const r = express.Router();
  r.get('/readyz', (_req, res) => {
    const checks = { base_loaded: true, registry_open: deps.registryOpen(), warmed_up: deps.service.ready || deps.service.draining, draining: deps.service.draining };
    const ready = checks.registry_open && deps.service.ready;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : checks.draining ? 'draining' : 'not_ready', checks });
  });
  addOpenApiPaths({ '/readyz': { get: { summary: 'Readiness: base loaded, registry open, warm-up done, not draining', responses: { '200': { description: 'ready' }, '503': { description: 'not ready or draining' } } } } });
  return r;
}
