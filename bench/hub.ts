/**
 * GitHub issue 3: hub throughput and search latency, measured side by side in one run on this machine.
 *
 * 1. Upload and download of a ~57 MB module (bottleneck adapter, 12 layers × 768, reduction 1) over loopback
 *    through the real HTTP server (SDK multipart upload incl. validation, hashing, fsync, catalog commit; archive
 *    and single-file download), in MB/s, next to a raw copy of the same bytes on the same disk (fs.copyFile, and
 *    read + write + fsync, which is what an upload must at least do).
 * 2. Search latency p50/p99 over a catalog of 100,000 modules (rows inserted through Catalog.publishMany in one
 *    transaction), for a mix of queries (filters, free text, sorts, deep pages), over HTTP and in-process.
 *
 *   npm run build:bench && node dist-bench/bench/hub.js [--quick] [--rounds N] [--modules N] [--json FILE]
 *   --quick   10,000 modules, 2 rounds (< 1 minute)
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import client from 'prom-client';
import { ModhubClient } from '../client-sdk';
import { packArchive } from '../modules-store';
import { createHubServer } from '../server/http/app';
import { BIG_BASE, bigPackage, catalogRows, QUERIES, searchParamsOf } from './search-fixture';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const argOf = (k: string): string | undefined => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const ROUNDS = Number(argOf('--rounds') ?? (QUICK ? 2 : 5));
const MODULES = Number(argOf('--modules') ?? (QUICK ? 10_000 : 100_000));
const JSON_OUT = argOf('--json');

const MB = 1e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function rawCopies(dir: string, bytes: Buffer): Promise<{ copyFile: number; writeFsync: number }> {
  const src = path.join(dir, 'raw-src.bin');
  await fsp.writeFile(src, bytes);
  const c: number[] = [];
  const w: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const dst = path.join(dir, `raw-dst-${r}.bin`);
    let t0 = process.hrtime.bigint();
    await fsp.copyFile(src, dst);
    c.push(ms(t0));
    await fsp.rm(dst);
    t0 = process.hrtime.bigint();
    const data = await fsp.readFile(src);
    const fh = await fsp.open(dst, 'w');
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    w.push(ms(t0));
    await fsp.rm(dst);
  }
  await fsp.rm(src);
  return { copyFile: median(c), writeFsync: median(w) };
}

/** The transport ceiling: a bare node:http server sending / swallowing the same bytes from memory over loopback. */
async function rawHttp(bytes: Buffer): Promise<{ get: number; post: number }> {
  const http = await import('node:http');
  const srv = http.createServer((req, res) => {
    if (req.method === 'POST') {
      req.on('data', () => undefined);
      req.on('end', () => res.end('ok'));
      return;
    }
    res.setHeader('Content-Length', String(bytes.length));
    res.end(bytes);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const u = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/`;
  const g: number[] = [];
  const p: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = process.hrtime.bigint();
    await (await fetch(u)).arrayBuffer();
    g.push(ms(t0));
    t0 = process.hrtime.bigint();
    await (await fetch(u, { method: 'POST', body: bytes })).text();
    p.push(ms(t0));
  }
  await new Promise((r) => srv.close(r));
  return { get: median(g), post: median(p) };
}

async function main(): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-bench-'));
  // Remove the temp folder however the run ends (error, Ctrl-C, a closed pipe).
  const cleanup = (): void => {
    try {
      require('node:fs').rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  };
  process.once('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGPIPE'] as const) process.once(sig, () => process.exit(130));
  const hub = await createHubServer({ dataDir: path.join(dir, 'data'), logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  await hub.registry.registerBase(BIG_BASE);
  const token = (await hub.registry.createToken({ scopes: ['admin'] })).token;
  const server = await new Promise<Server>((resolve) => {
    const s = hub.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sdk = new ModhubClient({ baseUrl: url, token });
  const result: Record<string, unknown> = { machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}`, node: process.version, rounds: ROUNDS };

  // ---- 1. throughput ----
  const up: number[] = [];
  const downArchive: number[] = [];
  const downFile: number[] = [];
  let size = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const files = bigPackage({ id: 'bench/big', version: `1.0.${r}`, language: 'de' });
    const archive = packArchive(files);
    size = archive.length;
    let t0 = process.hrtime.bigint();
    await sdk.publish({ archive });
    up.push(ms(t0));
    t0 = process.hrtime.bigint();
    const a = await fetch(`${url}/v1/modules/bench/big/versions/1.0.${r}/archive`);
    const got = Buffer.from(await a.arrayBuffer());
    downArchive.push(ms(t0));
    if (got.length !== Number(a.headers.get('content-length'))) throw new Error(`archive download returned ${got.length} bytes, Content-Length said ${a.headers.get('content-length')}`);
    t0 = process.hrtime.bigint();
    const f = await fetch(`${url}/v1/modules/bench/big/versions/1.0.${r}/files/weights.safetensors`);
    await f.arrayBuffer();
    downFile.push(ms(t0));
  }
  const rawBytes = randomBytes(size);
  const raw = await rawCopies(dir, rawBytes);
  const rawNet = await rawHttp(rawBytes);
  const mbps = (t: number): number => size / MB / (t / 1000);
  const tp = {
    moduleMB: +(size / MB).toFixed(1),
    uploadMBs: +mbps(median(up)).toFixed(1),
    downloadArchiveMBs: +mbps(median(downArchive)).toFixed(1),
    downloadFileMBs: +mbps(median(downFile)).toFixed(1),
    rawCopyFileMBs: +mbps(raw.copyFile).toFixed(1),
    rawWriteFsyncMBs: +mbps(raw.writeFsync).toFixed(1),
    rawHttpGetMBs: +mbps(rawNet.get).toFixed(1),
    rawHttpPostMBs: +mbps(rawNet.post).toFixed(1),
  };
  result.throughput = tp;
  process.stdout.write(`\n== throughput, ${tp.moduleMB} MB module, loopback, median of ${ROUNDS} ==\n`);
  const x = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
  process.stdout.write(`upload   (SDK multipart → validate, hash, fsync, commit)  ${String(tp.uploadMBs).padStart(7)} MB/s   ${x(tp.uploadMBs, tp.rawWriteFsyncMBs)} raw read+write+fsync, ${x(tp.uploadMBs, tp.rawHttpPostMBs)} bare HTTP POST\n`);
  process.stdout.write(`download archive (tar streamed from blobs)              ${String(tp.downloadArchiveMBs).padStart(7)} MB/s   ${x(tp.downloadArchiveMBs, tp.rawCopyFileMBs)} fs.copyFile, ${x(tp.downloadArchiveMBs, tp.rawHttpGetMBs)} bare HTTP GET\n`);
  process.stdout.write(`download weights.safetensors                            ${String(tp.downloadFileMBs).padStart(7)} MB/s   ${x(tp.downloadFileMBs, tp.rawCopyFileMBs)} fs.copyFile, ${x(tp.downloadFileMBs, tp.rawHttpGetMBs)} bare HTTP GET\n`);
  process.stdout.write(`baselines, same run: fs.copyFile ${tp.rawCopyFileMBs} MB/s, read+write+fsync ${tp.rawWriteFsyncMBs} MB/s, bare node:http GET ${tp.rawHttpGetMBs} MB/s, POST ${tp.rawHttpPostMBs} MB/s (from memory, loopback)\n`);

  // ---- 2. search latency ----
  let t0 = process.hrtime.bigint();
  const BATCH = 10_000;
  for (let i = 0; i < MODULES; i += BATCH) {
    const rows = catalogRows(Math.min(MODULES, i + BATCH)).slice(i);
    await hub.registry.catalog.publishMany(rows);
  }
  const loadS = ms(t0) / 1000;
  process.stdout.write(`\n== search over ${MODULES.toLocaleString('en')} modules (loaded in ${loadS.toFixed(1)} s) ==\n`);
  const perQuery: Record<string, { httpP50: number; httpP99: number; inprocP50: number; total: number }> = {};
  const allHttp: number[] = [];
  const REPS = QUICK ? 20 : 60;
  for (const q of QUERIES) {
    const http: number[] = [];
    const inproc: number[] = [];
    let total = 0;
    const params = searchParamsOf(q);
    for (let i = 0; i < REPS; i++) {
      t0 = process.hrtime.bigint();
      const res = await fetch(`${url}/v1/modules?${q}`);
      const body = (await res.json()) as { total: number };
      http.push(ms(t0));
      total = body.total;
      t0 = process.hrtime.bigint();
      await hub.registry.search(params);
      inproc.push(ms(t0));
    }
    allHttp.push(...http);
    perQuery[q] = { httpP50: +pct(http, 50).toFixed(2), httpP99: +pct(http, 99).toFixed(2), inprocP50: +pct(inproc, 50).toFixed(2), total };
    process.stdout.write(`${q.padEnd(44).slice(0, 44)} hits ${String(total).padStart(6)}  HTTP p50 ${perQuery[q].httpP50.toFixed(1).padStart(6)} ms  p99 ${perQuery[q].httpP99.toFixed(1).padStart(6)} ms  (in-process p50 ${perQuery[q].inprocP50.toFixed(1)} ms)\n`);
  }
  const search = { modules: MODULES, requests: allHttp.length, p50ms: +pct(allHttp, 50).toFixed(2), p99ms: +pct(allHttp, 99).toFixed(2), perQuery };
  result.search = search;
  process.stdout.write(`ALL ${allHttp.length} requests (mix above): p50 ${search.p50ms} ms, p99 ${search.p99ms} ms\n`);

  await new Promise((r) => server.close(r));
  await hub.close();
  await fsp.rm(dir, { recursive: true, force: true });
  if (JSON_OUT) await fsp.writeFile(JSON_OUT, JSON.stringify(result, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/hub: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
