/**
 * `modhub serve`: the hub (SQLite catalog + blob folder in --data) and the inference engine over one frozen base,
 * on one port. With no --base, the demo base shipped in demo/ (a small multilingual BERT trained by
 * examples/multilingual) is served and the hub seeded with its modules (idempotently), so a fresh checkout answers
 * real predictions without downloading anything; --no-demo (or no demo/) serves a tiny random base in <data>/base.
 * At scale, --database-url (PostgreSQL) and --blob-url (s3://bucket/prefix) — or MODHUB_DATABASE_URL /
 * MODHUB_BLOB_URL — let several replicas share one catalog and one bucket; a database or bucket that cannot be
 * reached stops the start with a message naming it.
 * /readyz turns 200 after the warm-up run; on SIGTERM/SIGINT the server drains: new requests get 503, admitted ones
 * finish (up to --drain-ms), then it closes.
 * Example: `modhub serve --data ./.modhub --port 8080` then `curl localhost:8080/v1/base`.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Command } from 'commander';
import pino from 'pino';
import client from 'prom-client';
import { createHubServer, normalizePublicUrl } from '../http/app';
import { inferenceRouter } from '../http/inference-routes';
import { loadBase } from '../model/base';
import { createTinyBase } from '../model/tiny';
import { findDemo, readDemo, seedDemo } from '../demo';
import { hfParameterShapes } from '../model/weights';
import { Engine } from '../runtime/engine';
import { DEFAULT_HEAP_GROWING_PERCENT, setHeapGrowingPercent } from '../runtime/heap-growth';
import { InferenceService } from '../runtime/inference';
import type { Device } from '../runtime/session';
import { usage } from './errors';

export interface ServeOptions {
  data: string;
  base?: string;
  port: number;
  host: string;
  device: Device;
  threads: number;
  /** Intra-op threads of small sparse-diff groups' sessions (Engine diffThreads; default 1 on a base of hidden size ≤ 512, else `threads`). */
  diffThreads?: number;
  batchRows: number;
  batchWaitMs: number;
  /** Padded tokens per engine batch (default 8192). */
  batchTokens?: number;
  /** Admitted, unfinished rows / tokens before 429 (defaults 4096 / 262144). */
  queueRows?: number;
  queueTokens?: number;
  /** Deadline of a request without timeout_ms (default 30000). */
  timeoutMs?: number;
  /** Longest wait for admitted requests when stopping (default 30000). */
  drainMs?: number;
  /**
   * How long an idle keep-alive connection stays open, in ms (default 65000). Longer than the idle timeout of what
   * reuses connections in front of the server (nginx keeps upstream connections 60 s, Node's own agents and load
   * balancers about as long), so the server never closes a socket the other side is sending a request on: with
   * Node's 5 s default, bench:serve's open loop at BERT-base lost 9 and 14 POSTs in two runs (ECONNRESET where recorded), which nginx
   * answers 502 (it does not retry a POST on another replica). 0: idle connections are never closed.
   */
  keepAliveMs?: number;
  /** Run each composition of a batch as its own uniform group (Engine splitCompositions; default false). */
  splitCompositions?: boolean;
  /** Form batches by the runs their rows join, rank classes included (queue.ts; --batch-by-run; default false: by length, and sparse-diff sets). */
  batchByRun?: boolean;
  /** MiB of loaded modules kept in engine layout (Engine moduleCacheBytes; default 2048). */
  moduleMemoryMb?: number;
  /** MiB of resident module pools mixed batches gather from (Engine residentPoolBytes; default 1024). */
  poolMemoryMb?: number;
  /** MiB of sparse-diff sets: their non-zeros, and θ₀+δ of sets that come back (Engine diffCacheBytes; default 2048). */
  diffMemoryMb?: number;
  /** Most graph sessions kept, each with its own copy of the base weights (Engine maxSessions; default 8). */
  maxSessions?: number;
  /**
   * A run's fixed cost in padded tokens, which decides how a batch splits into length ranges (Engine
   * runOverheadTokens; default: measured at start on a CPU, never split on CUDA; 0: never split).
   */
  runOverheadTokens?: number;
  /** Mixed sessions skip the parts no row of a batch uses ('on'), or not ('off'); 'auto' (default): on a base wider than 512 (Engine gateMixedSessions). */
  mixedGates?: 'auto' | 'on' | 'off';
  /** V8's heap growth past the live heap before a full collection, in percent (heap-growth.ts; default 900, 0 = V8's own). */
  heapGrowingPercent?: number;
  /** Warm up before resolving (default true; false answers 503 NOT_READY until the background warm-up ends). */
  waitForWarmUp?: boolean;
  anonymousRead: boolean;
  allowUnknownBases?: boolean;
  /** Origins whose pages may call the API (CORS); none by default. */
  corsOrigin?: string[];
  /** PostgreSQL catalog URL (default MODHUB_DATABASE_URL; none = SQLite in --data). */
  databaseUrl?: string;
  /** `s3://bucket/prefix` blob store (default MODHUB_BLOB_URL; none = files in --data). */
  blobUrl?: string;
  /** The URL clients reach the hub at (absolute links); default: the address it listens on. */
  publicUrl?: string;
  /** Without --base, serve the shipped demo base and seed its modules (default true: the demo/ above the code; a
   * folder: that demo; false, --no-demo: a tiny random base in <data>/base). */
  demo?: boolean | string;
}

