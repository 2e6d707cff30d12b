/**
 * PostgreSQL catalog (the `pg` package): the SQLite catalog's schema and behaviour on a server that several
 * `modhub serve` replicas share. Migrations are tracked in `modhub_schema` and applied under an advisory lock
 * (replicas starting together migrate once). Every write is one transaction; a publish locks its module row
 * first, so two replicas publishing versions of one module serialise, and the UNIQUE (module, version) key
 * decides a race on one version: exactly one commits, the other gets VERSION_EXISTS.
 *
 * Replicas: every change that can alter what a ref resolves to (publish, tag, yank, delete) bumps a counter row
 * and sends `NOTIFY modhub_changes` in its own transaction; {@link PgCatalog.watchChanges} listens on a
 * dedicated connection and, as the fallback when that connection is down, polls the counter.
 * Blob collection across replicas: an in-flight publish pins its digests in `blob_pins` (under a shared advisory
 * lock); a collector holds the exclusive lock while it checks references and deletes, so it can never remove a
 * blob that another replica's publish is about to commit.
 * Example: `const c = await PgCatalog.open('postgres://modhub@db:5432/modhub')`.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import semver from 'semver';
import { StoreError } from './errors';
import type { BaseRow, Catalog, FileRow, ModuleRow, NewVersion, Scope, SearchQuery, SearchResult, TagRow, TokenRow, VersionRow } from './catalog';
import { MIGRATIONS, PG_SCHEMA_VERSION } from './catalog-pg-schema';
import { likeEscape, moduleRow, type ModuleDb } from './catalog-rows';

export { PG_SCHEMA_VERSION };

/** Advisory lock keys (arbitrary constants, 'mhub' + purpose). */
const MIGRATION_LOCK = 0x6d687562_01;
const BLOB_GC_LOCK = 0x6d687562_02;
const CHANNEL = 'modhub_changes';
/** How long an in-flight publish's pins protect its blobs if its process dies without releasing them. */
const PIN_TTL_SECONDS = 6 * 3600;

/** BIGINT columns as JS numbers (counts and byte sizes stay far below 2^53), per pool, not process-wide. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

function isUniqueViolation(e: unknown): boolean {
  return (e as { code?: string }).code === '23505';
}

/** `postgres://user:secret@host/db` with the password masked, for messages and logs. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable database URL>';
  }
}

export interface PgCatalogOptions {
  /** Most pooled connections (default 10); one more is used for LISTEN once {@link PgCatalog.watchChanges} is called. */
  maxConnections?: number;
  /** Fallback poll of the change counter while the LISTEN connection is down or silent, in ms (default 5000). */
  pollMs?: number;
  /** Give up connecting after this long, in ms (default 10000). */
  connectTimeoutMs?: number;
}

type Tx = pg.PoolClient;

