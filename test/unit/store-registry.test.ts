/** The Registry facade: publish rules, resolution (versions, tags, latest, yank), delete + GC, tokens, sweep, concurrency. */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openMemoryRegistry, openRegistry, packArchive, sha256Digest, StoreError, type Registry } from '../../modules-store';
import { makeArchive, makePackageFiles, registerTestBase, TEST_BASE } from '../helpers/hub';

let reg: Registry;
beforeEach(async () => {
  reg = await openMemoryRegistry();
  await registerTestBase(reg);
});
afterEach(() => reg.close());

const pub = (id: string, version: string, o = {}): ReturnType<Registry['publish']> => reg.publish({ files: makePackageFiles({ id, version, ...o }) });

describe('publish', () => {
  it('publishes files, archives and folders; resolve returns manifest, digest and files', async () => {
    const r = await pub('lang/de', '1.0.0');
    expect(r.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    await reg.publish({ archive: makeArchive({ id: 'lang/de', version: '1.1.0' }, true) });
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-pub-'));
    for (const [n, b] of makePackageFiles({ id: 'lang/de', version: '1.2.0' })) await fsp.writeFile(path.join(dir, n), b);
    await reg.publish({ path: dir });
    await fsp.rm(dir, { recursive: true });
    const m = await reg.resolve('lang/de@1.0.0');
    expect(m).toMatchObject({ id: 'lang/de', version: '1.0.0', digest: r.digest });
    expect(m.manifest.kind).toBe('bottleneck');
    expect((await m.readFile('weights.safetensors')).equals(makePackageFiles().get('weights.safetensors')!)).toBe(true);
    expect((await m.readFile('README.md')).toString()).toMatch(/^---\n/);
    await expect(m.readFile('nope.bin')).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    expect((await reg.resolve('lang/de')).version).toBe('1.2.0');
  });
  it('refuses a republish with 409 semantics and leaves stored bytes alone', async () => {
    await pub('lang/de', '1.0.0');
    const before = await (await reg.resolve('lang/de@1.0.0')).readFile('module.json');
    const blobsBefore = (await reg.blobs.list()).sort();
    await expect(pub('lang/de', '1.0.0', { description: 'different' })).rejects.toMatchObject({ code: 'VERSION_EXISTS' });
    expect((await (await reg.resolve('lang/de@1.0.0')).readFile('module.json')).equals(before)).toBe(true);
    expect((await reg.blobs.list()).sort()).toEqual(blobsBefore);
  });
  it('checks client digests', async () => {
    const archive = makeArchive({ id: 'a/b', version: '1.0.0' });
    await expect(reg.publish({ archive, sha256: sha256Digest(Buffer.from('x')) })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    const files = makePackageFiles({ id: 'a/b', version: '1.0.0' });
    await expect(reg.publish({ files, sha256: { 'weights.safetensors': '0'.repeat(64) } })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    await expect(reg.publish({ files, sha256: { 'other.bin': '0'.repeat(64) } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reg.publish({ archive, sha256: sha256Digest(archive) })).resolves.toMatchObject({ version: '1.0.0' });
    expect(await reg.blobs.list()).toHaveLength(3);
  });
  it('refuses unknown bases unless allowed, and bases whose dims disagree', async () => {
    const other = { fingerprint: `sha256:${'cd'.repeat(32)}` };
    await expect(pub('a/b', '1.0.0', { base: other })).rejects.toMatchObject({ code: 'UNKNOWN_BASE', message: expect.stringContaining('not registered') });
    await expect(reg.publish({ files: makePackageFiles({ id: 'a/b', version: '1.0.0', base: other }) }, { allowUnknownBase: true })).resolves.toBeTruthy();
    await expect(pub('a/c', '1.0.0', { base: { num_layers: 3 } })).rejects.toMatchObject({ code: 'BASE_MISMATCH', message: expect.stringContaining('num_layers 3 vs 2') });
    expect(await reg.blobs.list()).toHaveLength(3);
  });
  it('runs authorize before writing anything', async () => {
    await expect(
      reg.publish({ files: makePackageFiles({ id: 'x/y', version: '1.0.0' }) }, { authorize: () => { throw new Error('no'); } }),
    ).rejects.toThrow('no');
    expect(await reg.blobs.list()).toEqual([]);
    expect(await reg.catalog.getModule('x', 'y')).toBeNull();
  });
  it('enforces configured size limits', async () => {
    const small = await openMemoryRegistry({ allowUnknownBases: true, limits: { maxWeightsBytes: 200 } });
    try {
      await expect(small.publish({ files: makePackageFiles() })).rejects.toMatchObject({ code: 'TOO_LARGE' });
      await expect(small.publish({ archive: packArchive(makePackageFiles()) })).rejects.toMatchObject({ code: 'TOO_LARGE' });
    } finally {
      await small.close();
    }
  });
});

describe('resolution, tags, yank', () => {
  beforeEach(async () => {
    await pub('t/m', '1.0.0');
    await pub('t/m', '1.1.0');
    await pub('t/m', '2.0.0-rc.1');
  });
  it('latest follows the highest release, a set latest pins it, removing it unpins', async () => {
    expect((await reg.resolve('t/m')).version).toBe('1.1.0');
    await reg.setTag('t', 'm', 'latest', '1.0.0');
    expect((await reg.resolve('t/m@latest')).version).toBe('1.0.0');
    await pub('t/m', '1.2.0');
    expect((await reg.resolve('t/m')).version).toBe('1.0.0');
    await reg.removeTag('t', 'm', 'latest');
    expect((await reg.resolve('t/m')).version).toBe('1.2.0');
    expect((await reg.info('t', 'm')).tags).toEqual({ latest: '1.2.0' });
  });
  it('user tags move; missing tags and versions have codes', async () => {
    await reg.setTag('t', 'm', 'next', '2.0.0-rc.1');
    expect((await reg.resolve('t/m@next')).version).toBe('2.0.0-rc.1');
    await reg.setTag('t', 'm', 'next', '1.0.0');
    expect((await reg.resolve('t/m@next')).version).toBe('1.0.0');
    await expect(reg.resolve('t/m@nope')).rejects.toMatchObject({ code: 'VERSION_NOT_FOUND', message: expect.stringContaining("no tag 'nope'") });
    await expect(reg.resolve('t/m@9.9.9')).rejects.toMatchObject({ code: 'VERSION_NOT_FOUND' });
    await expect(reg.resolve('t/zz')).rejects.toMatchObject({ code: 'MODULE_NOT_FOUND' });
    await expect(reg.resolve('T/zz')).rejects.toMatchObject({ code: 'INVALID_REF' });
    await expect(reg.setTag('t', 'm', '1.0.0', '1.0.0')).rejects.toMatchObject({ code: 'INVALID_NAME' });
    await expect(reg.removeTag('t', 'm', 'nope')).rejects.toMatchObject({ code: 'TAG_NOT_FOUND' });
  });
  it('yank hides a version from tags and latest, keeps it by exact version, and can be undone', async () => {
    await reg.setTag('t', 'm', 'stable', '1.1.0');
    await reg.yank('t', 'm', '1.1.0', true, 'bad weights');
    expect((await reg.resolve('t/m')).version).toBe('1.0.0');
    await expect(reg.resolve('t/m@stable')).rejects.toMatchObject({ code: 'VERSION_NOT_FOUND', message: expect.stringContaining('yanked') });
    const exact = await reg.resolve('t/m@1.1.0');
    expect(exact.yanked).toBe(true);
    await expect(reg.setTag('t', 'm', 'x', '1.1.0')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await reg.yank('t', 'm', '1.1.0', false);
    expect((await reg.resolve('t/m')).version).toBe('1.1.0');
    await expect(reg.yank('t', 'm', '5.0.0')).rejects.toMatchObject({ code: 'VERSION_NOT_FOUND' });
  });
  it('falls back to the highest prerelease when no release is live', async () => {
    await reg.yank('t', 'm', '1.0.0');
    await reg.yank('t', 'm', '1.1.0');
    expect((await reg.resolve('t/m')).version).toBe('2.0.0-rc.1');
  });
});

describe('delete and garbage collection', () => {
  it('deletes a version and only the blobs no one else references', async () => {
    await pub('a/one', '1.0.0');
    await pub('a/two', '1.0.0'); // same weights bytes as a/one → one shared blob
    const shared = (await reg.resolve('a/one@1.0.0')).files.find((f) => f.name === 'weights.safetensors')!.digest;
    expect((await reg.resolve('a/two@1.0.0')).files.find((f) => f.name === 'weights.safetensors')!.digest).toBe(shared);
    expect(await reg.blobs.list()).toHaveLength(5);
    await reg.delete('a', 'one', '1.0.0');
    await expect(reg.resolve('a/one')).rejects.toMatchObject({ code: 'MODULE_NOT_FOUND' });
    expect(await reg.blobs.stat(shared)).not.toBeNull();
    expect(await reg.blobs.list()).toHaveLength(3);
    await reg.delete('a', 'two');
    expect(await reg.blobs.list()).toEqual([]);
    await expect(reg.delete('a', 'two')).rejects.toMatchObject({ code: 'MODULE_NOT_FOUND' });
  });
});

describe('tokens and bases', () => {
  it('creates tokens whose secret is not stored', async () => {
    const { token, info } = await reg.createToken({ scopes: ['write'], namespace: 'lang' });
    expect(token).toMatch(/^mh_/);
    expect(JSON.stringify(await reg.catalog.listTokens())).not.toContain(token);
    expect(await reg.verifyToken(token)).toMatchObject({ id: info.id, scopes: ['write'], namespace: 'lang' });
    expect(await reg.verifyToken(token + 'x')).toBeNull();
    await expect(reg.createToken({ scopes: ['root' as never] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await reg.revokeToken(info.id);
    expect(await reg.verifyToken(token)).toBeNull();
    await expect(reg.revokeToken(info.id)).rejects.toMatchObject({ code: 'TOKEN_NOT_FOUND' });
  });
  it('validates bases', async () => {
    await expect(reg.registerBase({ ...TEST_BASE, fingerprint: 'nope' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reg.registerBase({ ...TEST_BASE, hidden_size: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await reg.listBases()).toHaveLength(1);
  });
});

describe('concurrency', () => {
  it('parallel publishes of the same version: exactly one wins; of different versions: all land', async () => {
    const same = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => pub('c/same', '1.0.0', { description: `writer ${i}` })));
    expect(same.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of same) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'VERSION_EXISTS' });
    const winner = (await reg.resolve('c/same@1.0.0')).manifest.description;
    expect(winner).toMatch(/^writer \d$/);
    const diff = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => pub('c/diff', `1.0.${i}`)));
    expect(diff.every((r) => r.status === 'fulfilled')).toBe(true);
    expect((await reg.info('c', 'diff')).versions).toHaveLength(8);
    // every referenced blob exists, nothing unreferenced is left
    const referenced = await reg.catalog.allDigests();
    expect(new Set(await reg.blobs.list())).toEqual(referenced);
  });
});

describe('corrupted uploads', () => {
  it('every randomly corrupted archive or weights file is published whole or refused with a StoreError, leaving no stray blobs', async () => {
    let seed = 12345;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const files = makePackageFiles({ id: 'fuzz/m', version: `1.0.${i}` });
      const target = i % 2 ? packArchive(files) : Buffer.from(files.get('weights.safetensors')!);
      for (let k = 0; k <= i % 4; k++) target[Math.floor(rand() * target.length)] = Math.floor(rand() * 256);
      if (i % 2 === 0) files.set('weights.safetensors', target);
      try {
        await reg.publish(i % 2 ? { archive: target } : { files });
      } catch (e) {
        expect(e).toBeInstanceOf(StoreError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
    const referenced = await reg.catalog.allDigests();
    expect(new Set(await reg.blobs.list())).toEqual(referenced);
  });
});

describe('openRegistry (data dir)', () => {
  it('persists across reopen and sweeps temp files and orphan blobs at start-up', async () => {
    const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-data-'));
    try {
      const r1 = await openRegistry({ dataDir });
      await registerTestBase(r1);
      await r1.publish({ files: makePackageFiles({ id: 'p/q', version: '1.0.0' }) });
      const orphan = await r1.blobs.put(Buffer.from('orphan from an interrupted publish'));
      await r1.close();
      await fsp.writeFile(path.join(dataDir, 'blobs', 'tmp', 'x.part'), 'half');
      const r2 = await openRegistry({ dataDir });
      expect((await r2.resolve('p/q')).version).toBe('1.0.0');
      expect(await r2.blobs.stat(orphan.digest)).toBeNull();
      expect(await fsp.readdir(path.join(dataDir, 'blobs', 'tmp'))).toEqual([]);
      await r2.close();
    } finally {
      await fsp.rm(dataDir, { recursive: true, force: true });
    }
  });
});
