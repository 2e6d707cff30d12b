/**
 * Resumable, chunked uploads in the style of the OCI distribution spec: a session is opened, chunks are appended
 * at the offset the session has reached (a chunk that starts elsewhere is refused with the current offset, so a
 * client that lost a response resumes where the server is), and a final commit checks the sha256 of the whole
 * upload before it is published. A session is two files in its folder: `<id>.data` (the bytes so far; its size
 * is the offset, so sessions survive restarts) and `<id>.json` (owner and creation time). Idle sessions expire.
 * Example:
 *   const s = await sessions.create('tok_1'); await sessions.append(s.id, 'tok_1', 0, chunkStream);
 *   const staged = await sessions.commit(s.id, 'tok_1', 'sha256:…');  // then registry.publish({ stagedArchive: staged })
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { normalizeDigest } from './blob-store';
import { StoreError } from './errors';
import { HashCounter, stagingPath, type StagedFile } from './staging';

export interface UploadSession {
  id: string;
  /** Bytes received so far (the next chunk starts here). */
  offset: number;
  createdAt: string;
}

interface SessionMeta {
  owner: string;
  createdAt: string;
}

const ID_RE = /^up_[0-9a-f]{24}$/;
/** Sessions untouched this long are removed by {@link UploadSessions.sweep} (default 24 h). */
export const UPLOAD_TTL_MS = 24 * 3600 * 1000;

/** One lock per session: chunks of one session are appended one at a time. */
class Locks {
  private readonly tails = new Map<string, Promise<unknown>>();
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const p = (this.tails.get(key) ?? Promise.resolve()).then(fn);
    const tail = p.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return p;
  }
}

export class UploadSessions {
  private readonly locks = new Locks();

  /**
   * @param dir folder of the session files (created when missing)
   * @param maxBytes largest upload (the package limit)
   * @param stagingDir where a committed upload is moved for publishing (same filesystem as `dir`)
   */
  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    readonly stagingDir: string,
    private readonly ttlMs = UPLOAD_TTL_MS,
  ) {}

  private files(id: string): { data: string; meta: string } {
    return { data: path.join(this.dir, `${id}.data`), meta: path.join(this.dir, `${id}.json`) };
  }

  /** Opens a session for `owner` (a token id). */
  async create(owner: string): Promise<UploadSession> {
    await fsp.mkdir(this.dir, { recursive: true });
    const id = `up_${randomBytes(12).toString('hex')}`;
    const meta: SessionMeta = { owner, createdAt: new Date().toISOString() };
    const f = this.files(id);
    await fsp.writeFile(f.data, Buffer.alloc(0), { flag: 'wx' });
    await fsp.writeFile(f.meta, JSON.stringify(meta), { flag: 'wx' });
    return { id, offset: 0, createdAt: meta.createdAt };
  }

  /** The session `id` of `owner`; UPLOAD_NOT_FOUND when there is none (or it is another token's). */
  async get(id: string, owner: string): Promise<UploadSession> {
    const notFound = new StoreError('UPLOAD_NOT_FOUND', `no upload session '${id}' for this token: open one with POST /v1/uploads`);
    if (!ID_RE.test(id)) throw notFound;
    const f = this.files(id);
    const meta = await fsp.readFile(f.meta, 'utf8').then((t) => JSON.parse(t) as SessionMeta, () => null);
    const st = await fsp.stat(f.data).catch(() => null);
    if (!meta || !st || meta.owner !== owner) throw notFound;
    return { id, offset: st.size, createdAt: meta.createdAt };
  }

  /**
   * Appends a chunk that starts at `start` (undefined: wherever the session is). A chunk starting elsewhere is
   * refused with UPLOAD_RANGE_MISMATCH naming the current offset; bytes past the package limit with TOO_LARGE.
   * Bytes of a chunk cut off midway stay: the session's offset says where to resume.
   */
  append(id: string, owner: string, start: number | undefined, body: Readable): Promise<UploadSession> {
    return this.locks.run(id, async () => {
      const s = await this.get(id, owner);
      if (start !== undefined && start !== s.offset) {
        body.resume();
        throw new StoreError('UPLOAD_RANGE_MISMATCH', `the chunk starts at byte ${start}, but upload ${id} has ${s.offset} bytes: send the chunk that starts at ${s.offset}`);
      }
      const counter = new HashCounter(this.maxBytes - s.offset, `upload ${id} (at most ${this.maxBytes} bytes in all)`);
      try {
        await pipeline(body, counter, createWriteStream(this.files(id).data, { flags: 'a' }));
      } catch (e) {
        if (e instanceof StoreError && e.code === 'TOO_LARGE') await fsp.truncate(this.files(id).data, s.offset).catch(() => undefined);
        throw e;
      }
      const now = new Date();
      await fsp.utimes(this.files(id).meta, now, now).catch(() => undefined);
      return { ...s, offset: s.offset + counter.bytes };
    });
  }

  /**
   * Ends a session: checks the sha256 of all its bytes against `digest` and hands the bytes over as a staged file
   * (the caller publishes and then removes it). A mismatch keeps the session (DIGEST_MISMATCH), so the client
   * can look at its offset and fix the upload.
   */
  commit(id: string, owner: string, digest: string): Promise<StagedFile> {
    const want = normalizeDigest(digest, "the commit's digest");
    return this.locks.run(id, async () => {
      const s = await this.get(id, owner);
      const f = this.files(id);
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(f.data, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== want) throw new StoreError('DIGEST_MISMATCH', `upload ${id} (${s.offset} bytes) has digest ${got}, but the commit names ${want}`);
      await fsp.mkdir(this.stagingDir, { recursive: true });
      const staged = stagingPath(this.stagingDir);
      await fsp.rename(f.data, staged);
      await fsp.rm(f.meta, { force: true });
      return { path: staged, size: s.offset, digest: got };
    });
  }

  /** Cancels a session and removes its bytes. */
  cancel(id: string, owner: string): Promise<void> {
    return this.locks.run(id, async () => {
      await this.get(id, owner);
      const f = this.files(id);
      await fsp.rm(f.meta, { force: true });
      await fsp.rm(f.data, { force: true });
    });
  }

  /** Removes sessions idle for longer than the time to live; returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const n of await fsp.readdir(this.dir).catch(() => [] as string[])) {
      const m = /^(up_[0-9a-f]{24})\.json$/.exec(n);
      if (!m) continue;
      const f = this.files(m[1]);
      const st = await fsp.stat(f.meta).catch(() => null);
      const dst = await fsp.stat(f.data).catch(() => null);
      const last = Math.max(st?.mtimeMs ?? 0, dst?.mtimeMs ?? 0);
      if (now - last > this.ttlMs) {
        await fsp.rm(f.data, { force: true });
        await fsp.rm(f.meta, { force: true });
        removed++;
      }
    }
    return removed;
  }
}
