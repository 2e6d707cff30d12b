/**
 * The registry facade: publish, resolve, search, tags, yank, delete, download counters, tokens and known bases,
 * over a {@link Catalog} and a {@link BlobStore}. This is what the HTTP layer, the engine and the trainer use.
 *
 * Publish order (crash safety): validate everything in memory → write each file as a content-addressed blob
 * (temp file, fsync, digest check, rename) → insert the catalog rows in ONE transaction. The transaction is the
 * commit point: before it nothing is visible; blobs left by an interrupted publish are unreferenced and removed
 * by the start-up sweep, with any temp files. Identical blobs are stored once; a publish that loses (409) or
 * fails never deletes a blob that another version references or an in-flight publish has pinned.
 *
 * Example:
 *   const reg = await openRegistry({ dataDir: './data' });
 *   await reg.publish({ path: './my-module' });
 *   const m = await reg.resolve('lang/de@latest'); const w = await m.readFile('weights.safetensors');
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import semver from 'semver';
import { unpackArchive } from './archive';
import { FsBlobStore, normalizeDigest, sha256Digest, type BlobStore, type ByteRange } from './blob-store';
import type { BaseRow, Catalog, FileRow, ModuleRow, Scope, SearchQuery, SearchSort, TagRow, TokenRow, VersionRow } from './catalog';
import { SqliteCatalog } from './catalog-sqlite';
import { StoreError } from './errors';
import { assertName, assertTagName, parseManifest, parseRef, splitId, type Manifest } from './manifest';
import { DEFAULT_PACKAGE_LIMITS, orderedFiles, PACKAGE_FILES, readPackageFiles, validatePackage, type PackageLimits } from './package';

export interface RegistryOptions {
  catalog: Catalog;
  blobs: BlobStore;
  /** Package size limits (defaults: DEFAULT_PACKAGE_LIMITS). */
  limits?: Partial<PackageLimits>;
  /** Accept modules whose base fingerprint is not registered with {@link Registry.registerBase} (default false). */
  allowUnknownBases?: boolean;
  /** Clock (tests). */
  now?: () => Date;
  /** Called when the registry closes (in-memory registries remove their temp blob folder). */
  onClose?: () => Promise<void>;
}

/** What to publish: an archive (tar / tar.gz bytes), loose files, or a folder / archive on disk. */
export type PublishInput =
  | { archive: Buffer; /** sha256 of the archive bytes, checked when given */ sha256?: string }
  | { files: Map<string, Buffer> | Record<string, Buffer>; /** per-file sha256, checked when given */ sha256?: Record<string, string> }
  | { path: string };

export interface PublishOptions {
  /** Accept an unregistered base fingerprint for this publish (the HTTP layer allows it for admins only). */
  allowUnknownBase?: boolean;
  /** Runs after validation and before anything is written; throw to refuse (e.g. a namespace the caller may not write). */
  authorize?: (manifest: Manifest) => void | Promise<void>;
}

export interface PublishResult {
  id: string;
  version: string;
  digest: string;
  size: number;
  files: FileRow[];
  manifest: Manifest;
}

/** A resolved module version, as the engine needs it. */
export interface ResolvedModule {
  id: string;
  namespace: string;
  name: string;
  version: string;
  /** `sha256:<hex>` identifying the version's content. */
  digest: string;
  manifest: Manifest;
  yanked: boolean;
  files: FileRow[];
  /** Reads one of the version's files (FILE_NOT_FOUND when the version has no such file). */
  readFile(name: string): Promise<Buffer>;
}

export interface VersionInfo {
  version: string;
  digest: string;
  size: number;
  yanked: boolean;
  yankReason: string | null;
  downloads: number;
  createdAt: string;
  files: FileRow[];
}

export interface ModuleInfo extends ModuleRow {
  id: string;
  /** Versions, highest first. */
  versions: VersionInfo[];
  /** Tag → version, including the effective `latest`. */
  tags: Record<string, string>;
  /** The highest published manifest. */
  manifest: Manifest;
}

