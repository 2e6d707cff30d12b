/**
 * The hub's JSON API under /v1: upload (multipart or a raw tar / tar.gz body), search, module and version info,
 * downloads (archive and single files), tags, yank, delete, tokens and bases. Documented in openapi.ts.
 * Example: `app.use('/v1', hubRouter({ registry, auth: { anonymousRead: true } }))`.
 */
import express, { type Request, type Router } from 'express';
import multer from 'multer';
import type { Logger } from 'pino';
import { assertName, PACKAGE_FILES, splitId, type PublishInput, type Registry, type ResolvedModule, type Scope, type SearchSort } from '../../modules-store';
import { assertCanWrite, authOf, hasScope, requireRead, requireScope, type AuthConfig } from './auth';
import { archivePayload, filePayload, sendPayload } from './download';
import { badRequest, forbidden, notFound, unsupportedMediaType } from './errors';

export interface HubRouterDeps {
  registry: Registry;
  auth: AuthConfig;
  logger: Logger;
}

const RAW_TYPES = ['application/x-tar', 'application/tar', 'application/gzip', 'application/x-gzip', 'application/octet-stream'];
const SORTS: readonly SearchSort[] = ['downloads', 'recent', 'name'];
const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];

/** A string query parameter (first value), or undefined. Arrays and objects are refused. */
export function qstr(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badRequest('INVALID_QUERY', `query parameter '${name}' must be given once, as a string`);
  return v;
}

/** An integer query parameter within [min, max]. */
export function qint(req: Request, name: string, def: number, min: number, max: number): number {
  const s = qstr(req, name);
  if (s === undefined || s === '') return def;
  if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max) throw badRequest('INVALID_QUERY', `query parameter '${name}' must be an integer from ${min} to ${max}, got '${s}'`);
  return Number(s);
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  return Array.isArray(v) ? v.join('/') : String(v);
}

/** Validates ns/name path parameters (400 INVALID_NAME when malformed). */
function moduleParams(req: Request): { namespace: string; name: string } {
  const namespace = param(req, 'ns');
  const name = param(req, 'name');
  assertName(namespace, 'namespace');
  assertName(name, 'module name');
  return { namespace, name };
}

function isTrue(v: unknown): boolean {
  return v === true || v === 'true' || v === '1';
}

/** Resolves a revision (exact version or tag) of a module. */
export function resolveRevision(registry: Registry, namespace: string, name: string, rev: string): Promise<ResolvedModule> {
  return registry.resolve(`${namespace}/${name}@${rev}`);
}

/** The `onWhole` of sendPayload that counts one download of `m` (whole bodies only: no HEAD, no Range, no 304). */
export function downloadCounter(registry: Registry, logger: Logger, m: ResolvedModule): () => void {
  return () => void registry.recordDownload(m.namespace, m.name, m.version).catch((err: unknown) => logger.warn({ err }, 'could not count a download'));
}

