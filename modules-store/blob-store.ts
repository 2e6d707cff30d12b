/**
 * Content-addressed blob storage. Blobs are named by `sha256:<hex>` of their bytes; identical bytes are stored
 * once. `BlobStore` is the interface (an S3-compatible store can implement it); `FsBlobStore` keeps blobs in
 * `<dir>/sha256/<2 hex>/<64 hex>`: the bytes go to `<dir>/tmp/` and are fsynced while their sha256 is computed;
 * only when it matches the declared digest is the temp file renamed into place (and the folder fsynced), so a
 * crash never leaves a partial blob under its name and a mismatch leaves nothing.
 * Example: `const { digest } = await blobs.put(bytes); const again = await blobs.read(digest);`
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { StoreError } from './errors';
import { HashCounter } from './staging';

export interface BlobInfo {
  /** `sha256:<64 hex>` */
  digest: string;
  size: number;
}

/** Inclusive byte range, as in HTTP `Range: bytes=start-end`. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobStore {
  /** Stores bytes; when `expectedDigest` is given and differs from the bytes' digest, stores nothing (DIGEST_MISMATCH). */
  put(data: Buffer, expectedDigest?: string): Promise<BlobInfo>;
  /**
   * Stores a stream's bytes in bounded memory (uploads staged on disk). With `expectedDigest`, a blob already
   * stored under it is kept without reading the stream, and a mismatch stores nothing (DIGEST_MISMATCH).
   */
  putStream(source: Readable, expectedDigest?: string): Promise<BlobInfo>;
  /** The whole blob; FILE_NOT_FOUND when absent. */
  read(digest: string): Promise<Buffer>;
  /** A stream over the blob or an inclusive range of it. */
  stream(digest: string, range?: ByteRange): Readable;
  /** Size of a stored blob, or null. */
  stat(digest: string): Promise<BlobInfo | null>;
  /** Removes a blob (no error when absent). */
  delete(digest: string): Promise<void>;
  /** Every stored digest. */
  list(): Promise<string[]>;
  /** Removes leftovers of interrupted writes; returns how many were removed. Call when no write is in flight. */
  sweepTemp(): Promise<number>;
}

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** `sha256:<hex>` of some bytes. */
export function sha256Digest(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Accepts `<hex>` or `sha256:<hex>` (any case) and returns `sha256:<hex>`; INVALID_ARGUMENT otherwise. */
export function normalizeDigest(d: string, what = 'sha256'): string {
  const s = d.trim().toLowerCase();
  const full = s.startsWith('sha256:') ? s : `sha256:${s}`;
  if (!DIGEST_RE.test(full)) throw new StoreError('INVALID_ARGUMENT', `${what} '${d}' is not a sha256 digest (64 hex digits, optionally prefixed 'sha256:')`);
  return full;
}

/** Writes the whole buffer with as few write requests as possible (one, unless the kernel writes less). */
async function writeAll(fh: fsp.FileHandle, data: Buffer): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, off);
    if (bytesWritten <= 0) throw new Error('blob store: write made no progress');
    off += bytesWritten;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    // Some platforms cannot fsync folders; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/** Observation points inside a write (crash tests pause here to kill the process at a known moment). */
export interface FsBlobStoreHooks {
  /** After the temp file is written and fsynced, before the digest check and the rename. */
  afterTempWrite?: (tmpPath: string, digest: string) => void | Promise<void>;
}

export class FsBlobStore implements BlobStore {
  /** See {@link FsBlobStoreHooks}; empty in normal operation. */
  hooks: FsBlobStoreHooks = {};
  private readonly blobDir: string;
  private readonly tmpDir: string;

  private constructor(readonly dir: string) {
    this.blobDir = path.join(dir, 'sha256');
    this.tmpDir = path.join(dir, 'tmp');
  }

  /** Opens (creating) a store rooted at `dir`; `readOnly` creates nothing (a read-only data folder). */
  static async open(dir: string, opts: { readOnly?: boolean } = {}): Promise<FsBlobStore> {
    const s = new FsBlobStore(path.resolve(dir));
    if (opts.readOnly) return s;
    await fsp.mkdir(s.blobDir, { recursive: true });
    await fsp.mkdir(s.tmpDir, { recursive: true });
    return s;
  }

  private pathOf(digest: string): string {
    if (!DIGEST_RE.test(digest)) throw new StoreError('INVALID_ARGUMENT', `'${digest}' is not a sha256:<hex> digest`);
    const hex = digest.slice(7);
    return path.join(this.blobDir, hex.slice(0, 2), hex);
  }

