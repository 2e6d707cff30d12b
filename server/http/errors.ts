/**
 * All HTTP error mapping: one `HttpError(status, code, message)` class, small factories over the table of codes
 * (modules-store/errors.ts), the request id every answer carries, and the ONE final error middleware.
 * Storage faults (ENOSPC, SQLITE_FULL → STORAGE_FULL; EROFS, SQLITE_READONLY → STORAGE_READ_ONLY) answer 507.
 * Only our typed errors become 4xx/503: HttpError, CodedError (StoreError, inference input errors), the engine's
 * ModuleError (both CodedErrors), multer's and body-parser's client errors. Anything else is a bug or an I/O failure: it is logged
 * with its stack and the request id, and answered 500 `INTERNAL` with that id, never with its message.
 * Bodies are `{"error": {"code", "message", "request_id"}}`; on the HF-compatible paths (which set
 * `res.locals.hfErrorShape`) HF's `{"error": "<message>", "code"}`. Every error answer also carries the code in
 * `X-Modhub-Error-Code`, and every answer its id in `X-Request-Id`.
 * Example: `throw notFound('MODULE_NOT_FOUND', 'module lang/de does not exist')`.
 */
import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import multer from 'multer';
import type { Logger } from 'pino';
import { CodedError, ERROR_CODES, storageErrorOf, type ErrorCode } from '../../modules-store';

export class HttpError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  /** Extra response headers (e.g. Content-Range on 416, WWW-Authenticate on 401). */
  readonly headers: Record<string, string>;
  constructor(status: number, code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** An HttpError with the status the table gives `code`. */
export const httpError = (code: ErrorCode, message: string, headers: Record<string, string> = {}): HttpError => new HttpError(ERROR_CODES[code].status, code, message, headers);

export const badRequest = (code: Extract<ErrorCode, 'INVALID_JSON' | 'INVALID_BODY' | 'INVALID_QUERY' | 'INVALID_MULTIPART' | 'UNEXPECTED_FIELD' | 'INVALID_REQUEST' | 'INVALID_INPUT'>, message: string): HttpError => httpError(code, message);
export const unauthorized = (message: string): HttpError => httpError('UNAUTHORIZED', message, { 'WWW-Authenticate': 'Bearer realm="modhub"' });
export const forbidden = (message: string): HttpError => httpError('FORBIDDEN', message);
export const notFound = (code: Extract<ErrorCode, 'ROUTE_NOT_FOUND' | 'MODULE_NOT_FOUND' | 'VERSION_NOT_FOUND' | 'TAG_NOT_FOUND' | 'FILE_NOT_FOUND' | 'TOKEN_NOT_FOUND'>, message: string): HttpError => httpError(code, message);
export const tooLarge = (message: string): HttpError => httpError('TOO_LARGE', message);
export const unsupportedMediaType = (message: string): HttpError => httpError('UNSUPPORTED_MEDIA_TYPE', message);
export const rangeNotSatisfiable = (message: string, size: number): HttpError => httpError('RANGE_NOT_SATISFIABLE', message, { 'Content-Range': `bytes */${size}` });

/** Headers a code always comes with. */
const CODE_HEADERS: Partial<Record<ErrorCode, Record<string, string>>> = {
  NOT_READY: { 'Retry-After': '1' },
};

const MULTER_MESSAGES: Record<string, [ErrorCode, string]> = {
  LIMIT_FILE_SIZE: ['TOO_LARGE', 'an uploaded file exceeds the package size limit'],
  LIMIT_FILE_COUNT: ['INVALID_MULTIPART', 'too many files: send one `archive`, or module.json, weights.safetensors and README.md'],
  LIMIT_FIELD_COUNT: ['INVALID_MULTIPART', 'too many form fields'],
  LIMIT_FIELD_VALUE: ['INVALID_MULTIPART', 'a form field value is too long'],
  LIMIT_FIELD_KEY: ['INVALID_MULTIPART', 'a form field name is too long'],
  LIMIT_PART_COUNT: ['INVALID_MULTIPART', 'too many multipart parts'],
  LIMIT_UNEXPECTED_FILE: ['UNEXPECTED_FIELD', 'unexpected file field'],
};

/** Converts anything thrown into an HttpError, or null when it is unexpected (a bug or an I/O failure). */
export function toHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof CodedError) {
    // A full inference queue says when to come back, from its measured drain rate (runtime/queue.ts).
    const retry: Record<string, string> = 'retryAfterSeconds' in err && typeof err.retryAfterSeconds === 'number' ? { 'Retry-After': String(err.retryAfterSeconds) } : {};
    return httpError(err.code, err.message, { ...CODE_HEADERS[err.code], ...retry });
  }
  const storage = storageErrorOf(err);
  if (storage) return httpError(storage.code, storage.message);
  if (err instanceof multer.MulterError) {
    const [code, msg] = MULTER_MESSAGES[err.code] ?? ['INVALID_MULTIPART', err.message];
    const field = err.field ? ` ('${err.field}'${err.code === 'LIMIT_UNEXPECTED_FILE' ? ': allowed file fields are archive, module.json, weights.safetensors, README.md' : ''})` : '';
    return httpError(code, `${msg}${field}`);
  }
  const e = err as { type?: string; status?: number; message?: string; expose?: boolean };
  if (e && typeof e === 'object') {
    // body-parser errors
    if (e.type === 'entity.too.large') return tooLarge(`request body is larger than the limit: ${e.message}`);
    if (e.type === 'entity.parse.failed') return badRequest('INVALID_JSON', `request body is not valid JSON: ${e.message}`);
    if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') return unsupportedMediaType(e.message ?? 'unsupported encoding');
    if (typeof e.type === 'string' && e.status && e.status >= 400 && e.status < 500) return badRequest('INVALID_BODY', e.message ?? 'invalid request body');
    // other client errors from express / its parsers (e.g. a path segment that is not valid percent-encoding);
    // answered with the table's status so that a code always means one status
    // express.static (send) reports a missing file as a 404 http-error
    if (e.status === 404 && e.expose !== false) return notFound('FILE_NOT_FOUND', e.message ?? 'not found');
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose !== false) {
      return httpError('INVALID_REQUEST', e.message ?? 'invalid request');
    }
    // busboy (multipart) parse errors
    if (typeof e.message === 'string' && /^(Unexpected end of form|Malformed part header|Multipart: Boundary not found|Unexpected end of multipart data)/i.test(e.message)) {
      return badRequest('INVALID_MULTIPART', `malformed multipart body: ${e.message}`);
    }
  }
  return null;
}

