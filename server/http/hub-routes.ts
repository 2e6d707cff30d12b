/**
 * The hub's JSON API under /v1: upload (multipart or a raw tar / tar.gz body), search, module and version info,
 * downloads (archive and single files), tags, yank, delete, tokens and bases. Bodies and queries are validated
 * with the wire schemas (client-sdk/wire.ts) and answers built by the explicit row mappers in wire.ts; each route
 * is described in HUB_ROUTE_DOCS below, from which /openapi.json is generated.
 * Example: `app.use('/v1', hubRouter({ registry, auth: { anonymousRead: true } }))`.
 */
import express, { type Request } from 'express';
import multer from 'multer';
import type { Logger } from 'pino';
import { z } from 'zod';
import { assertName, PACKAGE_FILES, splitId, type PublishInput, type Registry, type ResolvedModule } from '../../modules-store';
import { foreignPublishInput } from '../../modules-store/interop/upload';
import * as W from '../../client-sdk/wire';
import { assertCanWrite, authOf, hasScope, requireRead, requireScope, type AuthConfig } from './auth';
import { archivePayload, filePayload, sendPayload } from './download';
import { badRequest, forbidden, notFound, unsupportedMediaType } from './errors';
import { documented, type DocumentedRouter, type RouteDoc } from './openapi';
import { baseJson, fileJson, moduleInfoJson, moduleSummaryJson, parseBody, parseQuery, tokenJson, versionInfoJson } from './wire';

export interface HubRouterDeps {
  registry: Registry;
  auth: AuthConfig;
  logger: Logger;
}

const RAW_TYPES = ['application/x-tar', 'application/tar', 'application/gzip', 'application/x-gzip', 'application/octet-stream'];

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

export function hubRouter(deps: HubRouterDeps): DocumentedRouter {
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
      // AdapterHub / PEFT / composable-sft folders (with ?id=&version=[&base=]) become a modhub package here.
      input = await foreignPublishInput(input, req.query, await registry.listBases(), maxBytes);
      if (allowUnknown && !hasScope(authOf(res).token, 'admin')) throw forbidden('allow_unknown_base needs an admin token');
      const result = await registry.publish(input, {
        allowUnknownBase: allowUnknown || undefined,
        authorize: (m) => assertCanWrite(res, splitId(m.id).namespace),
      });
      logger.info({ id: result.id, version: result.version, digest: result.digest, size: result.size }, 'module published');
      const answer: W.PublishResult = { id: result.id, version: result.version, digest: result.digest, size: result.size, files: result.files.map(fileJson) };
      res.status(201).location(`/v1/modules/${result.id}/versions/${result.version}`).json(answer);
    },
  );

  // ---- search ----
  r.get('/modules', read, async (req, res) => {
    const q = parseQuery(W.SearchQuerySchema, req);
    const page = await registry.search({
      q: q.q,
      kind: q.kind,
      task: q.task,
      language: q.language,
      baseFingerprint: q.base,
      namespace: q.namespace,
      sort: q.sort,
      limit: q.limit,
      offset: q.offset,
    });
    if (page.offset + page.items.length < page.total) {
      const next = new URLSearchParams(req.query as Record<string, string>);
      next.set('offset', String(page.offset + page.limit));
      next.set('limit', String(page.limit));
      res.setHeader('Link', `</v1/modules?${next.toString()}>; rel="next"`);
    }
    const answer: W.SearchPage = { total: page.total, limit: page.limit, offset: page.offset, items: page.items.map(moduleSummaryJson) };
    res.json(answer);
  });

  // ---- info ----
  r.get('/modules/:ns/:name', read, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    res.json(moduleInfoJson(await registry.info(namespace, name)));
  });

  r.get('/modules/:ns/:name/versions/:rev', read, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    const m = await resolveRevision(registry, namespace, name, param(req, 'rev'));
    const v = (await registry.info(namespace, name)).versions.find((x) => x.version === m.version)!;
    res.setHeader('ETag', `"${m.digest.slice(7)}"`);
    res.json(versionInfoJson(m.id, v, m.manifest));
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
    const { version } = parseBody(W.SetTagBodySchema, req.body);
    await registry.setTag(namespace, name, param(req, 'tag'), version);
    const answer: W.Tags = { tags: (await registry.info(namespace, name)).tags };
    res.json(answer);
  });

  r.delete('/modules/:ns/:name/tags/:tag', async (req, res) => {
    const { namespace, name } = moduleParams(req);
    assertCanWrite(res, namespace);
    await registry.removeTag(namespace, name, param(req, 'tag'));
    const answer: W.Tags = { tags: (await registry.info(namespace, name)).tags };
    res.json(answer);
  });

  // ---- yank ----
  r.post('/modules/:ns/:name/versions/:rev/yank', jsonBody, async (req, res) => {
    const { namespace, name } = moduleParams(req);
    assertCanWrite(res, namespace);
    const b = parseBody(W.YankBodySchema, req.body);
    const yanked = b.yanked ?? true;
    await registry.yank(namespace, name, param(req, 'rev'), yanked, b.reason ?? null);
    const answer: W.YankResult = { id: `${namespace}/${name}`, version: param(req, 'rev'), yanked };
    res.json(answer);
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
    const b = parseBody(W.CreateTokenBodySchema, req.body);
    const t = await registry.createToken({ scopes: b.scopes, namespace: b.namespace ?? null, description: b.description });
    const answer: W.CreatedToken = { ...tokenJson(t.info), token: t.token };
    res.status(201).json(answer);
  });

  r.get('/tokens', requireScope('admin'), async (_req, res) => {
    const answer: W.TokenList = { tokens: (await registry.listTokens()).map(tokenJson) };
    res.json(answer);
  });

  r.delete('/tokens/:id', requireScope('admin'), async (req, res) => {
    await registry.revokeToken(param(req, 'id'));
    res.status(204).end();
  });

  // ---- bases ----
  r.get('/bases', read, async (_req, res) => {
    const answer: W.BaseList = { bases: (await registry.listBases()).map(baseJson) };
    res.json(answer);
  });

  r.post('/bases', requireScope('admin'), jsonBody, async (req, res) => {
    const b = parseBody(W.RegisterBaseBodySchema, req.body);
    res.status(201).json(baseJson(await registry.registerBase(b)));
  });

  r.get('/whoami', (_req, res) => {
    const { token } = authOf(res);
    const answer: W.Whoami = { token: token ? tokenJson(token) : null };
    res.json(answer);
  });

  return documented(r, { routes: HUB_ROUTE_DOCS, schemas: { ArchiveBytes: ARCHIVE_BYTES } });
}

