/** The filesystem blob store: content addressing, digest checks, dedupe, ranges, temp sweep. */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsBlobStore, sha256Digest, StoreError } from '../../modules-store';

let dir: string;
let store: FsBlobStore;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-blob-'));
  store = await FsBlobStore.open(dir);
});
afterEach(() => fsp.rm(dir, { recursive: true, force: true }));

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('FsBlobStore', () => {
  it('stores by sha256, once, and reads back whole and by range', async () => {
    const data = Buffer.from('hello modhub blobs');
    const a = await store.put(data);
    expect(a).toEqual({ digest: sha256Digest(data), size: data.length });
    const file = path.join(dir, 'sha256', a.digest.slice(7, 9), a.digest.slice(7));
    const before = (await fsp.stat(file)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    expect(await store.put(Buffer.from(data))).toEqual(a);
    expect((await fsp.stat(file)).mtimeMs).toBe(before); // not rewritten
    expect((await store.read(a.digest)).equals(data)).toBe(true);
    expect((await readAll(store.stream(a.digest, { start: 6, end: 11 }))).toString()).toBe('modhub');
    expect(await store.list()).toEqual([a.digest]);
    expect(await store.stat(a.digest)).toEqual(a);
  });
  it('refuses bytes that do not match the declared digest and stores nothing', async () => {
    await expect(store.put(Buffer.from('x'), sha256Digest(Buffer.from('y')))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await store.list()).toEqual([]);
    const y = await store.put(Buffer.from('y'));
    await expect(store.put(Buffer.from('z'), y.digest)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect((await store.read(y.digest)).toString()).toBe('y');
    await store.delete(y.digest);
    expect(await fsp.readdir(path.join(dir, 'tmp'))).toEqual([]);
  });
  it('accepts bare hex digests, refuses malformed ones', async () => {
    const data = Buffer.from('z');
    await expect(store.put(data, sha256Digest(data).slice(7).toUpperCase())).resolves.toMatchObject({ size: 1 });
    await expect(store.put(data, 'abc')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(() => store.stream('sha256:../../etc')).toThrow(StoreError);
  });
  it('reports a missing blob as FILE_NOT_FOUND and deletes idempotently', async () => {
    const d = sha256Digest(Buffer.from('nope'));
    await expect(store.read(d)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    expect(await store.stat(d)).toBeNull();
    await store.delete(d);
  });
  it('sweeps leftovers of interrupted writes', async () => {
    await fsp.writeFile(path.join(dir, 'tmp', 'abc.part'), 'partial');
    expect(await store.sweepTemp()).toBe(1);
    expect(await fsp.readdir(path.join(dir, 'tmp'))).toEqual([]);
  });
});
