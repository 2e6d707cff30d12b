/**
 * SQLite catalog (the `sqlite3` package): schema migrations tracked in `PRAGMA user_version`, WAL journal with
 * `synchronous=FULL` (a committed publish survives a crash), every write one `BEGIN IMMEDIATE` transaction.
 * One connection per catalog; operations are queued so no statement of another call runs inside a transaction
 * (readers never see half a publish). Other processes (the `token create` CLI) wait on `busy_timeout`.
 * Example: `const c = await SqliteCatalog.open(':memory:')`.
 */
import semver from 'semver';
import sqlite3 from 'sqlite3';
import { StoreError } from './errors';
import type { BaseRow, Catalog, FileRow, ModuleRow, NewVersion, Scope, SearchQuery, SearchResult, TagRow, TokenRow, VersionRow } from './catalog';
import { likeEscape, moduleRow, type ModuleDb } from './catalog-rows';

type Param = string | number | null;

/** Each entry migrates the schema from version i to i + 1. Append only; never edit a shipped migration. */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE modules (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    language TEXT,
    base_fingerprint TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    downloads INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (namespace, name)
  );
  CREATE INDEX modules_downloads ON modules (downloads DESC, namespace, name);
  CREATE INDEX modules_updated ON modules (updated_at DESC);
  CREATE INDEX modules_kind ON modules (kind);
  CREATE INDEX modules_task ON modules (task);
  CREATE INDEX modules_language ON modules (language);
  CREATE INDEX modules_base ON modules (base_fingerprint);
  CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    module_id INTEGER NOT NULL REFERENCES modules(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    manifest TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    yanked INTEGER NOT NULL DEFAULT 0,
    yank_reason TEXT,
    downloads INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (module_id, version)
  );
  CREATE TABLE files (
    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (version_id, name)
  );
  CREATE INDEX files_digest ON files (digest);
  CREATE TABLE tags (
    module_id INTEGER NOT NULL REFERENCES modules(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (module_id, tag)
  );
  CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    namespace TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
  );
  CREATE TABLE bases (
    fingerprint TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    hidden_size INTEGER NOT NULL,
    num_layers INTEGER NOT NULL,
    vocab_size INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
  );
  `,
  // 2: search at 100k modules — sort indexes that cover the tie-breakers, and a trigram full-text index so that
  // substring search over ns/name and description does not scan the table.
  `
  DROP INDEX modules_updated;
  CREATE INDEX modules_updated ON modules (updated_at DESC, namespace, name);
  CREATE INDEX modules_name ON modules (namespace, name);
  CREATE VIRTUAL TABLE modules_fts USING fts5(ident, description, tokenize = 'trigram');
  INSERT INTO modules_fts (rowid, ident, description) SELECT id, namespace || '/' || name, description FROM modules;
  CREATE TRIGGER modules_fts_insert AFTER INSERT ON modules BEGIN
    INSERT INTO modules_fts (rowid, ident, description) VALUES (new.id, new.namespace || '/' || new.name, new.description);
  END;
  CREATE TRIGGER modules_fts_delete AFTER DELETE ON modules BEGIN
    DELETE FROM modules_fts WHERE rowid = old.id;
  END;
  CREATE TRIGGER modules_fts_update AFTER UPDATE OF description ON modules BEGIN
    UPDATE modules_fts SET description = new.description WHERE rowid = new.id;
  END;
  `,
  // 3: filter + sort without sorting the filtered set: each equality filter leads an index in download order.
  `
  DROP INDEX modules_kind;
  DROP INDEX modules_task;
  DROP INDEX modules_language;
  DROP INDEX modules_base;
  CREATE INDEX modules_kind_dl ON modules (kind, downloads DESC, namespace, name);
  CREATE INDEX modules_task_dl ON modules (task, downloads DESC, namespace, name);
  CREATE INDEX modules_language_dl ON modules (language, downloads DESC, namespace, name);
  CREATE INDEX modules_base_dl ON modules (base_fingerprint, downloads DESC, namespace, name);
  `,
  // 4: tombstones — a deleted name@version is never published again with other bytes (lockfiles stay honest).
  `
  CREATE TABLE deleted_versions (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name, version)
  );
  `,
];

/** The schema version this code expects. */
export const SCHEMA_VERSION = MIGRATIONS.length;

interface VersionDb {
  id: number;
  version: string;
  manifest: string;
  digest: string;
  size: number;
  yanked: number;
  yank_reason: string | null;
  downloads: number;
  created_at: string;
}

export class SqliteCatalog implements Catalog {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly db: sqlite3.Database) {}

  /**
   * Opens (creating and migrating) a catalog file, or `:memory:`. Refuses a schema newer than this code.
   * `readOnly` opens an existing file as immutable (a read-only mount: no WAL or lock files can be made) and
   * refuses a schema older than this code instead of migrating it; every write then fails with SQLITE_READONLY.
   */
  static async open(file: string, opts: { readOnly?: boolean } = {}): Promise<SqliteCatalog> {
    const readOnly = opts.readOnly === true && file !== ':memory:';
    const db = await new Promise<sqlite3.Database>((resolve, reject) => {
      const d = readOnly
        ? new sqlite3.Database(`file:${encodeURI(file)}?immutable=1`, sqlite3.OPEN_READONLY | sqlite3.OPEN_URI, (err) => (err ? reject(err) : resolve(d)))
        : new sqlite3.Database(file, (err) => (err ? reject(err) : resolve(d)));
    });
    const c = new SqliteCatalog(db);
    if (readOnly) {
      try {
        const v = (await c.get<{ user_version: number }>('PRAGMA user_version'))?.user_version ?? 0;
        if (v !== SCHEMA_VERSION) throw new Error(`catalog schema version ${v} differs from this modhub's ${SCHEMA_VERSION}, and a read-only catalog cannot be migrated: open it writable once, or use the matching modhub`);
      } catch (e) {
        await c.close().catch(() => undefined);
        throw e;
      }
      return c;
    }
    try {
      await c.run('PRAGMA busy_timeout = 10000');
      if (file !== ':memory:') await c.walMode();
      await c.run('PRAGMA synchronous = FULL');
      await c.run('PRAGMA foreign_keys = ON');
      await c.migrate();
    } catch (e) {
      await c.close().catch(() => undefined);
      throw e;
    }
    return c;
  }

  /** Prepared statements by SQL text (parsing dominates small statements; all use goes through the queue). */
  private readonly statements = new Map<string, sqlite3.Statement>();

  /** Per-statement queues: one cached statement serves one call at a time (bind, step, reset). */
  private readonly statementQueues = new Map<string, Promise<unknown>>();

  /**
   * Runs `fn` on the cached statement for `sql` once no other call is using it. Without this, a reader and a
   * writer running the same SQL at once rebound and reset each other's statement: a download count's
   * `SELECT id FROM modules` could come back empty under load and the count was silently dropped.
   */
  private withStatement<T>(sql: string, fn: (st: sqlite3.Statement) => Promise<T>): Promise<T> {
    const prev = this.statementQueues.get(sql) ?? Promise.resolve();
    const p = prev.then(async () => fn(await this.prepared(sql)));
    const tail = p.catch(() => undefined);
    this.statementQueues.set(sql, tail);
    void tail.then(() => {
      if (this.statementQueues.get(sql) === tail) this.statementQueues.delete(sql);
    });
    return p;
  }

  private prepared(sql: string): Promise<sqlite3.Statement> {
    const cached = this.statements.get(sql);
    if (cached) return Promise.resolve(cached);
    return new Promise((resolve, reject) => {
      const st = this.db.prepare(sql, (err: Error | null) => {
        if (err) return reject(err);
        this.statements.set(sql, st);
        resolve(st);
      });
    });
  }

  private async run(sql: string, params: Param[] = []): Promise<{ changes: number; lastID: number }> {
    // Transaction control and PRAGMAs run unprepared (they may change the schema the cache was prepared against).
    if (/^\s*(BEGIN|COMMIT|ROLLBACK|PRAGMA)/i.test(sql)) {
      return new Promise((resolve, reject) => {
        this.db.run(sql, params, function (this: sqlite3.RunResult, err: Error | null) {
          if (err) reject(err);
          else resolve({ changes: this.changes, lastID: this.lastID });
        });
      });
    }
    return this.withStatement(
      sql,
      (st) =>
        new Promise((resolve, reject) => {
          st.run(params, function (this: sqlite3.RunResult, err: Error | null) {
            if (err) reject(err);
            else resolve({ changes: this.changes, lastID: this.lastID });
          });
        }),
    );
  }

  private async get<T>(sql: string, params: Param[] = []): Promise<T | undefined> {
    if (/^\s*PRAGMA/i.test(sql)) {
      return new Promise((resolve, reject) => this.db.get(sql, params, (err: Error | null, row: T | undefined) => (err ? reject(err) : resolve(row))));
    }
    return this.withStatement(sql, async (st) => {
      const row = await new Promise<T | undefined>((resolve, reject) => st.get(params, (err: Error | null, r: T | undefined) => (err ? reject(err) : resolve(r))));
      // get() leaves the statement open on its first row; reset it so it holds no read snapshot.
      await new Promise<void>((resolve) => st.reset(() => resolve()));
      return row;
    });
  }

  private async all<T>(sql: string, params: Param[] = []): Promise<T[]> {
    return this.withStatement(sql, (st) => new Promise((resolve, reject) => st.all(params, (err: Error | null, rows: T[]) => (err ? reject(err) : resolve(rows)))));
  }

  private exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => this.db.exec(sql, (err: Error | null) => (err ? reject(err) : resolve())));
  }

  /** Runs `fn` with the connection to itself (no other call interleaves). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Runs `fn` inside one IMMEDIATE transaction on the exclusive connection; rolls back on any error. */
  private tx<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      await this.run('BEGIN IMMEDIATE');
      try {
        const r = await fn();
        await this.run('COMMIT');
        return r;
      } catch (e) {
        await this.run('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  /**
   * Switches the file to WAL. That needs the file to itself for a moment, and SQLite answers it with SQLITE_BUSY at
   * once, past busy_timeout, while another connection opens the same new file (4 opens at once of a fresh catalog
   * failed 33–41 times in 300): so it is retried, for up to busy_timeout's 10 s.
   */
  private async walMode(): Promise<void> {
    const until = Date.now() + 10_000;
    for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
      try {
        await this.run('PRAGMA journal_mode = WAL');
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() + wait > until) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private async migrate(): Promise<void> {
    const row = await this.get<{ user_version: number }>('PRAGMA user_version');
    const current = row?.user_version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new Error(`catalog schema version ${current} is newer than this modhub's ${SCHEMA_VERSION}: upgrade modhub`);
    }
    for (let v = current; v < SCHEMA_VERSION; v++) {
      await this.tx(async () => {
        // Another process (a CLI next to the server) may have migrated since we looked: re-read under the lock.
        const now = (await this.get<{ user_version: number }>('PRAGMA user_version'))?.user_version ?? 0;
        if (now > v) return;
        await this.exec(MIGRATIONS[v]);
        await this.run(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  private async insertVersion(v: NewVersion): Promise<void> {
    if (await this.get('SELECT 1 FROM deleted_versions WHERE namespace = ? AND name = ? AND version = ?', [v.namespace, v.name, v.version])) {
      throw new StoreError('VERSION_EXISTS', `${v.namespace}/${v.name}@${v.version} was published and later deleted; version numbers are never reused, publish a new version`);
    }
    let mod = await this.get<ModuleDb>('SELECT * FROM modules WHERE namespace = ? AND name = ?', [v.namespace, v.name]);
    if (!mod) {
      const r = await this.run(
        'INSERT INTO modules (namespace, name, kind, task, language, base_fingerprint, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [v.namespace, v.name, v.kind, v.task, v.language, v.baseFingerprint, v.description, v.createdAt, v.createdAt],
      );
      mod = { id: r.lastID } as ModuleDb;
    } else {
      const existing = await this.all<{ version: string }>('SELECT version FROM versions WHERE module_id = ?', [mod.id]);
      if (existing.some((e) => e.version === v.version)) {
        throw new StoreError('VERSION_EXISTS', `${v.namespace}/${v.name}@${v.version} is already published; versions are immutable, publish a new version`);
      }
      const highest = existing.every((e) => semver.gt(v.version, e.version));
      if (highest) {
        await this.run('UPDATE modules SET kind = ?, task = ?, language = ?, base_fingerprint = ?, description = ?, updated_at = ? WHERE id = ?', [
          v.kind, v.task, v.language, v.baseFingerprint, v.description, v.createdAt, mod.id,
        ]);
      } else {
        await this.run('UPDATE modules SET updated_at = ? WHERE id = ?', [v.createdAt, mod.id]);
      }
    }
    let vr: { lastID: number };
    try {
      vr = await this.run('INSERT INTO versions (module_id, version, manifest, digest, size, created_at) VALUES (?, ?, ?, ?, ?, ?)', [
        mod.id, v.version, v.manifest, v.digest, v.size, v.createdAt,
      ]);
    } catch (e) {
      if (/UNIQUE constraint/.test((e as Error).message)) {
        throw new StoreError('VERSION_EXISTS', `${v.namespace}/${v.name}@${v.version} is already published; versions are immutable, publish a new version`);
      }
      throw e;
    }
    for (const f of v.files) {
      await this.run('INSERT INTO files (version_id, name, digest, size) VALUES (?, ?, ?, ?)', [vr.lastID, f.name, f.digest, f.size]);
    }
  }

  publishVersion(v: NewVersion): Promise<void> {
    return this.tx(() => this.insertVersion(v));
  }

  publishMany(vs: NewVersion[]): Promise<void> {
    return this.tx(async () => {
      for (const v of vs) await this.insertVersion(v);
    });
  }

  getModule(namespace: string, name: string): Promise<ModuleRow | null> {
    return this.exclusive(async () => {
      const r = await this.get<ModuleDb>('SELECT * FROM modules WHERE namespace = ? AND name = ?', [namespace, name]);
      return r ? moduleRow(r) : null;
    });
  }

  private async versionsWhere(namespace: string, name: string, version?: string): Promise<VersionRow[]> {
    const rows = await this.all<VersionDb>(
      `SELECT v.* FROM versions v JOIN modules m ON m.id = v.module_id WHERE m.namespace = ? AND m.name = ?${version !== undefined ? ' AND v.version = ?' : ''}`,
      version !== undefined ? [namespace, name, version] : [namespace, name],
    );
    const out: VersionRow[] = [];
    // One query for the files of all these versions (not one per version).
    const fileRows =
      rows.length === 0
        ? []
        : version !== undefined
          ? await this.all<FileRow & { version_id: number }>('SELECT version_id, name, digest, size FROM files WHERE version_id = ? ORDER BY name', [rows[0].id])
          : await this.all<FileRow & { version_id: number }>(
              'SELECT f.version_id, f.name, f.digest, f.size FROM files f JOIN versions v ON v.id = f.version_id JOIN modules m ON m.id = v.module_id WHERE m.namespace = ? AND m.name = ? ORDER BY f.name',
              [namespace, name],
            );
    const byVersion = new Map<number, FileRow[]>();
    for (const f of fileRows) {
      const list = byVersion.get(f.version_id) ?? [];
      list.push({ name: f.name, digest: f.digest, size: f.size });
      byVersion.set(f.version_id, list);
    }
    for (const r of rows) {
      const files = byVersion.get(r.id) ?? [];
      out.push({
        namespace,
        name,
        version: r.version,
        manifest: r.manifest,
        digest: r.digest,
        size: r.size,
        yanked: r.yanked === 1,
        yankReason: r.yank_reason,
        downloads: r.downloads,
        createdAt: r.created_at,
        files,
      });
    }
    return out.sort((a, b) => semver.rcompare(a.version, b.version));
  }

  listVersions(namespace: string, name: string): Promise<VersionRow[]> {
    return this.exclusive(() => this.versionsWhere(namespace, name));
  }

  getVersion(namespace: string, name: string, version: string): Promise<VersionRow | null> {
    return this.exclusive(async () => (await this.versionsWhere(namespace, name, version))[0] ?? null);
  }

  listTags(namespace: string, name: string): Promise<TagRow[]> {
    return this.exclusive(() =>
      this.all<TagRow>(
        'SELECT t.tag AS tag, v.version AS version, t.updated_at AS updatedAt FROM tags t JOIN modules m ON m.id = t.module_id JOIN versions v ON v.id = t.version_id WHERE m.namespace = ? AND m.name = ? ORDER BY t.tag',
        [namespace, name],
      ),
    );
  }

  setTag(namespace: string, name: string, tag: string, version: string, now: string): Promise<void> {
    return this.tx(async () => {
      const v = await this.get<{ id: number; module_id: number }>(
        'SELECT v.id, v.module_id FROM versions v JOIN modules m ON m.id = v.module_id WHERE m.namespace = ? AND m.name = ? AND v.version = ?',
        [namespace, name, version],
      );
      if (!v) throw new StoreError('VERSION_NOT_FOUND', `${namespace}/${name}@${version} does not exist`);
      await this.run(
        'INSERT INTO tags (module_id, tag, version_id, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (module_id, tag) DO UPDATE SET version_id = excluded.version_id, updated_at = excluded.updated_at',
        [v.module_id, tag, v.id, now],
      );
    });
  }

  removeTag(namespace: string, name: string, tag: string): Promise<boolean> {
    return this.tx(async () => {
      const r = await this.run('DELETE FROM tags WHERE tag = ? AND module_id = (SELECT id FROM modules WHERE namespace = ? AND name = ?)', [tag, namespace, name]);
      return r.changes > 0;
    });
  }

  setYanked(namespace: string, name: string, version: string, yanked: boolean, reason: string | null): Promise<boolean> {
    return this.tx(async () => {
      const r = await this.run(
        'UPDATE versions SET yanked = ?, yank_reason = ? WHERE version = ? AND module_id = (SELECT id FROM modules WHERE namespace = ? AND name = ?)',
        [yanked ? 1 : 0, yanked ? reason : null, version, namespace, name],
      );
      return r.changes > 0;
    });
  }

  deleteVersion(namespace: string, name: string, version: string): Promise<string[] | null> {
    return this.tx(async () => {
      const v = await this.get<{ id: number; module_id: number }>(
        'SELECT v.id, v.module_id FROM versions v JOIN modules m ON m.id = v.module_id WHERE m.namespace = ? AND m.name = ? AND v.version = ?',
        [namespace, name, version],
      );
      if (!v) return null;
      const digests = (await this.all<{ digest: string }>('SELECT digest FROM files WHERE version_id = ?', [v.id])).map((r) => r.digest);
      await this.run(
        `INSERT OR IGNORE INTO deleted_versions (namespace, name, version, digest, deleted_at)
         SELECT ?, ?, version, digest, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM versions WHERE id = ?`,
        [namespace, name, v.id],
      );
      await this.run('DELETE FROM tags WHERE version_id = ?', [v.id]);
      await this.run('DELETE FROM files WHERE version_id = ?', [v.id]);
      await this.run('DELETE FROM versions WHERE id = ?', [v.id]);
      const left = await this.get<{ n: number }>('SELECT COUNT(*) AS n FROM versions WHERE module_id = ?', [v.module_id]);
      if (!left || left.n === 0) await this.run('DELETE FROM modules WHERE id = ?', [v.module_id]);
      return digests;
    });
  }

  deleteModule(namespace: string, name: string): Promise<string[] | null> {
    return this.tx(async () => {
      const m = await this.get<{ id: number }>('SELECT id FROM modules WHERE namespace = ? AND name = ?', [namespace, name]);
      if (!m) return null;
      const digests = (await this.all<{ digest: string }>('SELECT f.digest FROM files f JOIN versions v ON v.id = f.version_id WHERE v.module_id = ?', [m.id])).map(
        (r) => r.digest,
      );
      await this.run(
        `INSERT OR IGNORE INTO deleted_versions (namespace, name, version, digest, deleted_at)
         SELECT ?, ?, version, digest, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM versions WHERE module_id = ?`,
        [namespace, name, m.id],
      );
      await this.run('DELETE FROM tags WHERE module_id = ?', [m.id]);
      await this.run('DELETE FROM files WHERE version_id IN (SELECT id FROM versions WHERE module_id = ?)', [m.id]);
      await this.run('DELETE FROM versions WHERE module_id = ?', [m.id]);
      await this.run('DELETE FROM modules WHERE id = ?', [m.id]);
      return [...new Set(digests)];
    });
  }

  referencedDigests(digests: string[]): Promise<Set<string>> {
    return this.exclusive(async () => {
      const out = new Set<string>();
      for (const d of new Set(digests)) {
        if (await this.get('SELECT 1 FROM files WHERE digest = ? LIMIT 1', [d])) out.add(d);
      }
      return out;
    });
  }

  allDigests(): Promise<Set<string>> {
    return this.exclusive(async () => new Set((await this.all<{ digest: string }>('SELECT DISTINCT digest FROM files')).map((r) => r.digest)));
  }

  search(q: SearchQuery): Promise<SearchResult> {
    const where: string[] = [];
    const params: Param[] = [];
    const eq = (col: string, v: string | undefined): void => {
      if (v !== undefined && v !== '') {
        where.push(`${col} = ?`);
        params.push(v);
      }
    };
    eq('kind', q.kind);
    eq('task', q.task);
    eq('language', q.language);
    eq('base_fingerprint', q.baseFingerprint);
    eq('namespace', q.namespace);
    const text = q.q?.trim().toLowerCase();
    if (text && [...text].length >= 3) {
      // Trigram phrase = case-insensitive substring match, answered from the FTS index.
      where.push('id IN (SELECT rowid FROM modules_fts WHERE modules_fts MATCH ?)');
      params.push(`"${text.replace(/"/g, '""')}"`);
    } else if (text) {
      // Shorter than a trigram: the index cannot help, scan with LIKE.
      const pat = `%${likeEscape(text)}%`;
      where.push("((namespace || '/' || name) LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\')");
      params.push(pat, pat);
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const order = q.sort === 'recent' ? 'updated_at DESC, namespace, name' : q.sort === 'name' ? 'namespace, name' : 'downloads DESC, namespace, name';
    const textOnly = text !== undefined && [...text].length >= 3 && where.length === 1;
    return this.exclusive(async () => {
      // Measured at 100k modules: a separate count and an index-ordered page beat one windowed query (which must
      // materialise and sort every match); text alone is counted straight from the FTS index.
      const total = textOnly
        ? ((await this.get<{ n: number }>('SELECT COUNT(*) AS n FROM modules_fts WHERE modules_fts MATCH ?', params))?.n ?? 0)
        : ((await this.get<{ n: number }>(`SELECT COUNT(*) AS n FROM modules ${w}`, params))?.n ?? 0);
      const rows = await this.all<ModuleDb>(`SELECT * FROM modules ${w} ORDER BY ${order} LIMIT ? OFFSET ?`, [...params, q.limit, q.offset]);
      return { total, items: rows.map(moduleRow) };
    });
  }

  addDownload(namespace: string, name: string, version: string): Promise<void> {
    return this.tx(async () => {
      const m = await this.get<{ id: number }>('SELECT id FROM modules WHERE namespace = ? AND name = ?', [namespace, name]);
      if (!m) return;
      await this.run('UPDATE modules SET downloads = downloads + 1 WHERE id = ?', [m.id]);
      await this.run('UPDATE versions SET downloads = downloads + 1 WHERE module_id = ? AND version = ?', [m.id, version]);
    });
  }

  insertToken(t: TokenRow): Promise<void> {
    return this.tx(async () => {
      await this.run('INSERT INTO tokens (id, hash, scopes, namespace, description, created_at) VALUES (?, ?, ?, ?, ?, ?)', [
        t.id, t.hash, t.scopes.join(','), t.namespace, t.description, t.createdAt,
      ]);
    });
  }

  private tokenRow(r: { id: string; hash: string; scopes: string; namespace: string | null; description: string; created_at: string }): TokenRow {
    return { id: r.id, hash: r.hash, scopes: r.scopes.split(',').filter(Boolean) as Scope[], namespace: r.namespace, description: r.description, createdAt: r.created_at };
  }

  findTokenByHash(hash: string): Promise<TokenRow | null> {
    return this.exclusive(async () => {
      const r = await this.get<Parameters<SqliteCatalog['tokenRow']>[0]>('SELECT * FROM tokens WHERE hash = ?', [hash]);
      return r ? this.tokenRow(r) : null;
    });
  }

  listTokens(): Promise<TokenRow[]> {
    return this.exclusive(async () => (await this.all<Parameters<SqliteCatalog['tokenRow']>[0]>('SELECT * FROM tokens ORDER BY created_at, id')).map((r) => this.tokenRow(r)));
  }

  deleteToken(id: string): Promise<boolean> {
    return this.tx(async () => (await this.run('DELETE FROM tokens WHERE id = ?', [id])).changes > 0);
  }

  upsertBase(b: BaseRow): Promise<void> {
    return this.tx(async () => {
      await this.run(
        `INSERT INTO bases (fingerprint, family, hidden_size, num_layers, vocab_size, description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (fingerprint) DO UPDATE SET family = excluded.family, hidden_size = excluded.hidden_size, num_layers = excluded.num_layers,
         vocab_size = excluded.vocab_size, description = excluded.description`,
        [b.fingerprint, b.family, b.hiddenSize, b.numLayers, b.vocabSize, b.description, b.createdAt],
      );
    });
  }

  private baseRow(r: { fingerprint: string; family: string; hidden_size: number; num_layers: number; vocab_size: number; description: string; created_at: string }): BaseRow {
    return { fingerprint: r.fingerprint, family: r.family, hiddenSize: r.hidden_size, numLayers: r.num_layers, vocabSize: r.vocab_size, description: r.description, createdAt: r.created_at };
  }

  getBase(fingerprint: string): Promise<BaseRow | null> {
    return this.exclusive(async () => {
      const r = await this.get<Parameters<SqliteCatalog['baseRow']>[0]>('SELECT * FROM bases WHERE fingerprint = ?', [fingerprint]);
      return r ? this.baseRow(r) : null;
    });
  }

  listBases(): Promise<BaseRow[]> {
    return this.exclusive(async () => (await this.all<Parameters<SqliteCatalog['baseRow']>[0]>('SELECT * FROM bases ORDER BY family, fingerprint')).map((r) => this.baseRow(r)));
  }

  close(): Promise<void> {
    return this.exclusive(async () => {
      for (const st of this.statements.values()) await new Promise<void>((resolve) => st.finalize(() => resolve()));
      this.statements.clear();
      await new Promise<void>((resolve, reject) => this.db.close((err) => (err ? reject(err) : resolve())));
    });
  }
}
