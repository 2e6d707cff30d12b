/**
 * The registry facade: publish, resolve, search, tags, yank, delete, download counters, tokens and known bases,
 * over a {@link Catalog} and a {@link BlobStore}. This is what the HTTP layer, the engine and the trainer use.
 *
 * Publish order (crash safety): validate everything first (uploads staged on disk as they arrive, see staging.ts;
 * weights read piece by piece) → write each file as a content-addressed blob
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
import { createReadStream } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import semver from 'semver';
import { unpackArchive, unpackArchiveFile } from './archive';
import { discardStaged, type StagedFile } from './staging';
import { UploadSessions } from './uploads';
import { normalizeDigest, sha256Digest, type BlobStore, type ByteRange } from './blob-store';
import type { BaseRow, Catalog, FileRow, ModuleRow, Scope, SearchQuery, SearchSort, TagRow, TokenRow, VersionRow } from './catalog';
import { storageErrorOf, StoreError } from './errors';
import type { SpaceReserve } from './space-reserve';
import type { BaseParams } from './kinds';
import { assertName, assertTagName, parseManifest, parseRef, splitId, type Manifest } from './manifest';
import { DEFAULT_PACKAGE_LIMITS, orderedFiles, PACKAGE_FILES, readPackageFiles, validatePackage, validateStagedPackage, type PackageLimits } from './package';

export interface RegistryOptions {
  catalog: Catalog;
  blobs: BlobStore;
  /** Package size limits (defaults: DEFAULT_PACKAGE_LIMITS). */
  limits?: Partial<PackageLimits>;
  /** Accept modules whose base fingerprint is not registered with {@link Registry.registerBase} (default false). */
  allowUnknownBases?: boolean;
  /**
   * The parameters of a registered base (by fingerprint), for checks that need the base's full config: diff
   * modules naming base parameters, their shapes and index ranges. The server supplies it for the base it runs;
   * for other bases those checks are structural only.
   */
  baseParams?: (fingerprint: string) => BaseParams | null | undefined;
  /** Disk kept in reserve so deletes, yanks and untags work on a full disk (openRegistry makes one in the data dir). */
  reserve?: SpaceReserve;
  /** Serve a read-only data folder: reads work, every write answers STORAGE_READ_ONLY, downloads are not counted. */
  readOnly?: boolean;
  /** Folder for staged uploads and unpacked archives (default: the OS temp folder; openRegistry: <data>/staging). */
  stagingDir?: string;
  /** Folder of resumable upload sessions (default: the OS temp folder; openRegistry: <data>/uploads). */
  uploadsDir?: string;
  /** Clock (tests). */
  now?: () => Date;
  /** Called when the registry closes (in-memory registries remove their temp blob folder). */
  onClose?: () => Promise<void>;
}

/**
 * What to publish: an archive (tar / tar.gz bytes), loose files, or a folder / archive on disk; or, in bounded
 * memory, an uploaded archive or loose files already staged on disk (see staging.ts; the registry removes staged
 * files it is given once the publish is over).
 */
export type PublishInput =
  | { archive: Buffer; /** sha256 of the archive bytes, checked when given */ sha256?: string }
  | { files: Map<string, Buffer> | Record<string, Buffer>; /** per-file sha256, checked when given */ sha256?: Record<string, string> }
  | { path: string }
  | { stagedArchive: StagedFile; sha256?: string }
  | { stagedFiles: Map<string, StagedFile>; sha256?: Record<string, string> };

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
  /** True when this exact content was already published under this version (an idempotent retry): nothing was written. */
  existing: boolean;
}

