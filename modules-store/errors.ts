/**
 * Errors raised by the registry below HTTP. Each carries a stable `code` (the same codes the HTTP layer and
 * the SDK use), so callers branch on `err.code` rather than on message text.
 * Example: `catch (e) { if (e instanceof StoreError && e.code === 'MODULE_NOT_FOUND') ... }`.
 */

export type StoreErrorCode =
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
  | 'TOO_LARGE';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
  }
}

export function isStoreError(e: unknown): e is StoreError {
  return e instanceof StoreError;
}

/**
 * A module that cannot run on this base or in this composition (raised while loading into the engine and while
 * planning compositions; the HTTP layer maps the codes to 4xx).
 */
export class ModuleError extends Error {
  constructor(
    readonly code: 'INCOMPATIBLE_BASE' | 'INVALID_MODULE' | 'INVALID_COMPOSITION',
    message: string,
  ) {
    super(message);
  }
}
