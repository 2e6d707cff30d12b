/**
 * Hugging Face Hub-compatible read paths, so `@huggingface/hub` (downloadFile, fileDownloadInfo, fileExists,
 * modelInfo, listModels) works against a modhub server given `hubUrl`:
 *   GET /api/models                                   list (search, author, filter, sort, direction, limit; Link paging)
 *   GET /api/models/{ns}/{name}[/revision/{rev}]      model info (id, sha, siblings, cardData, tags, downloads, ...)
 *   GET|HEAD /{ns}/{name}/resolve/{rev}/{file}        file bytes with ETag, X-Repo-Commit, Content-Length, Range
 *   GET|HEAD /{ns}/{name}/raw/{rev}/{file}            the same (modhub stores no LFS pointers)
 * A revision is a version, a tag, `main`/`HEAD` (= latest) or the 40-hex commit id (first 40 hex of the version digest).
 * Virtual revisions `adapterhub[-<rev>]` / `peft[-<rev>]` (and their commits) serve the module as an AdapterHub or PEFT
 * folder (hf-interop.ts), so Python's adapters / peft load it with HF_ENDPOINT pointed at the hub (docs/interop.md).
 * Errors here use HF's body shape `{"error": "<message>", "code"}` (HF clients print `error` as the message).
 * Example: `downloadFile({ repo: 'lang/de', path: 'module.json', revision: '1.0.0', hubUrl: 'http://localhost:8080' })`.
 */
import express, { type Request } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { MODULE_KINDS, parseCard, splitId, StoreError, type Registry, type ResolvedModule } from '../../modules-store';
import { requireRead, type AuthConfig } from './auth';
import { filePayload, parseRange, sendPayload } from './download';
import { badRequest, httpError } from './errors';
import { downloadCounter } from './hub-routes';
import { findVirtualCommit, splitVirtualRev, virtualCommit, virtualFiles, type VirtualCache } from './hf-interop';
import { documented, type DocumentedRouter, type RouteDoc } from './openapi';
import type { ExportFormat } from '../../modules-store/interop';

export interface HfRouterDeps {
  registry: Registry;
  auth: AuthConfig;
  logger: Logger;
}

/** A string query parameter (first value), or undefined. Arrays and objects are refused. */
function qstr(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badRequest('INVALID_QUERY', `query parameter '${name}' must be given once, as a string`);
  return v;
}

/** An integer query parameter within [min, max]. */
function qint(req: Request, name: string, def: number, min: number, max: number): number {
  const s = qstr(req, name);
  if (s === undefined || s === '') return def;
  if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max) throw badRequest('INVALID_QUERY', `query parameter '${name}' must be an integer from ${min} to ${max}, got '${s}'`);
  return Number(s);
}

/** The HF "commit" of a version: the first 40 hex digits of its content digest. */
export function commitOf(digest: string): string {
  return digest.slice(7, 47);
}

function p(req: Request, name: string): string {
  const v = req.params[name];
  return Array.isArray(v) ? v.join('/') : String(v);
}

/** Maps errors to the `X-Error-Code` values HF clients look at (EntryNotFound makes downloadFile return null). */
function hfError(e: unknown): never {
  if (e instanceof StoreError) {
    const xcode = e.code === 'MODULE_NOT_FOUND' ? 'RepoNotFound' : e.code === 'FILE_NOT_FOUND' ? 'EntryNotFound' : e.code === 'VERSION_NOT_FOUND' ? 'RevisionNotFound' : null;
    if (xcode) throw httpError(e.code, e.message, { 'X-Error-Code': xcode, 'X-Error-Message': e.message.replace(/[^\x20-\x7e]/g, '?') });
  }
  throw e;
}