/** What a delete did: the catalog rows are gone; blobs nothing references any more were removed, or not. */
export interface DeleteOutcome {
  /** Blobs removed from the store. */
  blobsRemoved: string[];
  /** Blobs no version references that could not be removed (the start-up sweep retries them). */
  blobsLeft: string[];
  /** Why the blobs in `blobsLeft` could not be removed, or null. */
  blobError: string | null;
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
  private readonly baseParams?: RegistryOptions['baseParams'];
  private readonly reserve?: SpaceReserve;
  readonly readOnly: boolean;
  /** Where uploads are staged before they are validated and stored. */
  readonly stagingDir: string;
  /** Resumable upload sessions (POST/PATCH/PUT /v1/uploads). */
  readonly uploads: UploadSessions;
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
    this.baseParams = opts.baseParams;
    this.reserve = opts.reserve;
    this.readOnly = opts.readOnly ?? false;
    this.stagingDir = opts.stagingDir ?? path.join(os.tmpdir(), 'modhub-staging');
    this.uploads = new UploadSessions(opts.uploadsDir ?? path.join(os.tmpdir(), 'modhub-uploads'), this.maxPackageBytes, this.stagingDir);
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

  private async filesOf(input: Exclude<PublishInput, { stagedArchive: StagedFile } | { stagedFiles: Map<string, StagedFile> }>): Promise<Map<string, Buffer>> {
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

  /** Deletes the given blobs unless a version references them or an in-flight publish pinned them; never throws for a blob. */
  private collect(digests: string[]): Promise<DeleteOutcome> {
    const out: DeleteOutcome = { blobsRemoved: [], blobsLeft: [], blobError: null };
    if (digests.length === 0) return Promise.resolve(out);
    return this.collecting(async () => {
      const candidates = [...new Set(digests)].filter((d) => !this.pinned.has(d));
      const kept = await this.catalog.referencedDigests(candidates);
      for (const d of candidates) {
        if (kept.has(d)) continue;
        try {
          await this.blobs.delete(d);
          out.blobsRemoved.push(d);
        } catch (e) {
          out.blobsLeft.push(d);
          out.blobError ??= (storageErrorOf(e) ?? (e as Error)).message;
        }
      }
      return out;
    });
  }

  /** Throws STORAGE_READ_ONLY when this registry serves a read-only data folder. */
  assertWritable(what: string): void {
    if (this.readOnly) throw new StoreError('STORAGE_READ_ONLY', `this hub serves a read-only data directory: ${what} is not possible (downloads and inference work)`);
  }

  /**
   * Runs a catalog change that frees or barely uses space (delete, yank, tags). On a full disk it releases the
   * space reserve and tries once more, so that an admin can always free space through the API.
   */
  private async evenWhenFull<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const se = storageErrorOf(e);
      if (se?.code === 'STORAGE_FULL' && this.reserve && (await this.reserve.release().catch(() => false))) return await fn();
      throw se ?? e;
    }
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
    if (known.family !== m.base.family) mismatch.push(`family '${m.base.family}' vs '${known.family}'`);
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
    if ('stagedArchive' in input || 'stagedFiles' in input) return this.publishStaged(input, opts);
    this.assertWritable('publishing');
    const pkg = validatePackage(await this.filesOf(input), this.limits, { baseParams: this.baseParams });
    const entries = orderedFiles(pkg.files).map(([fname, bytes]) => ({
      row: { name: fname, digest: sha256Digest(bytes), size: bytes.length },
      store: (digest: string) => this.blobs.put(bytes, digest),
    }));
    return this.commit(pkg.manifest, entries, opts);
  }

  /** Publishes a package staged on disk: validated from the files, stored by streaming them (bounded memory). */
  private async publishStaged(input: Extract<PublishInput, { stagedArchive: StagedFile } | { stagedFiles: Map<string, StagedFile> }>, opts: PublishOptions): Promise<PublishResult> {
    const given = 'stagedArchive' in input ? [input.stagedArchive] : [...input.stagedFiles.values()];
    let unpacked: Map<string, StagedFile> | null = null;
    try {
      this.assertWritable('publishing');
      let files: Map<string, StagedFile>;
      if ('stagedArchive' in input) {
        const a = input.stagedArchive;
        if (input.sha256 !== undefined) {
          const want = normalizeDigest(input.sha256, 'sha256 of the archive');
          if (want !== a.digest) throw new StoreError('DIGEST_MISMATCH', `the archive has digest ${a.digest}, but ${want} was declared`);
        }
        if (a.size > this.maxPackageBytes) throw new StoreError('TOO_LARGE', `the archive is ${a.size} bytes, over the ${this.maxPackageBytes}-byte package limit`);
        unpacked = await unpackArchiveFile(a.path, {
          dir: this.stagingDir,
          maxFileBytes: Math.max(this.limits.maxWeightsBytes, this.limits.maxManifestBytes, this.limits.maxCardBytes),
          maxTotalBytes: this.maxPackageBytes,
        });
        files = unpacked;
      } else {
        files = input.stagedFiles;
        for (const [fname, want] of Object.entries(input.sha256 ?? {})) {
          const f = files.get(fname);
          if (!f) throw new StoreError('INVALID_ARGUMENT', `a sha256 was sent for '${fname}', but no such file was uploaded`);
          const w = normalizeDigest(want, `sha256 of '${fname}'`);
          if (w !== f.digest) throw new StoreError('DIGEST_MISMATCH', `'${fname}' has digest ${f.digest}, but ${w} was declared`);
        }
      }
      const { manifest, generatedCard } = await validateStagedPackage(files, this.limits, { baseParams: this.baseParams });
      const entries = PACKAGE_FILES.flatMap((fname) => {
        const f = files.get(fname);
        if (f) return [{ row: { name: fname, digest: f.digest, size: f.size }, store: (d: string) => this.blobs.putStream(createReadStream(f.path, { highWaterMark: 256 * 1024 }), d) }];
        if (fname === 'README.md' && generatedCard) return [{ row: { name: fname, digest: sha256Digest(generatedCard), size: generatedCard.length }, store: (d: string) => this.blobs.put(generatedCard, d) }];
        return [];
      });
      return await this.commit(manifest, entries, opts);
    } finally {
      await discardStaged([...given, ...(unpacked?.values() ?? [])]);
    }
  }

  /**
   * The common tail of a publish: base check, authorisation, idempotent retry, blobs (pinned against garbage
   * collection), then the catalog transaction, which is the commit point.
   */
  private async commit(m: Manifest, entries: { row: FileRow; store: (digest: string) => Promise<unknown> }[], opts: PublishOptions): Promise<PublishResult> {
    await this.checkBase(m, opts.allowUnknownBase ?? this.allowUnknownBases);
    if (opts.authorize) await opts.authorize(m);
    const { namespace, name } = splitId(m.id);
    const files: FileRow[] = entries.map((e) => e.row);
    const same = await this.samePublished(namespace, name, m, versionDigest(files));
    if (same) return same;
    const digests = files.map((f) => f.digest);
    const releaseShared = await this.pin(digests);
    let committed = false;
    try {
      for (const e of entries) await e.store(e.row.digest);
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
      return { id: m.id, version: m.version, digest, size, files, manifest: m, existing: false };
    } catch (e) {
      // A concurrent publish of the identical content won the race: that is this publish's success too.
      if (e instanceof StoreError && e.code === 'VERSION_EXISTS') {
        const again = await this.samePublished(namespace, name, m, versionDigest(files));
        if (again) return again;
      }
      throw storageErrorOf(e) ?? e;
    } finally {
      this.unpin(digests);
      await releaseShared?.().catch(() => undefined);
      if (!committed) await this.collect(digests).catch(() => undefined);
      // A publish that succeeded had room: put back the space reserve if a full disk had used it.
      if (committed) await this.reserve?.ensure().catch(() => false);
    }
  }

  /**
   * When `id@version` is already published: the stored record if its content digest equals `digest` (a retried
   * publish whose answer was lost is a success), else VERSION_EXISTS. Null when the version is free.
   */
  private async samePublished(namespace: string, name: string, m: Manifest, digest: string): Promise<PublishResult | null> {
    const v = await this.catalog.getVersion(namespace, name, m.version);
    if (!v) return null;
    if (v.digest !== digest) {
      throw new StoreError('VERSION_EXISTS', `${m.id}@${m.version} is already published with different content (${v.digest}); versions are immutable, publish a new version`);
    }
    const r = this.resolved(v);
    return { id: m.id, version: r.version, digest: r.digest, size: v.size, files: r.files, manifest: r.manifest, existing: true };
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
    this.assertWritable('tagging');
    assertTagName(tag);
    await this.requireModule(namespace, name);
    const v = await this.catalog.getVersion(namespace, name, version);
    if (!v) throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name} has no version ${version}`);
    if (v.yanked) throw new StoreError('INVALID_ARGUMENT', `${namespace}/${name}@${version} is yanked; unyank it before tagging it`);
    await this.evenWhenFull(() => this.catalog.setTag(namespace, name, tag, version, this.now().toISOString()));
    this.changes++;
  }

  /** Removes a tag; removing `latest` makes it follow the highest release again. */
  async removeTag(namespace: string, name: string, tag: string): Promise<void> {
    this.assertWritable('removing a tag');
    assertName(tag, 'tag');
    await this.requireModule(namespace, name);
    if (!(await this.evenWhenFull(() => this.catalog.removeTag(namespace, name, tag)))) {
      if (tag === 'latest') return; // an automatic latest has nothing to remove
      throw new StoreError('TAG_NOT_FOUND', `${namespace}/${name} has no tag '${tag}'`);
    }
    this.changes++;
  }

  /** Yanks (or, with `yanked=false`, restores) a version. */
  async yank(namespace: string, name: string, version: string, yanked = true, reason: string | null = null): Promise<void> {
    this.assertWritable('yanking');
    await this.requireModule(namespace, name);
    if (!(await this.evenWhenFull(() => this.catalog.setYanked(namespace, name, version, yanked, reason)))) {
      throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name} has no version ${version}`);
    }
    this.changes++;
  }

  /**
   * Deletes one version (or, without `version`, the whole module), then the blobs nothing references any more.
   * Works on a full disk (see evenWhenFull). The catalog change is the commit point: when some blobs cannot be
   * removed afterwards, the delete still stands and the outcome says which blobs were left, and why.
   */
  async delete(namespace: string, name: string, version?: string): Promise<DeleteOutcome> {
    this.assertWritable('deleting');
    await this.requireModule(namespace, name);
    const digests = await this.evenWhenFull(() => (version === undefined ? this.catalog.deleteModule(namespace, name) : this.catalog.deleteVersion(namespace, name, version)));
    if (digests === null) throw new StoreError(version === undefined ? 'MODULE_NOT_FOUND' : 'VERSION_NOT_FOUND', `${namespace}/${name}${version ? `@${version}` : ''} does not exist`);
    this.changes++;
    let out: DeleteOutcome;
    try {
      out = await this.collect(digests);
    } catch (e) {
      out = { blobsRemoved: [], blobsLeft: [...new Set(digests)], blobError: (storageErrorOf(e) ?? (e as Error)).message };
    }
    if (out.blobsRemoved.length) await this.reserve?.ensure().catch(() => false);
    return out;
  }

  /** Counts one download of a version. */
  recordDownload(namespace: string, name: string, version: string): Promise<void> {
    if (this.readOnly) return Promise.resolve(); // a read-only hub serves downloads without counting them
    return this.catalog.addDownload(namespace, name, version);
  }

  /** A stream over a stored blob (or an inclusive byte range of it). */
  openBlob(digest: string, range?: ByteRange): Readable {
    return this.blobs.stream(digest, range);
  }

  /** Creates a token; the secret is returned once and only its sha256 is stored. */
  async createToken(t: NewToken): Promise<{ token: string; info: Omit<TokenRow, 'hash'> }> {
    this.assertWritable('creating a token');
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
    this.assertWritable('revoking a token');
    if (!(await this.catalog.deleteToken(id))) throw new StoreError('TOKEN_NOT_FOUND', `no token with id '${id}'`);
  }

  /** Registers (or updates) a base model modules may be published against. */
  async registerBase(b: BaseInput): Promise<BaseRow> {
    this.assertWritable('registering a base');
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
          // One blob that cannot be removed (e.g. a read-only blob folder) does not stop the sweep.
          if (await this.blobs.delete(d).then(() => true, () => false)) orphanBlobs++;
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
