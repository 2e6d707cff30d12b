/**
 * An S3-protocol server for tests and benchmarks: `s3rver` (npm) on a free port with a temp folder, one bucket
 * created. It speaks the S3 REST API with path-style URLs, so the real `@aws-sdk/client-s3` code paths run.
 * Example: `const s3 = await startS3(); const store = await S3BlobStore.open(s3.storeOptions('prefix/')); ...; await s3.stop();`
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { S3BlobStoreOptions } from '../../modules-store/blob-store-s3';
import { freePort } from './ports';

export interface S3Server {
  endpoint: string;
  bucket: string;
  /** Options for S3BlobStore.open against this server. */
  storeOptions(prefix?: string): S3BlobStoreOptions;
  /** The environment a `modhub serve` child needs to reach this server. */
  env(prefix?: string): Record<string, string>;
  stop(): Promise<void>;
}

export async function startS3(bucket = 'modhub'): Promise<S3Server> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const S3rver = require('s3rver') as new (o: object) => { run(): Promise<unknown>; close(): Promise<void> };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-s3-'));
  const port = await freePort();
  const server = new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir, configureBuckets: [{ name: bucket }], vhostBuckets: false });
  await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  return {
    endpoint,
    bucket,
    storeOptions: (prefix = '') => ({ bucket, prefix, endpoint, region: 'us-east-1', forcePathStyle: true, credentials }),
    env: (prefix = '') => ({
      MODHUB_BLOB_URL: `s3://${bucket}/${prefix}`,
      MODHUB_S3_ENDPOINT: endpoint,
      MODHUB_S3_REGION: 'us-east-1',
      MODHUB_S3_FORCE_PATH_STYLE: 'true',
      MODHUB_S3_ACCESS_KEY_ID: credentials.accessKeyId,
      MODHUB_S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    }),
    async stop() {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