async function resolveHf(registry: Registry, namespace: string, name: string, rev: string): Promise<ResolvedModule> {
  if (rev === 'main' || rev === 'HEAD') return registry.resolve(`${namespace}/${name}`);
  if (/^[0-9a-f]{40}$/.test(rev)) {
    const info = await registry.info(namespace, name);
    const v = info.versions.find((x) => commitOf(x.digest) === rev);
    if (!v) throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name} has no version with commit ${rev}`);
    return registry.resolve(`${namespace}/${name}@${v.version}`);
  }
  return registry.resolve(`${namespace}/${name}@${rev}`);
}

/** A revision that may be virtual (`peft`, `adapterhub-1.0.0`, or such a revision's commit; see hf-interop.ts). */
async function resolveAny(registry: Registry, namespace: string, name: string, rev: string): Promise<{ m: ResolvedModule; format: ExportFormat | null }> {
  const v = splitVirtualRev(rev);
  if (v) return { m: await resolveHf(registry, namespace, name, v.rev), format: v.format };
  if (/^[0-9a-f]{40}$/.test(rev)) {
    const hit = await findVirtualCommit(registry, namespace, name, rev);
    if (hit) return { m: await registry.resolve(`${namespace}/${name}@${hit.version}`), format: hit.format };
  }
  return { m: await resolveHf(registry, namespace, name, rev), format: null };
}

export function hfRouter(deps: HfRouterDeps): DocumentedRouter {
  const { registry, logger } = deps;
  const r = express.Router();
  const virtualCache: VirtualCache = new Map();
  const hfShape: express.RequestHandler = (_req, res, next) => {
    res.locals.hfErrorShape = true;
    next();
  };
  const read: express.RequestHandler[] = [hfShape, requireRead(deps.auth)];

  async function modelJson(m: ResolvedModule): Promise<Record<string, unknown>> {
    const info = await registry.info(m.namespace, m.name);
    const v = info.versions.find((x) => x.version === m.version)!;
    let cardData: Record<string, unknown> = {};
    try {
      cardData = parseCard((await m.readFile('README.md')).toString('utf8')).data;
    } catch {
      cardData = {};
    }
    const tags = Array.isArray(cardData.tags) ? (cardData.tags as unknown[]).filter((t): t is string => typeof t === 'string') : [m.manifest.kind, m.manifest.task];
    return {
      _id: commitOf(m.digest),
      id: m.id,
      modelId: m.id,
      author: m.namespace,
      sha: commitOf(m.digest),
      lastModified: v.createdAt,
      createdAt: info.createdAt,
      private: false,
      gated: false,
      disabled: false,
      downloads: info.downloads,
      likes: 0,
      library_name: 'modhub',
      pipeline_tag: typeof cardData.pipeline_tag === 'string' ? cardData.pipeline_tag : undefined,
      tags,
      cardData,
      config: { modhub: { kind: m.manifest.kind, version: m.version, base: m.manifest.base } },
      siblings: m.files.map((f) => ({ rfilename: f.name, size: f.size, lfs: { sha256: f.digest.slice(7), size: f.size } })),
      usedStorage: v.size,
    };
  }

  r.get('/api/models', ...read, async (req, res) => {
    const sort = qstr(req, 'sort');
    const sortMap: Record<string, 'downloads' | 'recent' | 'name'> = { downloads: 'downloads', lastModified: 'recent', createdAt: 'recent', id: 'name', modelId: 'name' };
    if (sort !== undefined && !sortMap[sort]) throw badRequest('INVALID_QUERY', `sort must be one of ${Object.keys(sortMap).join(', ')}`);
    // HF clients ask for up to 500 per page and repeat `filter`/`expand`: clamp and take the first value.
    const first = (k: string): string | undefined => {
      const v = req.query[k];
      return typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : undefined;
    };
    const limit = Math.min(Math.max(Number.parseInt(first('limit') ?? '20', 10) || 20, 1), 100);
    const offset = qint(req, 'offset', 0, 0, 1e9);
    const filter = first('filter');
    const page = await registry.search({
      q: qstr(req, 'search'),
      namespace: qstr(req, 'author'),
      kind: filter && (MODULE_KINDS as string[]).includes(filter) ? filter : undefined,
      task: filter && !(MODULE_KINDS as string[]).includes(filter) ? filter : undefined,
      sort: sort ? sortMap[sort] : 'downloads',
      limit,
      offset,
    });
    if (offset + page.items.length < page.total) {
      const next = new URLSearchParams(req.query as Record<string, string>);
      next.set('offset', String(offset + limit));
      res.setHeader('Link', `<${req.protocol}://${req.get('host')}/api/models?${next.toString()}>; rel="next"`);
    }
    res.json(
      page.items.map((m) => ({
        _id: m.id,
        id: m.id,
        modelId: m.id,
        author: m.namespace,
        downloads: m.downloads,
        likes: 0,
        private: false,
        gated: false,
        lastModified: m.updatedAt,
        createdAt: m.createdAt,
        library_name: 'modhub',
        tags: [m.kind, m.task, ...(m.language ? [m.language] : [])],
      })),
    );
  });

  const info = async (req: Request, rev: string): Promise<Record<string, unknown>> => {
    const { namespace, name } = splitId(`${p(req, 'ns')}/${p(req, 'name')}`);
    const { m, format } = await resolveAny(registry, namespace, name, rev).catch(hfError);
    const json = await modelJson(m);
    if (!format) return json;
    const files = await virtualFiles(m, format, virtualCache).catch(hfError);
    const sha = virtualCommit(m.digest, format);
    return { ...json, _id: sha, sha, library_name: format === 'peft' ? 'peft' : 'adapter-transformers', siblings: files.map((f) => ({ rfilename: f.name, size: f.bytes.length, lfs: { sha256: f.sha256, size: f.bytes.length } })) };
  };
  r.get('/api/models/:ns/:name', ...read, async (req, res) => {
    res.json(await info(req, 'main'));
  });
  r.get('/api/models/:ns/:name/revision/:rev', ...read, async (req, res) => {
    res.json(await info(req, p(req, 'rev')));
  });

  /** HF tree / paths-info entries: `lfs.oid` is the sha256 (the cache key HF clients use), `lastCommit` the version. */
  const entries = async ({ m, format }: { m: ResolvedModule; format: ExportFormat | null }, expand: boolean): Promise<Record<string, unknown>[]> => {
    const createdAt = expand ? (await registry.info(m.namespace, m.name)).versions.find((v) => v.version === m.version)?.createdAt : undefined;
    if (format) {
      const sha = virtualCommit(m.digest, format);
      return (await virtualFiles(m, format, virtualCache).catch(hfError)).map((f) => ({
        type: 'file',
        path: f.name,
        oid: f.sha256,
        size: f.bytes.length,
        lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: 0 },
        ...(expand ? { lastCommit: { id: sha, title: `${m.id}@${m.version} (${format})`, date: createdAt } } : {}),
      }));
    }
    return m.files.map((f) => ({
      type: 'file',
      path: f.name,
      oid: f.digest.slice(7),
      size: f.size,
      lfs: { oid: f.digest.slice(7), size: f.size, pointerSize: 0 },
      ...(expand ? { lastCommit: { id: commitOf(m.digest), title: `${m.id}@${m.version}`, date: createdAt } } : {}),
    }));
  };
  const moduleOf = async (req: Request): Promise<{ m: ResolvedModule; format: ExportFormat | null }> => {
    const { namespace, name } = splitId(`${p(req, 'ns')}/${p(req, 'name')}`);
    return resolveAny(registry, namespace, name, p(req, 'rev')).catch(hfError);
  };
  // listFiles / snapshotDownload: packages are flat, so the tree is the file list and has no sub-folders.
  r.get('/api/models/:ns/:name/tree/:rev', ...read, async (req, res) => {
    res.json(await entries(await moduleOf(req), req.query.expand === 'true'));
  });
  r.get('/api/models/:ns/:name/tree/:rev/*path', ...read, async (req) => {
    const { m } = await moduleOf(req);
    hfError(new StoreError('FILE_NOT_FOUND', `${m.id}@${m.version} has no folder '${p(req, 'path')}' (module packages are flat)`));
  });
  // pathsInfo / downloadFileToCacheDir
  r.post('/api/models/:ns/:name/paths-info/:rev', ...read, express.json({ limit: '64kb' }), express.urlencoded({ extended: false, limit: '64kb' }), async (req, res) => {
    const b = (req.body ?? {}) as { paths?: unknown; expand?: unknown };
    const paths = typeof b.paths === 'string' ? [b.paths] : b.paths;
    if (!Array.isArray(paths) || !paths.every((x) => typeof x === 'string')) throw badRequest('INVALID_BODY', "'paths' must be an array of file paths");
    const all = await entries(await moduleOf(req), b.expand === true || b.expand === 'true');
    res.json(all.filter((e) => paths.includes(e.path as string)));
  });

  const file = async (req: Request, res: express.Response): Promise<void> => {
    const { namespace, name } = splitId(`${p(req, 'ns')}/${p(req, 'name')}`);
    const { m, format } = await resolveAny(registry, namespace, name, p(req, 'rev')).catch(hfError);
    const fname = p(req, 'file');
    if (format) {
      const vf = (await virtualFiles(m, format, virtualCache).catch(hfError)).find((x) => x.name === fname);
      if (!vf) hfError(new StoreError('FILE_NOT_FOUND', `${m.id}@${m.version} has no file '${fname}' in its ${format} form`));
      sendVirtual(req, res, vf, { 'X-Repo-Commit': virtualCommit(m.digest, format), 'X-Module-Version': m.version });
      return;
    }
    const f = m.files.find((x) => x.name === fname);
    if (!f) hfError(new StoreError('FILE_NOT_FOUND', `${m.id}@${m.version} has no file '${fname}'`));
    const counter = f.name === 'weights.safetensors' ? downloadCounter(registry, logger, m) : undefined;
    await sendPayload(req, res, registry, filePayload(f, { 'X-Repo-Commit': commitOf(m.digest), 'X-Module-Version': m.version }), counter);
  };
  for (const kind of ['resolve', 'raw']) {
    r.get(`/:ns/:name/${kind}/:rev/*file`, ...read, file);
    r.head(`/:ns/:name/${kind}/:rev/*file`, ...read, file);
  }
  return documented(r, { routes: HF_ROUTE_DOCS, schemas: HF_SCHEMAS });
}

