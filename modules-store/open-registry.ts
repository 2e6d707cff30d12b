/**
 * Opening a registry on a data folder (SQLite catalog file + blob folder + staging, upload sessions and a space
 * reserve), read-only when the folder cannot be written; and an in-memory registry for tests.
 * Example: `const reg = await openRegistry({ dataDir: './data' });`
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsBlobStore } from './blob-store';
import { SqliteCatalog } from './catalog-sqlite';
import { StoreError } from './errors';
import { Registry, type RegistryOptions } from './registry';
import { SpaceReserve } from './space-reserve';

export interface OpenRegistryOptions extends Omit<RegistryOptions, 'catalog' | 'blobs' | 'onClose' | 'reserve' | 'readOnly'> {
  /** Folder holding `catalog.sqlite` and `blobs/` (created when missing). */
  dataDir: string;
  /** Run the start-up sweep (temp files, orphan blobs). Default true; pass false when another process may be publishing (CLI tools). */
  sweep?: boolean;
  /** Serve read-only. Default: read-only exactly when the data folder (or its catalog) cannot be written. */
  readOnly?: boolean;
  /** Bytes kept in reserve so deletes work on a full disk (default DEFAULT_RESERVE_BYTES; 0 = none). */
  reserveBytes?: number;
}

/** True when `p` exists and this process may write it (false on a read-only mount or without permission). */
async function writable(p: string): Promise<boolean> {
  return fsp.access(p, fsConstants.W_OK).then(
    () => true,
    () => false,
  );
}

/**
 * Opens the registry in a data dir: SQLite catalog file + filesystem blob store, swept at start-up. A data dir
 * that cannot be written (read-only mount, permissions) is served read-only instead of failing to start.
 */
export async function openRegistry(opts: OpenRegistryOptions): Promise<Registry> {
  const { dataDir, sweep, readOnly: ro, reserveBytes, ...rest } = opts;
  const dir = path.resolve(dataDir);
  const dbFile = path.join(dir, 'catalog.sqlite');
  await fsp.mkdir(dir, { recursive: true }).catch(async (e: unknown) => {
    if (!(await fsp.stat(dir).then((st) => st.isDirectory(), () => false))) throw e;
  });
  const readOnly = ro ?? !((await writable(dir)) && (!(await fsp.stat(dbFile).then(() => true, () => false)) || (await writable(dbFile))));
  if (readOnly && !(await fsp.stat(dbFile).then(() => true, () => false))) {
    throw new StoreError('STORAGE_READ_ONLY', `the data directory ${dir} is read-only and holds no catalog.sqlite: make it writable, or point --data at a hub's data folder`);
  }
  const catalog = await SqliteCatalog.open(dbFile, { readOnly });
  const blobs = await FsBlobStore.open(path.join(dir, 'blobs'), { readOnly });
  const reserve = readOnly || reserveBytes === 0 ? undefined : new SpaceReserve(path.join(dir, 'reserve.bin'), reserveBytes);
  const stagingDir = path.join(dir, 'staging');
  const reg = new Registry({ ...rest, catalog, blobs, reserve, readOnly, stagingDir, uploadsDir: path.join(dir, 'uploads') });
  if (!readOnly) {
    await reserve?.ensure();
    if (sweep !== false) {
      await reg.sweep();
      // staged uploads of a previous run (resumable upload sessions live in their own folder and are kept)
      for (const n of await fsp.readdir(stagingDir).catch(() => [] as string[])) await fsp.rm(path.join(stagingDir, n), { force: true }).catch(() => undefined);
      await reg.uploads.sweep();
    }
  }
  return reg;
}

/** An in-memory registry for tests: `:memory:` SQLite and a temp blob folder removed on close. */
export async function openMemoryRegistry(opts: Omit<RegistryOptions, 'catalog' | 'blobs' | 'onClose'> = {}): Promise<Registry> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-blobs-'));
  const catalog = await SqliteCatalog.open(':memory:');
  const blobs = await FsBlobStore.open(dir);
  return new Registry({ ...opts, catalog, blobs, stagingDir: path.join(dir, 'staging'), uploadsDir: path.join(dir, 'uploads'), onClose: () => fsp.rm(dir, { recursive: true, force: true }) });
}
