/**
 * The catalog interface: module, version, file, tag, token and base rows. Implementations: SQLite
 * (catalog-sqlite.ts, the embedded default) and PostgreSQL (catalog-pg.ts, shared by server replicas); both run
 * the same conformance tests (test/unit/store-catalog.test.ts). Every method is atomic; `publishVersion` is one
 * transaction.
 */

export interface FileRow {
  name: string;
  /** `sha256:<hex>` of the file's bytes (the blob's name). */
  digest: string;
  size: number;
}

export interface ModuleRow {
  namespace: string;
  name: string;
  /** Search fields, taken from the highest published version. */
  kind: string;
  task: string;
  language: string | null;
  baseFingerprint: string;
  description: string;
  downloads: number;
  createdAt: string;
  updatedAt: string;
}

export interface VersionRow {
  namespace: string;
  name: string;
  version: string;
  /** module.json as published (JSON text). */
  manifest: string;
  /** `sha256:<hex>` over the version's file list: identifies the version's content (the "commit"). */
  digest: string;
  /** Sum of the file sizes. */
  size: number;
  yanked: boolean;
  yankReason: string | null;
  downloads: number;
  createdAt: string;
  files: FileRow[];
}

export interface TagRow {
  tag: string;
  version: string;
  updatedAt: string;
}

export interface NewVersion {
  namespace: string;
  name: string;
  version: string;
  manifest: string;
  kind: string;
  task: string;
  language: string | null;
  baseFingerprint: string;
  description: string;
  digest: string;
  size: number;
  files: FileRow[];
  createdAt: string;
}

export type SearchSort = 'downloads' | 'recent' | 'name';

export interface SearchQuery {
  /** Free text over namespace/name and description (substring, case-insensitive). */
  q?: string;
  kind?: string;
  task?: string;
  language?: string;
  baseFingerprint?: string;
  namespace?: string;
  sort?: SearchSort;
  limit: number;
  offset: number;
}

export interface SearchResult {
  total: number;
  items: ModuleRow[];
}

export type Scope = 'read' | 'write' | 'admin';

export interface TokenRow {
  id: string;
  /** sha256 hex of the secret; the secret itself is never stored. */
  hash: string;
  scopes: Scope[];
  /** Namespace the token may write to; null = every namespace. */
  namespace: string | null;
  description: string;
  createdAt: string;
}

export interface BaseRow {
  fingerprint: string;
  family: string;
  hiddenSize: number;
  numLayers: number;
  vocabSize: number;
  description: string;
  createdAt: string;
}

export interface Catalog {
  /** Inserts a version (and its module row on first publish) in one transaction; VERSION_EXISTS when taken or deleted before. */
  publishVersion(v: NewVersion): Promise<void>;
  /** Inserts many versions in one transaction (bulk loads, benchmarks); all or nothing. */
  publishMany(vs: NewVersion[]): Promise<void>;
  getModule(namespace: string, name: string): Promise<ModuleRow | null>;
  listVersions(namespace: string, name: string): Promise<VersionRow[]>;
  getVersion(namespace: string, name: string, version: string): Promise<VersionRow | null>;
  listTags(namespace: string, name: string): Promise<TagRow[]>;
  /** Points a tag at an existing version (creating or moving it). */
  setTag(namespace: string, name: string, tag: string, version: string, now: string): Promise<void>;
  /** False when the tag did not exist. */
  removeTag(namespace: string, name: string, tag: string): Promise<boolean>;
  /** False when the version does not exist. */
  setYanked(namespace: string, name: string, version: string, yanked: boolean, reason: string | null): Promise<boolean>;
  /**
   * Removes a version, its files and tags pointing at it (and the module row with its last version), leaving a
   * tombstone so the same name@version can never be published again. Returns the file digests it referenced.
   */
  deleteVersion(namespace: string, name: string, version: string): Promise<string[] | null>;
  /** Removes a module with all versions; returns the digests its files referenced, or null when absent. */
  deleteModule(namespace: string, name: string): Promise<string[] | null>;
  /** Digests still referenced by some version (of those given). */
  referencedDigests(digests: string[]): Promise<Set<string>>;
  allDigests(): Promise<Set<string>>;
  search(q: SearchQuery): Promise<SearchResult>;
  addDownload(namespace: string, name: string, version: string): Promise<void>;
  insertToken(t: TokenRow): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRow | null>;
  listTokens(): Promise<TokenRow[]>;
  deleteToken(id: string): Promise<boolean>;
  upsertBase(b: BaseRow): Promise<void>;
  getBase(fingerprint: string): Promise<BaseRow | null>;
  listBases(): Promise<BaseRow[]>;
  close(): Promise<void>;

  // ---- shared catalogs only (several processes over one database: PostgreSQL). An embedded catalog omits these.

  /**
   * Calls `listener` whenever any process committed a change that can alter what a ref resolves to (publish,
   * tag, yank, delete); returns an unsubscribe function. The registry moves its generation on each call.
   */
  watchChanges?(listener: () => void): () => void;
  /** A counter every such change increases (committed with the change): one cheap read tells whether anything moved. */
  changeCount?(): Promise<number>;
  /**
   * Pins blob digests for an in-flight publish so that no process's collector deletes them before the publish
   * commits; resolves once pinned, with the function that releases the pin. Pinned digests count as referenced.
   */
  pinBlobs?(digests: string[]): Promise<() => Promise<void>>;
  /** Runs a collection (reference check + blob deletes) exclusively against every process's pins. */
  collectBlobs?<T>(fn: () => Promise<T>): Promise<T>;
}
