/**
 * S3-compatible blob store (`@aws-sdk/client-s3`: AWS S3, MinIO, Cloudflare R2, s3rver in tests). Blobs are
 * objects named `<prefix>sha256/<2 hex>/<64 hex>`, like the file store's paths. A put hashes the bytes first
 * and refuses a mismatch before anything is sent (the registry commits the catalog row only after the put
 * returns); each request carries Content-MD5 so that the server refuses bytes damaged in transit, and the size
 * of the stored object is checked with a HEAD before the put returns. Objects are written whole — an S3 object
 * appears atomically, so a crash never leaves a partial blob under its name. Large blobs go up as a multipart
 * upload (parts in parallel); an interrupted one is aborted, and {@link S3BlobStore.sweepTemp} aborts stale
 * ones that a dead process left behind. Reads stream, and byte ranges become HTTP Range requests.
 * Example: `const s = await S3BlobStore.open({ bucket: 'modhub', prefix: 'prod/', endpoint: 'http://minio:9000', forcePathStyle: true })`.
 */
import { createHash } from 'node:crypto';
import { PassThrough, Transform, type Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { DIGEST_RE, normalizeDigest, sha256Digest, type BlobInfo, type BlobStore, type ByteRange } from './blob-store';
import { StoreError } from './errors';

export interface S3BlobStoreOptions {
  bucket: string;
  /** Key prefix (a "folder" in the bucket), e.g. `modhub/`; '' = bucket root. */
  prefix?: string;
  /** Endpoint URL for non-AWS services (MinIO, R2, s3rver); omit for AWS. */
  endpoint?: string;
  /** Region (AWS: the bucket's region; R2: `auto`; MinIO: anything). Default `us-east-1`. */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`): needed by MinIO and s3rver. */
  forcePathStyle?: boolean;
  /** Explicit credentials; omitted = the SDK's default chain (AWS_ACCESS_KEY_ID/…, profiles, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Blobs larger than this go up as multipart uploads (default 16 MiB; S3's minimum part is 5 MiB). */
  multipartThreshold?: number;
  /** Multipart part size (default 16 MiB). */
  partSize?: number;
  /** Parts uploaded at once (default 4). */
  partConcurrency?: number;
  /** Multipart uploads older than this are aborted by sweepTemp (default 24 h: in-flight ones on other replicas are younger). */
  staleUploadMs?: number;
}

/** `s3://bucket/prefix` → bucket and prefix (ending in '/' unless empty). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url.trim());
  if (!m || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(m[1])) {
    throw new RangeError(`blob URL '${url}' is not s3://<bucket>/<optional prefix> (bucket: 3-63 lowercase letters, digits, '.', '-')`);
  }
  const raw = (m[2] ?? '').replace(/^\/+/, '');
  return { bucket: m[1], prefix: raw === '' || raw.endsWith('/') ? raw : `${raw}/` };
}

function md5Base64(b: Buffer): string {
  return createHash('md5').update(b).digest('base64');
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function isNotFound(e: unknown): boolean {
  const name = (e as { name?: string }).name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(e) === 404;
}

function isNotImplemented(e: unknown): boolean {
  const name = (e as { name?: string }).name;
  return name === 'NotImplemented' || statusOf(e) === 501 || statusOf(e) === 405;
}

/** A transform passing `length` bytes after skipping `skip` (then it ends, and ignores the rest). */
function sliceBytes(skip: number, length: number): Transform {
  let pos = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const a = Math.max(0, skip - pos);
      const b = Math.min(chunk.length, skip + length - pos);
      pos += chunk.length;
      if (a < b) this.push(chunk.subarray(a, b));
      if (pos >= skip + length) this.push(null);
      done();
    },
  });
}

/** Runs `fn` over `items` with at most `n` at once; rejects on the first failure. */
async function pool<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

export class S3BlobStore implements BlobStore {
  readonly bucket: string;
  readonly prefix: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly staleUploadMs: number;