export interface SearchParams {
  q?: string;
  kind?: string;
  task?: string;
  language?: string;
  baseFingerprint?: string;
  namespace?: string;
  sort?: SearchSort;
  limit?: number;
  offset?: number;
}

export interface SearchPage {
  total: number;
  limit: number;
  offset: number;
  items: (ModuleRow & { id: string })[];
}

export interface NewToken {
  scopes: Scope[];
  namespace?: string | null;
  description?: string;
}

export interface BaseInput {
  fingerprint: string;
  family: string;
  hidden_size: number;
  num_layers: number;
  vocab_size: number;
  description?: string;
}

const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];
export const SEARCH_MAX_LIMIT = 100;

/** sha256 hex of a token secret (what the catalog stores). */
export function hashToken(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The content digest of a version: sha256 over its canonical file list. */
export function versionDigest(files: FileRow[]): string {
  const canon = [...files].sort((a, b) => (a.name < b.name ? -1 : 1)).map((f) => `${f.name}\0${f.digest}\0${f.size}\n`).join('');
  return sha256Digest(Buffer.from(canon, 'utf8'));
}

/** Async mutex: one holder at a time, FIFO. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

export class Registry {
  private changes = 0;

  /**
   * Increases on every change that can alter what a ref resolves to (publish, tag, yank, delete), so callers
   * may cache resolutions and drop them when it moves (the engine does).
   */
  get generation(): number {
    return this.changes;
  }

  readonly catalog: Catalog;
  readonly blobs: BlobStore;
  readonly limits: PackageLimits;
  readonly allowUnknownBases: boolean;
  private readonly now: () => Date;
  private readonly onClose?: () => Promise<void>;
  /** Digests an in-flight publish has written or is writing: garbage collection leaves them alone. */
  private readonly pinned = new Map<string, number>();
  private readonly gcLock = new Mutex();
  private closed = false;

  constructor(opts: RegistryOptions) {
    this.catalog = opts.catalog;
    this.blobs = opts.blobs;
    this.limits = { ...DEFAULT_PACKAGE_LIMITS, ...opts.limits };
    this.allowUnknownBases = opts.allowUnknownBases ?? false;
    this.now = opts.now ?? (() => new Date());
    this.onClose = opts.onClose;
    // A shared catalog reports other processes' changes too: move the generation so resolutions cached against
    // it (the engine's) are dropped on the next request.
    this.unwatch = this.catalog.watchChanges?.(() => {
      this.changes++;
    });
  }

  private readonly unwatch?: () => void;
  /** The shared catalog's change count when last checked (sync). */
  private seenCount: number | null = null;
  private syncing: Promise<void> | null = null;
  private syncQueued: Promise<void> | null = null;

  /**
   * On a shared catalog: reads its change count and moves the generation when another process changed anything
   * since the last look (a no-op on an embedded catalog). Notifications usually got there first, but arrive a
   * few ms after the writer's commit is acknowledged — a client can be faster. Strict, and one query per burst:
   * a caller joins a check that starts after it called (never one already in flight, which may predate the change
   * the caller knows about), so concurrent requests share one round trip.
   */
  sync(): Promise<void> {
    const changeCount = this.catalog.changeCount?.bind(this.catalog);
    if (!changeCount) return Promise.resolve();
    if (!this.syncing) {
      this.syncing = changeCount()
        .then((n) => {
          if (this.seenCount !== null && n !== this.seenCount) this.changes++;
          this.seenCount = n;
        })
        // Database unreachable: serve from what is cached (lookups that need the catalog fail on their own).
        .catch(() => undefined)
        .finally(() => {
          this.syncing = null;
        });
      return this.syncing;
    }
    if (!this.syncQueued) {
      this.syncQueued = this.syncing
        .catch(() => undefined)
        .then(() => {
          this.syncQueued = null;
          return this.sync();
        });
    }
    return this.syncQueued;
  }

  /** Largest upload (archive or sum of files) this registry accepts, in bytes. */
  get maxPackageBytes(): number {
    return this.limits.maxWeightsBytes + this.limits.maxManifestBytes + this.limits.maxCardBytes + 64 * 1024;
  }

  private async filesOf(input: PublishInput): Promise<Map<string, Buffer>> {
    if ('archive' in input) {
      if (input.sha256 !== undefined) {
        const want = normalizeDigest(input.sha256, 'sha256 of the archive');
        const got = sha256Digest(input.archive);
        if (want !== got) throw new StoreError('DIGEST_MISMATCH', `the archive has digest ${got}, but ${want} was declared`);
      }
      if (input.archive.length > this.maxPackageBytes) {
        throw new StoreError('TOO_LARGE', `the archive is ${input.archive.length} bytes, over the ${this.maxPackageBytes}-byte package limit`);
      }
      return unpackArchive(input.archive, {
        maxFileBytes: Math.max(this.limits.maxWeightsBytes, this.limits.maxManifestBytes, this.limits.maxCardBytes),
        maxTotalBytes: this.maxPackageBytes,
      });
    }
    if ('files' in input) {
      const files = input.files instanceof Map ? new Map(input.files) : new Map(Object.entries(input.files));
      for (const [name, want] of Object.entries(input.sha256 ?? {})) {
        const bytes = files.get(name);
        if (!bytes) throw new StoreError('INVALID_ARGUMENT', `a sha256 was sent for '${name}', but no such file was uploaded`);
        const w = normalizeDigest(want, `sha256 of '${name}'`);
        const got = sha256Digest(bytes);
        if (w !== got) throw new StoreError('DIGEST_MISMATCH', `'${name}' has digest ${got}, but ${w} was declared`);
      }
      return files;
    }
    return readPackageFiles(input.path, this.limits);
  }

  /** Pins digests here and, on a shared catalog, for every other process's collector; returns the shared release. */
  private async pin(digests: string[]): Promise<(() => Promise<void>) | undefined> {
    await this.gcLock.lock(async () => {
      for (const d of digests) this.pinned.set(d, (this.pinned.get(d) ?? 0) + 1);
    });
    try {
      return await this.catalog.pinBlobs?.(digests);
    } catch (e) {
      this.unpin(digests);
      throw e;
    }
  }

  /** Runs a collection under the catalog's cross-process lock when it has one (else only under this process's). */
  private collecting<T>(fn: () => Promise<T>): Promise<T> {
    return this.gcLock.lock(() => (this.catalog.collectBlobs ? this.catalog.collectBlobs(fn) : fn()));
  }

  private unpin(digests: string[]): void {
    for (const d of digests) {
      const n = (this.pinned.get(d) ?? 1) - 1;
      if (n <= 0) this.pinned.delete(d);
      else this.pinned.set(d, n);
    }
  }

  /** Deletes the given blobs unless a version references them or an in-flight publish pinned them. */
  private collect(digests: string[]): Promise<void> {
    if (digests.length === 0) return Promise.resolve();
    return this.collecting(async () => {
      const candidates = [...new Set(digests)].filter((d) => !this.pinned.has(d));
      const kept = await this.catalog.referencedDigests(candidates);
      for (const d of candidates) if (!kept.has(d)) await this.blobs.delete(d);
    });
  }

  /** Checks the manifest's base against the registered bases. */
  private async checkBase(m: Manifest, allowUnknown: boolean): Promise<void> {
    const known = await this.catalog.getBase(m.base.fingerprint);
    if (!known) {
      if (allowUnknown) return;
      throw new StoreError(
        'UNKNOWN_BASE',
        `base ${m.base.fingerprint} (${m.base.family}) is not registered on this hub: register it first (POST /v1/bases, admin) or publish with allow_unknown_base (admin)`,
      );
    }
    const mismatch: string[] = [];
    if (known.hiddenSize !== m.base.hidden_size) mismatch.push(`hidden_size ${m.base.hidden_size} vs ${known.hiddenSize}`);
    if (known.numLayers !== m.base.num_layers) mismatch.push(`num_layers ${m.base.num_layers} vs ${known.numLayers}`);
    if (known.vocabSize !== m.base.vocab_size) mismatch.push(`vocab_size ${m.base.vocab_size} vs ${known.vocabSize}`);
    if (mismatch.length) throw new StoreError('BASE_MISMATCH', `module.json base dims disagree with registered base ${m.base.fingerprint}: ${mismatch.join(', ')}`);
  }

  /**
   * Publishes a package. Fails with INVALID_* / UNSUPPORTED_FORMAT_VERSION / TOO_LARGE / DIGEST_MISMATCH /
   * UNKNOWN_BASE before anything is written, and VERSION_EXISTS when `id@version` is taken (stored bytes untouched).
   */
  async publish(input: PublishInput, opts: PublishOptions = {}): Promise<PublishResult> {
    if (this.closed) throw new Error('registry is closed');
    const pkg = validatePackage(await this.filesOf(input), this.limits);
    const m = pkg.manifest;
    await this.checkBase(m, opts.allowUnknownBase ?? this.allowUnknownBases);
    if (opts.authorize) await opts.authorize(m);
    const { namespace, name } = splitId(m.id);
    if (await this.catalog.getVersion(namespace, name, m.version)) {
      throw new StoreError('VERSION_EXISTS', `${m.id}@${m.version} is already published; versions are immutable, publish a new version`);
    }
    const entries = orderedFiles(pkg.files);
    const files: FileRow[] = entries.map(([fname, bytes]) => ({ name: fname, digest: sha256Digest(bytes), size: bytes.length }));
    const digests = files.map((f) => f.digest);
    const releaseShared = await this.pin(digests);
    let committed = false;
    try {
      for (const [i, [, bytes]] of entries.entries()) await this.blobs.put(bytes, files[i].digest);
      const digest = versionDigest(files);
      const size = files.reduce((a, f) => a + f.size, 0);
      await this.catalog.publishVersion({
        namespace,
        name,
        version: m.version,
        manifest: JSON.stringify(m),
        kind: m.kind,
        task: m.task,
        language: m.language ?? null,
        baseFingerprint: m.base.fingerprint,
        description: m.description,
        digest,
        size,
        files,
        createdAt: this.now().toISOString(),
      });
      committed = true;
      this.changes++;
      return { id: m.id, version: m.version, digest, size, files, manifest: m };
    } finally {
      this.unpin(digests);
      await releaseShared?.().catch(() => undefined);
      if (!committed) await this.collect(digests).catch(() => undefined);
    }
  }

  private async requireModule(namespace: string, name: string): Promise<ModuleRow> {
    const mod = await this.catalog.getModule(namespace, name);
    if (!mod) throw new StoreError('MODULE_NOT_FOUND', `module ${namespace}/${name} does not exist`);
    return mod;
  }

  /** The version `latest` resolves to: the explicit tag if set, else the highest non-yanked release (else prerelease). */
  private effectiveLatest(versions: VersionRow[], tags: TagRow[]): string | null {
    const explicit = tags.find((t) => t.tag === 'latest');
    if (explicit) return explicit.version;
    const live = versions.filter((v) => !v.yanked);
    const rel = live.filter((v) => semver.prerelease(v.version) === null);
    const pick = (rel.length ? rel : live).sort((a, b) => semver.rcompare(a.version, b.version))[0];
    return pick ? pick.version : null;
  }

  private resolved(v: VersionRow): ResolvedModule {
    const rank = (n: string): number => (PACKAGE_FILES.includes(n) ? PACKAGE_FILES.indexOf(n) : PACKAGE_FILES.length);
    const files = [...v.files].sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : 1));
    return {
      id: `${v.namespace}/${v.name}`,
      namespace: v.namespace,
      name: v.name,
      version: v.version,
      digest: v.digest,
      manifest: parseManifest(JSON.parse(v.manifest)),
      yanked: v.yanked,
      files,
      readFile: async (fname: string) => {
        const f = files.find((x) => x.name === fname);
        if (!f) throw new StoreError('FILE_NOT_FOUND', `${v.namespace}/${v.name}@${v.version} has no file '${fname}' (files: ${files.map((x) => x.name).join(', ')})`);
        return this.blobs.read(f.digest);
      },
    };
  }

  /**
   * Resolves `ns/name` (tag latest), `ns/name@1.2.0` (exact; yanked versions still resolve) or `ns/name@tag`
   * (yanked versions do not). Errors: INVALID_REF, MODULE_NOT_FOUND, VERSION_NOT_FOUND.
   */
  async resolve(ref: string): Promise<ResolvedModule> {
    const r = parseRef(ref);
    await this.requireModule(r.namespace, r.name);
    if (r.kind === 'version') {
      const v = await this.catalog.getVersion(r.namespace, r.name, r.version);
      if (!v) throw new StoreError('VERSION_NOT_FOUND', `${r.namespace}/${r.name} has no version ${r.version}`);
      return this.resolved(v);
    }
    const [versions, tags] = await Promise.all([this.catalog.listVersions(r.namespace, r.name), this.catalog.listTags(r.namespace, r.name)]);
    const target = r.tag === 'latest' ? this.effectiveLatest(versions, tags) : tags.find((t) => t.tag === r.tag)?.version;
    if (!target) {
      throw new StoreError('VERSION_NOT_FOUND', r.tag === 'latest' ? `${r.namespace}/${r.name} has no unyanked version` : `${r.namespace}/${r.name} has no tag '${r.tag}'`);
    }
    const v = versions.find((x) => x.version === target);
    if (!v) throw new StoreError('VERSION_NOT_FOUND', `${r.namespace}/${r.name}@${r.tag} points at ${target}, which no longer exists`);
    if (v.yanked) throw new StoreError('VERSION_NOT_FOUND', `${r.namespace}/${r.name}@${r.tag} points at ${v.version}, which is yanked; name the version exactly to fetch it`);
    return this.resolved(v);
  }

  /** Module info with versions (highest first) and tags (with the effective `latest`). */
  async info(namespace: string, name: string): Promise<ModuleInfo> {
    const mod = await this.requireModule(namespace, name);
    const [versions, tags] = await Promise.all([this.catalog.listVersions(namespace, name), this.catalog.listTags(namespace, name)]);
    // A concurrent delete may have removed the last version since the module row was read.
    if (versions.length === 0) throw new StoreError('MODULE_NOT_FOUND', `module ${namespace}/${name} does not exist`);
    const tagMap: Record<string, string> = {};
    for (const t of tags) tagMap[t.tag] = t.version;
    const latest = this.effectiveLatest(versions, tags);
    if (latest) tagMap.latest = latest;
    return {
      ...mod,
      id: `${namespace}/${name}`,
      versions: versions.map((v) => ({
        version: v.version,
        digest: v.digest,
        size: v.size,
        yanked: v.yanked,
        yankReason: v.yankReason,
        downloads: v.downloads,
        createdAt: v.createdAt,
        files: v.files,
      })),
      tags: tagMap,
      manifest: parseManifest(JSON.parse(versions[0].manifest)),
    };
  }

  /** Searches modules; `limit` is clamped to 1..100 (default 20). */
  async search(p: SearchParams = {}): Promise<SearchPage> {
    if (p.q !== undefined && (p.q.length > 256 || /[\u0000-\u001f\u007f]/.test(p.q))) {
      throw new StoreError('INVALID_ARGUMENT', 'search text must be at most 256 characters without control characters');
    }
    const limit = Math.min(Math.max(Math.trunc(p.limit ?? 20), 1), SEARCH_MAX_LIMIT);
    const offset = Math.max(Math.trunc(p.offset ?? 0), 0);
    const q: SearchQuery = { ...p, limit, offset };
    const r = await this.catalog.search(q);
    return { total: r.total, limit, offset, items: r.items.map((m) => ({ ...m, id: `${m.namespace}/${m.name}` })) };
  }

  /** Points `tag` at an existing, unyanked version. */
  async setTag(namespace: string, name: string, tag: string, version: string): Promise<void> {
    assertTagName(tag);
    await this.requireModule(namespace, name);
    const v = await this.catalog.getVersion(namespace, name, version);
    if (!v) throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name} has no version ${version}`);
    if (v.yanked) throw new StoreError('INVALID_ARGUMENT', `${namespace}/${name}@${version} is yanked; unyank it before tagging it`);
    await this.catalog.setTag(namespace, name, tag, version, this.now().toISOString());
    this.changes++;
  }

  /** Removes a tag; removing `latest` makes it follow the highest release again. */
  async removeTag(namespace: string, name: string, tag: string): Promise<void> {
    assertName(tag, 'tag');
    await this.requireModule(namespace, name);
    if (!(await this.catalog.removeTag(namespace, name, tag))) {
      if (tag === 'latest') return; // an automatic latest has nothing to remove
      throw new StoreError('TAG_NOT_FOUND', `${namespace}/${name} has no tag '${tag}'`);
    }
    this.changes++;
  }

  /** Yanks (or, with `yanked=false`, restores) a version. */
  async yank(namespace: string, name: string, version: string, yanked = true, reason: string | null = null): Promise<void> {
    await this.requireModule(namespace, name);
    if (!(await this.catalog.setYanked(namespace, name, version, yanked, reason))) {
      throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name} has no version ${version}`);
    }
    this.changes++;
  }

  /** Deletes one version (or, without `version`, the whole module) and the blobs nothing references any more. */
  async delete(namespace: string, name: string, version?: string): Promise<void> {
    await this.requireModule(namespace, name);
    const digests = version === undefined ? await this.catalog.deleteModule(namespace, name) : await this.catalog.deleteVersion(namespace, name, version);
    if (digests === null) throw new StoreError(version === undefined ? 'MODULE_NOT_FOUND' : 'VERSION_NOT_FOUND', `${namespace}/${name}${version ? `@${version}` : ''} does not exist`);
    this.changes++;
    await this.collect(digests);
  }

  /** Counts one download of a version. */
  recordDownload(namespace: string, name: string, version: string): Promise<void> {
    return this.catalog.addDownload(namespace, name, version);
  }

  /** A stream over a stored blob (or an inclusive byte range of it). */
  openBlob(digest: string, range?: ByteRange): Readable {
    return this.blobs.stream(digest, range);
  }

  /** Creates a token; the secret is returned once and only its sha256 is stored. */
  async createToken(t: NewToken): Promise<{ token: string; info: Omit<TokenRow, 'hash'> }> {
    if (!Array.isArray(t.scopes) || t.scopes.length === 0 || !t.scopes.every((s) => SCOPES.includes(s))) {
      throw new StoreError('INVALID_ARGUMENT', `scopes must be a non-empty list of ${SCOPES.join(', ')}`);
    }
    if (t.namespace != null) assertName(t.namespace, 'namespace');
    const secret = `mh_${randomBytes(30).toString('base64url')}`;
    const row: TokenRow = {
      id: `tok_${randomBytes(6).toString('hex')}`,
      hash: hashToken(secret),
      scopes: [...new Set(t.scopes)],
      namespace: t.namespace ?? null,
      description: (t.description ?? '').slice(0, 500),
      createdAt: this.now().toISOString(),
    };
    await this.catalog.insertToken(row);
    const { hash: _hash, ...info } = row;
    void _hash;
    return { token: secret, info };
  }

  /** The token row for a secret, or null. */
  verifyToken(secret: string): Promise<TokenRow | null> {
    return this.catalog.findTokenByHash(hashToken(secret));
  }

  async listTokens(): Promise<Omit<TokenRow, 'hash'>[]> {
    return (await this.catalog.listTokens()).map(({ hash: _h, ...rest }) => rest);
  }

  async revokeToken(id: string): Promise<void> {
    if (!(await this.catalog.deleteToken(id))) throw new StoreError('TOKEN_NOT_FOUND', `no token with id '${id}'`);
  }

  /** Registers (or updates) a base model modules may be published against. */
  async registerBase(b: BaseInput): Promise<BaseRow> {
    const fp = normalizeDigest(b.fingerprint, 'fingerprint');
    for (const k of ['hidden_size', 'num_layers', 'vocab_size'] as const) {
      if (!Number.isInteger(b[k]) || b[k] < 1) throw new StoreError('INVALID_ARGUMENT', `base ${k} must be a positive integer, got ${String(b[k])}`);
    }
    if (typeof b.family !== 'string' || !b.family) throw new StoreError('INVALID_ARGUMENT', 'base family must be a non-empty string');
    const row: BaseRow = {
      fingerprint: fp,
      family: b.family,
      hiddenSize: b.hidden_size,
      numLayers: b.num_layers,
      vocabSize: b.vocab_size,
      description: b.description ?? '',
      createdAt: this.now().toISOString(),
    };
    await this.catalog.upsertBase(row);
    return row;
  }

  listBases(): Promise<BaseRow[]> {
    return this.catalog.listBases();
  }

  /** Removes temp files of interrupted writes and blobs no version references. Run when no publish is in flight. */
  async sweep(): Promise<{ tempFiles: number; orphanBlobs: number }> {
    const tempFiles = await this.blobs.sweepTemp();
    let orphanBlobs = 0;
    await this.collecting(async () => {
      const referenced = await this.catalog.allDigests();
      for (const d of await this.blobs.list()) {
        if (!referenced.has(d) && !this.pinned.has(d)) {
          await this.blobs.delete(d);
          orphanBlobs++;
        }
      }
    });
    return { tempFiles, orphanBlobs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    await this.catalog.close();
    await this.onClose?.();
  }
}

