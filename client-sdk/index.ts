/**
 * @modhub/client: `ModhubClient` (runs wherever fetch runs), the composition builder, typed results, `ModhubError`,
 * the error codes and the API's wire schemas and types. File-system helpers: `@modhub/client/node` (node.ts).
 */
export * from './client';
export * from './codes';
export * from './compose';
export * from './errors';
export * from './results';
export { sha256Hex, arrayBufferView, type BytesLike } from './sha256';
export { tarBlob } from './tar';
export { DEFAULT_CHUNK_BYTES, DEFAULT_RESUMABLE_ABOVE, sessionIdOf } from './uploads';
export { retryAfterMs, type CallOptions, type RetryOptions } from './transport';
export * from './wire';
