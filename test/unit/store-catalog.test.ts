/**
 * Catalog conformance suite: one set of behaviours run against every Catalog backend (SQLite in memory and on
 * disk today; a PostgreSQL catalog runs the same function).
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteCatalog, type Catalog, type NewVersion } from '../../modules-store';

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
      expect(await c.deleteVersion('t', 'm', '1.0.0')).not.toBeNull();
      expect(await c.getModule('t', 'm')).toBeNull();
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