export interface OpenRegistryOptions extends Omit<RegistryOptions, 'catalog' | 'blobs' | 'onClose'> {
  /** Folder holding `catalog.sqlite` and `blobs/` (created when missing). */
  dataDir: string;
  /** Run the start-up sweep (temp files, orphan blobs). Default true; pass false when another process may be publishing (CLI tools). */
  sweep?: boolean;
}

/** Opens the registry in a data dir: SQLite catalog file + filesystem blob store, swept at start-up. */
export async function openRegistry(opts: OpenRegistryOptions): Promise<Registry> {
  const dir = path.resolve(opts.dataDir);
  await fsp.mkdir(dir, { recursive: true });
  const catalog = await SqliteCatalog.open(path.join(dir, 'catalog.sqlite'));
  const blobs = await FsBlobStore.open(path.join(dir, 'blobs'));
  const reg = new Registry({ ...opts, catalog, blobs });
  if (opts.sweep !== false) await reg.sweep();
  return reg;
}

/** An in-memory registry for tests: `:memory:` SQLite and a temp blob folder removed on close. */
export async function openMemoryRegistry(opts: Omit<RegistryOptions, 'catalog' | 'blobs' | 'onClose'> = {}): Promise<Registry> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-blobs-'));
  const catalog = await SqliteCatalog.open(':memory:');
  const blobs = await FsBlobStore.open(dir);
  return new Registry({ ...opts, catalog, blobs, onClose: () => fsp.rm(dir, { recursive: true, force: true }) });
}