export class PgCatalog implements Catalog {
  private listeners = new Set<() => void>();
  private listenClient: pg.Client | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private lastSeen: number | null = null;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
    private readonly opts: PgCatalogOptions,
  ) {}

  /**
   * Connects, creates and migrates the schema; refuses a schema newer than this code. An unreachable server fails
   * with a message naming the (password-masked) URL.
   */
  static async open(url: string, opts: PgCatalogOptions = {}): Promise<PgCatalog> {
    const pool = new pg.Pool({ connectionString: url, max: opts.maxConnections ?? 10, connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000, types });
    // An idle pooled connection that the server drops must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    const c = new PgCatalog(pool, url, opts);
    try {
      await c.migrate();
    } catch (e) {
      await pool.end().catch(() => undefined);
      const err = e as Error & { code?: string };
      if (err instanceof StoreError || /schema version/.test(err.message)) throw err;
      throw new Error(`cannot use the PostgreSQL catalog at ${redactDatabaseUrl(url)}: ${err.message || err.code || String(e)}`);
    }
    return c;
  }

  /** Runs `fn` in one transaction on one pooled connection; rolls back on any error. */
  private async tx<T>(fn: (c: Tx) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      try {
        const r = await fn(client);
        await client.query('COMMIT');
        return r;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    } finally {
      client.release();
    }
  }

  private async rows<T extends pg.QueryResultRow>(sql: string, params: unknown[] = [], c: pg.Pool | Tx = this.pool): Promise<T[]> {
    return (await c.query<T>(sql, params)).rows;
  }

  private async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query('CREATE TABLE IF NOT EXISTS modhub_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)');
      const current = (await this.rows<{ version: number }>('SELECT version FROM modhub_schema', [], c))[0]?.version ?? 0;
      if (current > PG_SCHEMA_VERSION) {
        throw new Error(`catalog schema version ${current} is newer than this modhub's ${PG_SCHEMA_VERSION}: upgrade modhub`);
      }
      for (let v = current; v < PG_SCHEMA_VERSION; v++) await c.query(MIGRATIONS[v]);
      await c.query('INSERT INTO modhub_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = excluded.version', [PG_SCHEMA_VERSION]);
    });
  }

  /** Bumps the change counter and notifies listeners on commit (call inside the changing transaction). */
  private async changed(c: Tx): Promise<void> {
    const n = (await this.rows<{ n: number }>('UPDATE changes SET n = n + 1 WHERE id = 1 RETURNING n', [], c))[0].n;
    await c.query('SELECT pg_notify($1, $2)', [CHANNEL, String(n)]);
  }

  private async insertVersion(c: Tx, v: NewVersion): Promise<void> {
    // Lock (or create) the module row first: publishes of one module serialise here, so the "is this the highest
    // version" check below sees every version committed before it.
    await c.query(
      `INSERT INTO modules (namespace, name, kind, task, language, base_fingerprint, description, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (namespace, name) DO NOTHING`,
      [v.namespace, v.name, v.kind, v.task, v.language, v.baseFingerprint, v.description, v.createdAt],
    );
    const mod = (await this.rows<{ id: number }>('SELECT id FROM modules WHERE namespace = $1 AND name = $2 FOR UPDATE', [v.namespace, v.name], c))[0];
    if (!mod) throw new Error(`module row ${v.namespace}/${v.name} vanished during its publish`);
    if ((await this.rows('SELECT 1 FROM deleted_versions WHERE namespace = $1 AND name = $2 AND version = $3', [v.namespace, v.name, v.version], c)).length) {
      throw new StoreError('VERSION_EXISTS', `${v.namespace}/${v.name}@${v.version} was published and later deleted; version numbers are never reused, publish a new version`);
    }
    const existing = await this.rows<{ version: string }>('SELECT version FROM versions WHERE module_id = $1', [mod.id], c);
    if (existing.some((e) => e.version === v.version)) {
      throw new StoreError('VERSION_EXISTS', `${v.namespace}/${v.name}@${v.version} is already published; versions are immutable, publish a new version`);
    }
    if (existing.length > 0) {
      if (existing.every((e) => semver.gt(v.version, e.version))) {
        await c.query('UPDATE modules SET kind = $1, task = $2, language = $3, base_fingerprint = $4, description = $5, updated_at = $6 WHERE id = $7', [
          v.kind, v.task, v.language, v.baseFingerprint, v.description, v.createdAt, mod.id,
        ]);
      } else {
        await c.query('UPDATE modules SET updated_at = $1 WHERE id = $2', [v.createdAt, mod.id]);
      }
    }
    let versionId: number;
    try {
      versionId = (
        await this.rows<{ id: number }>('INSERT INTO versions (module_id, version, manifest, digest, size, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id', [
          mod.id, v.version, v.manifest, v.digest, v.size, v.createdAt,
        ], c)
      )[0].id;
    } catch (e) {
      if (isUniqueViolation(e)) {
        throw new StoreError('VERSION_EXISTS', `${v.namespace}/${v.name}@${v.version} is already published; versions are immutable, publish a new version`);
      }
      throw e;
    }
    if (v.files.length) {
      await c.query('INSERT INTO files (version_id, name, digest, size) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[])', [
        versionId, v.files.map((f) => f.name), v.files.map((f) => f.digest), v.files.map((f) => f.size),
      ]);
    }
  }

  publishVersion(v: NewVersion): Promise<void> {
    return this.tx(async (c) => {
      await this.insertVersion(c, v);
      await this.changed(c);
    });
  }

  publishMany(vs: NewVersion[]): Promise<void> {
    return this.tx(async (c) => {
      for (const v of vs) await this.insertVersion(c, v);
      await this.changed(c);
    });
  }

  async getModule(namespace: string, name: string): Promise<ModuleRow | null> {
    const r = (await this.rows<ModuleDb>('SELECT * FROM modules WHERE namespace = $1 AND name = $2', [namespace, name]))[0];
    return r ? moduleRow(r) : null;
  }

  /** Versions with their files in ONE statement (one snapshot: never half of a concurrent publish or delete). */
  private async versionsWhere(namespace: string, name: string, version?: string): Promise<VersionRow[]> {
    const rows = await this.rows<{
      version: string; manifest: string; digest: string; size: number; yanked: boolean; yank_reason: string | null; downloads: number; created_at: string; files: FileRow[];
    }>(
      `SELECT v.version, v.manifest, v.digest, v.size, v.yanked, v.yank_reason, v.downloads, v.created_at,
         COALESCE((SELECT json_agg(json_build_object('name', f.name, 'digest', f.digest, 'size', f.size) ORDER BY f.name) FROM files f WHERE f.version_id = v.id), '[]') AS files
       FROM versions v JOIN modules m ON m.id = v.module_id
       WHERE m.namespace = $1 AND m.name = $2${version !== undefined ? ' AND v.version = $3' : ''}`,
      version !== undefined ? [namespace, name, version] : [namespace, name],
    );
    return rows
      .map((r) => ({
        namespace,
        name,
        version: r.version,
        manifest: r.manifest,
        digest: r.digest,
        size: r.size,
        yanked: r.yanked,
        yankReason: r.yank_reason,
        downloads: r.downloads,
        createdAt: r.created_at,
        files: r.files.map((f) => ({ name: f.name, digest: f.digest, size: Number(f.size) })),
      }))
      .sort((a, b) => semver.rcompare(a.version, b.version));
  }

  listVersions(namespace: string, name: string): Promise<VersionRow[]> {
    return this.versionsWhere(namespace, name);
  }

  async getVersion(namespace: string, name: string, version: string): Promise<VersionRow | null> {
    return (await this.versionsWhere(namespace, name, version))[0] ?? null;
  }

  listTags(namespace: string, name: string): Promise<TagRow[]> {
    return this.rows<TagRow>(
      `SELECT t.tag AS tag, v.version AS version, t.updated_at AS "updatedAt" FROM tags t JOIN modules m ON m.id = t.module_id JOIN versions v ON v.id = t.version_id
       WHERE m.namespace = $1 AND m.name = $2 ORDER BY t.tag`,
      [namespace, name],
    );
  }

  setTag(namespace: string, name: string, tag: string, version: string, now: string): Promise<void> {
    return this.tx(async (c) => {
      const v = (
        await this.rows<{ id: number; module_id: number }>(
          'SELECT v.id, v.module_id FROM versions v JOIN modules m ON m.id = v.module_id WHERE m.namespace = $1 AND m.name = $2 AND v.version = $3 FOR SHARE OF v',
          [namespace, name, version],
          c,
        )
      )[0];
      if (!v) throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name}@${version} does not exist`);
      await c.query(
        'INSERT INTO tags (module_id, tag, version_id, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (module_id, tag) DO UPDATE SET version_id = excluded.version_id, updated_at = excluded.updated_at',
        [v.module_id, tag, v.id, now],
      );
      await this.changed(c);
    });
  }

  removeTag(namespace: string, name: string, tag: string): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query('DELETE FROM tags WHERE tag = $1 AND module_id = (SELECT id FROM modules WHERE namespace = $2 AND name = $3)', [tag, namespace, name]);
      if (!r.rowCount) return false;
      await this.changed(c);
      return true;
    });
  }

  setYanked(namespace: string, name: string, version: string, yanked: boolean, reason: string | null): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query('UPDATE versions SET yanked = $1, yank_reason = $2 WHERE version = $3 AND module_id = (SELECT id FROM modules WHERE namespace = $4 AND name = $5)', [
        yanked, yanked ? reason : null, version, namespace, name,
      ]);
      if (!r.rowCount) return false;
      await this.changed(c);
      return true;
    });
  }

  private static readonly NOW_TEXT = `to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

  deleteVersion(namespace: string, name: string, version: string): Promise<string[] | null> {
    return this.tx(async (c) => {
      const mod = (await this.rows<{ id: number }>('SELECT id FROM modules WHERE namespace = $1 AND name = $2 FOR UPDATE', [namespace, name], c))[0];
      if (!mod) return null;
      const v = (await this.rows<{ id: number }>('SELECT id FROM versions WHERE module_id = $1 AND version = $2', [mod.id, version], c))[0];
      if (!v) return null;
      const digests = (await this.rows<{ digest: string }>('SELECT digest FROM files WHERE version_id = $1', [v.id], c)).map((r) => r.digest);
      await c.query(
        `INSERT INTO deleted_versions (namespace, name, version, digest, deleted_at) SELECT $1, $2, version, digest, ${PgCatalog.NOW_TEXT} FROM versions WHERE id = $3
         ON CONFLICT DO NOTHING`,
        [namespace, name, v.id],
      );
      await c.query('DELETE FROM tags WHERE version_id = $1', [v.id]);
      await c.query('DELETE FROM files WHERE version_id = $1', [v.id]);
      await c.query('DELETE FROM versions WHERE id = $1', [v.id]);
      const left = (await this.rows<{ n: number }>('SELECT COUNT(*)::int AS n FROM versions WHERE module_id = $1', [mod.id], c))[0].n;
      if (left === 0) await c.query('DELETE FROM modules WHERE id = $1', [mod.id]);
      await this.changed(c);
      return digests;
    });
  }

  deleteModule(namespace: string, name: string): Promise<string[] | null> {
    return this.tx(async (c) => {
      const m = (await this.rows<{ id: number }>('SELECT id FROM modules WHERE namespace = $1 AND name = $2 FOR UPDATE', [namespace, name], c))[0];
      if (!m) return null;
      const digests = (await this.rows<{ digest: string }>('SELECT f.digest FROM files f JOIN versions v ON v.id = f.version_id WHERE v.module_id = $1', [m.id], c)).map(
        (r) => r.digest,
      );
      await c.query(
        `INSERT INTO deleted_versions (namespace, name, version, digest, deleted_at) SELECT $1, $2, version, digest, ${PgCatalog.NOW_TEXT} FROM versions WHERE module_id = $3
         ON CONFLICT DO NOTHING`,
        [namespace, name, m.id],
      );
      await c.query('DELETE FROM tags WHERE module_id = $1', [m.id]);
      await c.query('DELETE FROM files WHERE version_id IN (SELECT id FROM versions WHERE module_id = $1)', [m.id]);
      await c.query('DELETE FROM versions WHERE module_id = $1', [m.id]);
      await c.query('DELETE FROM modules WHERE id = $1', [m.id]);
      await this.changed(c);
      return [...new Set(digests)];
    });
  }

  /** Digests (of those given) that a version references or a live pin (an in-flight publish on any replica) holds. */
  async referencedDigests(digests: string[]): Promise<Set<string>> {
    const ds = [...new Set(digests)];
    if (ds.length === 0) return new Set();
    const rows = await this.rows<{ digest: string }>(
      `SELECT digest FROM files WHERE digest = ANY($1::text[]) UNION SELECT digest FROM blob_pins WHERE digest = ANY($1::text[]) AND expires_at > now()`,
      [ds],
      this.collector ?? this.pool,
    );
    return new Set(rows.map((r) => r.digest));
  }

  /** Every digest a version references or a live pin holds. */
  async allDigests(): Promise<Set<string>> {
    const rows = await this.rows<{ digest: string }>('SELECT DISTINCT digest FROM files UNION SELECT digest FROM blob_pins WHERE expires_at > now()', [], this.collector ?? this.pool);
    return new Set(rows.map((r) => r.digest));
  }

  /**
   * Pins digests for an in-flight publish (visible to every replica's collector) until the returned release runs
   * or the pin expires. Waits while a collector is deleting, so a blob is never removed between this pin and the
   * publish's upload.
   */
  async pinBlobs(digests: string[]): Promise<() => Promise<void>> {
    const pin = randomBytes(12).toString('hex');
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock_shared($1)', [BLOB_GC_LOCK]);
      await c.query(`INSERT INTO blob_pins (pin, digest, expires_at) SELECT $1, d, now() + make_interval(secs => $3) FROM unnest($2::text[]) AS d ON CONFLICT DO NOTHING`, [
        pin, [...new Set(digests)], PIN_TTL_SECONDS,
      ]);
    });
    return async () => {
      await this.pool.query('DELETE FROM blob_pins WHERE pin = $1', [pin]);
    };
  }

  /** Runs a blob collection (reference check + deletes) exclusively against every replica's pins; drops expired pins. */
  async collectBlobs<T>(fn: () => Promise<T>): Promise<T> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [BLOB_GC_LOCK]);
      await c.query('DELETE FROM blob_pins WHERE expires_at <= now()');
      // The reference checks inside run on this connection: taking a second one from the pool could wait forever
      // behind publishes that hold connections while they wait for this lock. (The registry runs one collection at
      // a time per process.) READ COMMITTED: each check sees pins committed up to its start.
      this.collector = c;
      try {
        return await fn();
      } finally {
        this.collector = null;
      }
    });
  }

  /** The connection of the collection in progress (see collectBlobs). */
  private collector: Tx | null = null;

  async search(q: SearchQuery): Promise<SearchResult> {
    const where: string[] = [];
    const params: unknown[] = [];
    const eq = (col: string, v: string | undefined): void => {
      if (v !== undefined && v !== '') {
        params.push(v);
        where.push(`${col} = $${params.length}`);
      }
    };
    eq('kind', q.kind);
    eq('task', q.task);
    eq('language', q.language);
    eq('base_fingerprint', q.baseFingerprint);
    eq('namespace', q.namespace);
    const text = q.q?.trim().toLowerCase();
    if (text) {
      // Case-insensitive substring; from 3 characters on the pg_trgm indexes answer it (on lower(...), which
      // matches what the expression indexes store).
      params.push(`%${likeEscape(text)}%`);
      const p = `$${params.length}`;
      where.push(`(lower(namespace || '/' || name) LIKE ${p} OR lower(description) LIKE ${p})`);
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const order = q.sort === 'recent' ? 'updated_at DESC, namespace, name' : q.sort === 'name' ? 'namespace, name' : 'downloads DESC, namespace, name';
    const [count, rows] = await Promise.all([
      where.length ? this.rows<{ n: number }>(`SELECT COUNT(*)::int AS n FROM modules ${w}`, params) : this.rows<{ n: number }>('SELECT n FROM module_count WHERE id = 1'),
      this.rows<ModuleDb>(`SELECT * FROM modules ${w} ORDER BY ${order} LIMIT $${params.length + 1} OFFSET $${params.length + 2}`, [...params, q.limit, q.offset]),
    ]);
    return { total: count[0].n, items: rows.map(moduleRow) };
  }

  async addDownload(namespace: string, name: string, version: string): Promise<void> {
    await this.tx(async (c) => {
      const m = (await this.rows<{ id: number }>('UPDATE modules SET downloads = downloads + 1 WHERE namespace = $1 AND name = $2 RETURNING id', [namespace, name], c))[0];
      if (!m) return;
      await c.query('UPDATE versions SET downloads = downloads + 1 WHERE module_id = $1 AND version = $2', [m.id, version]);
    });
  }

  async insertToken(t: TokenRow): Promise<void> {
    await this.pool.query('INSERT INTO tokens (id, hash, scopes, namespace, description, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      t.id, t.hash, t.scopes.join(','), t.namespace, t.description, t.createdAt,
    ]);
  }

  private tokenRow(r: { id: string; hash: string; scopes: string; namespace: string | null; description: string; created_at: string }): TokenRow {
    return { id: r.id, hash: r.hash, scopes: r.scopes.split(',').filter(Boolean) as Scope[], namespace: r.namespace, description: r.description, createdAt: r.created_at };
  }

  async findTokenByHash(hash: string): Promise<TokenRow | null> {
    const r = (await this.rows<Parameters<PgCatalog['tokenRow']>[0]>('SELECT * FROM tokens WHERE hash = $1', [hash]))[0];
    return r ? this.tokenRow(r) : null;
  }

  async listTokens(): Promise<TokenRow[]> {
    return (await this.rows<Parameters<PgCatalog['tokenRow']>[0]>('SELECT * FROM tokens ORDER BY created_at, id')).map((r) => this.tokenRow(r));
  }

  async deleteToken(id: string): Promise<boolean> {
    return ((await this.pool.query('DELETE FROM tokens WHERE id = $1', [id])).rowCount ?? 0) > 0;
  }

  async upsertBase(b: BaseRow): Promise<void> {
    await this.pool.query(
      `INSERT INTO bases (fingerprint, family, hidden_size, num_layers, vocab_size, description, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (fingerprint) DO UPDATE SET family = excluded.family, hidden_size = excluded.hidden_size, num_layers = excluded.num_layers,
       vocab_size = excluded.vocab_size, description = excluded.description`,
      [b.fingerprint, b.family, b.hiddenSize, b.numLayers, b.vocabSize, b.description, b.createdAt],
    );
  }

  private baseRow(r: { fingerprint: string; family: string; hidden_size: number; num_layers: number; vocab_size: number; description: string; created_at: string }): BaseRow {
    return { fingerprint: r.fingerprint, family: r.family, hiddenSize: r.hidden_size, numLayers: r.num_layers, vocabSize: r.vocab_size, description: r.description, createdAt: r.created_at };
  }

  async getBase(fingerprint: string): Promise<BaseRow | null> {
    const r = (await this.rows<Parameters<PgCatalog['baseRow']>[0]>('SELECT * FROM bases WHERE fingerprint = $1', [fingerprint]))[0];
    return r ? this.baseRow(r) : null;
  }

  async listBases(): Promise<BaseRow[]> {
    return (await this.rows<Parameters<PgCatalog['baseRow']>[0]>('SELECT * FROM bases ORDER BY family, fingerprint')).map((r) => this.baseRow(r));
  }

  // ---- change notifications (replicas) --------------------------------------------------------------------

  /**
   * Calls `listener` after any process sharing this database committed a change that can alter a resolution
   * (including this one's own). LISTEN on a dedicated connection; when it drops, reconnects with back-off and
   * fires once (changes may have been missed); the counter is also polled every `pollMs` as the fallback.
   */
  watchChanges(listener: () => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1 && !this.closed) {
      void this.listen();
      const pollMs = this.opts.pollMs ?? 5000;
      this.pollTimer = setInterval(() => void this.poll(), pollMs);
      this.pollTimer.unref();
    }
    return () => {
      this.listeners.delete(listener);
    };
  }

  async changeCount(): Promise<number> {
    const n = (await this.rows<{ n: number }>('SELECT n FROM changes WHERE id = 1'))[0]?.n ?? 0;
    if (this.lastSeen === null || n > this.lastSeen) this.lastSeen = n;
    return n;
  }

  private fire(): void {
    for (const l of this.listeners) l();
  }

  private async poll(): Promise<void> {
    try {
      const before = this.lastSeen;
      const n = await this.changeCount();
      if (before !== null && n !== before) this.fire();
    } catch {
      // The database is unreachable; requests will report it. Keep polling.
    }
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.opts.connectTimeoutMs ?? 10_000 });
    const retry = (): void => {
      if (this.closed || this.reconnectTimer) return;
      if (this.listenClient === client) this.listenClient = null;
      client.end().catch(() => undefined);
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        void this.listen();
      }, 1000);
      this.reconnectTimer.unref();
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL) return;
      const n = Number(msg.payload);
      if (Number.isFinite(n)) this.lastSeen = Math.max(this.lastSeen ?? 0, n);
      this.fire();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      if (this.closed) {
        await client.end();
        return;
      }
      this.listenClient = client;
      // Whatever changed while we were not listening is unknown: let the caches start over.
      this.fire();
      await this.poll();
    } catch {
      retry();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const lc = this.listenClient;
    this.listenClient = null;
    if (lc) {
      lc.removeAllListeners('end');
      lc.removeAllListeners('error');
      lc.on('error', () => undefined);
      await lc.end().catch(() => undefined);
    }
    await this.pool.end();
  }
}
