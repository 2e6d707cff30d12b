/**
 * An S3-protocol server for tests and benchmarks: `s3rver` (npm) on a free port with a temp folder, one bucket
 * created. It speaks the S3 REST API with path-style URLs, so the real `@aws-sdk/client-s3` code paths run.
 * Example: `const s3 = await startS3(); const store = await S3BlobStore.open(s3.storeOptions('prefix/')); ...; await s3.stop();`
 */
import { spawn } from 'node:child_process';
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

/**
 * Starts s3rver with `bucket`. In this process by default; `ownProcess` runs it in a child process so that a
 * benchmark's client and the server do not share one event loop.
 */
export async function startS3(bucket = 'modhub', opts: { ownProcess?: boolean } = {}): Promise<S3Server> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-s3-'));
  const port = await freePort();
  const options = { address: '127.0.0.1', port, silent: true, directory: dir, configureBuckets: [{ name: bucket }], vhostBuckets: false };
  let close: () => Promise<void>;
  if (opts.ownProcess) {
    const script = `const S3rver = require(${JSON.stringify(require.resolve('s3rver'))}); new S3rver(${JSON.stringify(options)}).run().then(() => console.log('READY'), (e) => { console.error(e); process.exit(1); });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('READY') && resolve());
      child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
    });
    close = async () => {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await gone;
    };
  } else {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const S3rver = require('s3rver') as new (o: object) => { run(): Promise<unknown>; close(): Promise<void> };
    const server = new S3rver(options);
    await server.run();
    close = () => server.close();
  }
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
      await close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
