/**
 * CORS for the SDK in browsers: pages on the configured origins may call the API (fetch with a bearer token,
 * Range downloads, multipart publishes) and read the headers the SDK uses (request id, Retry-After, ETag,
 * Content-Range). Off unless origins are given (`modhub serve --cors-origin https://app.example`; `*` = any).
 * No cookies are involved (tokens are bearer headers), so credentials stay off.
 * Example: `app.use(corsFor(['http://localhost:5173']))`.
 */
import cors from 'cors';
import type { RequestHandler } from 'express';

export const CORS_EXPOSED_HEADERS = ['X-Request-Id', 'Retry-After', 'ETag', 'Content-Length', 'Content-Range', 'Accept-Ranges', 'X-Module-Version', 'X-Module-Digest'];

/** The middleware for `origins` (exact origins like `https://app.example:8443`, or `*`). */
export function corsFor(origins: string[]): RequestHandler {
  for (const o of origins) {
    if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) throw new RangeError(`a CORS origin must be '*' or scheme://host[:port] without a path, got '${o}'`);
  }
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'Range', 'If-Range', 'If-None-Match'],
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: 600,
  });
}