/** A raw upload body: the package as tar or tar.gz bytes. */
const ARCHIVE_BYTES = z.string().meta({ format: 'binary', description: 'the package as a tar or tar.gz archive' });
const NAME_ERRORS = ['INVALID_NAME', 'MODULE_NOT_FOUND'] as const;
const REV_ERRORS = [...NAME_ERRORS, 'INVALID_REF', 'VERSION_NOT_FOUND', 'TAG_NOT_FOUND'] as const;
const BODY_ERRORS = ['INVALID_JSON', 'INVALID_BODY', 'TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'] as const;
const DOWNLOAD_HEADERS = { Range: 'a single byte range, e.g. bytes=0-1023 (206 with Content-Range; 416 outside)', 'If-None-Match': '304 when it matches the ETag', 'If-Range': 'serve the range only while the ETag still matches' };
const BYTES_HEADERS = { ETag: 'strong ETag: the sha256 of the file, or of the version for archives', 'Accept-Ranges': 'bytes', 'X-Module-Version': 'the resolved version', 'X-Module-Digest': 'the version digest' };

/** What the hub serves under /v1, for /openapi.json. */
export const HUB_ROUTE_DOCS: RouteDoc[] = [
  {
    method: 'post',
    path: '/modules',
    summary: 'Publish a module version',
    description: `multipart/form-data (one 'archive' file, or module.json + weights.safetensors + README.md, with optional sha256 fields) or a raw ${RAW_TYPES.join(' / ')} body (X-Content-Sha256 checked when sent; ?allow_unknown_base=true for admins). An AdapterHub (adapter + head, or AdapterFusion), PEFT or composable-sft folder as an archive is converted on upload when the query names ?id=ns/name&version=X (optional base=<fingerprint>, needed when several bases are registered; adapters=<ids> for a fusion; task, language); see docs/interop.md.`,
    access: 'write',
    body: { 'multipart/form-data': W.PublishFormSchema, ...Object.fromEntries(RAW_TYPES.map((t) => [t, ARCHIVE_BYTES])) },
    headers: { 'X-Content-Sha256': 'sha256 hex of a raw body, checked' },
    responses: { '201': { description: 'published', schema: W.PublishResultSchema, headers: { Location: 'the new version' } } },
    errors: ['INVALID_MULTIPART', 'UNEXPECTED_FIELD', 'DIGEST_MISMATCH', 'INVALID_ARGUMENT', 'TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'VERSION_EXISTS', 'INVALID_MANIFEST', 'INVALID_PACKAGE', 'INVALID_ARCHIVE', 'INVALID_WEIGHTS', 'UNSUPPORTED_FORMAT_VERSION', 'UNKNOWN_BASE', 'BASE_MISMATCH'],
  },
  {
    method: 'get',
    path: '/modules',
    summary: 'Search modules',
    access: 'read',
    query: W.SearchQuerySchema,
    responses: { '200': { description: 'one page; a Link header (rel="next") points at the next', schema: W.SearchPageSchema, headers: { Link: 'next page' } } },
    errors: ['INVALID_QUERY', 'INVALID_ARGUMENT'],
  },
  { method: 'get', path: '/modules/{ns}/{name}', summary: 'A module with its versions and tags', access: 'read', responses: { '200': { description: 'module', schema: W.ModuleInfoSchema } }, errors: [...NAME_ERRORS] },
  {
    method: 'get',
    path: '/modules/{ns}/{name}/versions/{rev}',
    summary: 'One version (exact or by tag) with its manifest',
    access: 'read',
    responses: { '200': { description: 'version', schema: W.VersionInfoSchema, headers: { ETag: 'the version digest' } } },
    errors: [...REV_ERRORS],
  },
  {
    method: 'get',
    path: '/modules/{ns}/{name}/versions/{rev}/archive',
    summary: "The version's files as an uncompressed tar",
    access: 'read',
    headers: DOWNLOAD_HEADERS,
    responses: { '200': { description: 'tar', bytes: 'application/x-tar', headers: BYTES_HEADERS }, '206': { description: 'part of it', bytes: 'application/x-tar' }, '304': { description: 'not modified' } },
    errors: [...REV_ERRORS, 'RANGE_NOT_SATISFIABLE'],
  },
  {
    method: 'get',
    path: '/modules/{ns}/{name}/versions/{rev}/files/{file}',
    summary: 'One file of a version',
    access: 'read',
    headers: DOWNLOAD_HEADERS,
    responses: { '200': { description: 'file bytes', bytes: 'application/octet-stream', headers: BYTES_HEADERS }, '206': { description: 'part of it', bytes: 'application/octet-stream' }, '304': { description: 'not modified' } },
    errors: [...REV_ERRORS, 'FILE_NOT_FOUND', 'RANGE_NOT_SATISFIABLE'],
  },
  {
    method: 'put',
    path: '/modules/{ns}/{name}/tags/{tag}',
    summary: 'Point a tag at a version',
    access: 'write',
    body: { 'application/json': W.SetTagBodySchema },
    responses: { '200': { description: "the module's tags", schema: W.TagsSchema } },
    errors: [...NAME_ERRORS, ...BODY_ERRORS, 'VERSION_NOT_FOUND'],
  },
  { method: 'delete', path: '/modules/{ns}/{name}/tags/{tag}', summary: 'Remove a tag', access: 'write', responses: { '200': { description: "the module's tags", schema: W.TagsSchema } }, errors: [...NAME_ERRORS, 'TAG_NOT_FOUND'] },
  {
    method: 'post',
    path: '/modules/{ns}/{name}/versions/{rev}/yank',
    summary: 'Yank a version (hidden from tags and latest, still downloadable by exact version), or restore it',
    access: 'write',
    body: { 'application/json': W.YankBodySchema },
    responses: { '200': { description: 'new state', schema: W.YankResultSchema } },
    errors: [...NAME_ERRORS, ...BODY_ERRORS, 'VERSION_NOT_FOUND'],
  },
  { method: 'delete', path: '/modules/{ns}/{name}/versions/{rev}', summary: 'Delete a version', access: 'admin', responses: { '204': { description: 'deleted' } }, errors: [...NAME_ERRORS, 'VERSION_NOT_FOUND'] },
  { method: 'delete', path: '/modules/{ns}/{name}', summary: 'Delete a module and all its versions', access: 'admin', responses: { '204': { description: 'deleted' } }, errors: [...NAME_ERRORS] },
  { method: 'post', path: '/tokens', summary: 'Create a token (the secret is shown once)', access: 'admin', body: { 'application/json': W.CreateTokenBodySchema }, responses: { '201': { description: 'created', schema: W.CreatedTokenSchema } }, errors: [...BODY_ERRORS, 'INVALID_ARGUMENT', 'INVALID_NAME'] },
  { method: 'get', path: '/tokens', summary: 'List tokens (never their secrets)', access: 'admin', responses: { '200': { description: 'tokens', schema: W.TokenListSchema } } },
  { method: 'delete', path: '/tokens/{id}', summary: 'Revoke a token', access: 'admin', responses: { '204': { description: 'revoked' } }, errors: ['TOKEN_NOT_FOUND'] },
  { method: 'get', path: '/bases', summary: 'Registered bases modules may be published against', access: 'read', responses: { '200': { description: 'bases', schema: W.BaseListSchema } } },
  { method: 'post', path: '/bases', summary: 'Register (or update) a base', access: 'admin', body: { 'application/json': W.RegisterBaseBodySchema }, responses: { '201': { description: 'registered', schema: W.BaseInfoSchema } }, errors: [...BODY_ERRORS, 'INVALID_ARGUMENT'] },
  { method: 'get', path: '/whoami', summary: 'The token of this request (null when anonymous)', access: 'public', responses: { '200': { description: 'token', schema: W.WhoamiSchema } }, errors: ['UNAUTHORIZED'] },
];
