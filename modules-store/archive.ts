/**
 * Module archives: tar (optionally gzip-compressed) with the package files at the root.
 * Unpacking refuses links, devices, sub-folders, absolute paths and `..`, duplicate names and anything over the
 * size limits (the gzip stream is bounded too, so a small bomb cannot inflate past the limit).
 * Packing writes a deterministic ustar layout (fixed mtime/owner), described as segments so that the HTTP layer
 * can serve byte ranges of an archive straight from the stored blobs without building it in memory.
 * Example: `const files = await unpackArchive(buf, { maxFileBytes, maxTotalBytes })`.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { StoreError } from './errors';
import { discardStaged, stageStream, type StagedFile } from './staging';

export interface UnpackLimits {
  /** Largest single file, in bytes. */
  maxFileBytes: number;
  /** Largest sum of all files (after decompression), in bytes. */
  maxTotalBytes: number;
  /** Most entries the archive may hold. */
  maxEntries?: number;
}

/** True when `buf` starts with the gzip magic bytes. */
export function isGzip(buf: Buffer): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/** Normalises an archive entry name; throws INVALID_ARCHIVE for absolute paths, traversal and sub-folders. */
export function safeEntryName(raw: string): string | null {
  if (raw.includes('\0') || raw.includes('\\')) throw new StoreError('INVALID_ARCHIVE', `archive entry '${raw}' contains a NUL or backslash`);
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) throw new StoreError('INVALID_ARCHIVE', `archive entry '${raw}' is an absolute path; package files must sit at the archive root`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new StoreError('INVALID_ARCHIVE', `archive entry '${raw}' contains '..'`);
  if (parts.length === 0) return null; // the root folder itself
  if (parts.length > 1) throw new StoreError('INVALID_ARCHIVE', `archive entry '${raw}' is inside a folder; package files must sit at the archive root`);
  return parts[0];
}

/**
 * Joins an entry's chunks. For an uncompressed archive tar-stream hands out views into the source buffer; when
 * they are contiguous the entry is returned as one view (no copy: copying 50 MB costs ~100 ms on this machine).
 */
function joinChunks(chunks: Buffer[], source: Buffer): Buffer {
  if (chunks.length === 0) return Buffer.alloc(0);
  const first = chunks[0];
  const contiguous = chunks.every((c, i) => c.buffer === source.buffer && (i === 0 || c.byteOffset === chunks[i - 1].byteOffset + chunks[i - 1].length));
  if (!contiguous) return Buffer.concat(chunks);
  const end = chunks[chunks.length - 1].byteOffset + chunks[chunks.length - 1].length;
  return Buffer.from(source.buffer, first.byteOffset, end - first.byteOffset);
}

/**
 * Checks one tar entry against the package rules (regular files at the root, each once) and the limits, counting
 * it in `seen`; returns its file name, or null for a root folder entry, which the caller skips.
 */
function admitEntry(header: { name: string; type?: string | null; size?: number | null }, seen: { entries: number; total: number }, limits: UnpackLimits, maxEntries: number, files: { has(name: string): boolean }): string | null {
  seen.entries++;
  if (seen.entries > maxEntries) throw new StoreError('INVALID_ARCHIVE', `archive holds more than ${maxEntries} entries`);
  const name = safeEntryName(header.name);
  if (header.type === 'directory') {
    if (name !== null) throw new StoreError('INVALID_ARCHIVE', `archive entry '${header.name}' is a folder; package files must sit at the archive root`);
    return null;
  }
  if (header.type !== 'file' && header.type !== 'contiguous-file') {
    throw new StoreError('INVALID_ARCHIVE', `archive entry '${header.name}' is a ${header.type}; only regular files are allowed (no links)`);
  }
  if (name === null) throw new StoreError('INVALID_ARCHIVE', `archive entry '${header.name}' has no file name`);
  if (files.has(name)) throw new StoreError('INVALID_ARCHIVE', `archive holds '${name}' twice`);
  const size = header.size ?? 0;
  if (size > limits.maxFileBytes) throw new StoreError('TOO_LARGE', `'${name}' is ${size} bytes, over the ${limits.maxFileBytes}-byte file limit`);
  seen.total += size;
  if (seen.total > limits.maxTotalBytes) throw new StoreError('TOO_LARGE', `archive contents exceed the ${limits.maxTotalBytes}-byte package limit`);
  return name;
}

