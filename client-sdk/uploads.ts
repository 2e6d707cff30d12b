/**
 * The client side of the hub's resumable uploads (/v1/uploads, in the style of OCI distribution): open a session,
 * send the archive in chunks (`PATCH` with `Content-Range: bytes <start>-<end>/*`), commit with the sha256 of
 * the whole archive (`PUT ?digest=`). The server's offset is the truth: after a dropped connection, a timeout or
 * a 416 UPLOAD_RANGE_MISMATCH the uploader asks the session where it ends (`GET`) and goes on from there, also
 * from the middle of a chunk (the server keeps the bytes of a chunk cut off midway). Runs wherever fetch runs;
 * Web Crypto cannot hash incrementally, so a Blob is hashed by reading it once and a stream needs its digest.
 * Example: `await new ResumableUploader(transport, parse).upload(blob, { chunkBytes: 8 << 20 })`.
 */
import type { z } from 'zod';
import type { Progress } from './client';
import { ModhubError } from './errors';
import { arrayBufferView, sha256Hex, type BytesLike } from './sha256';
import { sleep, type CallOptions, type Transport } from './transport';
import * as W from './wire';
import type { PublishResult, UploadSession } from './wire';

/** Bytes per PATCH unless `chunkBytes` says otherwise. */
export const DEFAULT_CHUNK_BYTES = 8 << 20;
/** Archives above this size are published through a resumable upload unless `resumableAbove` says otherwise. */
export const DEFAULT_RESUMABLE_ABOVE = 64 << 20;

/** What a resumable upload sends: archive bytes, a Blob (a Node file Blob stays on disk), or a stream. */
export type ResumableSource = BytesLike | ReadableStream<Uint8Array>;

export interface ResumableUploadOptions extends CallOptions {
  /** Bytes per chunk (default 8 MiB). */
  chunkBytes?: number;
  /** Called with the bytes the hub has confirmed: never decreasing, ending at the total. */
  onProgress?: (p: Progress) => void;
  /** sha256 of the whole archive (hex or `sha256:<hex>`): required for a stream, computed for bytes / a Blob. */
  digest?: string;
  /** Continue an earlier session (its id `up_…` or its Location) instead of opening one. */
  resumeFrom?: string;
  /** Called once the session is open (or found): keep its `id` to resume in another process. */
  onSession?: (s: UploadSession) => void;
  /** Accept a base the hub has not registered (admin token). */
  allowUnknownBase?: boolean;
  /** Failed attempts in a row (dropped connection, timeout, range mismatch) before giving up (default 8). */
  maxRetries?: number;
}

/** Parses a JSON answer with its wire schema (ModhubClient's, so validateResponses applies). */
export type ParseAnswer = <S extends z.ZodType>(schema: S, what: string, data: unknown) => z.output<S>;

const HEX = /^[0-9a-f]{64}$/;
const SESSION_ID = /(up_[0-9A-Za-z]+)\/?$/;

/** Errors after which the session's offset is asked for and the upload goes on. */
function resumable(e: unknown): boolean {
  if (!(e instanceof ModhubError)) return false;
  return ['NETWORK_ERROR', 'TIMEOUT', 'UPLOAD_RANGE_MISMATCH'].includes(e.code) || [408, 502, 504].includes(e.status);
}

/** Reads a byte stream in pieces of a chosen size. */
class StreamChunks {
  private rest: Uint8Array | null = null;
  private ended = false;
  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** Up to `n` bytes (fewer only at the end of the stream; empty there). */
  async read(n: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < n) {
      let piece = this.rest;
      this.rest = null;
      if (!piece) {
        if (this.ended) break;
        const r = await this.reader.read();
        if (r.done) {
          this.ended = true;
          break;
        }
        piece = r.value;
      }
      if (piece.byteLength > n - have) {
        this.rest = piece.subarray(n - have);
        piece = piece.subarray(0, n - have);
      }
      parts.push(piece);
      have += piece.byteLength;
    }
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(have);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }

  /** Discards `n` bytes; returns how many there were. */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const piece = await this.read(Math.min(n - skipped, 1 << 20));
      if (piece.byteLength === 0) break;
      skipped += piece.byteLength;
    }
    return skipped;
  }
}

