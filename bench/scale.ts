/**
 * GitHub issue 15: what scale-out costs and buys, measured side by side in one run on this machine.
 *
 * 1. Search latency p50/p99 over 100,000 modules, PostgreSQL vs SQLite. Both catalogs are loaded the same way,
 *    through the Catalog API (`publishMany`, 10,000 rows per transaction; the rows and query mix of bench:hub),
 *    then PostgreSQL gets the `VACUUM ANALYZE` an operator runs after a bulk load (autovacuum gets there on its
 *    own a little later: statistics for the planner, the visibility map for index-only counts). Queries go
 *    through Registry.search in-process (no HTTP: the catalogs are what differs). PostgreSQL runs with its
 *    default durability here (fsync on), SQLite with the catalog's synchronous=FULL.
 * 2. Blob upload/download MB/s through S3 (s3rver, an S3-protocol server in its own process, on local disk) vs
 *    local files (FsBlobStore: write + fsync + rename), via the BlobStore API: put with digest check, stream out.
 * 3. Inference throughput of 1, 2 and 3 `modhub serve` replicas (PostgreSQL + s3rver, --threads 1 each) behind
 *    nginx, closed loop with a fixed number of concurrent clients; baselines: 1 replica without nginx, and 1
 *    embedded server (SQLite + files, no change-count check per request) without nginx.
 *
 *   npm run build:bench && node dist-bench/bench/scale.js [--quick] [--only search|blobs|inference] [--modules N] [--seconds S] [--json FILE]
 *   --quick   10,000 modules, 16 MB blobs, 5 s per inference setting
 * The machine these run on is shared: the load average is printed with the results; compare within one run.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { FsBlobStore, openStore, packArchive, Registry, sha256Digest, SqliteCatalog, type BlobStore, type Catalog } from '../modules-store';
import { S3BlobStore } from '../modules-store/blob-store-s3';
import { PgCatalog } from '../modules-store/catalog-pg';
import { serializeSafetensors } from '../modules-store/safetensors';
import { loadBase } from '../server/model/base';
import { createTinyBase } from '../server/model/tiny';
import { makeAdapterModule } from '../test/helpers/modules';
import { findPgBinaries, startPg, type PgServer } from '../test/helpers/pg-server';
import { findNginx, startNginx, startReplica, type Replica } from '../test/helpers/replicas';
import { startS3, type S3Server } from '../test/helpers/s3-server';
import { catalogRows, QUERIES, searchParamsOf } from './search-fixture';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const argOf = (k: string): string | undefined => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const MODULES = Number(argOf('--modules') ?? (QUICK ? 10_000 : 100_000));
const SECONDS = Number(argOf('--seconds') ?? (QUICK ? 5 : 15));
const BLOB_MB = QUICK ? 16 : 64;
const JSON_OUT = argOf('--json');
const ONLY = argOf('--only');
if (ONLY !== undefined && !['search', 'blobs', 'inference'].includes(ONLY)) throw new RangeError(`'--only' must be search, blobs or inference, got '${ONLY}'`);
const runs = (part: string): boolean => ONLY === undefined || ONLY === part;
const MB = 1e6;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const median = (xs: number[]): number => pct(xs, 50);
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const out = (s: string): void => void process.stdout.write(s);

// ---- 1. search ------------------------------------------------------------------------------------------

async function searchOn(label: string, catalog: Catalog, afterLoad?: () => Promise<void>): Promise<{ loadS: number; p50: number; p99: number; perQuery: Record<string, { p50: number; p99: number; total: number }> }> {
  const noBlobs = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-noblobs-'));
  const reg = new Registry({ catalog, blobs: await FsBlobStore.open(noBlobs), onClose: async () => fs.rmSync(noBlobs, { recursive: true, force: true }) });
  let t0 = process.hrtime.bigint();
  const BATCH = 10_000;
  for (let i = 0; i < MODULES; i += BATCH) await catalog.publishMany(catalogRows(Math.min(MODULES, i + BATCH)).slice(i));
  await afterLoad?.();
  const loadS = ms(t0) / 1000;
  const REPS = QUICK ? 20 : 60;
  const all: number[] = [];
  const perQuery: Record<string, { p50: number; p99: number; total: number }> = {};
  for (const q of QUERIES) {
    const params = searchParamsOf(q);
    const times: number[] = [];
    let total = 0;
    for (let i = 0; i < REPS; i++) {
      t0 = process.hrtime.bigint();
      const r = await reg.search(params);
      times.push(ms(t0));
      total = r.total;
    }
    all.push(...times);
    perQuery[q] = { p50: +pct(times, 50).toFixed(2), p99: +pct(times, 99).toFixed(2), total };
  }
  out(`${label.padEnd(10)} loaded ${MODULES.toLocaleString('en')} modules in ${loadS.toFixed(1)} s; ${all.length} searches: p50 ${pct(all, 50).toFixed(2)} ms, p99 ${pct(all, 99).toFixed(2)} ms\n`);
  await reg.close();
  return { loadS: +loadS.toFixed(1), p50: +pct(all, 50).toFixed(2), p99: +pct(all, 99).toFixed(2), perQuery };
}

// ---- 2. blobs --------------------------------------------------------------------------------------------

async function blobRates(store: BlobStore, rounds: number): Promise<{ uploadMBs: number; downloadMBs: number }> {
  const up: number[] = [];
  const down: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const data = randomBytes(BLOB_MB * 1024 * 1024);
    const digest = sha256Digest(data);
    let t0 = process.hrtime.bigint();
    await store.put(data, digest);
    up.push(ms(t0));
    t0 = process.hrtime.bigint();
    let n = 0;
    for await (const c of store.stream(digest)) n += (c as Buffer).length;
    down.push(ms(t0));
    if (n !== data.length) throw new Error(`read back ${n} of ${data.length} bytes`);
    await store.delete(digest);
  }
  const rate = (t: number): number => +((BLOB_MB * 1024 * 1024) / MB / (t / 1000)).toFixed(1);
  return { uploadMBs: rate(median(up)), downloadMBs: rate(median(down)) };
}

// ---- 3. inference ----------------------------------------------------------------------------------------

async function load(url: string, seconds: number, concurrency: number): Promise<{ rps: number; p50: number; p99: number; errors: number; perUpstream: Record<string, number> }> {
  const lat: number[] = [];
  const perUpstream: Record<string, number> = {};
  let errors = 0;
  let measuring = false;
  let stop = false;
  const body = (i: number): string => JSON.stringify({ inputs: [{ text: `the quick brown fox number ${i} jumps over the lazy dog` }], composition: 'bench/topic' });
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const t0 = process.hrtime.bigint();
      const res = await fetch(`${url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(w * 1e6 + i) });
      await res.arrayBuffer();
      if (!measuring) continue;
      if (res.status !== 200) errors++;
      else lat.push(ms(t0));
      const up = res.headers.get('x-modhub-upstream') ?? 'direct';
      perUpstream[up] = (perUpstream[up] ?? 0) + 1;
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, 2000)); // warm-up: sessions built, caches filled
  measuring = true;
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = ms(t0) / 1000;
  const done = lat.length;
  stop = true;
  await Promise.all(workers);
  return { rps: +(done / elapsed).toFixed(1), p50: +pct(lat, 50).toFixed(1), p99: +pct(lat, 99).toFixed(1), errors, perUpstream };
}

async function benchSearch(pgServer: PgServer, tmp: string, result: Record<string, unknown>): Promise<void> {
  out(`\n== search over ${MODULES.toLocaleString('en')} modules, in-process Registry.search, ${QUERIES.length} queries ==\n`);
  const sqlite = await searchOn('SQLite', await SqliteCatalog.open(path.join(tmp, 'catalog.sqlite')));
  const pgUrl = await pgServer.createDatabase();
  const postgres = await searchOn('PostgreSQL', await PgCatalog.open(pgUrl), async () => {
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    await c.query('VACUUM ANALYZE');
    await c.end();
  });
  out(`${'query'.padEnd(44)} ${'hits'.padStart(6)}  SQLite p50/p99 ms   PostgreSQL p50/p99 ms\n`);
  for (const q of QUERIES) {
    const a = sqlite.perQuery[q];
    const b = postgres.perQuery[q];
    out(`${q.padEnd(44).slice(0, 44)} ${String(a.total).padStart(6)}  ${a.p50.toFixed(2).padStart(7)} / ${a.p99.toFixed(2).padEnd(8)}  ${b.p50.toFixed(2).padStart(7)} / ${b.p99.toFixed(2)}\n`);
    if (a.total !== b.total) throw new Error(`'${q}': SQLite found ${a.total}, PostgreSQL ${b.total}`);
  }
  result.search = { modules: MODULES, sqlite, postgres };

}

async function benchBlobs(s3: S3Server, tmp: string, result: Record<string, unknown>): Promise<void> {
  out(`\n== blobs: ${BLOB_MB} MiB random blob, put (digest check) + stream out, median of 3 ==\n`);
  const files = await blobRates(await FsBlobStore.open(path.join(tmp, 'blobs')), 3);
  const s3store = await S3BlobStore.open(s3.storeOptions('bench/'));
  const viaS3 = await blobRates(s3store, 3);
  s3store.close();
  out(`local files (write, fsync, rename)      upload ${String(files.uploadMBs).padStart(7)} MB/s   download ${String(files.downloadMBs).padStart(7)} MB/s\n`);
  out(`${`S3 via s3rver (${BLOB_MB > 16 ? 'multipart, 16 MiB parts' : 'one PUT'})`.padEnd(39)} upload ${String(viaS3.uploadMBs).padStart(7)} MB/s   download ${String(viaS3.downloadMBs).padStart(7)} MB/s\n`);
  result.blobs = { blobMiB: BLOB_MB, files, s3: viaS3 };

}

async function benchInference(pgServer: PgServer, s3: S3Server, tmp: string, result: Record<string, unknown>): Promise<void> {
  const nginxBin = findNginx();
  const baseDir = path.join(tmp, 'base');
  await createTinyBase({ out: baseDir, family: 'bert', layers: 4, hidden: 256, heads: 4, seed: 0 });
  const c = (await loadBase(baseDir)).config;
  const env = { ...s3.env('replicas/'), MODHUB_DATABASE_URL: await pgServer.createDatabase() };
  const CONC = 16;
  out(`\n== inference: bert ${c.numLayers} layers x ${c.hiddenSize}, 1 text per request, ${CONC} concurrent clients, ${SECONDS} s per setting ==\n`);
  const replicas: Replica[] = [];
  const inference: Record<string, unknown> = {};
  const line = (label: string, r: Awaited<ReturnType<typeof load>>): void => {
    const spread = Object.keys(r.perUpstream).length > 1 || !r.perUpstream.direct ? `   requests per replica ${Object.values(r.perUpstream).join('/')}` : '';
    out(`${label.padEnd(28)} ${String(r.rps).padStart(7)} req/s   p50 ${r.p50} ms   p99 ${r.p99} ms   errors ${r.errors}${spread}\n`);
  };
  const moduleArchive = (fp: string): Buffer => {
    const m = makeAdapterModule({ id: 'bench/topic', base: { family: 'bert', fingerprint: fp, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize }, preset: 'seq_bn', config: { reduction_factor: 16 }, head: { type: 'classification', num_labels: 3, labels: ['a', 'b', 'c'] }, seed: 1 });
    return packArchive(new Map([['module.json', Buffer.from(JSON.stringify(m.manifest))], ['weights.safetensors', serializeSafetensors(m.tensors)]]), false);
  };
  const publishTo = async (url: string, token: string, fp: string): Promise<void> => {
    const form = new FormData();
    form.append('archive', new Blob([moduleArchive(fp)]), 'm.tar');
    const res = await fetch(`${url}/v1/modules`, { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: form });
    if (res.status !== 201) throw new Error(`publish: ${res.status} ${await res.text()}`);
  };
  // Baseline: the embedded default (SQLite + files in --data), one server, no nginx.
  {
    const data = path.join(tmp, 'embedded');
    const store = await openStore({ dataDir: data, env: {} });
    const token = (await store.createToken({ scopes: ['admin'] })).token;
    await store.close();
    const embedded = await startReplica({ base: baseDir, env: {}, data, built: true, args: ['--threads', '1'] });
    try {
      const probe = await openStore({ dataDir: data, env: {}, sweep: false });
      const fp = (await probe.listBases())[0].fingerprint;
      await probe.close();
      await publishTo(embedded.url, token, fp);
      const r = await load(embedded.url, SECONDS, CONC);
      inference.embedded1 = r;
      line('1 embedded server, no nginx', r);
    } finally {
      await embedded.stop();
    }
  }
  try {
    for (let n = 1; n <= 3; n++) {
      replicas.push(await startReplica({ base: baseDir, env, built: true, args: ['--threads', '1'] }));
      if (n === 1) {
        // Publish the module once (through replica 1), with an admin token made on the shared store.
        const reg = await openStore({ dataDir: path.join(tmp, 'control'), env: { ...process.env, ...env }, sweep: false });
        const token = (await reg.createToken({ scopes: ['admin'] })).token;
        const fp = (await reg.listBases())[0].fingerprint;
        await reg.close();
        await publishTo(replicas[0].url, token, fp);
      }
      if (!nginxBin) {
        out('nginx not installed: replica settings behind nginx skipped\n');
      } else {
        const lb = await startNginx(replicas.map((r) => r.url));
        try {
          const r = await load(lb.url, SECONDS, CONC);
          inference[`nginx${n}`] = r;
          line(`${n} replica${n > 1 ? 's' : ''} behind nginx`, r);
        } finally {
          await lb.stop();
        }
      }
      if (n === 1) {
        const direct = await load(replicas[0].url, SECONDS, CONC);
        inference.direct1 = direct;
        line('1 replica, no nginx', direct);
      }
    }
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
  }
  result.inference = { concurrency: CONC, seconds: SECONDS, layers: c.numLayers, hidden: c.hiddenSize, threadsPerReplica: 1, ...inference };
}

async function main(): Promise<void> {
  if (!findPgBinaries()) throw new Error('bench:scale needs PostgreSQL binaries (Debian: apt-get install -y postgresql)');
  const result: Record<string, unknown> = { machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}`, node: process.version, loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)) };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-scale-'));
  const pgServer = await startPg({ durable: true });
  const s3 = await startS3('modhub', { ownProcess: true });
  try {
    if (runs('search')) await benchSearch(pgServer, tmp, result);
    if (runs('blobs')) await benchBlobs(s3, tmp, result);
    if (runs('inference')) await benchInference(pgServer, s3, tmp, result);
    result.loadavgAtEnd = os.loadavg().map((x) => +x.toFixed(2));
    out(`\nload average at start ${(result.loadavgAtStart as number[]).join(' ')}, at end ${(result.loadavgAtEnd as number[]).join(' ')} (${os.cpus().length} cores, shared)\n`);
  } finally {
    await s3.stop();
    await pgServer.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify(result, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/scale: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