/** Starts the server; resolves with a stop function once listening. */
export async function serve(o: ServeOptions): Promise<{ url: string; stop: () => Promise<void>; service: InferenceService }> {
  const logger = pino({ name: 'modhub' });
  setHeapGrowingPercent(o.heapGrowingPercent ?? DEFAULT_HEAP_GROWING_PERCENT);
  // no --base: the shipped demo base (demo/, trained by examples/multilingual), else a tiny random one in <data>/base
  const demo = o.demo === false ? null : typeof o.demo === 'string' ? readDemo(o.demo) : findDemo();
  const baseDir = o.base ?? demo?.base ?? path.join(o.data, 'base');
  if (!o.base && !demo && !fs.existsSync(path.join(baseDir, 'config.json'))) {
    logger.info({ baseDir }, 'no --base given and none in the data folder: creating a tiny random BERT base (demo only)');
    await createTinyBase({ out: baseDir, family: 'bert', layers: 2, hidden: 64, heads: 4, seed: 0 });
  }
  const base = await loadBase(baseDir);
  const engine = await Engine.create({ base, device: o.device, threads: o.threads, diffThreads: o.diffThreads, splitCompositions: o.splitCompositions, moduleCacheBytes: (o.moduleMemoryMb ?? 2048) * 2 ** 20, residentPoolBytes: (o.poolMemoryMb ?? 1024) * 2 ** 20, diffCacheBytes: (o.diffMemoryMb ?? 2048) * 2 ** 20, maxSessions: o.maxSessions, runOverheadTokens: o.runOverheadTokens === 0 ? Infinity : o.runOverheadTokens, gateMixedSessions: o.mixedGates === undefined || o.mixedGates === 'auto' ? undefined : o.mixedGates === 'on',
    // a build while serving holds up the runs behind it: an operator who sees these past the warm-up raises --max-sessions
    onSessionBuilt: (built) => logger.info(built, 'onnxruntime session built'),
  });
  const metrics = new client.Registry();
  client.collectDefaultMetrics({ register: metrics });
  const service = new InferenceService(engine, {
    maxBatchRows: o.batchRows,
    maxWaitMs: o.batchWaitMs,
    maxBatchTokens: o.batchTokens,
    maxQueueRows: o.queueRows,
    maxQueueTokens: o.queueTokens,
    batchByRun: o.batchByRun,
    defaultTimeoutMs: o.timeoutMs,
    requireWarmUp: true,
    metrics,
  });
  const auth = { anonymousRead: o.anonymousRead };
  const router = inferenceRouter({ service, auth, logger, metrics });
  let listenUrl: string | undefined;
  const hub = await createHubServer({
    publicUrl: o.publicUrl ?? (() => listenUrl),
    dataDir: o.data,
    logger,
    metrics,
    auth,
    routers: [{ path: '/v1', router }],
    inference: service,
    allowUnknownBases: o.allowUnknownBases,
    baseParams: (fp) => (fp === base.fingerprint ? hfParameterShapes(base.config) : null),
    corsOrigins: o.corsOrigin,
    databaseUrl: o.databaseUrl,
    blobUrl: o.blobUrl,
  }).catch(async (e: unknown) => {
    // An unreachable database or bucket: stop the engine's worker so the process can exit with the error.
    await engine.close().catch(() => undefined);
    throw e;
  });
  logger.info({ catalog: hub.store.catalog, blobs: hub.store.blobs }, hub.store.shared ? 'shared store (replicas see each other\'s changes)' : 'store');
  const c = base.config;
  if (hub.registry.readOnly) logger.warn({ dataDir: o.data }, 'the data directory is read-only: serving downloads and inference; writes answer 507 STORAGE_READ_ONLY');
  else await hub.registry.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, description: `served from ${baseDir}` });
  // the demo modules were trained on the demo base: seed them when that is the base served (idempotent)
  if (demo && !hub.registry.readOnly && path.resolve(baseDir) === path.resolve(demo.base)) await seedDemo(hub.registry, demo, logger);
  engine.setResolver(hub.registry);
  const server = hub.app.listen(o.port, o.host);
  server.keepAliveTimeout = o.keepAliveMs ?? 65_000;
  // above it (Node's 60 s at least), or a request on a socket that idled nearly that long may time out at once
  server.headersTimeout = Math.max(60_000, server.keepAliveTimeout + 1000);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', () => resolve());
    server.once('error', reject);
  });
  const addr = server.address();
  const url = `http://${o.host}:${typeof addr === 'object' && addr ? addr.port : o.port}`;
  listenUrl = url;
  logger.info({ url, base: base.fingerprint, family: base.config.family, device: engine.device, runOverheadTokens: Number.isFinite(engine.runOverheadTokens) ? +engine.runOverheadTokens.toFixed(1) : 'off (batches run whole)', mixedGates: engine.mixedGates }, 'modhub listening');
  const warm = service.warmUp().then(
    () => logger.info('warm-up done: ready'),
    (e: unknown) => logger.error({ err: e }, 'warm-up failed: /readyz stays 503'),
  );
  if (o.waitForWarmUp ?? true) await warm;
  let stopping: Promise<void> | null = null;
  return {
    url,
    service,
    // Graceful: refuse new work (503), let admitted rows finish, stop accepting connections, then close.
    stop: () =>
      (stopping ??= (async () => {
        const pending = service.batching.reserved.rows;
        logger.info({ pendingRows: pending }, 'draining: refusing new requests, finishing admitted ones');
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const d = await service.drain(o.drainMs ?? 30_000);
        logger.info(d, d.finished ? 'drained' : 'drain timed out; closing with rows unfinished');
        server.closeIdleConnections?.();
        if (!d.finished) server.closeAllConnections?.();
        await closed;
        await engine.close();
        await hub.close();
        logger.info('stopped');
      })()),
  };
}

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw usage(`'--${name}' must be a non-negative integer, got '${v}'`);
    return n;
  };
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the hub and the inference server (SQLite + local blob files in --data, or PostgreSQL + S3 shared by replicas)')
    .option('--data <dir>', 'data folder (catalog.sqlite, blobs/, and base/ with --no-demo when --base is not given)', process.env.MODHUB_DATA ?? '.modhub')
    .option('--base <dir>', 'base model folder in HF layout (config.json, model.safetensors, tokenizer.json); default: the shipped demo base (demo/base), whose modules are seeded into the hub')
    .option('--no-demo', 'without --base, serve a tiny random base in <data>/base instead of the demo base, and seed nothing')
    .option('--port <n>', 'port (0 = any free port)', int('port'), Number(process.env.PORT ?? 8080))
    .option('--host <host>', 'interface to bind', '127.0.0.1')
    .option('--device <device>', "'cpu' or 'cuda' (needs onnxruntime-node's CUDA files)", 'cpu')
    .option('--threads <n>', 'onnxruntime intra-op threads (0 = all cores)', int('threads'), 0)
    .option('--diff-threads <n>', "onnxruntime intra-op threads of small sparse-diff groups' runs (one set's rows, at most 128 tokens; 0 = all cores; default: 1 on a base of hidden size <= 512, where a second thread hardly helps them and the next batch is prepared on the free core, else --threads); larger groups run on --threads", int('diff-threads'))
    .option('--batch-rows <n>', 'most rows merged into one engine run', int('batch-rows'), 32)
    .option('--batch-wait-ms <n>', 'how long a request waits for others to batch with', int('batch-wait-ms'), 5)
    .option('--batch-tokens <n>', 'most padded tokens (rows x longest) in one engine run', int('batch-tokens'), 8192)
    .option('--queue-rows <n>', 'admitted, unfinished rows before requests get 429', int('queue-rows'), 4096)
    .option('--queue-tokens <n>', 'admitted, unfinished tokens before requests get 429', int('queue-tokens'), 262144)
    .option('--timeout-ms <n>', 'deadline of a request without timeout_ms (504 past it)', int('timeout-ms'), 30000)
    .option('--keep-alive-ms <n>', 'how long an idle keep-alive connection stays open (longer than the idle timeout of a proxy or client pool in front, e.g. nginx upstream keepalive 60 s; 0 = never closed for idleness)', int('keep-alive-ms'), 65000)
    .option('--batch-by-run', "form batches by the rank-class runs their rows join (the engine runs a batch as one run per rank class and sparse-diff set), not by token length and sparse-diff set only: fewer runs, yet slower so far in bench:serve and bench:mixed on both bases (README: request batching)")
    .option('--split-compositions', 'run the rows of each composition of a batch as their own uniform group (see bench:serve)')
    .option('--module-memory-mb <n>', 'MiB of loaded modules kept in memory (least recently used modules are read again from the store past it)', int('module-memory-mb'), 2048)
    .option('--pool-memory-mb <n>', 'MiB of resident module pools for mixed batches (least recently used modules give way past it)', int('pool-memory-mb'), 1024)
    .option('--diff-memory-mb <n>', 'MiB of sparse-diff sets: their non-zeros, and θ0+δ (made in the background while it fits, or for sets that come back; least used sets give way past it)', int('diff-memory-mb'), 2048)
    .option('--max-sessions <n>', 'most graph sessions kept (each holds a copy of the base weights: ~440 MB at BERT-base)', int('max-sessions'), 8)
    .option('--run-overhead-tokens <n>', "a run's fixed cost in padded tokens: a batch runs as the length ranges that pad less than another run costs (default: measured at start on a CPU; 0 = every batch runs whole, as on CUDA)", int('run-overhead-tokens'))
    .option('--mixed-gates <mode>', "'on': mixed sessions skip the stack slots, LoRA targets and invertible adapter no row of a batch uses (ONNX If); 'off': they run every part; 'auto': on for bases wider than 512, where it pays", 'auto')
    .option('--heap-growing-percent <n>', "how far the JS heap grows past its live size before a full GC (fewer collections beside onnxruntime's threads; 0 = V8's own)", int('heap-growing-percent'), DEFAULT_HEAP_GROWING_PERCENT)
    .option('--drain-ms <n>', 'on SIGTERM, how long admitted requests may still finish', int('drain-ms'), 30000)
    .option('--no-anonymous-read', 'require a read token for downloads and inference')
    .option('--allow-unknown-bases', 'accept uploads of modules made for bases other than the served one')
    .option('--cors-origin <origins...>', "let pages on these origins call the API from a browser (the SDK); '*' = any", process.env.MODHUB_CORS_ORIGINS?.split(',').filter(Boolean))
    .option('--database-url <url>', 'PostgreSQL catalog shared by replicas, postgres://user:pass@host/db (default: env MODHUB_DATABASE_URL, else SQLite in --data)')
    .option('--blob-url <url>', 's3://bucket/prefix blob store shared by replicas (default: env MODHUB_BLOB_URL, else files in --data); S3 settings: MODHUB_S3_ENDPOINT, MODHUB_S3_REGION, MODHUB_S3_FORCE_PATH_STYLE, MODHUB_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY')
    .option('--public-url <url>', 'URL clients reach the hub at, for absolute links (default: the listen address)', process.env.MODHUB_PUBLIC_URL)
    .action(async (o: ServeOptions) => {
      if (o.device !== 'cpu' && o.device !== 'cuda') throw usage(`'--device' must be cpu or cuda, got '${o.device}'`);
      if (o.maxSessions !== undefined && o.maxSessions < 1) throw usage(`'--max-sessions' must be at least 1, got '${o.maxSessions}'`);
      if (o.mixedGates !== undefined && !['auto', 'on', 'off'].includes(o.mixedGates)) throw usage(`'--mixed-gates' must be auto, on or off, got '${o.mixedGates}'`);
      if (o.heapGrowingPercent !== undefined && o.heapGrowingPercent > 10_000) throw usage(`'--heap-growing-percent' must be at most 10000, got '${o.heapGrowingPercent}'`);
      const badOrigin = o.corsOrigin?.find((x) => x !== '*' && !/^https?:\/\/[^/\s]+$/.test(x));
      if (badOrigin) throw usage(`'--cors-origin' takes '*' or scheme://host[:port] without a path, got '${badOrigin}'`);
      if (o.publicUrl !== undefined) {
        try {
          o.publicUrl = normalizePublicUrl(o.publicUrl);
        } catch (e) {
          throw usage((e as Error).message);
        }
      }
      const { stop } = await serve({ ...o, waitForWarmUp: false });
      const shutdown = () => {
        void stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
    });
}
