/**
 * Blob store conformance suite, run against every BlobStore backend: the file system and S3 (through s3rver,
 * an S3-protocol server from npm). Content addressing, digest checks, dedupe, ranges, missing blobs. Then what
 * only one backend has: the file store's temp folder, S3 multipart uploads, prefixes and bucket errors.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { FsBlobStore, sha256Digest, StoreError, type BlobStore } from '../../modules-store';
import { parseS3Url, S3BlobStore, s3OptionsFromEnv } from '../../modules-store/blob-store-s3';
import { startS3, type S3Server } from '../helpers/s3-server';

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export function blobConformance(label: string, open: () => Promise<{ store: BlobStore; cleanup: () => Promise<void> }>): void {
  describe(`BlobStore conformance: ${label}`, () => {
    let store: BlobStore;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });
    afterEach(() => cleanup());

    it('stores by sha256, once, and reads back whole and by range', async () => {
      const data = Buffer.from('hello modhub blobs');
      const a = await store.put(data);
      expect(a).toEqual({ digest: sha256Digest(data), size: data.length });
      expect(await store.put(Buffer.from(data))).toEqual(a);
      expect(await store.put(Buffer.from(data), a.digest)).toEqual(a);
      expect((await store.read(a.digest)).equals(data)).toBe(true);
      expect((await readAll(store.stream(a.digest, { start: 6, end: 11 }))).toString()).toBe('modhub');
      expect((await readAll(store.stream(a.digest, { start: 0, end: 0 }))).toString()).toBe('h');
      expect((await readAll(store.stream(a.digest))).equals(data)).toBe(true);
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
      expect(await store.list()).toEqual([]);
    });
    it('accepts bare hex digests, refuses malformed ones', async () => {
      const data = Buffer.from('z');
      await expect(store.put(data, sha256Digest(data).slice(7).toUpperCase())).resolves.toMatchObject({ size: 1 });
      await expect(store.put(data, 'abc')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(() => store.stream('sha256:../../etc')).toThrow(StoreError);
    });
    it('reports a missing blob as FILE_NOT_FOUND (read and stream) and deletes idempotently', async () => {
      const d = sha256Digest(Buffer.from('nope'));
      await expect(store.read(d)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
      await expect(readAll(store.stream(d))).rejects.toMatchObject({ code: expect.stringMatching(/FILE_NOT_FOUND|ENOENT/) });
      expect(await store.stat(d)).toBeNull();
      await store.delete(d);
    });
    it('stores an empty blob and many blobs, and lists them all', async () => {
      const empty = await store.put(Buffer.alloc(0));
      expect(empty.size).toBe(0);
      expect((await store.read(empty.digest)).length).toBe(0);
      const many = await Promise.all(Array.from({ length: 30 }, (_, i) => store.put(Buffer.from(`blob ${i}`))));
      expect(new Set(await store.list())).toEqual(new Set([empty.digest, ...many.map((b) => b.digest)]));
    });
  });
}

blobConformance('file system', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-blob-'));
  return { store: await FsBlobStore.open(dir), cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
});

describe('S3 blob store (s3rver)', () => {
  let s3: S3Server;
  let n = 0;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  // Each test gets its own prefix in the one bucket (the prefix is what isolates deployments sharing a bucket).
  blobConformance('S3', async () => {
    const store = await S3BlobStore.open(s3.storeOptions(`t${++n}/`));
    return { store, cleanup: async () => store.close() };
  });

  it('uploads a large blob as multipart, verifies it, and serves ranges across part boundaries', async () => {
    const store = await S3BlobStore.open({ ...s3.storeOptions('big/'), partSize: 5 << 20, multipartThreshold: 5 << 20 });
    try {
      const data = Buffer.alloc((12 << 20) + 12344);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      const sent: string[] = [];
      store.client.middlewareStack.add((next, ctx) => (args) => {
        sent.push(ctx.commandName ?? '');
        return next(args);
      });
      const info = await store.put(data, sha256Digest(data));
      expect(info).toEqual({ digest: sha256Digest(data), size: data.length });
      expect(sent.filter((c) => c === 'UploadPartCommand')).toHaveLength(3);
      expect(sent).toContain('CompleteMultipartUploadCommand');
      expect(sent).not.toContain('PutObjectCommand');
      expect(sha256Digest(await store.read(info.digest))).toBe(info.digest);
      const start = (5 << 20) - 100;
      const end = (10 << 20) + 100;
      expect((await readAll(store.stream(info.digest, { start, end }))).equals(data.subarray(start, end + 1))).toBe(true);
      // A second put of the same bytes uploads nothing.
      sent.length = 0;
      await store.put(data);
      expect(sent).toEqual(['HeadObjectCommand']);
    } finally {
      store.close();
    }
  });

  it('keys blobs by digest under the prefix, like the file store paths', async () => {
    const store = await S3BlobStore.open(s3.storeOptions('keys/deep/'));
    try {
      const b = await store.put(Buffer.from('key layout'));
      const listed = await store.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'keys/' }));
      expect((listed.Contents ?? []).map((o) => o.Key)).toEqual([`keys/deep/sha256/${b.digest.slice(7, 9)}/${b.digest.slice(7)}`]);
      expect(await store.sweepTemp()).toBe(0);
    } finally {
      store.close();
    }
  });

  it('refuses a missing bucket or an unreachable endpoint with a message naming it', async () => {
    await expect(S3BlobStore.open({ ...s3.storeOptions(), bucket: 'no-such-bucket' })).rejects.toThrow(/s3:\/\/no-such-bucket\/ at http:\/\/127\.0\.0\.1:\d+: the bucket does not exist/);
    await expect(S3BlobStore.open({ ...s3.storeOptions(), endpoint: 'http://127.0.0.1:1' })).rejects.toThrow(/cannot use the blob bucket s3:\/\/modhub\/ at http:\/\/127\.0\.0\.1:1/);
  });

  it('parses s3:// URLs and the environment', () => {
    expect(parseS3Url('s3://modhub')).toEqual({ bucket: 'modhub', prefix: '' });
    expect(parseS3Url('s3://modhub/prod')).toEqual({ bucket: 'modhub', prefix: 'prod/' });
    expect(parseS3Url('s3://modhub/a/b/')).toEqual({ bucket: 'modhub', prefix: 'a/b/' });
    expect(() => parseS3Url('http://modhub/x')).toThrow(/not s3:\/\/<bucket>/);
    expect(() => parseS3Url('s3://Bad_Bucket/x')).toThrow(RangeError);
    expect(s3OptionsFromEnv('s3://bucket1/p', { MODHUB_S3_ENDPOINT: 'http://minio:9000', MODHUB_S3_FORCE_PATH_STYLE: 'true', AWS_REGION: 'eu-west-1' })).toEqual({
      bucket: 'bucket1', prefix: 'p/', endpoint: 'http://minio:9000', region: 'eu-west-1', forcePathStyle: true, credentials: undefined,
    });
    expect(() => s3OptionsFromEnv('s3://bucket1', { MODHUB_S3_ACCESS_KEY_ID: 'x' })).toThrow(/both MODHUB_S3_ACCESS_KEY_ID and MODHUB_S3_SECRET_ACCESS_KEY/);
  });
});

describe('FsBlobStore only', () => {
  let dir: string;
  let store: FsBlobStore;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-blob-'));
    store = await FsBlobStore.open(dir);
  });
  afterEach(() => fsp.rm(dir, { recursive: true, force: true }));

  it('does not rewrite a stored blob', async () => {
    const data = Buffer.from('hello modhub blobs');
    const a = await store.put(data);
    const file = path.join(dir, 'sha256', a.digest.slice(7, 9), a.digest.slice(7));
    const before = (await fsp.stat(file)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    expect(await store.put(Buffer.from(data))).toEqual(a);
    expect((await fsp.stat(file)).mtimeMs).toBe(before);
  });
  it('leaves no temp file after a refused put', async () => {
    await expect(store.put(Buffer.from('x'), sha256Digest(Buffer.from('y')))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await fsp.readdir(path.join(dir, 'tmp'))).toEqual([]);
  });
  it('sweeps leftovers of interrupted writes', async () => {
    await fsp.writeFile(path.join(dir, 'tmp', 'abc.part'), 'partial');
    expect(await store.sweepTemp()).toBe(1);
    expect(await fsp.readdir(path.join(dir, 'tmp'))).toEqual([]);
  });
});