/** Unpacks a tar or tar.gz buffer into name → bytes, enforcing the rules above. */
export async function unpackArchive(buf: Buffer, limits: UnpackLimits): Promise<Map<string, Buffer>> {
  const maxEntries = limits.maxEntries ?? 16;
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const seen = { entries: 0, total: 0 };
  const source = Readable.from([buf]);
  let input: NodeJS.ReadableStream = source;
  if (isGzip(buf)) {
    const gunzip = createGunzip();
    let inflated = 0;
    gunzip.on('data', (chunk: Buffer) => {
      inflated += chunk.length;
      // tar framing adds at most 512 bytes per entry plus 1 KiB of trailer (and pax headers); allow headroom.
      if (inflated > limits.maxTotalBytes + (maxEntries + 4) * 2048) {
        gunzip.destroy(new StoreError('TOO_LARGE', `archive inflates past the ${limits.maxTotalBytes}-byte package limit`));
      }
    });
    input = source.pipe(gunzip);
  }
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (e: unknown): void => {
      if (settled) return;
      settled = true;
      const err = e instanceof StoreError ? e : new StoreError('INVALID_ARCHIVE', `archive is not a readable tar/tar.gz: ${(e as Error)?.message ?? String(e)}`);
      extract.destroy();
      reject(err);
    };
    extract.on('entry', (header, stream, next) => {
      try {
        const name = admitEntry(header, seen, limits, maxEntries, files);
        if (name === null) {
          stream.resume();
          stream.on('end', next);
          return;
        }
        const chunks: Buffer[] = [];
        stream.on('data', (c: unknown) => chunks.push(c as Buffer));
        stream.on('error', fail);
        stream.on('end', () => {
          files.set(name, joinChunks(chunks, buf));
          next();
        });
      } catch (e) {
        stream.resume();
        fail(e);
      }
    });
    extract.on('finish', () => {
      if (!settled) {
        settled = true;
        resolve();
      }
    });
    extract.on('error', fail);
    input.on('error', fail);
    input.pipe(extract);
  });
  return files;
}

/** Limits for unpacking an archive file to staged files. */
export interface UnpackFileLimits extends UnpackLimits {
  /** Folder the entries are staged in. */
  dir: string;
  /**
   * Most bytes a gzip stream may inflate to per compressed byte (default 100). Legitimate packages compress a few
   * times at most (zero-initialised tensors more); a bomb inflates thousands of times.
   */
  maxRatio?: number;
  /** Inflating up to this many bytes is always allowed, whatever the ratio (default 64 MiB). */
  ratioFloorBytes?: number;
}

/**
 * Unpacks a tar or tar.gz FILE entry by entry into staged temp files (hashed as they are written), with the rules
 * of {@link unpackArchive} plus a cap on the gzip inflation ratio. Memory stays at a few stream buffers whatever
 * the archive declares; on any failure every staged file is removed.
 */
