/**
 * The error vocabulary stays one: the SDK's copy of the code table (client-sdk/codes.ts) equals the server's
 * (modules-store/errors.ts), the SDK's module kinds equal the registry's, every code is documented in
 * docs/hub.md, and the HTTP mapping answers each typed error with its table status.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ERROR_CODES as SDK_CODES, MODULE_KINDS as SDK_KINDS } from '../../client-sdk';
import { CodedError, ERROR_CODES, MODULE_KINDS, StoreError, storageErrorOf, type ErrorCode } from '../../modules-store';
import { ModuleError } from '../../server/model/modules';
import { toHttpError } from '../../server/http/errors';
import { QueueFullError } from '../../server/runtime/queue';

test('the SDK carries the same code table as the server', () => {
  expect(SDK_CODES).toEqual(ERROR_CODES);
  expect([...SDK_KINDS]).toEqual([...MODULE_KINDS]);
});

test('every code is in the docs/hub.md table with its status', () => {
  const doc = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'hub.md'), 'utf8');
  const missing = Object.entries(ERROR_CODES)
    .filter(([code, { status }]) => !new RegExp(`^\\| \`${code}\` \\| ${status} \\|`, 'm').test(doc))
    .map(([code]) => code);
  expect(missing).toEqual([]);
});

test('typed errors map to their table status; anything else is unexpected', () => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const he = toHttpError(new CodedError(code, 'x'));
    expect([code, he?.status, he?.code]).toEqual([code, ERROR_CODES[code].status, code]);
  }
  expect(toHttpError(new StoreError('VERSION_EXISTS', 'x'))?.status).toBe(409);
  expect(toHttpError(new ModuleError('INVALID_COMPOSITION', 'x'))?.status).toBe(400);
  expect(toHttpError(new ModuleError('INCOMPATIBLE_BASE', 'x'))?.status).toBe(422);
  const busy = toHttpError(new QueueFullError('full', 7));
  expect([busy?.status, busy?.code, busy?.headers['Retry-After']]).toEqual([429, 'QUEUE_FULL', '7']);
  // Below HTTP these mean a bug (or an argument the HTTP layer should have checked): never a 4xx.
  expect(toHttpError(new RangeError("'rank' must be <= 64, got 128"))).toBeNull();
  expect(toHttpError(new TypeError("Cannot read properties of undefined (reading 'x')"))).toBeNull();
  expect(toHttpError(new Error('boom'))).toBeNull();
});

describe('storageErrorOf', () => {
  it('maps file-system, SQLite and PostgreSQL storage failures to the 507 codes, and nothing else', () => {
    const err = (code: string) => Object.assign(new Error(`failed: ${code}`), { code });
    for (const c of ['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']) expect(storageErrorOf(err(c))?.code).toBe('STORAGE_FULL');
    for (const c of ['EROFS', 'SQLITE_READONLY', '25006']) expect(storageErrorOf(err(c))?.code).toBe('STORAGE_READ_ONLY');
    for (const c of ['ENOENT', '23505', 'SQLITE_BUSY']) expect(storageErrorOf(err(c))).toBeNull();
  });
});