// ---------------------------------------------------------------- documentation
// These paths speak the HF Hub's own JSON (camelCase and all), which @huggingface/hub parses; the schemas name
// the fields modhub fills and let the rest through.

const HF_SCHEMAS = {
  HfError: z.object({ error: z.string(), code: z.string() }).meta({ description: "the HF Hub's error shape; X-Error-Code carries RepoNotFound / EntryNotFound / RevisionNotFound" }),
  HfModelList: z.array(z.looseObject({ id: z.string(), modelId: z.string(), author: z.string(), downloads: z.number(), lastModified: z.string(), tags: z.array(z.string()) })),
  HfModelInfo: z.looseObject({
    id: z.string(),
    sha: z.string().meta({ description: 'the first 40 hex digits of the version digest' }),
    siblings: z.array(z.looseObject({ rfilename: z.string(), size: z.number() })),
    cardData: z.record(z.string(), z.unknown()),
    tags: z.array(z.string()),
    downloads: z.number(),
  }),
  HfTree: z.array(z.looseObject({ type: z.literal('file'), path: z.string(), oid: z.string(), size: z.number() })),
  HfPathsInfoBody: z.object({ paths: z.union([z.array(z.string()), z.string()]), expand: z.union([z.boolean(), z.string()]).optional() }),
};