export class ResumableUploader {
  constructor(
    private readonly transport: Transport,
    private readonly parse: ParseAnswer,
  ) {}

  private sessionPath(id: string): string {
    return `/v1/uploads/${encodeURIComponent(id)}`;
  }

  private async sessionCall(method: string, urlPath: string, init: Parameters<Transport['send']>[2]): Promise<UploadSession> {
    const data = await this.transport.send(method, urlPath, init, (res) => res.json() as Promise<unknown>);
    return this.parse(W.UploadSessionSchema, `${method} ${urlPath}`, data);
  }

  /** Opens a session (`POST /v1/uploads`). */
  open(o: CallOptions = {}): Promise<UploadSession> {
    return this.sessionCall('POST', '/v1/uploads', o);
  }

  /** Where a session ends (`GET /v1/uploads/{id}`); `id` may also be the session's Location. */
  status(id: string, o: CallOptions = {}): Promise<UploadSession> {
    return this.sessionCall('GET', this.sessionPath(sessionIdOf(id)), o);
  }

  /** Cancels a session and drops its bytes (`DELETE /v1/uploads/{id}`). */
  async cancel(id: string, o: CallOptions = {}): Promise<void> {
    await this.transport.send('DELETE', this.sessionPath(sessionIdOf(id)), o, async (res) => void (await res.body?.cancel()));
  }

  /** Sends `source` through a session (opened, or `resumeFrom`) and publishes it; see ResumableUploadOptions. */
  async upload(source: ResumableSource, o: ResumableUploadOptions = {}): Promise<PublishResult> {
    const chunkBytes = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`'chunkBytes' must be a whole number of bytes >= 1, got ${chunkBytes}`);
    const maxRetries = o.maxRetries ?? 8;
    if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new RangeError(`'maxRetries' must be a whole number >= 0, got ${maxRetries}`);
    const stream = source instanceof ReadableStream ? new StreamChunks(source.getReader()) : null;
    const blob = source instanceof ReadableStream ? null : source instanceof Blob ? source : new Blob([arrayBufferView(source)]);
    let hex: string;
    if (o.digest !== undefined) {
      hex = o.digest.replace(/^sha256:/, '').toLowerCase();
      if (!HEX.test(hex)) throw new TypeError(`'digest' must be the sha256 of the archive as 64 hex digits (or sha256:<hex>), got '${o.digest}'`);
    } else if (blob) {
      hex = await sha256Hex(blob);
    } else {
      throw new TypeError("a stream cannot be hashed as it is sent (Web Crypto hashes whole buffers): pass 'digest', the sha256 of the whole archive, or send a Blob");
    }