  private constructor(
    readonly client: S3Client,
    private readonly opts: S3BlobStoreOptions,
  ) {
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ?? '';
    this.partSize = opts.partSize ?? 16 << 20;
    this.multipartThreshold = opts.multipartThreshold ?? this.partSize;
    this.partConcurrency = opts.partConcurrency ?? 4;
    this.staleUploadMs = opts.staleUploadMs ?? 24 * 3600 * 1000;
    if (this.partSize < 1) throw new RangeError(`'partSize' must be positive, got ${this.partSize}`);
  }

  /** Where this store points, for messages (no credentials). */
  get location(): string {
    return `s3://${this.bucket}/${this.prefix}${this.opts.endpoint ? ` at ${this.opts.endpoint}` : ''}`;
  }

  /** Connects and checks that the bucket exists and is reachable with these credentials; fails naming it otherwise. */
  static async open(opts: S3BlobStoreOptions): Promise<S3BlobStore> {
    const config: S3ClientConfig = {
      region: opts.region ?? 'us-east-1',
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      credentials: opts.credentials,
      // Checksums only where the API requires them: the newer default (CRC32 in aws-chunked trailers) is not
      // understood by every S3-compatible server; Content-MD5 is, and we send it ourselves.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
    };
    const s = new S3BlobStore(new S3Client(config), opts);
    try {
      await s.client.send(new HeadBucketCommand({ Bucket: opts.bucket }));
    } catch (e) {
      s.client.destroy();
      const err = e as Error & { code?: string };
      const why =
        statusOf(e) === 404
          ? 'the bucket does not exist (create it first)'
          : statusOf(e) === 403
            ? 'access denied (check the credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)'
            : `${err.name}: ${err.message || err.code || 'unreachable'}`;
      throw new Error(`cannot use the blob bucket ${s.location}: ${why}`);
    }
    return s;
  }

  private keyOf(digest: string): string {
    if (!DIGEST_RE.test(digest)) throw new StoreError('INVALID_ARGUMENT', `'${digest}' is not a sha256:<hex> digest`);
    const hex = digest.slice(7);
    return `${this.prefix}sha256/${hex.slice(0, 2)}/${hex}`;
  }