export async function unpackArchiveFile(file: string, limits: UnpackFileLimits): Promise<Map<string, StagedFile>> {
  const maxEntries = limits.maxEntries ?? 16;
  const files = new Map<string, StagedFile>();
  const st = await fsp.stat(file);
  const head = Buffer.alloc(2);
  const fh = await fsp.open(file, 'r');
  try {
    await fh.read(head, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const source = createReadStream(file, { highWaterMark: 256 * 1024 });
  let input: NodeJS.ReadableStream = source;
  let gunzip: ReturnType<typeof createGunzip> | null = null;
  const byRatio = Math.max(limits.ratioFloorBytes ?? 64 << 20, st.size * (limits.maxRatio ?? 100));
  const ratioWhy = `more than ${limits.maxRatio ?? 100} times its compressed size (${st.size} bytes)`;
  if (isGzip(head)) {
    gunzip = createGunzip({ chunkSize: 64 * 1024 });
    const cap = Math.min(limits.maxTotalBytes + (maxEntries + 4) * 2048, byRatio);
    let inflated = 0;
    const gz = gunzip;
    gz.on('data', (chunk: Buffer) => {
      inflated += chunk.length;
      if (inflated > cap) gz.destroy(new StoreError('TOO_LARGE', `archive inflates ${cap === byRatio ? ratioWhy : `past the ${limits.maxTotalBytes}-byte package limit`}`));
    });
    input = source.pipe(gz);
  }
  const extract = tar.extract();
  const seen = { entries: 0, total: 0 };
  try {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (e: unknown): void => {
        if (settled) return;
        settled = true;
        const err = e instanceof StoreError ? e : new StoreError('INVALID_ARCHIVE', `archive is not a readable tar/tar.gz: ${(e as Error)?.message ?? String(e)}`);
        extract.destroy();
        gunzip?.destroy();
        source.destroy();
        reject(err);
      };
      extract.on('entry', (header, stream, next) => {
        try {
          const name = admitEntry(header, seen, limits, maxEntries, files);
          if (name === null) {
            stream.resume();
            stream.on('end', next);
            return;
          }
          // A bomb usually declares its size: refuse at the header, before inflating anything.
          if (gunzip && seen.total > byRatio) throw new StoreError('TOO_LARGE', `archive declares ${seen.total} bytes of files, ${ratioWhy}`);
          stageStream(stream as unknown as Readable, { dir: limits.dir, maxBytes: limits.maxFileBytes, what: `'${name}'` }).then(
            (staged) => {
              files.set(name, staged);
              next();
            },
            fail,
          );
        } catch (e) {
          stream.resume();
          fail(e);
        }
      });
      extract.on('finish', () => {
        if (!settled) {
          settled = true;
          // Bytes after the end-of-archive blocks are never read (or inflated).
          gunzip?.destroy();
          source.destroy();
          resolve();
        }
      });
      extract.on('error', fail);
      input.on('error', fail);
      source.on('error', fail);
      input.pipe(extract);
    });
  } catch (e) {
    await discardStaged(files.values());
    throw e;
  }
  return files;
}

/** One piece of a packed archive: literal bytes (headers, padding) or a whole stored file. */
export type ArchiveSegment<F> = { kind: 'bytes'; bytes: Buffer } | { kind: 'file'; file: F; size: number };

export interface ArchiveEntry<F> {
  name: string;
  size: number;
  file: F;
}

const MTIME = 0; // deterministic archives: same files, same bytes, same ETag

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** Encodes one ustar header for a regular file at the archive root (names up to 100 bytes). */
export function ustarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512, 0);
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length > 100) throw new RangeError(`archive entry name '${name}' is longer than 100 bytes`);
  nameBytes.copy(h, 0);
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(MTIME, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i];
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/** The segments of an uncompressed tar holding `entries` in order, and its total size. */
export function archiveLayout<F>(entries: ArchiveEntry<F>[]): { segments: ArchiveSegment<F>[]; size: number } {
  const segments: ArchiveSegment<F>[] = [];
  let size = 0;
  for (const e of entries) {
    segments.push({ kind: 'bytes', bytes: ustarHeader(e.name, e.size) });
    segments.push({ kind: 'file', file: e.file, size: e.size });
    const pad = (512 - (e.size % 512)) % 512;
    if (pad) segments.push({ kind: 'bytes', bytes: Buffer.alloc(pad) });
    size += 512 + e.size + pad;
  }
  segments.push({ kind: 'bytes', bytes: Buffer.alloc(1024) });
  return { segments, size: size + 1024 };
}

/** Packs name → bytes into a tar buffer (gzip-compressed when `gzip` is set). */
export function packArchive(files: Map<string, Buffer>, gzip = false): Buffer {
  const { segments } = archiveLayout([...files].map(([name, bytes]) => ({ name, size: bytes.length, file: bytes })));
  const tarBuf = Buffer.concat(segments.map((s) => (s.kind === 'bytes' ? s.bytes : s.file)));
  return gzip ? gzipSync(tarBuf) : tarBuf;
}