    const session = o.resumeFrom !== undefined ? await this.status(o.resumeFrom, o) : await this.open(o);
    const ours = o.resumeFrom === undefined;
    const id = session.id;
    const at = this.sessionPath(id);
    o.onSession?.(session);
    const total = blob?.size ?? 0;
    let offset = session.offset;
    let reported = -1;
    const progress = (n: number, t = total) => {
      if (n <= reported && t === total) return;
      reported = Math.max(reported, n);
      o.onProgress?.({ loaded: reported, total: t });
    };
    try {
      if (blob && blob.size > session.max_bytes) {
        throw new ModhubError(413, 'TOO_LARGE', `the archive is ${blob.size} bytes, more than the ${session.max_bytes} bytes this hub accepts`);
      }
      if (blob && offset > blob.size) {
        throw new ModhubError(0, 'UPLOAD_SESSION_MISMATCH', `upload ${id} already holds ${offset} bytes, more than the ${blob.size} bytes of this archive: is it another archive's session?`);
      }
      progress(offset);
      if (blob) {
        while (offset < blob.size) {
          const start = offset;
          const end = Math.min(start + chunkBytes, blob.size);
          offset = await this.sendRange(at, start, end, (from) => blob.slice(from, end), progress, o, maxRetries);
        }
      } else {
        const s = stream!;
        if ((await s.skip(offset)) < offset) throw new ModhubError(0, 'UPLOAD_SESSION_MISMATCH', `upload ${id} holds ${offset} bytes, more than the stream has: is it another archive's session?`);
        for (;;) {
          const buf = await s.read(chunkBytes);
          if (buf.byteLength === 0) break;
          const start = offset;
          offset = await this.sendRange(at, start, start + buf.byteLength, (from) => new Blob([arrayBufferView(buf.subarray(from - start))]), progress, o, maxRetries);
        }
      }
      const result = await this.commit(at, id, hex, o, maxRetries);
      progress(offset, offset);
      return result;
    } catch (e) {
      if (e instanceof ModhubError && (resumable(e) || e.code === 'ABORTED')) {
        throw new ModhubError(e.status, e.code, `${e.message}; upload ${id} holds ${offset} bytes: pass resumeFrom: '${id}' to go on from there`, e.requestId);
      }
      // Nothing to resume after the hub refused the upload: drop the bytes of a session this call opened.
      if (ours && !(e instanceof ModhubError && e.code === 'UPLOAD_NOT_FOUND')) await this.cancel(id, { timeoutMs: 10_000 }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Gets bytes [start, end) into the session, from wherever the session is: `piece(from)` is the Blob of bytes
   * [from, end). Returns the session's offset (= end).
   */
  private async sendRange(at: string, start: number, end: number, piece: (from: number) => Blob, progress: (n: number) => void, o: ResumableUploadOptions, maxRetries: number): Promise<number> {
    let offset = start;
    let failures = 0;
    let ask = false;
    while (offset < end) {
      const before = offset;
      try {
        if (ask) {
          offset = (await this.sessionCall('GET', at, o)).offset;
          ask = false;
        } else {
          const from = offset;
          const headers = { 'Content-Type': 'application/octet-stream', 'Content-Range': `bytes ${from}-${end - 1}/*` };
          offset = (await this.sessionCall('PATCH', at, { ...o, headers, body: () => piece(from) })).offset;
        }
      } catch (e) {
        if (!resumable(e) || failures >= maxRetries) throw e;
        failures++;
        ask = true;
        if ((e as ModhubError).code !== 'UPLOAD_RANGE_MISMATCH') await sleep(Math.min(250 * 2 ** (failures - 1), 10_000), o.signal);
        continue;
      }
      if (offset < start || offset > end) {
        throw new ModhubError(0, 'UPLOAD_SESSION_MISMATCH', `the upload session holds ${offset} bytes, but this chunk covers bytes ${start}-${end - 1}: the session changed under this upload; start a new one`);
      }
      if (offset > before) failures = 0;
      progress(offset);
    }
    return offset;
  }

  /** `PUT ?digest=`: the hub checks the digest and publishes; a dropped answer is retried while the session exists. */
  private async commit(at: string, id: string, hex: string, o: ResumableUploadOptions, maxRetries: number): Promise<PublishResult> {
    const q = new URLSearchParams({ digest: `sha256:${hex}` });
    if (o.allowUnknownBase) q.set('allow_unknown_base', 'true');
    for (let failures = 0; ; failures++) {
      try {
        const data = await this.transport.send('PUT', `${at}?${q}`, o, (res) => res.json() as Promise<unknown>);
        return this.parse(W.PublishResultSchema, `PUT ${at}`, data);
      } catch (e) {
        if (!(e instanceof ModhubError) || !['NETWORK_ERROR', 'TIMEOUT'].includes(e.code) || failures >= maxRetries) throw e;
        await sleep(Math.min(250 * 2 ** failures, 10_000), o.signal);
        // The session ends when the hub takes the commit: gone means it was taken, whatever came of it.
        const still = await this.sessionCall('GET', at, o).catch((g: unknown) => g);
        if (still instanceof ModhubError && still.code === 'UPLOAD_NOT_FOUND') {
          throw new ModhubError(e.status, e.code, `${e.message}; the hub took the commit of upload ${id} but its answer was lost: look the version up (info) to see whether it was published`, e.requestId);
        }
      }
    }
  }
}

/** The session id of an id or a Location (`/v1/uploads/up_…`). */
export function sessionIdOf(idOrLocation: string): string {
  const m = SESSION_ID.exec(idOrLocation.trim());
  if (!m) throw new TypeError(`'${idOrLocation}' is not an upload session id (up_…) or its Location`);
  return m[1];
}