  async put(data: Buffer, expectedDigest?: string): Promise<BlobInfo> {
    const expected = expectedDigest === undefined ? undefined : normalizeDigest(expectedDigest);
    const digest = sha256Digest(data);
    if (expected && digest !== expected) throw new StoreError('DIGEST_MISMATCH', `content has digest ${digest}, but ${expectedDigest} was declared`);
    const existing = await this.stat(digest);
    if (existing && existing.size === data.length) return existing;
    const key = this.keyOf(digest);
    const meta = { sha256: digest.slice(7) };
    if (data.length <= this.multipartThreshold) {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length, ContentMD5: md5Base64(data), ContentType: 'application/octet-stream', Metadata: meta }),
      );
    } else {
      await this.multipart(key, data, meta);
    }
    await this.confirmStored(digest, data.length);
    return { digest, size: data.length };
  }

  /**
   * Stores a stream in bounded memory (one part buffered at a time): a blob up to the multipart threshold is
   * buffered and put whole; a larger one goes up as a multipart upload whose parts are sent as they fill, hashed
   * on the way, and completed only when the stream's digest equals `expectedDigest` (aborted otherwise). Without
   * `expectedDigest` the key is not known in advance, so the stream is collected and handed to `put`.
   */
  async putStream(source: Readable, expectedDigest?: string): Promise<BlobInfo> {
    const expected = expectedDigest === undefined ? undefined : normalizeDigest(expectedDigest);
    if (!expected) {
      const chunks: Buffer[] = [];
      for await (const c of source) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
      return this.put(Buffer.concat(chunks));
    }
    const existing = await this.stat(expected);
    if (existing) {
      source.destroy();
      return existing;
    }
    const key = this.keyOf(expected);
    const meta = { sha256: expected.slice(7) };
    const hash = createHash('sha256');
    let size = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let uploadId: string | undefined;
    const etags: string[] = [];
    const sendPart = async (body: Buffer): Promise<void> => {
      if (!uploadId) {
        const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream', Metadata: meta }));
        if (!created.UploadId) throw new Error(`blob store ${this.location}: CreateMultipartUpload returned no UploadId`);
        uploadId = created.UploadId;
      }
      const r = await this.client.send(
        new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: etags.length + 1, Body: body, ContentLength: body.length, ContentMD5: md5Base64(body) }),
      );
      if (!r.ETag) throw new Error(`blob store ${this.location}: part ${etags.length + 1} of ${key} returned no ETag`);
      etags.push(r.ETag);
    };
    try {
      for await (const c of source) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
        hash.update(b);
        size += b.length;
        pending.push(b);
        pendingBytes += b.length;
        // Before the first part, wait until the blob is past the single-put threshold; then send each full part.
        while (pendingBytes >= this.partSize && (uploadId !== undefined || pendingBytes > this.multipartThreshold)) {
          const all = Buffer.concat(pending);
          await sendPart(all.subarray(0, this.partSize));
          pending = [all.subarray(this.partSize)];
          pendingBytes = pending[0].length;
        }
      }
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== expected) throw new StoreError('DIGEST_MISMATCH', `content has digest ${got}, but ${expectedDigest} was declared`);
      const rest = Buffer.concat(pending);
      if (!uploadId) return await this.put(rest, expected); // small enough to have been buffered whole
      if (rest.length) await sendPart(rest);
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) } }),
      );
    } catch (e) {
      if (uploadId) await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      throw e;
    }
    await this.confirmStored(expected, size);
    return { digest: expected, size };
  }

  /**
   * The object must be there, whole, before the catalog may reference it. A store whose read-after-write lags
   * (seen with s3rver under load: HEAD answered 0 bytes right after a PUT it had accepted with a matching
   * Content-MD5) gets a few short retries before the upload counts as failed.
   */
  private async confirmStored(digest: string, size: number): Promise<void> {
    let stored: BlobInfo | null = null;
    for (let attempt = 0; attempt < 6; attempt++) {
      if (attempt) await new Promise((r) => setTimeout(r, 25 * 2 ** attempt));
      stored = await this.stat(digest);
      if (stored && stored.size === size) return;
    }
    throw new Error(`blob ${digest}: the bucket holds ${stored ? `${stored.size} bytes` : 'nothing'} after uploading ${size}`);
  }

  private async multipart(key: string, data: Buffer, meta: Record<string, string>): Promise<void> {
    const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream', Metadata: meta }));
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error(`blob store ${this.location}: CreateMultipartUpload returned no UploadId`);
    try {
      const parts = Array.from({ length: Math.ceil(data.length / this.partSize) }, (_, i) => i);
      const etags = await pool(parts, this.partConcurrency, async (i) => {
        const body = data.subarray(i * this.partSize, Math.min(data.length, (i + 1) * this.partSize));
        const r = await this.client.send(
          new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: i + 1, Body: body, ContentLength: body.length, ContentMD5: md5Base64(body) }),
        );
        if (!r.ETag) throw new Error(`blob store ${this.location}: part ${i + 1} of ${key} returned no ETag`);
        return r.ETag;
      });
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
    } catch (e) {
      // Leave no parts behind (billed storage); a server without Abort keeps them until its own clean-up.
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      throw e;
    }
  }

  async read(digest: string): Promise<Buffer> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest) }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      if (isNotFound(e)) throw new StoreError('FILE_NOT_FOUND', `blob ${digest} is not in the store`);
      throw e;
    }
  }

  stream(digest: string, range?: ByteRange): Readable {
    const key = this.keyOf(digest);
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    this.client
      .send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }))
      .then((r) => {
        const body = r.Body as Readable;
        body.on('error', (e) => out.destroy(e));
        out.on('close', () => body.destroy());
        if (!range) return void body.pipe(out);
        // HTTP lets a server answer a Range request with more than was asked (the whole object with 200, or a
        // wider 206; s3rver widens `bytes=0-0`): cut the asked-for bytes out of whatever came.
        const served = /^bytes (\d+)-(\d+)\//.exec(r.ContentRange ?? '');
        const from = served ? Number(served[1]) : 0;
        if (served && from === range.start && Number(served[2]) === range.end) return void body.pipe(out);
        if (from > range.start) return void out.destroy(new Error(`blob ${digest}: asked the bucket for bytes ${range.start}-${range.end}, got ${r.ContentRange}`));
        body.pipe(sliceBytes(range.start - from, range.end - range.start + 1)).pipe(out);
      })
      .catch((e: unknown) => out.destroy(isNotFound(e) ? new StoreError('FILE_NOT_FOUND', `blob ${digest} is not in the store`) : (e as Error)));
    return out;
  }

  async stat(digest: string): Promise<BlobInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest) }));
      return { digest, size: r.ContentLength ?? 0 };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  async delete(digest: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest) }));
  }

  async list(): Promise<string[]> {
    const out: string[] = [];
    const base = `${this.prefix}sha256/`;
    let token: string | undefined;
    do {
      const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }));
      for (const o of r.Contents ?? []) {
        const m = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec((o.Key ?? '').slice(base.length));
        if (m && m[2].startsWith(m[1])) out.push(`sha256:${m[2]}`);
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /**
   * Aborts multipart uploads under the prefix that started more than `staleUploadMs` ago (left by a process
   * that died mid-upload; younger ones may be another replica's upload in flight). Returns how many. A server
   * that cannot list uploads (s3rver) reports 0; on AWS/MinIO/R2 also set a lifecycle rule
   * (AbortIncompleteMultipartUpload) as the backstop.
   */
  async sweepTemp(): Promise<number> {
    let n = 0;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    const cutoff = Date.now() - this.staleUploadMs;
    try {
      for (;;) {
        const r = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: `${this.prefix}sha256/`, KeyMarker: keyMarker, UploadIdMarker: idMarker }));
        for (const u of r.Uploads ?? []) {
          if (u.Key && u.UploadId && u.Initiated && u.Initiated.getTime() < cutoff) {
            await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
            n++;
          }
        }
        if (!r.IsTruncated) break;
        keyMarker = r.NextKeyMarker;
        idMarker = r.NextUploadIdMarker;
      }
    } catch (e) {
      if (isNotImplemented(e)) return n;
      throw e;
    }
    return n;
  }

  /** Closes the HTTP connections. */
  close(): void {
    this.client.destroy();
  }
}

/** Reads an S3 store's options from MODHUB_BLOB_URL (s3://bucket/prefix) and MODHUB_S3_* / AWS_* variables. */
export function s3OptionsFromEnv(blobUrl: string, env: NodeJS.ProcessEnv = process.env): S3BlobStoreOptions {
  const { bucket, prefix } = parseS3Url(blobUrl);
  const flag = (v: string | undefined): boolean | undefined => (v === undefined || v === '' ? undefined : /^(1|true|yes)$/i.test(v));
  const accessKeyId = env.MODHUB_S3_ACCESS_KEY_ID;
  const secretAccessKey = env.MODHUB_S3_SECRET_ACCESS_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new RangeError('set both MODHUB_S3_ACCESS_KEY_ID and MODHUB_S3_SECRET_ACCESS_KEY, or neither (then the AWS default credential chain is used)');
  }
  return {
    bucket,
    prefix,
    endpoint: env.MODHUB_S3_ENDPOINT || undefined,
    region: env.MODHUB_S3_REGION || env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined,
    forcePathStyle: flag(env.MODHUB_S3_FORCE_PATH_STYLE),
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
  };
}
