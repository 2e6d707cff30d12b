/**
 * The hub server as a child process for the crash test (test/integration/hub-crash.test.ts). Opens the registry in
 * MODHUB_DATA (running the start-up sweep), listens on an ephemeral port and prints `LISTENING <port>`. It prints
 * `PHASE <name>:<n>` at each step of a publish (temp-written:1.., blob:1.., commit-begin:1, commit-done:1); with PAUSE_AT=<name>:<n>
 * it stops that publish right there (the process keeps running) so the test can SIGKILL it at a known moment.
 */
import { writeSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import client from 'prom-client';
import { FsBlobStore, openRegistry } from '../../modules-store';
import { createApp } from '../../server/http/app';

async function main(): Promise<void> {
  const dataDir = process.env.MODHUB_DATA;
  if (!dataDir) throw new Error('MODHUB_DATA is not set');
  const pauseAt = process.env.PAUSE_AT ?? '';
  const registry = await openRegistry({ dataDir });
  const counts = new Map<string, number>();
  const mark = async (name: string): Promise<void> => {
    const n = (counts.get(name) ?? 0) + 1;
    counts.set(name, n);
    writeSync(1, `PHASE ${name}:${n}\n`);
    if (pauseAt === `${name}:${n}`) await new Promise<never>(() => undefined);
  };
  if (registry.blobs instanceof FsBlobStore) registry.blobs.hooks.afterTempWrite = () => mark('temp-written');
  const put = registry.blobs.put.bind(registry.blobs);
  registry.blobs.put = async (data, digest) => {
    const r = await put(data, digest);
    await mark('blob');
    return r;
  };
  // uploads are staged on disk and stored by streaming (issue 13): the same phase
  const putStream = registry.blobs.putStream.bind(registry.blobs);
  registry.blobs.putStream = async (source, digest) => {
    const r = await putStream(source, digest);
    await mark('blob');
    return r;
  };
  const publishVersion = registry.catalog.publishVersion.bind(registry.catalog);
  registry.catalog.publishVersion = async (v) => {
    await mark('commit-begin');
    await publishVersion(v);
    await mark('commit-done');
  };
  const app = createApp({ registry, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  const server = app.listen(0, '127.0.0.1', () => {
    writeSync(1, `LISTENING ${(server.address() as AddressInfo).port}\n`);
  });
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => {
      void registry.close().then(() => process.exit(0));
    });
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`hub-child: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
