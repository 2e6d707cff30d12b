/**
 * The PostgreSQL catalog's schema, as migrations (catalog-pg.ts applies them under an advisory lock and records
 * the version in `modhub_schema`). Kept apart from the queries so that a schema change reads as one diff.
 */

/**
 * Each entry migrates the schema from version i to i + 1. Append only; never edit a shipped migration.
 * Entry 1 is SQLite's migrations 1–4 as one PostgreSQL schema (names and columns match); `namespace`/`name` use
 * the "C" collation so that name order is byte order, as in SQLite. Free-text search uses pg_trgm GIN indexes
 * (the analogue of SQLite's trigram FTS table).
 */
export const MIGRATIONS: string[] = [
  `
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE TABLE modules (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    language TEXT,
    base_fingerprint TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    downloads BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (namespace, name)
  );
  CREATE INDEX modules_downloads ON modules (downloads DESC, namespace, name);
  CREATE INDEX modules_updated ON modules (updated_at DESC, namespace, name);
  CREATE INDEX modules_kind_dl ON modules (kind, downloads DESC, namespace, name);
  CREATE INDEX modules_task_dl ON modules (task, downloads DESC, namespace, name);
  CREATE INDEX modules_language_dl ON modules (language, downloads DESC, namespace, name);
  CREATE INDEX modules_base_dl ON modules (base_fingerprint, downloads DESC, namespace, name);
  CREATE INDEX modules_ident_trgm ON modules USING gin ((lower(namespace || '/' || name)) gin_trgm_ops);
  CREATE INDEX modules_description_trgm ON modules USING gin ((lower(description)) gin_trgm_ops);
  CREATE TABLE versions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    module_id BIGINT NOT NULL REFERENCES modules(id) ON DELETE CASCADE,
    version TEXT COLLATE "C" NOT NULL,
    manifest TEXT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    yanked BOOLEAN NOT NULL DEFAULT false,
    yank_reason TEXT,
    downloads BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (module_id, version)
  );
  CREATE TABLE files (
    version_id BIGINT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (version_id, name)
  );
  CREATE INDEX files_digest ON files (digest);
  CREATE TABLE tags (
    module_id BIGINT NOT NULL REFERENCES modules(id) ON DELETE CASCADE,
    tag TEXT COLLATE "C" NOT NULL,
    version_id BIGINT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
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
    fingerprint TEXT COLLATE "C" PRIMARY KEY,
    family TEXT COLLATE "C" NOT NULL,
    hidden_size INTEGER NOT NULL,
    num_layers INTEGER NOT NULL,
    vocab_size INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
  );
  CREATE TABLE deleted_versions (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name, version)
  );
  CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
  INSERT INTO changes (id, n) VALUES (1, 0);
  CREATE TABLE blob_pins (
    pin TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pin, digest)
  );
  CREATE INDEX blob_pins_digest ON blob_pins (digest);
  -- COUNT(*) over all modules is a scan in PostgreSQL (~30 ms at 100k rows); the unfiltered search total, the
  -- most common page, reads this transactional counter instead.
  CREATE TABLE module_count (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
  INSERT INTO module_count (id, n) VALUES (1, 0);
  CREATE FUNCTION modhub_module_count() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'INSERT' THEN
      UPDATE module_count SET n = n + (SELECT COUNT(*) FROM added) WHERE id = 1;
    ELSE
      UPDATE module_count SET n = n - (SELECT COUNT(*) FROM removed) WHERE id = 1;
    END IF;
    RETURN NULL;
  END
  $fn$;
  CREATE TRIGGER modules_counted_insert AFTER INSERT ON modules REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION modhub_module_count();
  CREATE TRIGGER modules_counted_delete AFTER DELETE ON modules REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION modhub_module_count();
  `,
];

/** The schema version this code expects. */
export const PG_SCHEMA_VERSION = MIGRATIONS.length;