  async put(data: Buffer, expectedDigest?: string): Promise<BlobInfo> {
    const expected = expectedDigest === undefined ? undefined : normalizeDigest(expectedDigest);
    const mismatch = (got: string): StoreError => new StoreError('DIGEST_MISMATCH', `content has digest ${got}, but ${expectedDigest} was declared`);
    if (expected) {
      const existing = await this.stat(expected);
      if (existing && existing.size === data.length) {
        const got = sha256Digest(data);
        if (got !== expected) throw mismatch(got);
        return existing;
      }
    }
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const fh = await fsp.open(tmp, 'wx', 0o644);
    // The write and fsync run on libuv's thread pool while this thread hashes the same (read-only) bytes.
    const written = writeAll(fh, data).then(() => fh.sync());
    const digest = sha256Digest(data);
    try {
      await written;
      if (expected && digest !== expected) throw mismatch(digest);
    } catch (e) {
      await written.catch(() => undefined);
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
      throw e;
    }
    await fh.close();
    const final = this.pathOf(digest);
    if (!expected) {
      const existing = await this.stat(digest);
      if (existing && existing.size === data.length) {
        await fsp.rm(tmp, { force: true });
        return existing;
      }
    }
    await this.commitTemp(tmp, final);
    return { digest, size: data.length };
  }

  async putStream(source: Readable, expectedDigest?: string): Promise<BlobInfo> {
    const expected = expectedDigest === undefined ? undefined : normalizeDigest(expectedDigest);
    if (expected) {
      const existing = await this.stat(expected);
      if (existing) {
        source.destroy();
        return existing;
      }
    }
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const counter = new HashCounter(Number.MAX_SAFE_INTEGER, 'a blob');
    let digest: string;
    try {
      await pipeline(source, counter, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
      const fh = await fsp.open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      digest = counter.digest();
      if (expected && digest !== expected) throw new StoreError('DIGEST_MISMATCH', `content has digest ${digest}, but ${expectedDigest} was declared`);
    } catch (e) {
      source.destroy();
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
    const existing = await this.stat(digest);
    if (existing && existing.size === counter.bytes) {
      await fsp.rm(tmp, { force: true });
      return existing;
    }
    await this.commitTemp(tmp, this.pathOf(digest));
    return { digest, size: counter.bytes };
  }

  /**
   * Moves a written, fsynced, digest-checked temp file to its content address: the rename is the commit point.
   * When the folder or the rename fails (full disk, read-only remount) the temp file is removed at once rather
   * than left for the next start-up sweep.
   */
  private async commitTemp(tmp: string, final: string): Promise<void> {
    try {
      await this.hooks.afterTempWrite?.(tmp, `sha256:${path.basename(final)}`);
      await fsp.mkdir(path.dirname(final), { recursive: true });
      await fsp.rename(tmp, final);
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      // A recursive mkdir on a read-only mount reports ENOENT; ask the folder itself what is wrong.
      const probe = await fsp.access(this.blobDir, fsConstants.W_OK).then(
        () => null,
        (x: unknown) => x,
      );
      throw (probe as NodeJS.ErrnoException | null)?.code === 'EROFS' ? probe : e;
    }
    await fsyncDir(path.dirname(final));
  }

  async read(digest: string): Promise<Buffer> {
    try {
      // One positional read of the whole file (blobs never change): fs.readFile reads in 512 KiB chunks, one
      // thread-pool round trip each, which took 2.0–3.7 ms for a 6 MB module against 1.1 ms so (a first request's
      // load waits for it).
      const fh = await fsp.open(this.pathOf(digest), 'r');
      try {
        const { size } = await fh.stat();
        const buf = Buffer.allocUnsafeSlow(size);
        let at = 0;
        while (at < size) {
          const { bytesRead } = await fh.read(buf, at, size - at, at);
          if (bytesRead === 0) break;
          at += bytesRead;
        }
        return at === size ? buf : buf.subarray(0, at);
      } finally {
        await fh.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new StoreError('FILE_NOT_FOUND', `blob ${digest} is not in the store`);
      throw e;
    }
  }

  stream(digest: string, range?: ByteRange): Readable {
    // 1 MiB reads: large modules stream with far fewer chunks than the 64 KiB default.
    return createReadStream(this.pathOf(digest), { highWaterMark: 1 << 20, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  async stat(digest: string): Promise<BlobInfo | null> {
    try {
      const st = await fsp.stat(this.pathOf(digest));
      return { digest, size: st.size };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async delete(digest: string): Promise<void> {
    await fsp.rm(this.pathOf(digest), { force: true });
  }

  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const sub of await fsp.readdir(this.blobDir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      for (const f of await fsp.readdir(path.join(this.blobDir, sub))) {
        if (/^[0-9a-f]{64}$/.test(f)) out.push(`sha256:${f}`);
      }
    }
    return out;
  }

  async sweepTemp(): Promise<number> {
    const names = await fsp.readdir(this.tmpDir);
    await Promise.all(names.map((n) => fsp.rm(path.join(this.tmpDir, n), { force: true, recursive: true })));
    return names.length;
  }
}
