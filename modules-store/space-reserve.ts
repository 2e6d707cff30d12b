/**
 * A few MiB of disk kept in reserve inside the data folder, so that an admin can free space through the API when
 * the disk is full: SQLite needs room in its write-ahead log even to DELETE rows. When a delete, yank or untag
 * fails with a full disk, the registry releases the reserve and retries; the reserve is written again once
 * writes succeed (and at the next start-up).
 * Example: `const r = new SpaceReserve(path.join(dataDir, 'reserve.bin'), 8 << 20); await r.ensure();`
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** Default reserve size: room for many WAL frames of deletes. */
export const DEFAULT_RESERVE_BYTES = 8 << 20;

export class SpaceReserve {
  constructor(
    readonly file: string,
    readonly bytes: number = DEFAULT_RESERVE_BYTES,
  ) {}

  /** Writes the reserve file when it is missing or short; false when there is no room (or the folder is read-only). */
  async ensure(): Promise<boolean> {
    const st = await fsp.stat(this.file).catch(() => null);
    if (st && st.size >= this.bytes) return true;
    // Never make a nearly full disk full: the reserve is only taken from ample free space.
    const fs = await fsp.statfs(path.dirname(this.file)).catch(() => null);
    if (!fs || fs.bavail * fs.bsize < 4 * this.bytes) return false;
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(this.file, 'w');
      // Real blocks, not a sparse file: a sparse reserve frees nothing when removed.
      const chunk = Buffer.alloc(1 << 20);
      for (let off = 0; off < this.bytes; off += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, this.bytes - off), off);
      await fh.sync();
      return true;
    } catch {
      await fh?.close().catch(() => undefined);
      fh = undefined;
      await fsp.rm(this.file, { force: true }).catch(() => undefined);
      return false;
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }

  /** Removes the reserve file; true when there was one to remove (so a retry may now find room). */
  async release(): Promise<boolean> {
    const st = await fsp.stat(this.file).catch(() => null);
    if (!st) return false;
    await fsp.rm(this.file, { force: true });
    return true;
  }
}