const HF_NOT_FOUND = ['INVALID_NAME', 'INVALID_REF', 'MODULE_NOT_FOUND', 'VERSION_NOT_FOUND', 'TAG_NOT_FOUND'] as const;
const hf = (d: Omit<RouteDoc, 'access' | 'errorSchema'>): RouteDoc => ({ ...d, access: 'read', errorSchema: HF_SCHEMAS.HfError });
const hfFile = (method: 'get' | 'head', kind: string): RouteDoc =>
  hf({
    method,
    path: `/{ns}/{name}/${kind}/{rev}/{file}`,
    summary: `HF-compatible file ${method === 'head' ? 'metadata' : 'download'} (${kind})`,
    description: 'rev: a version, tag, main / HEAD, a 40-hex commit, or a virtual revision adapterhub[-<rev>] / peft[-<rev>] serving the AdapterHub / PEFT files of the module (404 EntryNotFound when it has no such form)',
    headers: { Range: 'a single byte range', 'If-None-Match': '304 when it matches the ETag' },
    responses: {
      '200': { description: 'file bytes', ...(method === 'get' ? { bytes: 'application/octet-stream' } : {}), headers: { ETag: 'sha256 of the file', 'X-Repo-Commit': 'the 40-hex commit' } },
      '206': { description: 'part of it' },
      '304': { description: 'not modified' },
    },
    errors: [...HF_NOT_FOUND, 'FILE_NOT_FOUND', 'RANGE_NOT_SATISFIABLE'],
  });

