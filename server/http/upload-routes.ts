/**
 * Resumable, chunked uploads under /v1/uploads, in the style of the OCI distribution spec, for modules too big to
 * send in one request (or over links that drop): POST opens a session, PATCH appends a chunk (Content-Range
 * `bytes <start>-<end>/*` or OCI's `<start>-<end>`; a chunk must start where the session ends), GET tells where it
 * ends, PUT ?digest=sha256:… (optionally with a last chunk) checks the whole upload's digest and publishes it as
 * a tar / tar.gz archive, DELETE cancels. Sessions belong to the token that opened them; bytes go to disk as they
 * arrive. Example (curl):
 *   loc=$(curl -si -X POST $HUB/v1/uploads -H "Authorization: Bearer $T" | grep -i ^location | cut -d' ' -f2 | tr -d '\r')
 *   curl -X PATCH $HUB$loc -H "Authorization: Bearer $T" -H 'Content-Range: bytes 0-1048575/*' --data-binary @part0
 *   curl -X PUT "$HUB$loc?digest=sha256:$(sha256sum m.tar.gz | cut -c1-64)" -H "Authorization: Bearer $T"
 */
import express, { type Request, type Response } from 'express';
import { splitId, type Registry, type UploadSession } from '../../modules-store';
import * as W from '../../client-sdk/wire';
import { assertCanWrite, authOf, hasScope, requireScope } from './auth';
import { badRequest, forbidden } from './errors';
import type { RouteDoc } from './openapi';
import { parseQuery } from './wire';

/** The session as JSON, with the OCI-style headers (Location, Range of the bytes held, Upload-Offset). */
function sendSession(res: Response, s: UploadSession, maxBytes: number, status: number): void {
  res.setHeader('Location', `/v1/uploads/${s.id}`);
  res.setHeader('Upload-Offset', String(s.offset));
  res.setHeader('Range', `0-${Math.max(0, s.offset - 1)}`);
  const answer: W.UploadSession = { id: s.id, offset: s.offset, max_bytes: maxBytes, created_at: s.createdAt };
  res.status(status).json(answer);
}

