/**
 * Hugging Face Hub-compatible read paths, so `@huggingface/hub` (downloadFile, fileDownloadInfo, fileExists,
 * modelInfo, listModels) works against a modhub server given `hubUrl`:
 *   GET /api/models                                   list (search, author, filter, sort, direction, limit; Link paging)
 *   GET /api/models/{ns}/{name}[/revision/{rev}]      model info (id, sha, siblings, cardData, tags, downloads, ...)
 *   GET|HEAD /{ns}/{name}/resolve/{rev}/{file}        file bytes with ETag, X-Repo-Commit, Content-Length, Range
 *   GET|HEAD /{ns}/{name}/raw/{rev}/{file}            the same (modhub stores no LFS pointers)
 * A revision is a version, a tag, `main`/`HEAD` (= latest) or the 40-hex commit id (first 40 hex of the version digest).
 * Errors here use HF's body shape `{"error": "<message>", "code"}` (HF clients print `error` as the message).
 * Example: `downloadFile({ repo: 'lang/de', path: 'module.json', revision: '1.0.0', hubUrl: 'http://localhost:8080' })`.
 */
import express, { type Request, type Router } from 'express';
import type { Logger } from 'pino';
import { MODULE_KINDS, parseCard, splitId, StoreError, type Registry, type ResolvedModule } from '../../modules-store';
import { requireRead, type AuthConfig } from './auth';
import { filePayload, sendPayload } from './download';
import { badRequest, HttpError } from './errors';
import { downloadCounter, qint, qstr } from './hub-routes';

export interface HfRouterDeps {
  registry: Registry;
  auth: AuthConfig;
  logger: Logger;
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
    if (xcode) throw new HttpError(404, e.code, e.message, { 'X-Error-Code': xcode, 'X-Error-Message': e.message.replace(/[^\x20-\x7e]/g, '?') });
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

export function hfRouter(deps: HfRouterDeps): Router {
  const { registry, logger } = deps;
  const r = express.Router();
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
    return modelJson(await resolveHf(registry, namespace, name, rev).catch(hfError));
  };
  r.get('/api/models/:ns/:name', ...read, async (req, res) => {
    res.json(await info(req, 'main'));
  });
  r.get('/api/models/:ns/:name/revision/:rev', ...read, async (req, res) => {
    res.json(await info(req, p(req, 'rev')));
  });

  /** HF tree / paths-info entries: `lfs.oid` is the sha256 (the cache key HF clients use), `lastCommit` the version. */
  const entries = async (m: ResolvedModule, expand: boolean): Promise<Record<string, unknown>[]> => {
    const createdAt = expand ? (await registry.info(m.namespace, m.name)).versions.find((v) => v.version === m.version)?.createdAt : undefined;
    return m.files.map((f) => ({
      type: 'file',
      path: f.name,
      oid: f.digest.slice(7),
      size: f.size,
      lfs: { oid: f.digest.slice(7), size: f.size, pointerSize: 0 },
      ...(expand ? { lastCommit: { id: commitOf(m.digest), title: `${m.id}@${m.version}`, date: createdAt } } : {}),
    }));
  };
  const moduleOf = async (req: Request): Promise<ResolvedModule> => {
    const { namespace, name } = splitId(`${p(req, 'ns')}/${p(req, 'name')}`);
    return resolveHf(registry, namespace, name, p(req, 'rev')).catch(hfError);
  };
  // listFiles / snapshotDownload: packages are flat, so the tree is the file list and has no sub-folders.
  r.get('/api/models/:ns/:name/tree/:rev', ...read, async (req, res) => {
    res.json(await entries(await moduleOf(req), req.query.expand === 'true'));
  });
  r.get('/api/models/:ns/:name/tree/:rev/*path', ...read, async (req) => {
    const m = await moduleOf(req);
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
    const m = await resolveHf(registry, namespace, name, p(req, 'rev')).catch(hfError);
    const fname = p(req, 'file');
    const f = m.files.find((x) => x.name === fname);
    if (!f) hfError(new StoreError('FILE_NOT_FOUND', `${m.id}@${m.version} has no file '${fname}'`));
    const counter = f.name === 'weights.safetensors' ? downloadCounter(registry, logger, m) : undefined;
    await sendPayload(req, res, registry, filePayload(f, { 'X-Repo-Commit': commitOf(m.digest), 'X-Module-Version': m.version }), counter);
  };
  for (const kind of ['resolve', 'raw']) {
    r.get(`/:ns/:name/${kind}/:rev/*file`, ...read, file);
    r.head(`/:ns/:name/${kind}/:rev/*file`, ...read, file);
  }
  return r;
}