/** The id of this request (set by {@link requestId}). */
export function requestIdOf(res: Response): string {
  return (res.locals.requestId as string | undefined) ?? 'none';
}

/**
 * Gives every request an id: the caller's `X-Request-Id` when it is a plain token (so ids follow a request
 * through proxies), else a fresh UUID. Echoed in the `X-Request-Id` response header and in error bodies.
 */
export function requestId(): RequestHandler {
  return (req, res, next) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    next();
  };
}

/** The final error middleware. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    const id = requestIdOf(res);
    if (res.headersSent) {
      logger.warn({ err, request_id: id, url: req.originalUrl }, 'error after the response started; closing the connection');
      res.destroy();
      return;
    }
    let he = toHttpError(err);
    if (!he) {
      logger.error({ err, request_id: id, method: req.method, url: req.originalUrl }, 'unexpected error');
      he = httpError('INTERNAL', `internal server error (request id ${id}; the server log has the details)`);
    }
    else if (he.code === 'STORAGE_FULL') logger.error({ err, request_id: id, method: req.method, url: req.originalUrl, code: he.code }, 'storage is full');
    else if (he.code === 'STORAGE_READ_ONLY') logger.warn({ request_id: id, method: req.method, url: req.originalUrl, code: he.code, msg_detail: he.message }, 'write refused: storage is read-only');
    for (const [k, v] of Object.entries(he.headers)) res.setHeader(k, v);
    res.setHeader('X-Modhub-Error-Code', he.code);
    if (res.locals.hfErrorShape === true) {
      // HF-compatible paths answer in the HF Hub's shape, which its clients turn into readable messages.
      res.status(he.status).json({ error: he.message, code: he.code });
      return;
    }
    res.status(he.status).json({ error: { code: he.code, message: he.message, request_id: id } });
    void next;
  };
}