/** The start offset of a chunk from Content-Range (`bytes a-b/*`, `bytes a-b/n` or OCI's `a-b`); undefined when absent. */
export function chunkStart(req: Request): number | undefined {
  const h = req.headers['content-range'];
  if (h === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(\d+|\*))?$/.exec(h.trim());
  if (!m) throw badRequest('INVALID_REQUEST', `Content-Range '${h}' is not 'bytes <start>-<end>/*' or '<start>-<end>'`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw badRequest('INVALID_REQUEST', `Content-Range '${h}' ends before it starts`);
  const len = Number(req.headers['content-length']);
  if (Number.isFinite(len) && len !== end - start + 1) throw badRequest('INVALID_REQUEST', `Content-Range '${h}' names ${end - start + 1} bytes, but Content-Length is ${len}`);
  return start;
}

/** Owner of a session: the token id (a write token is required, so there always is one). */
const ownerOf = (res: Response): string => authOf(res).token!.id;

/** Adds the /uploads routes to a hub router; `publish` answers the commit like POST /modules. */
export function addUploadRoutes(r: express.Router, registry: Registry, answerPublish: (res: Response, result: Awaited<ReturnType<Registry['publish']>>) => void): void {
  const sessions = registry.uploads;
  const max = registry.maxPackageBytes;
  const write = requireScope('write');
  const writable: express.RequestHandler = (_req, _res, next) => {
    registry.assertWritable('uploading');
    next();
  };

  r.post('/uploads', write, writable, async (_req, res) => {
    sendSession(res, await sessions.create(ownerOf(res)), max, 202);
  });

  r.get('/uploads/:id', write, async (req, res) => {
    sendSession(res, await sessions.get(String(req.params.id), ownerOf(res)), max, 200);
  });

  r.patch('/uploads/:id', write, writable, async (req, res) => {
    const start = chunkStart(req);
    sendSession(res, await sessions.append(String(req.params.id), ownerOf(res), start, req), max, 202);
  });

  r.put('/uploads/:id', write, writable, async (req, res) => {
    const id = String(req.params.id);
    const q = parseQuery(W.UploadCommitQuerySchema, req);
    const allowUnknown = q.allow_unknown_base === 'true' || q.allow_unknown_base === '1';
    if (allowUnknown && !hasScope(authOf(res).token, 'admin')) throw forbidden('allow_unknown_base needs an admin token');
    const owner = ownerOf(res);
    const len = Number(req.headers['content-length'] ?? 0);
    if (len > 0 || req.headers['transfer-encoding']) await sessions.append(id, owner, chunkStart(req), req);
    else req.resume();
    const staged = await sessions.commit(id, owner, q.digest);
    const result = await registry.publish({ stagedArchive: staged }, { allowUnknownBase: allowUnknown || undefined, authorize: (m) => assertCanWrite(res, splitId(m.id).namespace) });
    answerPublish(res, result);
  });

  r.delete('/uploads/:id', write, async (req, res) => {
    await sessions.cancel(String(req.params.id), ownerOf(res));
    res.status(204).end();
  });
}

const SESSION_HEADERS = { Location: 'the session URL', Range: 'bytes held: 0-<offset-1>', 'Upload-Offset': 'bytes held (where the next chunk starts)' };

/** The /v1/uploads routes, for /openapi.json. */
export const UPLOAD_ROUTE_DOCS: RouteDoc[] = [
  {
    method: 'post',
    path: '/uploads',
    summary: 'Open a resumable upload session (for big modules; then PATCH chunks and PUT ?digest= to publish)',
    access: 'write',
    responses: { '202': { description: 'session opened', schema: W.UploadSessionSchema, headers: SESSION_HEADERS } },
    errors: ['STORAGE_READ_ONLY', 'STORAGE_FULL'],
  },
  {
    method: 'get',
    path: '/uploads/{id}',
    summary: 'Where an upload session ends (resume from its offset)',
    access: 'write',
    responses: { '200': { description: 'session', schema: W.UploadSessionSchema, headers: SESSION_HEADERS } },
    errors: ['UPLOAD_NOT_FOUND'],
  },
  {
    method: 'patch',
    path: '/uploads/{id}',
    summary: 'Append a chunk (raw bytes; Content-Range `bytes <start>-<end>/*` must start at the session offset)',
    access: 'write',
    headers: { 'Content-Range': 'bytes <start>-<end>/* (or <start>-<end>); absent = append at the offset' },
    responses: { '202': { description: 'chunk stored', schema: W.UploadSessionSchema, headers: SESSION_HEADERS } },
    errors: ['UPLOAD_NOT_FOUND', 'UPLOAD_RANGE_MISMATCH', 'INVALID_REQUEST', 'TOO_LARGE', 'STORAGE_FULL', 'STORAGE_READ_ONLY'],
  },
  {
    method: 'put',
    path: '/uploads/{id}',
    summary: 'Commit: check the sha256 of the whole upload (optionally after a last chunk) and publish it as a tar / tar.gz package',
    access: 'write',
    query: W.UploadCommitQuerySchema,
    responses: {
      '201': { description: 'published', schema: W.PublishResultSchema, headers: { Location: 'the new version' } },
      '200': { description: 'this exact content was already published as this version', schema: W.PublishResultSchema },
    },
    errors: ['UPLOAD_NOT_FOUND', 'UPLOAD_RANGE_MISMATCH', 'INVALID_QUERY', 'DIGEST_MISMATCH', 'VERSION_EXISTS', 'INVALID_ARCHIVE', 'INVALID_MANIFEST', 'INVALID_PACKAGE', 'INVALID_WEIGHTS', 'TOO_LARGE', 'UNKNOWN_BASE', 'BASE_MISMATCH', 'STORAGE_FULL', 'STORAGE_READ_ONLY'],
  },
  { method: 'delete', path: '/uploads/{id}', summary: 'Cancel an upload session', access: 'write', responses: { '204': { description: 'cancelled' } }, errors: ['UPLOAD_NOT_FOUND'] },
];
