/**
 * modhub's one error vocabulary: every code the registry, the engine, the HTTP API and the CLI report, each with
 * the HTTP status it is answered with and what it means. The HTTP layer maps through this table only; the SDK
 * carries a copy (client-sdk/codes.ts, checked equal by test/unit/error-codes.test.ts) because it may not import
 * server code. It lives here, below both the server and the registry, so both import it without cycles.
 * Example: `throw new StoreError('MODULE_NOT_FOUND', 'module lang/de does not exist')` → 404 MODULE_NOT_FOUND.
 */

/** Code → HTTP status and meaning. Keep client-sdk/codes.ts in step (a unit test compares them). */
export const ERROR_CODES = {
  // ---- the request itself
  INVALID_JSON: { status: 400, meaning: 'the request body is not valid JSON' },
  INVALID_BODY: { status: 400, meaning: 'the JSON body does not match the endpoint schema (the message names each field)' },
  INVALID_QUERY: { status: 400, meaning: 'a query parameter is unknown, repeated or out of range' },
  INVALID_MULTIPART: { status: 400, meaning: 'a multipart upload is malformed or has the wrong files' },
  UNEXPECTED_FIELD: { status: 400, meaning: 'a multipart upload has a field the endpoint does not take' },
  INVALID_REQUEST: { status: 400, meaning: 'the request is malformed in a way not covered by a more specific code' },
  INVALID_INPUT: { status: 400, meaning: 'the inference inputs are well-formed but unusable (e.g. fill_mask without a mask token, max_length beyond the base)' },
  INVALID_REF: { status: 400, meaning: 'a module reference is not ns/name, ns/name@version or ns/name@tag' },
  INVALID_NAME: { status: 400, meaning: 'a namespace, module, tag or version name has characters that are not allowed' },
  INVALID_ARGUMENT: { status: 400, meaning: 'an argument is out of range or of the wrong type (also: CLI usage errors)' },
  DIGEST_MISMATCH: { status: 400, meaning: 'uploaded or downloaded bytes do not match the sha256 that came with them' },
  INVALID_COMPOSITION: { status: 400, meaning: 'the composition is not valid AdapterHub block syntax, or its modules cannot be combined that way' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, meaning: 'the Content-Type or Content-Encoding is not one the endpoint takes' },
  TOO_LARGE: { status: 413, meaning: 'the body or a package file exceeds the size limit' },
  RANGE_NOT_SATISFIABLE: { status: 416, meaning: 'the Range header lies outside the file' },
  // ---- who is asking
  UNAUTHORIZED: { status: 401, meaning: 'no bearer token, or an unknown or revoked one, where one is needed' },
  FORBIDDEN: { status: 403, meaning: 'the token lacks the scope, or may not write to that namespace' },
  // ---- what is asked for
  ROUTE_NOT_FOUND: { status: 404, meaning: 'no endpoint has this method and path (see /openapi.json)' },
  MODULE_NOT_FOUND: { status: 404, meaning: 'no module has this ns/name' },
  VERSION_NOT_FOUND: { status: 404, meaning: 'the module has no such version (or no unyanked version for latest)' },
  TAG_NOT_FOUND: { status: 404, meaning: 'the module has no such tag' },
  FILE_NOT_FOUND: { status: 404, meaning: 'the version has no such file' },
  TOKEN_NOT_FOUND: { status: 404, meaning: 'no token has this id' },
  UPLOAD_NOT_FOUND: { status: 404, meaning: 'no resumable upload session has this id for this token (it was committed, cancelled or expired)' },
  UPLOAD_RANGE_MISMATCH: { status: 416, meaning: 'a chunk\'s Content-Range does not start where the upload ends; GET the session for its offset and resume there' },
  VERSION_EXISTS: { status: 409, meaning: 'this version is already published; versions are immutable, publish a new one' },
  // ---- what is uploaded or composed
  INVALID_MANIFEST: { status: 422, meaning: 'module.json does not match the module format (the message names the field)' },
  INVALID_PACKAGE: { status: 422, meaning: 'the package has missing, extra or unreadable files' },
  INVALID_ARCHIVE: { status: 422, meaning: 'the tar / tar.gz upload cannot be read or holds unsafe entries' },
  INVALID_WEIGHTS: { status: 422, meaning: 'weights.safetensors is malformed or its tensors do not match the manifest' },
  UNSUPPORTED_FORMAT_VERSION: { status: 422, meaning: 'the package is in a format version this hub does not read' },
  UNKNOWN_BASE: { status: 422, meaning: 'the module names a base fingerprint this hub has not registered' },
  BASE_MISMATCH: { status: 422, meaning: 'the manifest describes its base differently from the registered base' },
  INCOMPATIBLE_BASE: { status: 422, meaning: 'the module was made for a different base than the one this server runs' },
  INVALID_MODULE: { status: 422, meaning: 'a stored module cannot be loaded (tensor missing, wrong shape, index out of range)' },
  INVALID_HEAD: { status: 422, meaning: 'two heads of one kind compete for one output, or the head asked for ("head") or needed (masked-LM) is not there; the message names them and how to choose' },
  REQUEST_TOO_LARGE: { status: 413, meaning: 'the inference request has more rows or tokens than the server queues at once; split it' },
  // ---- the server
  STORAGE_FULL: { status: 507, meaning: 'the hub\'s disk (or database) is full: an admin frees space (DELETE works on a full disk) or grows the volume' },
  STORAGE_READ_ONLY: { status: 507, meaning: 'the hub\'s data directory is read-only (mounted read-only, or served read-only): downloads and inference work, writes do not' },
  QUEUE_FULL: { status: 429, meaning: 'the inference queue holds as many rows or tokens as it may; retry after the Retry-After seconds (from the measured drain rate)' },
  DEADLINE_EXCEEDED: { status: 504, meaning: 'the inference request did not finish within its timeout_ms' },
  SERVER_BUSY: { status: 503, meaning: 'the inference queue is full; retry after the Retry-After seconds' },
  NOT_READY: { status: 503, meaning: 'the server cannot serve yet or any more (catalog unreachable, starting up, warming up, shutting down); see /readyz' },
  INTERNAL: { status: 500, meaning: 'an unexpected error; it is logged on the server under the request id in the answer' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** True when `code` is one of ours. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

/** An error that carries one of our codes; the HTTP layer answers it with the code's status. */
export class CodedError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'CodedError';
    this.code = code;
  }
}

