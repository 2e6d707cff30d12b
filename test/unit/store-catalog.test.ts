/**
 * Catalog conformance suite: one set of behaviours run against every Catalog backend (SQLite in memory and on
 * disk, PostgreSQL on a throw-away server), plus what only a shared PostgreSQL catalog does: publishes racing
 * from two connections, concurrent migrations, change notifications across processes.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { FsBlobStore, Registry, SqliteCatalog, type Catalog, type NewVersion } from '../../modules-store';
import { PgCatalog } from '../../modules-store/catalog-pg';
import { describeWithPg, startPg, type PgServer } from '../helpers/pg-server';

function nv(ns: string, name: string, version: string, extra: Partial<NewVersion> = {}): NewVersion {
  return {
    namespace: ns,
    name,
    version,
    manifest: JSON.stringify({ id: `${ns}/${name}`, version }),
    kind: 'bottleneck',
    task: 'ner',
    language: 'de',
    baseFingerprint: 'sha256:' + '0'.repeat(64),
    description: `module ${name}`,
    digest: 'sha256:' + '1'.repeat(64),
    size: 10,
    files: [{ name: 'module.json', digest: `sha256:${name.padEnd(64, '0').replace(/[^0-9a-f]/g, 'a')}`, size: 10 }],
    createdAt: `2026-01-01T00:00:0${version.split('.')[2] ?? 0}Z`,
    ...extra,
  };
}

export function catalogConformance(label: string, open: () => Promise<{ catalog: Catalog; cleanup: () => Promise<void> }>): void {
  describe(`Catalog conformance: ${label}`, () => {
    let c: Catalog;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      ({ catalog: c, cleanup } = await open());
    });
    afterEach(async () => {
      await c.close();
      await cleanup();
    });

    it('publishes versions and refuses a duplicate without changing the first', async () => {
      await c.publishVersion(nv('lang', 'de', '1.0.0'));
      await expect(c.publishVersion(nv('lang', 'de', '1.0.0', { manifest: '{"changed":true}' }))).rejects.toMatchObject({ code: 'VERSION_EXISTS' });
      const v = await c.getVersion('lang', 'de', '1.0.0');
      expect(v?.manifest).toContain('"version":"1.0.0"');
      expect(v?.files).toHaveLength(1);
    });
    it('publishMany is all or nothing', async () => {
      await expect(c.publishMany([nv('a', 'x', '1.0.0'), nv('a', 'y', '1.0.0'), nv('a', 'x', '1.0.0')])).rejects.toMatchObject({ code: 'VERSION_EXISTS' });
      expect(await c.getModule('a', 'x')).toBeNull();
      expect(await c.getModule('a', 'y')).toBeNull();
      expect((await c.search({ limit: 10, offset: 0 })).total).toBe(0);
    });
    it('keeps search fields from the highest version and lists versions highest first', async () => {
      await c.publishVersion(nv('lang', 'de', '1.0.0'));
      await c.publishVersion(nv('lang', 'de', '2.0.0', { task: 'mlm' }));
      await c.publishVersion(nv('lang', 'de', '1.5.0', { task: 'pos' }));
      expect((await c.getModule('lang', 'de'))?.task).toBe('mlm');
      expect((await c.listVersions('lang', 'de')).map((v) => v.version)).toEqual(['2.0.0', '1.5.0', '1.0.0']);
    });
    it('moves tags, removes them, and drops tags of deleted versions', async () => {
      await c.publishVersion(nv('t', 'm', '1.0.0'));
      await c.publishVersion(nv('t', 'm', '1.1.0'));
      await c.setTag('t', 'm', 'stable', '1.0.0', 'now');
      await c.setTag('t', 'm', 'stable', '1.1.0', 'now');
      expect(await c.listTags('t', 'm')).toEqual([{ tag: 'stable', version: '1.1.0', updatedAt: 'now' }]);
      await expect(c.setTag('t', 'm', 'x', '9.9.9', 'now')).rejects.toMatchObject({ code: 'VERSION_NOT_FOUND' });
      expect(await c.deleteVersion('t', 'm', '1.1.0')).toHaveLength(1);
      expect(await c.listTags('t', 'm')).toEqual([]);
      expect(await c.removeTag('t', 'm', 'stable')).toBe(false);
      expect((await c.search({ limit: 10, offset: 0 })).total).toBe(1);
      expect(await c.deleteVersion('t', 'm', '1.0.0')).not.toBeNull();
      expect(await c.getModule('t', 'm')).toBeNull();
      expect((await c.search({ limit: 10, offset: 0 })).total).toBe(0);
      await expect(c.publishVersion(nv('t', 'm', '1.1.0'))).rejects.toMatchObject({ code: 'VERSION_EXISTS', message: expect.stringContaining('never reused') });
      await c.publishVersion(nv('t', 'm', '1.2.0'));
    });
    it('yanks, counts downloads, tracks referenced digests', async () => {
      await c.publishVersion(nv('t', 'm', '1.0.0'));
      expect(await c.setYanked('t', 'm', '1.0.0', true, 'broken')).toBe(true);
      expect(await c.setYanked('t', 'm', '2.0.0', true, null)).toBe(false);
      expect(await c.getVersion('t', 'm', '1.0.0')).toMatchObject({ yanked: true, yankReason: 'broken' });
      await c.addDownload('t', 'm', '1.0.0');
      await c.addDownload('t', 'm', '1.0.0');
      expect((await c.getModule('t', 'm'))?.downloads).toBe(2);
      expect((await c.getVersion('t', 'm', '1.0.0'))?.downloads).toBe(2);
      const d = (await c.getVersion('t', 'm', '1.0.0'))!.files[0].digest;
      expect(await c.referencedDigests([d, 'sha256:' + 'f'.repeat(64)])).toEqual(new Set([d]));
      expect(await c.deleteModule('t', 'm')).toEqual([d]);
      expect(await c.allDigests()).toEqual(new Set());
      await expect(c.publishVersion(nv('t', 'm', '1.0.0'))).rejects.toMatchObject({ code: 'VERSION_EXISTS' });
      expect(await c.deleteModule('t', 'm')).toBeNull();
    });
    it('searches with filters, free text, sorts and pagination', async () => {
      await c.publishVersion(nv('lang', 'de', '1.0.0', { task: 'mlm', description: 'German language adapter' }));
      await c.publishVersion(nv('lang', 'fr', '1.0.1', { task: 'mlm', language: 'fr', description: 'French' }));
      await c.publishVersion(nv('task', 'topic', '1.0.2', { kind: 'lora', task: 'topic-classification', language: null, description: '100%_literal' }));
      await c.addDownload('task', 'topic', '1.0.2');
      const ids = (r: { items: { namespace: string; name: string }[] }): string[] => r.items.map((m) => `${m.namespace}/${m.name}`);
      const page = { limit: 10, offset: 0 };
      expect(ids(await c.search({ ...page, sort: 'name' }))).toEqual(['lang/de', 'lang/fr', 'task/topic']);
      expect(ids(await c.search({ ...page, sort: 'downloads' }))[0]).toBe('task/topic');
      expect(ids(await c.search({ ...page, sort: 'recent' }))).toEqual(['task/topic', 'lang/fr', 'lang/de']);
      expect(ids(await c.search({ ...page, kind: 'lora' }))).toEqual(['task/topic']);
      expect(ids(await c.search({ ...page, language: 'fr' }))).toEqual(['lang/fr']);
      expect(ids(await c.search({ ...page, namespace: 'lang', task: 'mlm', sort: 'name' }))).toEqual(['lang/de', 'lang/fr']);
      expect(ids(await c.search({ ...page, q: 'GERMAN' }))).toEqual(['lang/de']);
      expect(ids(await c.search({ ...page, q: 'lang/f' }))).toEqual(['lang/fr']);
      expect(ids(await c.search({ ...page, q: '%_' }))).toEqual(['task/topic']);
      expect(ids(await c.search({ ...page, q: '_' }))).toEqual(['task/topic']);
      expect(ids(await c.search({ ...page, q: 'ng/d' }))).toEqual(['lang/de']);
      expect(ids(await c.search({ ...page, q: 'say "hi" OR x*' }))).toEqual([]);
      await c.publishVersion(nv('lang', 'de', '2.0.0', { description: 'Deutsch' }));
      expect(ids(await c.search({ ...page, q: 'deutsch' }))).toEqual(['lang/de']);
      expect(ids(await c.search({ ...page, q: 'german' }))).toEqual([]);
      await c.deleteModule('lang', 'de');
      expect(ids(await c.search({ ...page, q: 'deutsch' }))).toEqual([]);
      await c.publishVersion(nv('lang', 'de', '3.0.0', { task: 'mlm', description: 'German language adapter' }));
      const p2 = await c.search({ limit: 1, offset: 1, sort: 'name' });
      expect(p2.total).toBe(3);
      expect(ids(p2)).toEqual(['lang/fr']);
    });
    it('stores tokens and bases', async () => {
      await c.insertToken({ id: 'tok_1', hash: 'h1', scopes: ['read', 'write'], namespace: 'lang', description: 'ci', createdAt: 'now' });
      expect(await c.findTokenByHash('h1')).toMatchObject({ id: 'tok_1', scopes: ['read', 'write'], namespace: 'lang' });
      expect(await c.findTokenByHash('h2')).toBeNull();
      expect(await c.listTokens()).toHaveLength(1);
      expect(await c.deleteToken('tok_1')).toBe(true);
      expect(await c.deleteToken('tok_1')).toBe(false);
      const b = { fingerprint: 'sha256:' + 'a'.repeat(64), family: 'bert', hiddenSize: 8, numLayers: 2, vocabSize: 30, description: '', createdAt: 'now' };
      await c.upsertBase(b);
      await c.upsertBase({ ...b, numLayers: 3 });
      expect(await c.getBase(b.fingerprint)).toMatchObject({ numLayers: 3 });
      expect(await c.listBases()).toHaveLength(1);
    });
    it('never lets a reader see half of a concurrent publish', async () => {
      const big = nv('t', 'm', '1.0.0', {
        files: Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, digest: 'sha256:' + String(i).padStart(64, '0'), size: 1 })),
      });
      const pub = c.publishVersion(big);
      const seen: number[] = [];
      for (let i = 0; i < 20; i++) seen.push((await c.getVersion('t', 'm', '1.0.0'))?.files.length ?? 0);
      await pub;
      expect(seen.every((n) => n === 0 || n === 50)).toBe(true);
    });
  });
}

catalogConformance('SQLite :memory:', async () => ({ catalog: await SqliteCatalog.open(':memory:'), cleanup: async () => undefined }));
catalogConformance('SQLite file (WAL)', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-cat-'));
  return { catalog: await SqliteCatalog.open(path.join(dir, 'c.sqlite')), cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
});

describe('SqliteCatalog migrations', () => {
  it('re-opens a migrated file and refuses a newer schema', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-cat-'));
    try {
      const file = path.join(dir, 'c.sqlite');
      const c1 = await SqliteCatalog.open(file);
      await c1.publishVersion(nv('a', 'b', '1.0.0'));
      await c1.close();
      const c2 = await SqliteCatalog.open(file);
      expect(await c2.getModule('a', 'b')).not.toBeNull();
      await c2.close();
      const sqlite3 = (await import('sqlite3')).default;
      await new Promise<void>((res, rej) => {
        const db = new sqlite3.Database(file);
        db.exec('PRAGMA user_version = 99', (e) => (e ? rej(e) : db.close(() => res())));
      });
      await expect(SqliteCatalog.open(file)).rejects.toThrow(/schema version 99 is newer.*upgrade modhub/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describeWithPg('PostgreSQL catalog', () => {
  let server: PgServer;
  beforeAll(async () => {
    server = await startPg();
  });
  afterAll(async () => {
    await server?.stop();
  });

  catalogConformance('PostgreSQL', async () => ({ catalog: await PgCatalog.open(await server.createDatabase()), cleanup: async () => undefined }));

  it('lets exactly one of many racing publishes of one version win, across separate connections', async () => {
    const url = await server.createDatabase();
    const a = await PgCatalog.open(url);
    const b = await PgCatalog.open(url);
    try {
      for (let round = 0; round < 5; round++) {
        const version = `1.0.${round}`;
        const attempts = [a, b, a, b, a, b].map((c, i) => c.publishVersion(nv('race', 'm', version, { manifest: JSON.stringify({ by: i }) })));
        const results = await Promise.allSettled(attempts);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'VERSION_EXISTS' });
        const winner = results.findIndex((r) => r.status === 'fulfilled');
        expect(JSON.parse((await b.getVersion('race', 'm', version))!.manifest)).toEqual({ by: winner });
        expect((await a.getVersion('race', 'm', version))!.files).toHaveLength(1);
      }
      expect((await a.listVersions('race', 'm')).map((v) => v.version)).toEqual(['1.0.4', '1.0.3', '1.0.2', '1.0.1', '1.0.0']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps the search fields of the highest version when versions of one module are published at once', async () => {
    const url = await server.createDatabase();
    const cs = await Promise.all([PgCatalog.open(url), PgCatalog.open(url), PgCatalog.open(url)]);
    try {
      await Promise.all(['1.0.0', '3.0.0', '2.0.0'].map((v, i) => cs[i].publishVersion(nv('par', 'm', v, { task: `t${v}` }))));
      expect((await cs[0].getModule('par', 'm'))?.task).toBe('t3.0.0');
    } finally {
      for (const c of cs) await c.close();
    }
  });

  it('migrates once when several processes open a fresh database together, and refuses a newer schema', async () => {
    const url = await server.createDatabase();
    const opened = await Promise.all(Array.from({ length: 4 }, () => PgCatalog.open(url)));
    await opened[0].publishVersion(nv('a', 'b', '1.0.0'));
    for (const c of opened) await c.close();
    const again = await PgCatalog.open(url);
    expect(await again.getModule('a', 'b')).not.toBeNull();
    await again.close();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query('UPDATE modhub_schema SET version = 99');
    await admin.end();
    await expect(PgCatalog.open(url)).rejects.toThrow(/schema version 99 is newer.*upgrade modhub/);
  });

  it('refuses an unreachable server with a message naming it (password masked)', async () => {
    const url = `postgres://modhub:s3cret@127.0.0.1:${server.port + 1000}/nope`;
    const err = await PgCatalog.open(url, { connectTimeoutMs: 2000 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('PostgreSQL catalog at postgres://modhub:***@127.0.0.1:');
    expect((err as Error).message).not.toContain('s3cret');
  });

  it('tells every process about changes that move resolutions (and not about downloads)', async () => {
    const url = await server.createDatabase();
    const writer = await PgCatalog.open(url);
    const reader = await PgCatalog.open(url, { pollMs: 60_000 });
    let seen = 0;
    let wake: (() => void) | null = null;
    const next = (): Promise<void> => new Promise<void>((r) => (wake = r));
    let first = next();
    reader.watchChanges(() => {
      seen++;
      wake?.();
    });
    try {
      await first; // the listener fires once when LISTEN is established
      const step = async (what: () => Promise<unknown>): Promise<void> => {
        const before = seen;
        first = next();
        await what();
        await first;
        expect(seen).toBeGreaterThan(before);
      };
      await step(() => writer.publishVersion(nv('n', 'm', '1.0.0')));
      await step(() => writer.setTag('n', 'm', 'stable', '1.0.0', 'now'));
      await step(() => writer.setYanked('n', 'm', '1.0.0', true, 'bad'));
      await step(() => writer.removeTag('n', 'm', 'stable'));
      await step(() => writer.deleteVersion('n', 'm', '1.0.0'));
      const before = seen;
      await writer.insertToken({ id: 'tok_x', hash: 'hx', scopes: ['read'], namespace: null, description: '', createdAt: 'now' });
      await writer.publishVersion(nv('n', 'other', '1.0.0'));
      await first;
      await new Promise((r) => setTimeout(r, 50));
      expect(seen).toBe(before + 1); // the publish, not the token
    } finally {
      await writer.close();
      await reader.close();
    }
  });

  it("moves a registry's generation on another process's change by the next sync, one query per burst of callers", async () => {
    const url = await server.createDatabase();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-cat-sync-'));
    const writer = await PgCatalog.open(url);
    const readerCatalog = await PgCatalog.open(url, { pollMs: 60_000 });
    // Without notifications: only sync() can move this registry's generation.
    (readerCatalog as { watchChanges?: unknown }).watchChanges = undefined;
    const reader = new Registry({ catalog: readerCatalog, blobs: await FsBlobStore.open(dir) });
    try {
      let queries = 0;
      const count = readerCatalog.changeCount.bind(readerCatalog);
      readerCatalog.changeCount = () => {
        queries++;
        return count();
      };
      await reader.sync();
      const g0 = reader.generation;
      await writer.publishVersion(nv('s', 'm', '1.0.0'));
      await reader.sync(); // no waiting for the notification: the count read sees the commit
      expect(reader.generation).toBeGreaterThan(g0);
      const g1 = reader.generation;
      await reader.sync();
      expect(reader.generation).toBe(g1); // nothing changed since
      queries = 0;
      await Promise.all(Array.from({ length: 20 }, () => reader.sync()));
      expect(queries).toBeLessThanOrEqual(2);
      expect(queries).toBeGreaterThanOrEqual(1);
    } finally {
      await writer.close();
      await reader.close();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('falls back to polling the change counter when notifications do not arrive', async () => {
    const url = await server.createDatabase();
    const writer = await PgCatalog.open(url);
    const reader = await PgCatalog.open(url, { pollMs: 100 });
    let seen = 0;
    reader.watchChanges(() => seen++);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const before = seen;
      await admin.query('UPDATE changes SET n = n + 1'); // a change whose NOTIFY nobody sends
      await admin.end();
      for (let i = 0; i < 50 && seen === before; i++) await new Promise((r) => setTimeout(r, 50));
      expect(seen).toBeGreaterThan(before);
    } finally {
      await writer.close();
      await reader.close();
    }
  });
});
