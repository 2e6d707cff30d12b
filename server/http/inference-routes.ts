/**
 * Inference API: `POST /v1/infer` runs texts through the base with a composition of hub modules, `GET /v1/base`
 * describes the loaded base. Mounted by `modhub serve` through createApp's `routers`. The body is validated with the wire schema (client-sdk/wire.ts); every error the engine and the queue
 * raise is typed (ModuleError, CodedError) and mapped in errors.ts — there is no mapper here, so a bug surfaces as
 * a logged 500, not as a 400. A client that closes its connection aborts its request: rows still waiting are
 * dropped unrun, and nothing is answered.
 * Example body: {"inputs": [{"text": "Hallo Welt"}], "composition": {"stack": ["lang/de", "task/topic"]}}
 */
import express from 'express';
import type { Logger } from 'pino';
import type client from 'prom-client';
import * as W from '../../client-sdk/wire';
import { ClientGoneError, type InferenceService } from '../runtime/inference';
import { requireRead, type AuthConfig } from './auth';
import { documented, type DocumentedRouter, type RouteDoc } from './openapi';
import { parseBody } from './wire';

export interface InferenceRouterDeps {
  service: InferenceService;
  auth: AuthConfig;
  logger: Logger;
  metrics?: client.Registry;
}

export function inferenceRouter(deps: InferenceRouterDeps): DocumentedRouter {
  const r = express.Router();
  const json = express.json({ limit: '8mb' });
  const base = deps.service.engine.base;

  r.get('/base', requireRead(deps.auth), (_req, res) => {
    const c = base.config;
    const answer: W.ServedBase = {
      family: c.family,
      fingerprint: base.fingerprint,
      hidden_size: c.hiddenSize,
      num_layers: c.numLayers,
      num_heads: c.numHeads,
      intermediate_size: c.intermediateSize,
      vocab_size: c.vocabSize,
      max_length: c.maxSequenceLength,
      device: deps.service.engine.device,
    };
    res.json(answer);
  });

  r.post('/infer', requireRead(deps.auth), json, async (req, res) => {
    const body = parseBody(W.InferRequestSchema, req.body);
    const started = process.hrtime.bigint();
    // The response closing before it was written means the client left: abort, so its waiting rows never run.
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort(new ClientGoneError());
    });
    let out;
    try {
      out = await deps.service.infer(body, gone.signal);
    } catch (e) {
      if (e instanceof ClientGoneError) return; // nobody to answer
      throw e;
    }
    const answer: W.InferResponse = { results: out.results, modules: out.modules, took_ms: Number(process.hrtime.bigint() - started) / 1e6 };
    res.json(answer);
  });

  return documented(r, { routes: INFERENCE_ROUTE_DOCS });
}

/** What the inference router serves (mounted at /v1), for /openapi.json. */
export const INFERENCE_ROUTE_DOCS: RouteDoc[] = [
  { method: 'get', path: '/base', summary: 'The base model this server runs', access: 'read', responses: { '200': { description: 'family, dimensions, fingerprint, device', schema: W.ServedBaseSchema } } },
  {
    method: 'post',
    path: '/infer',
    summary: 'Run texts through the base composed with hub modules',
    description: 'Concurrent requests are batched together, even with different compositions.',
    access: 'read',
    body: { 'application/json': W.InferRequestSchema },
    responses: { '200': { description: 'one result per input, one prediction per branch', schema: W.InferResponseSchema } },
    errors: ['INVALID_JSON', 'INVALID_BODY', 'TOO_LARGE', 'INVALID_INPUT', 'INVALID_COMPOSITION', 'INVALID_REF', 'MODULE_NOT_FOUND', 'VERSION_NOT_FOUND', 'TAG_NOT_FOUND', 'INCOMPATIBLE_BASE', 'INVALID_MODULE', 'INVALID_HEAD', 'REQUEST_TOO_LARGE', 'QUEUE_FULL', 'DEADLINE_EXCEEDED', 'NOT_READY'],
  },
];