/** The codes the registry raises. */
export type StoreErrorCode = Extract<
  ErrorCode,
  | 'MODULE_NOT_FOUND'
  | 'VERSION_NOT_FOUND'
  | 'TAG_NOT_FOUND'
  | 'FILE_NOT_FOUND'
  | 'TOKEN_NOT_FOUND'
  | 'INVALID_REF'
  | 'INVALID_NAME'
  | 'INVALID_MANIFEST'
  | 'INVALID_PACKAGE'
  | 'INVALID_ARCHIVE'
  | 'INVALID_WEIGHTS'
  | 'INVALID_ARGUMENT'
  | 'UNSUPPORTED_FORMAT_VERSION'
  | 'UNKNOWN_BASE'
  | 'BASE_MISMATCH'
  | 'VERSION_EXISTS'
  | 'DIGEST_MISMATCH'
  | 'TOO_LARGE'
  | 'STORAGE_FULL'
  | 'STORAGE_READ_ONLY'
  | 'UPLOAD_NOT_FOUND'
  | 'UPLOAD_RANGE_MISMATCH'
>;

/**
 * Errors raised by the registry below HTTP. Callers branch on `err.code` rather than on message text.
 * Example: `catch (e) { if (e instanceof StoreError && e.code === 'MODULE_NOT_FOUND') ... }`.
 */
export class StoreError extends CodedError {
  declare readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string) {
    super(code, message);
    this.name = 'StoreError';
  }
}

export function isStoreError(e: unknown): e is StoreError {
  return e instanceof StoreError;
}

/**
 * A module that cannot run on this base or in this composition (raised while loading into the engine and while
 * planning compositions; the HTTP layer maps the codes to 4xx).
 */
export class ModuleError extends CodedError {
  declare readonly code: 'INCOMPATIBLE_BASE' | 'INVALID_MODULE' | 'INVALID_COMPOSITION' | 'INVALID_HEAD';
  constructor(code: 'INCOMPATIBLE_BASE' | 'INVALID_MODULE' | 'INVALID_COMPOSITION' | 'INVALID_HEAD', message: string) {
    super(code, message);
    this.name = 'ModuleError';
  }
}

/** errno / SQLite codes that mean the storage has no room, or cannot be written at all. */
// Node's file-system codes, SQLite's, and PostgreSQL's SQLSTATEs (53100 disk_full; 25006 read_only_sql_transaction,
// which a hot standby or default_transaction_read_only gives).
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']);
const READ_ONLY_CODES = new Set(['EROFS', 'SQLITE_READONLY', '25006']);

/**
 * The coded error an I/O failure of the storage means (STORAGE_FULL, STORAGE_READ_ONLY), or null for any other
 * error. Storage faults are the operator's to fix, not bugs: they get their own codes instead of 500 INTERNAL.
 * Example: `catch (e) { throw storageErrorOf(e) ?? e; }`.
 */
export function storageErrorOf(e: unknown): StoreError | null {
  if (e instanceof CodedError) return e.code === 'STORAGE_FULL' || e.code === 'STORAGE_READ_ONLY' ? (e as StoreError) : null;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return null;
  const what = (e as Error).message ?? code;
  if (FULL_CODES.has(code)) return new StoreError('STORAGE_FULL', `the hub's storage is full (${what}): delete unused versions (DELETE works on a full disk) or grow the volume`);
  if (READ_ONLY_CODES.has(code)) return new StoreError('STORAGE_READ_ONLY', `the hub's storage is read-only (${what}): downloads and inference work, uploads and changes do not`);
  return null;
}
