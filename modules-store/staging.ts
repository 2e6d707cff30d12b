/**
 * Staging: uploads are written to temp files as their bytes arrive, hashed on the way and cut off at a size
 * limit, so that a request never holds a module in memory (issue 13). A staged package is name → file on disk;
 * the registry validates it from the files and stores it through BlobStore.putStream.
 * Example: `const f = await stageStream(req, { dir, maxBytes }); f.digest; f.size; f.path`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StoreError } from './errors';

/** One staged file: where it is, how big, and the sha256 of its bytes. */
export interface StagedFile {
  path: string;
  size: number;
  /** `sha256:<hex>` */
  digest: string;
}

export interface StageOptions {
  /** Folder for the temp file (created when missing). */
  dir: string;
  /** Largest accepted size; one byte more fails with TOO_LARGE and removes the file. */
  maxBytes: number;
  /** Names the bytes in the TOO_LARGE message (default 'the upload'). */
  what?: string;
}

/** A fresh temp file name in `dir`. */
export function stagingPath(dir: string, suffix = '.upload'): string {
  return path.join(dir, `${randomBytes(12).toString('hex')}${suffix}`);
}

/** A pass-through that hashes and counts bytes, failing with TOO_LARGE past `maxBytes`. */
export class HashCounter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  constructor(
    private readonly maxBytes: number,
    private readonly what: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) return cb(new StoreError('TOO_LARGE', `${this.what} exceeds the ${this.maxBytes}-byte limit`));
    this.hash.update(chunk);
    cb(null, chunk);
  }
  /** `sha256:<hex>` of everything that passed (call once, after the end). */
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Writes a stream to a new temp file, hashing as bytes arrive; removes the file when anything fails. */
export async function stageStream(source: Readable, o: StageOptions): Promise<StagedFile> {
  await fsp.mkdir(o.dir, { recursive: true });
  const file = stagingPath(o.dir);
  const counter = new HashCounter(o.maxBytes, o.what ?? 'the upload');
  try {
    await pipeline(source, counter, createWriteStream(file, { flags: 'wx' }));
  } catch (e) {
    await fsp.rm(file, { force: true }).catch(() => undefined);
    throw e;
  }
  return { path: file, size: counter.bytes, digest: counter.digest() };
}

/** Removes staged files (never throws). */
export async function discardStaged(files: Iterable<StagedFile>): Promise<void> {
  await Promise.all([...files].map((f) => fsp.rm(f.path, { force: true }).catch(() => undefined)));
}
