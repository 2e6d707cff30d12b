/**
 * HTTP errors: one `HttpError(status, code, message)` class, small factories over the catalogue of codes, the
 * mapping from registry errors (StoreError codes) to statuses, and the ONE final error middleware that renders
 * `{"error": {"code", "message"}}` — unexpected errors are logged with their stack and masked as 500. On the
 * HF-compatible paths (which set `res.locals.hfErrorShape`) the body is HF's `{"error": "<message>", "code"}`;
 * every error response also carries the code in the `X-Modhub-Error-Code` header.
 * Example: `throw notFound('MODULE_NOT_FOUND', 'module lang/de does not exist')`.
 */
import type { ErrorRequestHandler } from 'express';
import multer from 'multer';
import type { Logger } from 'pino';
import { StoreError, type StoreErrorCode } from '../../modules-store';

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  /** Extra response headers (e.g. Content-Range on 416, WWW-Authenticate on 401). */
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export const badRequest = (code: string, message: string): HttpError => new HttpError(400, code, message);
export const unauthorized = (message: string): HttpError => new HttpError(401, 'UNAUTHORIZED', message, { 'WWW-Authenticate': 'Bearer realm="modhub"' });
export const forbidden = (message: string): HttpError => new HttpError(403, 'FORBIDDEN', message);
export const notFound = (code: string, message: string): HttpError => new HttpError(404, code, message);
export const conflict = (code: string, message: string): HttpError => new HttpError(409, code, message);
export const tooLarge = (message: string): HttpError => new HttpError(413, 'TOO_LARGE', message);
export const unsupportedMediaType = (message: string): HttpError => new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', message);
export const unprocessable = (code: string, message: string): HttpError => new HttpError(422, code, message);

const STORE_STATUS: Record<StoreErrorCode, number> = {
  MODULE_NOT_FOUND: 404,
  VERSION_NOT_FOUND: 404,
  TAG_NOT_FOUND: 404,
  FILE_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  INVALID_REF: 400,
  INVALID_NAME: 400,
  INVALID_ARGUMENT: 400,
  DIGEST_MISMATCH: 400,
  INVALID_MANIFEST: 422,
  INVALID_PACKAGE: 422,
  INVALID_ARCHIVE: 422,
  INVALID_WEIGHTS: 422,
  UNSUPPORTED_FORMAT_VERSION: 422,
  UNKNOWN_BASE: 422,
  BASE_MISMATCH: 422,
  VERSION_EXISTS: 409,
  TOO_LARGE: 413,
};

const MULTER_MESSAGES: Record<string, [number, string, string]> = {
  LIMIT_FILE_SIZE: [413, 'TOO_LARGE', 'an uploaded file exceeds the package size limit'],
  LIMIT_FILE_COUNT: [400, 'INVALID_MULTIPART', 'too many files: send one `archive`, or module.json, weights.safetensors and README.md'],
  LIMIT_FIELD_COUNT: [400, 'INVALID_MULTIPART', 'too many form fields'],
  LIMIT_FIELD_VALUE: [400, 'INVALID_MULTIPART', 'a form field value is too long'],
  LIMIT_FIELD_KEY: [400, 'INVALID_MULTIPART', 'a form field name is too long'],
  LIMIT_PART_COUNT: [400, 'INVALID_MULTIPART', 'too many multipart parts'],
  LIMIT_UNEXPECTED_FILE: [400, 'UNEXPECTED_FIELD', 'unexpected file field'],
};

/** Converts anything thrown into an HttpError, or null when it is unexpected (a bug or an I/O failure). */
export function toHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof StoreError) return new HttpError(STORE_STATUS[err.code] ?? 400, err.code, err.message);
  if (err instanceof multer.MulterError) {
    const [status, code, msg] = MULTER_MESSAGES[err.code] ?? [400, 'INVALID_MULTIPART', err.message];
    const field = err.field ? ` ('${err.field}'${err.code === 'LIMIT_UNEXPECTED_FILE' ? ': allowed file fields are archive, module.json, weights.safetensors, README.md' : ''})` : '';
    return new HttpError(status, code, `${msg}${field}`);
  }
  const e = err as { type?: string; status?: number; message?: string; expose?: boolean };
  if (e && typeof e === 'object') {
    // body-parser errors
    if (e.type === 'entity.too.large') return tooLarge(`request body is larger than the limit: ${e.message}`);
    if (e.type === 'entity.parse.failed') return badRequest('INVALID_JSON', `request body is not valid JSON: ${e.message}`);
    if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') return unsupportedMediaType(e.message ?? 'unsupported encoding');
    if (typeof e.type === 'string' && e.status && e.status >= 400 && e.status < 500) return badRequest('INVALID_BODY', e.message ?? 'invalid request body');
    // other client errors from express / its parsers (e.g. a path segment that is not valid percent-encoding)
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose !== false) {
      return new HttpError(e.status, 'INVALID_REQUEST', e.message ?? 'invalid request');
    }
    // busboy (multipart) parse errors
    if (typeof e.message === 'string' && /^(Unexpected end of form|Malformed part header|Multipart: Boundary not found|Unexpected end of multipart data)/i.test(e.message)) {
      return badRequest('INVALID_MULTIPART', `malformed multipart body: ${e.message}`);
    }
  }
  return null;
}

/** The final error middleware. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) {
      logger.warn({ err, url: req.originalUrl }, 'error after the response started; closing the connection');
      res.destroy();
      return;
    }
    let he = toHttpError(err);
    if (!he) {
      logger.error({ err, method: req.method, url: req.originalUrl }, 'unexpected error');
      he = new HttpError(500, 'INTERNAL', 'internal server error');
    }
    for (const [k, v] of Object.entries(he.headers)) res.setHeader(k, v);
    res.setHeader('X-Modhub-Error-Code', he.code);
    if (res.locals.hfErrorShape === true) {
      // HF-compatible paths answer in the HF Hub's shape, which its clients turn into readable messages.
      res.status(he.status).json({ error: he.message, code: he.code });
      return;
    }
    res.status(he.status).json({ error: { code: he.code, message: he.message } });
    void next;
  };
}