export function hubRouter(deps: HubRouterDeps): Router {
  const { registry, logger } = deps;
  const r = express.Router();
  const read = requireRead(deps.auth);
  const maxBytes = registry.maxPackageBytes;
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: maxBytes, files: 4, fields: 8, fieldSize: 4096, parts: 12, headerPairs: 200 },
  }).fields([{ name: 'archive', maxCount: 1 }, ...PACKAGE_FILES.map((name) => ({ name, maxCount: 1 }))]);
  const rawBody = express.raw({ type: RAW_TYPES, limit: maxBytes });

  // ---- upload ----
  r.post(
    '/modules',
    requireScope('write'),
    (req, res, next) => {
      if (req.is('multipart/form-data')) return upload(req, res, next);
      if (req.is(RAW_TYPES)) return rawBody(req, res, next);
      throw unsupportedMediaType(
        `upload as multipart/form-data (field 'archive', or fields module.json, weights.safetensors, README.md) or as a raw ${RAW_TYPES.slice(0, 3).join(' / ')} body; got '${req.headers['content-type'] ?? 'no Content-Type'}'`,
      );
    },
    async (req, res) => {
      let input: PublishInput;
      const body = (req.body ?? {}) as Record<string, unknown>;
      let allowUnknown = false;
      if (Buffer.isBuffer(req.body)) {
        const sha = req.headers['x-content-sha256'];
        input = { archive: req.body, sha256: typeof sha === 'string' ? sha : undefined };
        allowUnknown = isTrue(req.query.allow_unknown_base);
      } else {
        const uploaded = (req.files ?? {}) as Record<string, Express.Multer.File[]>;
        allowUnknown = isTrue(body.allow_unknown_base) || isTrue(req.query.allow_unknown_base);
        for (const k of Object.keys(body)) {
          if (k !== 'sha256' && k !== 'allow_unknown_base' && !k.startsWith('sha256.')) {
            throw badRequest('UNEXPECTED_FIELD', `unexpected form field '${k}': allowed text fields are sha256, sha256.<file>, allow_unknown_base`);
          }
        }
        if (uploaded.archive?.[0]) {
          if (PACKAGE_FILES.some((n) => uploaded[n]?.length)) throw badRequest('INVALID_MULTIPART', "send either an 'archive' file or the package files, not both");
          input = { archive: uploaded.archive[0].buffer, sha256: typeof body.sha256 === 'string' ? body.sha256 : undefined };
        } else {
          const files = new Map<string, Buffer>();
          for (const n of PACKAGE_FILES) if (uploaded[n]?.[0]) files.set(n, uploaded[n][0].buffer);
          if (files.size === 0) throw badRequest('INVALID_MULTIPART', "the form has no files: attach 'archive' (tar / tar.gz) or module.json and weights.safetensors");
          const sha: Record<string, string> = {};
          for (const [k, v] of Object.entries(body)) if (k.startsWith('sha256.') && typeof v === 'string') sha[k.slice(7)] = v;
          input = { files, sha256: sha };
        }
      }
      if (allowUnknown && !hasScope(authOf(res).token, 'admin')) throw forbidden('allow_unknown_base needs an admin token');
      const result = await registry.publish(input, {
        allowUnknownBase: allowUnknown || undefined,
        authorize: (m) => assertCanWrite(res, splitId(m.id).namespace),
      });
      logger.info({ id: result.id, version: result.version, digest: result.digest, size: result.size }, 'module published');
      res.status(201).location(`/v1/modules/${result.id}/versions/${result.version}`).json({
        id: result.id,
        version: result.version,
        digest: result.digest,
        size: result.size,
        files: result.files,
      });
    },
  );

  // ---- search ----
  r.get('/modules', read, async (req, res) => {
    const sort = qstr(req, 'sort') ?? 'downloads';
    if (!SORTS.includes(sort as SearchSort)) throw badRequest('INVALID_QUERY', `sort must be one of ${SORTS.join(', ')}, got '${sort}'`);
    const page = await registry.search({
      q: qstr(req, 'q'),
      kind: qstr(req, 'kind'),
      task: qstr(req, 'task'),
      language: qstr(req, 'language'),
      baseFingerprint: qstr(req, 'base'),
      namespace: qstr(req, 'namespace'),
      sort: sort as SearchSort,
      limit: qint(req, 'limit', 20, 1, 100),
      offset: qint(req, 'offset', 0, 0, 1e9),
    });
    if (page.offset + page.items.length < page.total) {
      const next = new URLSearchParams(req.query as Record<string, string>);
      next.set('offset', String(page.offset + page.limit));
      next.set('limit', String(page.limit));
      res.setHeader('Link', `</v1/modules?${next.toString()}>; rel="next"`);
    }
    res.json(page);
  });

  // ---- info ----
  r.get('/modules/:ns/:name', read, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    res.json(await registry.info(namespace, name));
  });

  r.get('/modules/:ns/:name/versions/:rev', read, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    const m = await resolveRevision(registry, namespace, name, param(req, 'rev'));
    const v = (await registry.info(namespace, name)).versions.find((x) => x.version === m.version)!;
    res.setHeader('ETag', `"${m.digest.slice(7)}"`);
    res.json({ id: m.id, ...v, manifest: m.manifest });
  });

  // ---- downloads ----
  r.get('/modules/:ns/:name/versions/:rev/archive', read, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    const m = await resolveRevision(registry, namespace, name, param(req, 'rev'));
    const payload = archivePayload(m.files, m.digest, `${namespace}-${name}-${m.version}.tar`);
    await sendPayload(req, res, registry, { ...payload, headers: { 'X-Module-Version': m.version, 'X-Module-Digest': m.digest } }, downloadCounter(registry, logger, m));
  });

  r.get('/modules/:ns/:name/versions/:rev/files/:file', read, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    const m = await resolveRevision(registry, namespace, name, param(req, 'rev'));
    const fname = param(req, 'file');
    const f = m.files.find((x) => x.name === fname);
    if (!f) throw notFound('FILE_NOT_FOUND', `${m.id}@${m.version} has no file '${fname}' (files: ${m.files.map((x) => x.name).join(', ')})`);
    const counter = f.name === 'weights.safetensors' ? downloadCounter(registry, logger, m) : undefined;
    await sendPayload(req, res, registry, filePayload(f, { 'X-Module-Version': m.version, 'X-Module-Digest': m.digest }), counter);
  });

  // ---- tags ----
  const jsonBody = express.json({ limit: '64kb' });
  r.put('/modules/:ns/:name/tags/:tag', jsonBody, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    assertCanWrite(res, namespace);
    const version = (req.body as { version?: unknown } | undefined)?.version;
    if (typeof version !== 'string') throw badRequest('INVALID_BODY', 'send {"version": "<exact version>"} as JSON');
    await registry.setTag(namespace, name, param(req, 'tag'), version);
    res.json({ tags: (await registry.info(namespace, name)).tags });
  });

  r.delete('/modules/:ns/:name/tags/:tag', async (req, res) => {
    const { namespace, name } = moduleParams(req);
    assertCanWrite(res, namespace);
    await registry.removeTag(namespace, name, param(req, 'tag'));
    res.json({ tags: (await registry.info(namespace, name)).tags });
  });

  // ---- yank ----
  r.post('/modules/:ns/:name/versions/:rev/yank', jsonBody, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    assertCanWrite(res, namespace);
    const b = (req.body ?? {}) as { yanked?: unknown; reason?: unknown };
    if (b.yanked !== undefined && typeof b.yanked !== 'boolean') throw badRequest('INVALID_BODY', "'yanked' must be true or false");
    if (b.reason !== undefined && (typeof b.reason !== 'string' || b.reason.length > 1000)) throw badRequest('INVALID_BODY', "'reason' must be a string of at most 1000 characters");
    const yanked = b.yanked ?? true;
    await registry.yank(namespace, name, param(req, 'rev'), yanked, (b.reason as string | undefined) ?? null);
    res.json({ id: `${namespace}/${name}`, version: param(req, 'rev'), yanked });
  });

  // ---- delete (admin) ----
  r.delete('/modules/:ns/:name/versions/:rev', requireScope('admin'), async (req, res) => {
    const { namespace, name } = moduleParams(req);
    await registry.delete(namespace, name, param(req, 'rev'));
    res.status(204).end();
  });

  r.delete('/modules/:ns/:name', requireScope('admin'), async (req, res) => {
    const { namespace, name } = moduleParams(req);
    await registry.delete(namespace, name);
    res.status(204).end();
  });

  // ---- tokens (admin) ----
  r.post('/tokens', requireScope('admin'), jsonBody, async (req, res) => {
    const b = (req.body ?? {}) as { scopes?: unknown; namespace?: unknown; description?: unknown };
    if (!Array.isArray(b.scopes) || !b.scopes.every((s) => SCOPES.includes(s as Scope))) {
      throw badRequest('INVALID_BODY', `'scopes' must be a non-empty array of ${SCOPES.join(', ')}`);
    }
    if (b.namespace !== undefined && b.namespace !== null && typeof b.namespace !== 'string') throw badRequest('INVALID_BODY', "'namespace' must be a string or null");
    if (b.description !== undefined && typeof b.description !== 'string') throw badRequest('INVALID_BODY', "'description' must be a string");
    const t = await registry.createToken({ scopes: b.scopes as Scope[], namespace: (b.namespace as string | null | undefined) ?? null, description: b.description as string | undefined });
    res.status(201).json({ token: t.token, ...t.info });
  });

  r.get('/tokens', requireScope('admin'), async (_req, res) => {
    res.json({ tokens: await registry.listTokens() });
  });

  r.delete('/tokens/:id', requireScope('admin'), async (req, res) => {
    await registry.revokeToken(param(req, 'id'));
    res.status(204).end();
  });

  // ---- bases ----
  r.get('/bases', read, async (_req, res) => {
    res.json({ bases: await registry.listBases() });
  });

  r.post('/bases', requireScope('admin'), jsonBody, async (req, res) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    for (const k of ['fingerprint', 'family']) if (typeof b[k] !== 'string') throw badRequest('INVALID_BODY', `'${k}' must be a string`);
    for (const k of ['hidden_size', 'num_layers', 'vocab_size']) if (typeof b[k] !== 'number') throw badRequest('INVALID_BODY', `'${k}' must be a number`);
    const row = await registry.registerBase({
      fingerprint: b.fingerprint as string,
      family: b.family as string,
      hidden_size: b.hidden_size as number,
      num_layers: b.num_layers as number,
      vocab_size: b.vocab_size as number,
      description: typeof b.description === 'string' ? b.description : undefined,
    });
    res.status(201).json(row);
  });

  r.get('/whoami', (_req, res) => {
    res.json({ token: authOf(res).token });
  });

  return r;
}
