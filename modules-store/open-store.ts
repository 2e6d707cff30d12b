/**
 * Opens the registry the configuration asks for: the embedded default (SQLite catalog + blob files in the data
 * folder, exactly {@link openRegistry}) unless a PostgreSQL URL and/or an s3:// blob URL is given — then the
 * PostgreSQL catalog and/or the S3 blob store, which several server replicas can share. The PostgreSQL and S3
 * modules load only when used. Configuration comes from options or the environment:
 *   MODHUB_DATABASE_URL   postgres://user:password@host:5432/db   (PostgreSQL catalog)
 *   MODHUB_BLOB_URL       s3://bucket/prefix                      (S3 blob store)
 *   MODHUB_S3_ENDPOINT, MODHUB_S3_REGION (or AWS_REGION), MODHUB_S3_FORCE_PATH_STYLE,
 *   MODHUB_S3_ACCESS_KEY_ID + MODHUB_S3_SECRET_ACCESS_KEY (else the AWS default credential chain)
 *   MODHUB_CHANGE_POLL_MS fallback poll of the shared catalog's change counter (default 5000)
 * An unreachable database or bucket fails with a message naming it (password masked).
 * Example: `const reg = await openStore({ dataDir: '.modhub', databaseUrl: process.env.MODHUB_DATABASE_URL });`
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FsBlobStore, type BlobStore } from './blob-store';
import type { Catalog } from './catalog';
import { SqliteCatalog } from './catalog-sqlite';
import { openRegistry, Registry, type OpenRegistryOptions } from './registry';

export interface OpenStoreOptions extends OpenRegistryOptions {
  /** PostgreSQL URL; default MODHUB_DATABASE_URL; none = SQLite in the data folder. */
  databaseUrl?: string;
  /** `s3://bucket/prefix`; default MODHUB_BLOB_URL; none = blob files in the data folder. */
  blobUrl?: string;
  /** Environment to read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** What a configuration resolves to, for logs: where the catalog and the blobs live (no secrets). */
export interface StoreDescription {
  catalog: string;
  blobs: string;
  shared: boolean;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** The database and blob URLs a configuration uses (options first, then the environment). */
export function storeUrls(o: Pick<OpenStoreOptions, 'databaseUrl' | 'blobUrl' | 'env'>): { databaseUrl?: string; blobUrl?: string } {
  const env = o.env ?? process.env;
  return { databaseUrl: nonEmpty(o.databaseUrl) ?? nonEmpty(env.MODHUB_DATABASE_URL), blobUrl: nonEmpty(o.blobUrl) ?? nonEmpty(env.MODHUB_BLOB_URL) };
}

/** Opens the configured registry (see the file comment); swept at start-up unless `sweep: false`. */
export async function openStore(opts: OpenStoreOptions): Promise<Registry & { description: StoreDescription }> {
  const { databaseUrl, blobUrl } = storeUrls(opts);
  const env = opts.env ?? process.env;
  const dir = path.resolve(opts.dataDir);
  if (!databaseUrl && !blobUrl) {
    const reg = await openRegistry(opts);
    return Object.assign(reg, { description: { catalog: path.join(dir, 'catalog.sqlite'), blobs: path.join(dir, 'blobs'), shared: false } });
  }
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new RangeError(`database URL must start with postgres:// or postgresql://, got '${databaseUrl.replace(/\/\/[^@/]*@/, '//***@')}'`);
  }
  if (blobUrl && !blobUrl.startsWith('s3://')) throw new RangeError(`blob URL must be s3://<bucket>/<prefix>, got '${blobUrl}'`);
  await fsp.mkdir(dir, { recursive: true });

  let catalog: Catalog | undefined;
  let blobs: BlobStore | undefined;
  let closeBlobs: (() => void) | undefined;
  const description: StoreDescription = { catalog: '', blobs: '', shared: Boolean(databaseUrl) };
  try {
    if (databaseUrl) {
      const { PgCatalog, redactDatabaseUrl } = await import('./catalog-pg');
      const pollMs = nonEmpty(env.MODHUB_CHANGE_POLL_MS);
      if (pollMs !== undefined && !(Number.isInteger(Number(pollMs)) && Number(pollMs) > 0)) {
        throw new RangeError(`MODHUB_CHANGE_POLL_MS must be a positive integer (milliseconds), got '${pollMs}'`);
      }
      catalog = await PgCatalog.open(databaseUrl, { pollMs: pollMs === undefined ? undefined : Number(pollMs) });
      description.catalog = redactDatabaseUrl(databaseUrl);
    } else {
      catalog = await SqliteCatalog.open(path.join(dir, 'catalog.sqlite'));
      description.catalog = path.join(dir, 'catalog.sqlite');
    }
    if (blobUrl) {
      const { S3BlobStore, s3OptionsFromEnv } = await import('./blob-store-s3');
      const s3 = await S3BlobStore.open(s3OptionsFromEnv(blobUrl, env));
      blobs = s3;
      closeBlobs = () => s3.close();
      description.blobs = s3.location;
    } else {
      blobs = await FsBlobStore.open(path.join(dir, 'blobs'));
      description.blobs = path.join(dir, 'blobs');
    }
  } catch (e) {
    await catalog?.close().catch(() => undefined);
    throw e;
  }
  const reg = new Registry({ ...opts, catalog, blobs, onClose: async () => closeBlobs?.() });
  if (opts.sweep !== false) {
    try {
      await reg.sweep();
    } catch (e) {
      await reg.close().catch(() => undefined);
      throw e;
    }
  }
  return Object.assign(reg, { description });
}
