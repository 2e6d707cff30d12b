/**
 * Serving stored bytes: single files and whole-version tar archives, with strong ETags, `If-None-Match` (304),
 * single `Range` requests (206 / 416, `If-Range`), exact `Content-Length` and HEAD. An archive is a list of
 * segments (tar headers and padding in memory, file bodies streamed from the blob store), so ranges of an archive
 * are served without building it.
 * Example: `await sendSegments(req, res, registry, { segments, size, etag, contentType })`.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { archiveLayout, type ArchiveSegment, type FileRow, type Registry } from '../../modules-store';
import { rangeNotSatisfiable } from './errors';

export type Segment = ArchiveSegment<FileRow>;

export interface Payload {
  segments: Segment[];
  size: number;
  /** Strong ETag, quoted. */
  etag: string;
  contentType: string;
  /** Sets Content-Disposition: attachment; filename=... */
  filename?: string;
  headers?: Record<string, string>;
}

/** A single stored file as a payload; the ETag is the quoted sha256 hex (what HF serves for LFS files). */
export function filePayload(f: FileRow, headers: Record<string, string> = {}): Payload {
  const contentType = f.name.endsWith('.json') ? 'application/json' : f.name.endsWith('.md') ? 'text/markdown; charset=utf-8' : 'application/octet-stream';
  return { segments: [{ kind: 'file', file: f, size: f.size }], size: f.size, etag: `"${f.digest.slice(7)}"`, contentType, headers };
}

/** A version's files as an uncompressed tar; the ETag is the version digest. */
export function archivePayload(files: FileRow[], versionDigest: string, filename: string): Payload {
  const { segments, size } = archiveLayout(files.map((f) => ({ name: f.name, size: f.size, file: f })));
  return { segments, size, etag: `"${versionDigest.slice(7)}"`, contentType: 'application/x-tar', filename };
}

/** Parses one `bytes=` range against `size`; null = serve whole; throws 416 when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) {
    if (/^bytes=.*,/.test(header)) return null; // multiple ranges: RFC 9110 allows answering with the whole body
    throw rangeNotSatisfiable(`Range '${header}' is not a single 'bytes=start-end' range`, size);
  }
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw rangeNotSatisfiable('a zero-length suffix range selects nothing', size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) {
    throw rangeNotSatisfiable(`Range '${header}' lies outside the ${size}-byte body`, size);
  }
  return { start, end };
}

async function* rangeOf(registry: Registry, segments: Segment[], start: number, end: number): AsyncGenerator<Buffer> {
  let pos = 0;
  for (const s of segments) {
    const len = s.kind === 'bytes' ? s.bytes.length : s.size;
    const a = Math.max(start, pos);
    const b = Math.min(end, pos + len - 1);
    if (a <= b) {
      if (s.kind === 'bytes') yield s.bytes.subarray(a - pos, b - pos + 1);
      else for await (const chunk of registry.openBlob(s.file.digest, { start: a - pos, end: b - pos })) yield chunk as Buffer;
    }
    pos += len;
    if (pos > end) break;
  }
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const s = t.trim();
    return s === '*' || s === etag || s === `W/${etag}`;
  });
}

/**
 * Sends a payload honouring conditional and range headers. Resolves when the body is fully written.
 * `onWhole` runs once when a whole 200 body (a GET without a range) has been handed to the response in full; it
 * looks at the bytes, not at 'finish': a client holding Content-Length bytes may close the socket before the
 * stream pipeline gets to call end(), and the response then closes without 'finish' (seen under load).
 */
export async function sendPayload(req: Request, res: Response, registry: Registry, p: Payload, onWhole?: () => void): Promise<void> {
  res.setHeader('ETag', p.etag);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'public, max-age=0, must-revalidate');
  for (const [k, v] of Object.entries(p.headers ?? {})) res.setHeader(k, v);
  if (p.filename) res.setHeader('Content-Disposition', `attachment; filename="${p.filename.replace(/[^\w.@-]/g, '_')}"`);
  if (etagMatches(req.headers['if-none-match'], p.etag)) {
    res.status(304).end();
    return;
  }
  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== p.etag ? null : parseRange(req.headers.range, p.size);
  const start = range ? range.start : 0;
  const end = range ? range.end : p.size - 1;
  res.status(range ? 206 : 200);
  if (range) res.setHeader('Content-Range', `bytes ${start}-${end}/${p.size}`);
  res.setHeader('Content-Type', p.contentType);
  res.setHeader('Content-Length', String(p.size === 0 ? 0 : end - start + 1));
  if (req.method === 'HEAD' || p.size === 0) {
    res.end();
    return;
  }
  const total = end - start + 1;
  let sent = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of rangeOf(registry, p.segments, start, end)) {
      sent += chunk.length;
      yield chunk;
    }
  }
  if (onWhole && !range && req.method === 'GET') res.once('close', () => sent === total && onWhole());
  await pipeline(Readable.from(counted()), res);
}
