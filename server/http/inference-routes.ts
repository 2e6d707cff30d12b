/**
 * Inference API: `POST /v1/infer` runs texts through the base with a composition of hub modules, `GET /v1/base`
 * describes the loaded base. Mounted by `modhub serve` through createApp's `routers`.
 * Example body: {"inputs": [{"text": "Hallo Welt"}], "composition": {"stack": ["lang/de", "task/topic"]}}
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import type { Logger } from 'pino';
import type client from 'prom-client';
import { ModuleError } from '../model/modules';
import { ServerBusyError, type InferenceService } from '../runtime/inference';
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
}).strict();

/** Maps engine errors to HTTP: a module for another base is 422, a malformed composition 400. */
function toHttp(err: unknown): unknown {
  if (err instanceof ModuleError) {
    const status = err.code === 'INVALID_COMPOSITION' ? 400 : 422;
    return new HttpError(status, err.code, err.message);
  }
  if (err instanceof ServerBusyError) return new HttpError(503, 'SERVER_BUSY', err.message, { 'Retry-After': '1' });
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
      const out = await deps.service.infer(parsed.data);
      res.json({ ...out, took_ms: Number(process.hrtime.bigint() - started) / 1e6 });
    } catch (e) {
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
          '503': { description: 'SERVER_BUSY (queue full; Retry-After)' },
        },
      },
    },
  });
  return r;
}