/** What the HF-compatible router serves (mounted at the root), for /openapi.json. */
export const HF_ROUTE_DOCS: RouteDoc[] = [
  hf({ method: 'get', path: '/api/models', summary: 'HF-compatible model list (search, author, filter, sort, limit, offset)', responses: { '200': { description: 'models; Link rel="next" pages', schema: HF_SCHEMAS.HfModelList } }, errors: ['INVALID_QUERY', 'INVALID_ARGUMENT'] }),
  hf({ method: 'get', path: '/api/models/{ns}/{name}', summary: 'HF-compatible model info (latest)', responses: { '200': { description: 'HF model info', schema: HF_SCHEMAS.HfModelInfo } }, errors: [...HF_NOT_FOUND] }),
  hf({ method: 'get', path: '/api/models/{ns}/{name}/revision/{rev}', summary: 'HF-compatible model info at a revision', responses: { '200': { description: 'HF model info', schema: HF_SCHEMAS.HfModelInfo } }, errors: [...HF_NOT_FOUND] }),
  hf({ method: 'get', path: '/api/models/{ns}/{name}/tree/{rev}', summary: 'HF-compatible file list (packages are flat)', responses: { '200': { description: 'entries', schema: HF_SCHEMAS.HfTree } }, errors: [...HF_NOT_FOUND] }),
  hf({ method: 'get', path: '/api/models/{ns}/{name}/tree/{rev}/{path}', summary: 'HF-compatible folder listing: always 404 (packages have no folders)', responses: {}, errors: [...HF_NOT_FOUND, 'FILE_NOT_FOUND'] }),
  hf({
    method: 'post',
    path: '/api/models/{ns}/{name}/paths-info/{rev}',
    summary: 'HF-compatible paths info (downloadFileToCacheDir)',
    body: { 'application/json': HF_SCHEMAS.HfPathsInfoBody, 'application/x-www-form-urlencoded': HF_SCHEMAS.HfPathsInfoBody },
    responses: { '200': { description: 'entries for the paths that exist', schema: HF_SCHEMAS.HfTree } },
    errors: [...HF_NOT_FOUND, 'INVALID_BODY', 'INVALID_JSON'],
  }),
  ...['resolve', 'raw'].flatMap((kind) => [hfFile('get', kind), hfFile('head', kind)]),
];

/** A built (virtual) file: whole body or a single range, strong ETag, If-None-Match, HEAD. */
function sendVirtual(req: Request, res: express.Response, f: { name: string; bytes: Buffer; sha256: string }, headers: Record<string, string>): void {
  const etag = `"${f.sha256}"`;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('ETag', etag);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Type', f.name.endsWith('.json') ? 'application/json' : 'application/octet-stream');
  if (req.headers['if-none-match'] === etag) {
    res.status(304).end();
    return;
  }
  const range = parseRange(req.headers.range, f.bytes.length);
  const body = range ? f.bytes.subarray(range.start, range.end + 1) : f.bytes;
  if (range) res.status(206).setHeader('Content-Range', `bytes ${range.start}-${range.end}/${f.bytes.length}`);
  res.setHeader('Content-Length', String(body.length));
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}
