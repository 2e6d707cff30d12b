/**
 * Resumable upload sessions (modules-store/uploads.ts) below HTTP: offsets survive a restart (a new instance on
 * the same folder), chunks must start at the offset, a commit checks the digest and hands the bytes over as a
 * staged file, sessions belong to their owner, and idle sessions expire.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { StoreError, UploadSessions } from '../../modules-store';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-uploads-'));
});
afterEach(() => fsp.rm(dir, { recursive: true, force: true }));

const codeOf = (p: Promise<unknown>): Promise<string> => p.then(() => 'no error', (e: unknown) => (e instanceof StoreError ? e.code : String(e)));
const digest = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

it('resumes across instances, refuses misplaced chunks, commits only the right digest', async () => {
  const bytes = Buffer.from('0123456789abcdefghij');
  const a = new UploadSessions(path.join(dir, 'up'), 100, path.join(dir, 'staging'));
  const s = await a.create('tok_a');
  expect((await a.append(s.id, 'tok_a', 0, Readable.from([bytes.subarray(0, 8)]))).offset).toBe(8);
  const b = new UploadSessions(path.join(dir, 'up'), 100, path.join(dir, 'staging')); // "after a restart"
  expect((await b.get(s.id, 'tok_a')).offset).toBe(8);
  expect(await codeOf(b.append(s.id, 'tok_a', 0, Readable.from([bytes.subarray(0, 8)])))).toBe('UPLOAD_RANGE_MISMATCH');
  expect(await codeOf(b.get(s.id, 'tok_b'))).toBe('UPLOAD_NOT_FOUND');
  expect(await codeOf(b.get('../etc/passwd', 'tok_a'))).toBe('UPLOAD_NOT_FOUND');
  await b.append(s.id, 'tok_a', undefined, Readable.from([bytes.subarray(8)]));
  expect(await codeOf(b.commit(s.id, 'tok_a', digest(Buffer.from('nope'))))).toBe('DIGEST_MISMATCH');
  const staged = await b.commit(s.id, 'tok_a', digest(bytes));
  expect(staged).toMatchObject({ size: 20, digest: digest(bytes) });
  expect((await fsp.readFile(staged.path)).equals(bytes)).toBe(true);
  expect(await codeOf(b.get(s.id, 'tok_a'))).toBe('UPLOAD_NOT_FOUND');
});

it('cuts a chunk past the limit back to the old offset, and expires idle sessions', async () => {
  const u = new UploadSessions(path.join(dir, 'up'), 10, path.join(dir, 'staging'), 1000);
  const s = await u.create('t');
  await u.append(s.id, 't', 0, Readable.from([Buffer.alloc(6)]));
  expect(await codeOf(u.append(s.id, 't', 6, Readable.from([Buffer.alloc(5)])))).toBe('TOO_LARGE');
  expect((await u.get(s.id, 't')).offset).toBe(6);
  expect(await u.sweep(Date.now())).toBe(0);
  expect(await u.sweep(Date.now() + 5000)).toBe(1);
  expect(await codeOf(u.get(s.id, 't'))).toBe('UPLOAD_NOT_FOUND');
});
