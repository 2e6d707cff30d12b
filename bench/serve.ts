/**
 * S-LoRA-style serving benchmark over the REAL HTTP server on loopback: how throughput and latency change as
 * the number of distinct modules in the traffic grows (N = 1, 100, 1000), with cross-composition batching on
 * and (one row) off, against the naive design (a dedicated session per composition, LRU-cached, no batching
 * across compositions) in the same run, plus the cold-start cost of a module not yet in memory.
 *
 * Setup: a small random BERT base (4 layers, hidden 256, 4 heads; `--shape bert-base`: 12 layers, 768) in a fresh temp data dir; max(N) modules
 * published into that dir's registry before the server starts. `--kinds mixed` (default) cycles the module kinds
 * by popularity rank: seq_bn adapter, LoRA r=8 (q,v), a MAD-X stack [lang adapter (one of 10, seq_bn_inv),
 * task adapter], a sparse diff (BitFit or LT-SFT at 1% density on the encoder weights); every task module has a
 * 2-layer classification head; rank 0 (the N=1 configuration) is an adapter. `--kinds adapters` publishes only
 * seq_bn adapters (`--lora-frac F` makes a fraction of them LoRA). Every configuration gets its own `serve()` on
 * 127.0.0.1:0 (own engine, module cache and /metrics), all started up front; before timing, each touches every
 * one of its N modules once, and the sparse-diff copies that sets off are made (steady state: nothing is loaded
 * or copied during the timed phases — cold start is measured apart, see below). Measurement runs in rounds (4 by
 * default, 2 with --quick; `--requests` split among them, so 1000 / 300 requests per phase); each round runs every
 * configuration once, in a rotated order, so load from other processes hits all configurations alike. Per
 * configuration and round, two phases driven from this same process:
 *   1. open loop: Poisson arrivals at a fixed rate (the same rate for every configuration; by default 75% of the
 *      N=1 closed-loop capacity measured first, or `--rate`). Latency is counted from each request's SCHEDULED
 *      send time, so a busy event loop that sends late is charged to the server (no coordinated omission).
 *   2. closed loop: `--concurrency` clients back to back, which gives the saturated throughput (the figure
 *      S-LoRA's tables report), counted over the steady window between the opening burst and the drain.
 * Each request: one random sentence of 10-40 tokens and one module picked by Zipf popularity (alpha 1) among N.
 * Batch rows come from /metrics (`modhub_infer_batch_rows` sum/count deltas over the phase); module loads, and
 * where the server's time goes, from wrapping Engine/Registry/Session methods in this process (the server code
 * is not changed).
 * Cold start: a fresh server whose modules were never requested; K modules from the unpopular end, one request
 * at a time: first-request latency minus the latency of the same request once the module is loaded.
 * Split row: N=max with `serve --split-compositions` (each composition of a batch runs as its own uniform group).
 * Naive row: an HTTP server in this process that keeps one Engine (= its own session) per composition in an LRU
 * of `--naive-cache` compositions (default 8, the engine's own maxSessions), builds one on a miss, and runs each
 * request alone: what "one merged session per composition" costs without merging's accuracy caveats.
 *
 *   npm run bench:serve -- [--quick] [--json FILE] [--rate R] [--requests K] [--seconds S] [--ns 1,100,1000]
 *                          [--kinds mixed|adapters] [--lora-frac F] [--concurrency C] [--threads T]
 *                          [--batch-wait-ms W] [--naive-cache K] [--cold K] [--what-if] [--shape small|bert-base]
 *                          [--rounds R] [--cold-only] [--core-only] [--diff-memory-mb M] [--max-sessions K]
 *                          [--module-memory-mb M] [--pool-memory-mb M] [--heap-growing-percent P]
 *                          [--run-overhead-tokens K] [--mixed-gates auto|on|off] [--lang-reduction F] [--cold-fill F] [--batch-ab]
 *   --quick        N in {1, 100}, 300 requests per phase (a few minutes)
 *   --shape        bert-base: a random base of BERT-base's shape (12L/768H) instead of the small 4L/256H one
 *   --core-only    only the N rows and the naive one (three servers instead of five)
 *   --diff-memory-mb, --max-sessions, --module-memory-mb, --pool-memory-mb   serve's memory bounds for every server (at BERT-base five servers with the
 *                  defaults need more than this 23 GiB VM: each session holds the base's 440 MB, a materialised LT-SFT set 340 MB)
 *   --heap-growing-percent   serve's V8 heap growth (default 900; 0 = V8's own), for the whole process
 *   --run-overhead-tokens, --mixed-gates   serve's flags of those names for every server (default: serve's)
 *   --cold-fill    the cold-start server first loads F other modules (ranks 8 on): with small --module-memory-mb /
 *                  --pool-memory-mb its caches are then at their budgets, as on a server that ran a while (default 0: fresh)
 *   --json FILE    with --cold-only too: the cold-start samples, to pool several runs with bench/cold-pool.ts
 *   --lang-reduction   reduction factor of the MAD-X language adapters (default 2, the archived MAD-X adapters'; 16 before)
 *   --batch-ab     one more row: N=max with batches formed by the rank-class runs their rows join (serve
 *                  --batch-by-run), not by token length and sparse-diff set only, side by side in the same rounds
 *   --gates-ab     one more row: N=max with mixed gates the other way from every other server's (--mixed-gates, or
 *                  serve's default for the base), side by side in the same rounds
 *   --what-if      two more rows, N=1 and N=max with Registry.resolve memoised per ref in this process (the engine
 *                  memoises refs and plans per registry generation itself now; kept to show it changes little)
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { FsBlobStore, openRegistry, serializeSafetensors, Registry } from '../modules-store';
import * as engineModules from '../server/model/modules';
import { serve } from '../server/cli/serve';
import { loadBase, type Base } from '../server/model/base';
import { initModule } from '../server/model/module-init';
import { Rng } from '../server/model/random';
import { BUILTIN_CORPUS, createTinyBase } from '../server/model/tiny';
import { BaseTokenizer } from '../server/model/tokenizer';
import { Engine, type EngineStats, type RunKind, type RunTime } from '../server/runtime/engine';
import { DEFAULT_HEAP_GROWING_PERCENT, setHeapGrowingPercent } from '../server/runtime/heap-growth';
import { zipf } from './zipf';
import { makeBitfitModule, makeDiffModule, baseParamShapes, type BaseInfo } from '../test/helpers/modules';
import { BatchPools } from '../server/runtime/pools';
import { Session } from '../server/runtime/session';

// ---- options -----------------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const argOf = (k: string): string | undefined => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const numArg = (k: string, def: number): number => {
  const v = argOf(k);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`'${k}' must be a non-negative number, got '${v}'`);
  return n;
};
const JSON_OUT = argOf('--json');
const NS = (argOf('--ns') ?? (QUICK ? '1,100' : '1,100,1000')).split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`'--ns' must list positive integers, got '${s}'`);
  return n;
});
if (NS[0] !== 1) NS.unshift(1); // ratios are against N=1, measured in the same run
// Phases long enough for a steady state: a closed loop of 64 clients spends its first 64 answers on the opening
// burst (closedLoop counts after it), and 150-request phases gave ratios that moved by ±0.1 from run to run.
const REQUESTS = numArg('--requests', QUICK ? 600 : 4000);
const MAX_SECONDS = numArg('--seconds', QUICK ? 12 : 40);
const FIXED_RATE = argOf('--rate') !== undefined ? numArg('--rate', 0) : null;
const RATE_FRACTION = 0.75;
const LORA_FRAC = numArg('--lora-frac', 0);
const CONCURRENCY = numArg('--concurrency', 64);
const THREADS = numArg('--threads', 0);
const BATCH_ROWS = 32;
const BATCH_WAIT_MS = numArg('--batch-wait-ms', 5);
const WHAT_IF = argv.includes('--what-if');
const KINDS = argOf('--kinds') ?? 'mixed';
if (KINDS !== 'mixed' && KINDS !== 'adapters') throw new RangeError(`'--kinds' must be mixed or adapters, got '${KINDS}'`);
const NAIVE_CACHE = numArg('--naive-cache', 8);
/** Only the N rows and the naive one (no batching-off and split rows): fewer servers in this process's memory. */
const CORE_ONLY = argv.includes('--core-only');
/** serve's --diff-memory-mb / --max-sessions for every server of the run (five share this process's memory). */
const DIFF_MEMORY_MB = argOf('--diff-memory-mb') !== undefined ? numArg('--diff-memory-mb', 2048) : undefined;
const MAX_SESSIONS = argOf('--max-sessions') !== undefined ? numArg('--max-sessions', 8) : undefined;
/** serve's --module-memory-mb / --pool-memory-mb: at BERT-base 1000 modules need ~5.5 GB loaded and ~4.5 GB of pools. */
const MODULE_MEMORY_MB = argOf('--module-memory-mb') !== undefined ? numArg('--module-memory-mb', 2048) : undefined;
const POOL_MEMORY_MB = argOf('--pool-memory-mb') !== undefined ? numArg('--pool-memory-mb', 1024) : undefined;
/** serve's --heap-growing-percent, set for the whole process at the start (it is process-wide): 0 = V8's own growth. */
const HEAP_GROWING_PERCENT = numArg('--heap-growing-percent', DEFAULT_HEAP_GROWING_PERCENT);
/** serve's --run-overhead-tokens (0: batches run whole) and --mixed-gates for every server; serve's defaults without them. */
const RUN_OVERHEAD_TOKENS = argOf('--run-overhead-tokens') !== undefined ? numArg('--run-overhead-tokens', 0) : undefined;
const MIXED_GATES = argOf('--mixed-gates') as 'auto' | 'on' | 'off' | undefined;
if (MIXED_GATES !== undefined && !['auto', 'on', 'off'].includes(MIXED_GATES)) throw new RangeError(`'--mixed-gates' must be auto, on or off, got '${MIXED_GATES}'`);
/** One more N=max server with the mixed gates the other way round (an A/B of the setting in one run). */
const GATES_AB = argv.includes('--gates-ab');
/** One more N=max server whose batches are formed by the runs their rows join (serve --batch-by-run). */
const BATCH_AB = argv.includes('--batch-ab');
const COLD = numArg('--cold', QUICK ? 8 : 20);
/** Only the cold-start measurement (no throughput phases): what fits a BERT-base-shaped run on this machine. */
const COLD_ONLY = argv.includes('--cold-only');
/**
 * Modules (from rank 8 on, never the measured ones) the cold-start server loads once before the first requests are
 * timed: with --module-memory-mb / --pool-memory-mb below what they need, its caches are at their budgets and a
 * first request's module takes memory an evicted one freed, as on a server that has run a while over more modules
 * than it holds. 0 (default): a fresh server, whose first requests all take new memory.
 */
const COLD_FILL = numArg('--cold-fill', 0);
const LANGS = 10;
/**
 * Reduction factor of the MAD-X language adapters (default 2, as the archived MAD-X adapters: ANCHORS.md); the
 * task adapters keep seq_bn's 16. Stops before the rank classes (variants.ts rankClass) measured 16.
 */
const LANG_REDUCTION = numArg('--lang-reduction', 2);
const NOBATCH_N = NS.includes(100) ? 100 : NS[NS.length - 1];
const ZIPF_ALPHA = 1;
const ROUNDS = numArg('--rounds', QUICK ? 2 : 4);
/** Base shape: the small default, or BERT-base's (12 layers, 768 wide, 12 heads, FFN 3072; random weights). */
const SHAPE = argOf('--shape') ?? 'small';
if (SHAPE !== 'small' && SHAPE !== 'bert-base') throw new RangeError(`'--shape' must be small or bert-base, got '${SHAPE}'`);
const BASE_SHAPE = SHAPE === 'bert-base' ? { layers: 12, hidden: 768, heads: 12 } : { layers: 4, hidden: 256, heads: 4 };
const SEED = 7;

const log = (s: string) => process.stderr.write(`[bench:serve] ${s}\n`);
const nowMs = () => performance.now();

// ---- instrumentation (wraps methods in this process; the server code is untouched) ---------------------------
interface Timer {
  ms: number;
  calls: number;
}
const timers = new Map<string, Timer>();
/** The engine the last serve() created (captured through Engine.create): one reference, so none outlives its server. */
let lastEngine: Engine | undefined;
/** Whether the engine startConfig created last builds its mixed sessions gated (--gates-ab runs the other way). */
let lastMixedGates = false;
/** Engine.create as the server code has it, for the naive server's engines (not captured: it makes one per miss). */
const createEngine = Engine.create.bind(Engine);
function takeLastEngine(): Engine | undefined {
  const e = lastEngine;
  lastEngine = undefined;
  return e;
}

function timeAsync<T extends object>(proto: T, method: string, label: string): void {
  const p = proto as Record<string, unknown>;
  const orig = p[method] as (...a: unknown[]) => Promise<unknown>;
  if (typeof orig !== 'function') throw new TypeError(`bench: cannot instrument '${label}': no method '${method}'`);
  p[method] = async function (this: unknown, ...args: unknown[]) {
    const t0 = nowMs();
    try {
      return await orig.apply(this, args);
    } finally {
      const t = timers.get(label) ?? { ms: 0, calls: 0 };
      t.ms += nowMs() - t0;
      t.calls++;
      timers.set(label, t);
    }
  };
}

function timeSync<T extends object>(proto: T, method: string, label: string): void {
  const p = proto as Record<string, unknown>;
  const orig = p[method] as (...a: unknown[]) => unknown;
  if (typeof orig !== 'function') throw new TypeError(`bench: cannot instrument '${label}': no method '${method}'`);
  p[method] = function (this: unknown, ...args: unknown[]) {
    const t0 = nowMs();
    try {
      return orig.apply(this, args);
    } finally {
      const t = timers.get(label) ?? { ms: 0, calls: 0 };
      t.ms += nowMs() - t0;
      t.calls++;
      timers.set(label, t);
    }
  };
}

/**
 * What-if switch (off unless a configuration turns it on): memoise Registry.resolve per registry and ref for this
 * many ms (Infinity: until the registry changes, and nothing is published during the measurement), concurrent
 * calls for one ref sharing one lookup. Emulates an engine-side resolution cache invalidated by registry
 * changes, to measure what per-request catalog lookups cost. The server code is not changed.
 */
let resolveCacheMs = 0;
const resolveCaches = new WeakMap<Registry, Map<string, { at: number; value: Promise<unknown> }>>();

function instrument(): void {
  const resolve = Registry.prototype.resolve;
  Registry.prototype.resolve = function (this: Registry, ref: string) {
    if (resolveCacheMs <= 0) return resolve.call(this, ref);
    let cache = resolveCaches.get(this);
    if (!cache) resolveCaches.set(this, (cache = new Map()));
    const hit = cache.get(ref);
    if (hit && nowMs() - hit.at < resolveCacheMs) return hit.value as ReturnType<typeof resolve>;
    const value = resolve.call(this, ref);
    cache.set(ref, { at: nowMs(), value });
    value.catch(() => cache.delete(ref));
    return value;
  };
  (Engine as unknown as { create: typeof Engine.create }).create = async (o) => (lastEngine = await createEngine(o));
  // Wall time of async calls overlaps with other requests' work; the sync ones are main-thread time.
  timeAsync(Registry.prototype, 'resolve', 'registry.resolve (async, catalog lookups)');
  timeAsync(Engine.prototype, 'plan', 'engine.plan (async: resolve + load on miss)');
  timeAsync(BaseTokenizer.prototype, 'encodeBatch', 'tokenizer.encodeBatch (async)');
  timeSync(BatchPools.prototype, 'acquire', 'engine.pools.acquire (sync, main thread)');
  timeSync(Engine.prototype, 'variantFor', 'engine.variantFor (sync, main thread)');
  timeAsync(Session.prototype, 'run', 'session.run (onnxruntime)');
  timeAsync(Engine.prototype, 'forward', 'engine.forward (pools + run)');
  timeAsync(FsBlobStore.prototype, 'read', 'blobs.read (async, module loads)');
  // module-cache.ts calls it as (0, modules_1.loadEngineModule)(...), so replacing the export is seen there.
  timeSync(engineModules, 'loadEngineModule', 'loadEngineModule (sync, module loads)');
}

function snapshotTimers(): Map<string, Timer> {
  return new Map([...timers].map(([k, v]) => [k, { ...v }]));
}

function diffTimers(a: Map<string, Timer>, b: Map<string, Timer>): Record<string, Timer> {
  const out: Record<string, Timer> = {};
  for (const [k, v] of b) {
    const o = a.get(k) ?? { ms: 0, calls: 0 };
    out[k] = { ms: v.ms - o.ms, calls: v.calls - o.calls };
  }
  return out;
}

// ---- HTTP client -------------------------------------------------------------------------------------------
const newAgent = () => new http.Agent({ keepAlive: true, maxSockets: 1024 });
let agent = newAgent();
/**
 * Fresh connections for each phase: a server idles while the other configurations run, its keep-alive timeout
 * (5 s) closes the sockets, and reusing one that is being closed fails with 'socket hang up'.
 */
function resetAgent(): void {
  agent.destroy();
  agent = newAgent();
}

function request(url: string, method: 'GET' | 'POST', body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname, method, agent, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

async function batchRowsMetric(url: string): Promise<{ sum: number; count: number }> {
  const r = await request(`${url}/metrics`, 'GET');
  const grab = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(r.text);
    return m ? Number(m[1]) : 0;
  };
  return { sum: grab('modhub_infer_batch_rows_sum'), count: grab('modhub_infer_batch_rows_count') };
}

// ---- workload ----------------------------------------------------------------------------------------------
const moduleId = (i: number) => `bench/m${String(i).padStart(4, '0')}`;
const langId = (k: number) => `bench/lang${k}`;
/** Kind of the module at popularity rank i (`--kinds mixed`): adapter, LoRA, MAD-X stack, sparse diff, in turn. */
const kindOf = (i: number): 'adapter' | 'lora' | 'stack' | 'diff' => (KINDS === 'adapters' ? 'adapter' : (['adapter', 'lora', 'stack', 'diff'] as const)[i % 4]);
/** Sparse diffs alternate between BitFit (bias-only, rides in the batch's run) and LT-SFT (a run of its own). */
const isBitfit = (i: number) => i % 8 === 3;
/** Kind of module i as the cold-start table reports it (the two diff kinds apart: a BitFit row rides in the batch's run, an LT-SFT set is a group of its own). */
const coldKindOf = (i: number): string => (kindOf(i) === 'diff' ? (isBitfit(i) ? 'bitfit' : 'lt-sft') : kindOf(i));
/** The composition a request for module i sends. */
const compositionOf = (i: number): unknown => (kindOf(i) === 'stack' ? { stack: [langId(i % LANGS), moduleId(i)] } : moduleId(i));

/** Random sentences of 10-40 tokens (without [CLS]/[SEP]) from the words of the base's vocabulary corpus. */
async function makeSentences(base: Base, count: number, rng: Rng): Promise<{ texts: string[]; meanTokens: number }> {
  const words = [...new Set(BUILTIN_CORPUS.join(' ').split(/\s+/).filter((w) => w.length > 0))];
  const enc = await base.tokenizer.encodeBatch(words);
  const specials = base.tokenizer.numSpecialTokens(false);
  const cost = words.map((_, i) => enc.lengths[i] - specials);
  const texts: string[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const target = 10 + rng.int(31);
    const picked: string[] = [];
    let n = 0;
    while (n < target) {
      const w = rng.int(words.length);
      if (n + cost[w] > 40) continue;
      picked.push(words[w]);
      n += cost[w];
    }
    texts.push(picked.join(' '));
    total += n;
  }
  // Check the estimate once against the real tokenizer.
  const check = await base.tokenizer.encodeBatch(texts);
  const real = check.lengths.map((l) => l - specials);
  const bad = real.filter((l) => l < 10 || l > 40).length;
  if (bad) log(`note: ${bad}/${count} sentences fall outside 10-40 tokens after joining`);
  return { texts, meanTokens: real.reduce((a, b) => a + b, 0) / real.length || total / count };
}

interface Workload {
  texts: string[];
  /** Pre-serialised request bodies, [moduleIndex][textIndex] is built on demand. */
  body: (module: number, text: number) => string;
}

function workload(texts: string[]): Workload {
  return {
    texts,
    body: (m, t) => JSON.stringify({ inputs: [{ text: texts[t] }], composition: compositionOf(m) }),
  };
}

// ---- measurement -------------------------------------------------------------------------------------------
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** One kind's share of a phase's requests, its latency quantiles, and its share of the phase's slowest 1%. */
interface KindLatency {
  kind: string;
  share: number;
  p50: number;
  p90: number;
  p99: number;
  slowestShare: number;
}

/** Which kinds of module the latencies (and the slowest 1% of them) came from: where an open loop's p99 comes from. */
function latencyByKind(latencies: number[], kinds: string[]): KindLatency[] {
  if (kinds.length !== latencies.length || !kinds.length) return [];
  const order = latencies.map((_, i) => i).sort((a, b) => latencies[b] - latencies[a]);
  const slowest = order.slice(0, Math.max(1, Math.ceil(latencies.length / 100)));
  return [...new Set(kinds)].sort().map((kind) => {
    const own = latencies.filter((_, i) => kinds[i] === kind).sort((a, b) => a - b);
    return { kind, share: own.length / latencies.length, p50: quantile(own, 0.5), p90: quantile(own, 0.9), p99: quantile(own, 0.99), slowestShare: slowest.filter((i) => kinds[i] === kind).length / slowest.length };
  });
}

/**
 * The session worker's time over one loop's timed phases of a configuration, by kind of run (Engine stats.runTimes):
 * runs, their rows and tokens, and the ms a request those runs took (feeds set up, sparse overwrites included, and
 * onnxruntime's run), with each kind's share; then the overwrites undone after their runs. Nothing for a server
 * without the stats (the naive one).
 */
function workerTimeRows(name: string, loop: string, p: PhaseResult): string[][] {
  const d = (Object.entries(p.runTimes) as [RunKind, RunTime][]).filter(([, x]) => x.runs > 0);
  if (!d.length) return [];
  const total = d.reduce((a, [, x]) => a + x.feedsMs + x.runMs, 0) + p.undoMs;
  const perReq = (ms: number) => f(ms / Math.max(1, p.requests), 2);
  const rows = d.map(([kind, x]) => [name, loop, kind, String(x.runs), f(x.rows / x.runs, 1), f(x.tokens / x.runs, 0), f(x.feedsMs / x.runs, 2), f(x.runMs / x.runs, 2), perReq(x.feedsMs + x.runMs), f((100 * (x.feedsMs + x.runMs)) / Math.max(1e-9, total), 0)]);
  if (p.undoMs > 0) rows.push([name, loop, 'overwrites undone', '', '', '', '', '', perReq(p.undoMs), f((100 * p.undoMs) / total, 0)]);
  rows.push([name, loop, 'all', String(d.reduce((a, [, x]) => a + x.runs, 0)), '', '', '', '', perReq(total), '100']);
  return rows;
}

/**
 * What sparse-diff runs (a diff set's rows run on their own: LT-SFT here) cost a configuration's loop beyond what the
 * same rows would cost at N=1's worker ms a row, and the ratio of worker time a request that excess alone leaves
 * against N=1 (a ceiling on the closed loop when the worker is the bottleneck), next to the ratio with everything.
 */
function diffRunExcess(ref: PhaseResult, name: string, loop: string, p: PhaseResult): string | undefined {
  // worker ms (the overwrites undone counted with the runs) and rows of a phase's runs whose kind passes `keep`
  const sum = (x: PhaseResult, keep: (k: RunKind) => boolean) =>
    (Object.entries(x.runTimes) as [RunKind, RunTime][]).filter(([k]) => keep(k)).reduce((a, [, t]) => ({ ms: a.ms + t.feedsMs + t.runMs, rows: a.rows + t.rows }), { ms: x.undoMs, rows: 0 });
  const r = sum(ref, () => true);
  const q = sum(p, () => true);
  const diff = sum(p, (k) => k.startsWith('sparse-diff'));
  if (!diff.rows || !r.rows || !ref.requests || !p.requests) return undefined;
  const refPerReq = r.ms / ref.requests;
  const excessPerReq = (diff.ms - diff.rows * (r.ms / r.rows)) / p.requests;
  return (
    `  ${name}, ${loop} loop: sparse-diff rows ${f((100 * diff.rows) / q.rows, 1)}% of rows, ${f(diff.ms / diff.rows, 1)} ms of worker time a row against N=1's ${f(r.ms / r.rows, 1)}; ` +
    `worker time a request vs N=1: ${f(refPerReq / (q.ms / p.requests), 3)}× with everything, ${f(refPerReq / (refPerReq + excessPerReq), 3)}× from those rows' excess alone, ` +
    `${f(refPerReq / (q.ms / p.requests - excessPerReq), 3)}× without it`
  );
}

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

interface DriveResult {
  latencies: number[];
  /** The kind of module each latency's request asked for (coldKindOf), in the same order; open loop only. */
  kinds?: string[];
  ok: number;
  errors: number;
  errorSample?: string;
  seconds: number;
  modules: Set<number>;
  /** Throughput's numerator and denominator: answers and seconds of the steady window (closedLoop), or the whole phase. */
  counted?: number;
  countedSeconds?: number;
}

/** One phase of one configuration, accumulated over rounds. */
class Phase {
  latencies: number[] = [];
  /** coldKindOf of each latency's module, where the driver reports it (open loop). */
  latencyKinds: string[] = [];
  ok = 0;
  errors = 0;
  errorSample?: string;
  seconds = 0;
  counted = 0;
  countedSeconds = 0;
  batchRowsSum = 0;
  batches = 0;
  moduleLoads = 0;
  modules = new Set<number>();
  cpuMs = 0;
  busyMs = 0;
  timers: Record<string, Timer> = {};
  /** Throughput of each measurement (one per round): rounds run every configuration side by side. */
  rounds: number[] = [];
  /** The engine's runs over this phase's measurements, by kind (Engine stats.runTimes), and its overwrites undone. */
  runTimes: EngineStats['runTimes'] = {};
  undoMs = 0;

  async measure(url: string, loads: () => number, drive: () => Promise<DriveResult>, engineStats?: () => EngineCounters): Promise<void> {
    const stats0 = engineStats && structuredClone(engineStats());
    resetAgent();
    const m0 = await batchRowsMetric(url);
    const loads0 = loads();
    const t0 = snapshotTimers();
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const r = await drive();
    const elu = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const td = diffTimers(t0, snapshotTimers());
    const m1 = await batchRowsMetric(url);
    this.latencies.push(...r.latencies);
    if (r.kinds) this.latencyKinds.push(...r.kinds);
    this.ok += r.ok;
    this.errors += r.errors;
    this.errorSample ??= r.errorSample;
    this.seconds += r.seconds;
    this.counted += r.counted ?? r.ok;
    this.countedSeconds += r.countedSeconds ?? r.seconds;
    this.rounds.push((r.counted ?? r.ok) / Math.max(1e-9, r.countedSeconds ?? r.seconds));
    if (engineStats && stats0?.runTimes) {
      const s = engineStats();
      const fields = ['runs', 'rows', 'tokens', 'feedsMs', 'runMs'] as const;
      for (const [k, a] of Object.entries(s.runTimes ?? {}) as [RunKind, RunTime][]) {
        const b = stats0.runTimes[k];
        const o = (this.runTimes[k] ??= { runs: 0, rows: 0, tokens: 0, feedsMs: 0, runMs: 0 });
        for (const f of fields) o[f] += a[f] - (b?.[f] ?? 0);
      }
      this.undoMs += (s.overwriteUndoMs ?? 0) - (stats0.overwriteUndoMs ?? 0);
    }
    this.batchRowsSum += m1.sum - m0.sum;
    this.batches += m1.count - m0.count;
    this.moduleLoads += loads() - loads0;
    for (const m of r.modules) this.modules.add(m);
    this.cpuMs += (cpu.user + cpu.system) / 1000;
    this.busyMs += elu.active;
    for (const [k, v] of Object.entries(td)) {
      const o = (this.timers[k] ??= { ms: 0, calls: 0 });
      o.ms += v.ms;
      o.calls += v.calls;
    }
  }

  result(): PhaseResult {
    const lat = [...this.latencies].sort((a, b) => a - b);
    const requests = this.ok + this.errors;
    return {
      requests,
      ok: this.ok,
      errors: this.errors,
      errorSample: this.errorSample,
      seconds: this.seconds,
      throughput: this.counted / this.countedSeconds,
      p50: quantile(lat, 0.5),
      p90: quantile(lat, 0.9),
      p99: quantile(lat, 0.99),
      latencies: lat,
      byKind: latencyByKind(this.latencies, this.latencyKinds),
      batchRowsMean: this.batches > 0 ? this.batchRowsSum / this.batches : NaN,
      batches: this.batches,
      moduleLoads: this.moduleLoads,
      distinctModules: this.modules.size,
      cpuMsPerRequest: this.cpuMs / Math.max(1, requests),
      eventLoopUtilization: this.busyMs / Math.max(1, this.seconds * 1000),
      timers: this.timers,
      rounds: this.rounds,
      runTimes: this.runTimes,
      undoMs: this.undoMs,
    };
  }
}

interface PhaseResult {
  /** Throughput of each round's measurement. */
  rounds: number[];
  requests: number;
  ok: number;
  errors: number;
  errorSample?: string;
  seconds: number;
  throughput: number;
  p50: number;
  p90: number;
  p99: number;
  latencies: number[];
  /** Latency per kind of module asked for (open loop); empty where the driver does not report kinds. */
  byKind: KindLatency[];
  batchRowsMean: number;
  batches: number;
  /** Modules read from the blob store and loaded during the phase. */
  moduleLoads: number;
  distinctModules: number;
  /** CPU time of this whole process (server + load generator) per request. */
  cpuMsPerRequest: number;
  /** Share of the phase the event loop (the one JS thread of server and client) was busy. */
  eventLoopUtilization: number;
  timers: Record<string, Timer>;
  runTimes: Phase['runTimes'];
  undoMs: number;
}

/** Open loop: Poisson arrivals at `rate`; latency from each request's scheduled time. */
function openLoop(url: string, w: Workload, n: number, rate: number, count: number, maxSeconds: number, seed: number) {
  return async (): Promise<DriveResult> => {
    const rng = new Rng(seed);
    const pick = zipf(n, ZIPF_ALPHA, rng);
    // The schedule is drawn up front: arrival offsets (ms), module and text of every request.
    const plan: { at: number; module: number; text: number }[] = [];
    let t = 0;
    while (plan.length < count) {
      t += (-Math.log(1 - rng.next()) / rate) * 1000;
      if (t > maxSeconds * 1000) break;
      plan.push({ at: t, module: pick(), text: rng.int(w.texts.length) });
    }
    const latencies: number[] = [];
    const kinds: string[] = [];
    const modules = new Set<number>();
    let ok = 0;
    let errors = 0;
    let errorSample: string | undefined;
    let lastDone = 0;
    const start = nowMs();
    const inflight: Promise<void>[] = [];
    let next = 0;
    await new Promise<void>((resolveAll) => {
      const tick = () => {
        const elapsed = nowMs() - start;
        while (next < plan.length && plan[next].at <= elapsed) {
          const p = plan[next++];
          modules.add(p.module);
          const scheduled = start + p.at;
          inflight.push(
            request(`${url}/v1/infer`, 'POST', w.body(p.module, p.text)).then(
              (res) => {
                const done = nowMs();
                lastDone = Math.max(lastDone, done);
                if (res.status === 200) {
                  ok++;
                  latencies.push(done - scheduled);
                  kinds.push(coldKindOf(p.module));
                } else {
                  errors++;
                  errorSample ??= `${res.status} ${res.text.slice(0, 200)}`;
                }
              },
              (e: Error) => {
                errors++;
                errorSample ??= e.message;
              },
            ),
          );
        }
        if (next < plan.length) setTimeout(tick, Math.max(0, plan[next].at - (nowMs() - start)));
        else resolveAll();
      };
      tick();
    });
    await Promise.all(inflight);
    return { latencies, kinds, ok, errors, errorSample, seconds: (lastDone - start) / 1000, modules };
  };
}

/**
 * Closed loop: `clients` concurrent senders, each sends its next request when the previous one answers. Throughput
 * is counted over the steady window: from the moment every client has had an answer (the first `clients` answers
 * came back: the opening burst is over) until the last request was sent (after it fewer than `clients` requests are
 * outstanding while the phase drains). A phase too short for a window of at least `clients` answers counts from the
 * first send to the last answer instead.
 */
function closedLoop(url: string, w: Workload, n: number, clients: number, count: number, maxSeconds: number, seed: number) {
  return async (): Promise<DriveResult> => {
    const rng = new Rng(seed);
    const pick = zipf(n, ZIPF_ALPHA, rng);
    const latencies: number[] = [];
    const modules = new Set<number>();
    let ok = 0;
    let errors = 0;
    let errorSample: string | undefined;
    let sent = 0;
    let lastSend = 0;
    const answered: number[] = [];
    const start = nowMs();
    const deadline = start + maxSeconds * 1000;
    const client = async () => {
      while (sent < count && nowMs() < deadline) {
        sent++;
        lastSend = nowMs();
        const m = pick();
        modules.add(m);
        const t0 = nowMs();
        try {
          const res = await request(`${url}/v1/infer`, 'POST', w.body(m, rng.int(w.texts.length)));
          if (res.status === 200) {
            ok++;
            latencies.push(nowMs() - t0);
            answered.push(nowMs());
          } else {
            errors++;
            errorSample ??= `${res.status} ${res.text.slice(0, 200)}`;
          }
        } catch (e) {
          errors++;
          errorSample ??= (e as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    const from = answered[clients - 1];
    const inWindow = from === undefined ? 0 : answered.filter((t) => t > from && t <= lastSend).length;
    const seconds = (nowMs() - start) / 1000;
    const steady = inWindow >= clients ? { counted: inWindow, countedSeconds: (lastSend - from) / 1000 } : { counted: ok, countedSeconds: seconds };
    return { latencies, ok, errors, errorSample, seconds, modules, ...steady };
  };
}

// ---- setup -------------------------------------------------------------------------------------------------
async function publishModules(dataDir: string, base: Base, count: number, loraFrac: number): Promise<{ seconds: number; bytes: number; lora: number }> {
  const t0 = nowMs();
  const reg = await openRegistry({ dataDir });
  const c = base.config;
  await reg.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, description: 'bench:serve base' });
  let bytes = 0;
  let lora = 0;
  const labels = ['negative', 'neutral', 'positive'];
  // LoRA modules are spread evenly over popularity ranks (every k-th), never rank 0.
  const loraEvery = loraFrac > 0 ? Math.max(2, Math.round(1 / loraFrac)) : 0;
  const info: BaseInfo = { family: c.family, fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
  // LT-SFT-style sparse diffs touch the encoder's weight matrices (not the embeddings).
  const sftTargets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  try {
    if (KINDS === 'mixed') {
      for (let k = 0; k < Math.min(LANGS, count); k++) {
        const m = initModule(base, { kind: 'bottleneck', id: langId(k), version: '1.0.0', config: { preset: 'seq_bn_inv', reduction_factor: LANG_REDUCTION }, seed: 900 + k });
        await reg.publish({ files: new Map([['module.json', Buffer.from(JSON.stringify(m.manifest))], ['weights.safetensors', serializeSafetensors(m.tensors)]]) });
      }
    }
    const one = async (i: number) => {
      const kind = kindOf(i);
      const isLora = kind === 'lora' || (loraEvery > 0 && i % loraEvery === loraEvery - 1);
      const head = { type: 'classification' as const, num_labels: 3, labels };
      const m =
        kind === 'diff'
          ? isBitfit(i)
            ? makeBitfitModule({ id: moduleId(i), base: info, head, seed: 1000 + i, scale: 0.02 })
            : makeDiffModule({ id: moduleId(i), base: info, targets: sftTargets, density: 0.01, method: 'lt-sft', head, seed: 1000 + i, scale: 0.02 })
          : isLora
            ? initModule(base, { kind: 'lora', id: moduleId(i), version: '1.0.0', config: { r: 8, lora_alpha: 16, target_modules: ['query', 'value'] }, head: { type: 'classification', labels }, seed: 1000 + i })
            : initModule(base, { kind: 'bottleneck', id: moduleId(i), version: '1.0.0', config: { preset: 'seq_bn', reduction_factor: 16 }, head: { type: 'classification', labels }, seed: 1000 + i });
      if (isLora) {
        lora++;
        // PEFT initialises B = 0 (the module starts as the base); give it values so the run is not degenerate.
        const rng = new Rng(5000 + i);
        for (const [name, t] of m.tensors) if (name.endsWith('.lora_B')) rng.fillNormal(t.data as Float32Array, 0.02);
      }
      const files = new Map<string, Buffer>([
        ['module.json', Buffer.from(JSON.stringify(m.manifest, null, 2))],
        ['weights.safetensors', serializeSafetensors(m.tensors)],
      ]);
      for (const b of files.values()) bytes += b.length;
      await reg.publish({ files });
    };
    // A few publishes in flight: blob writes (fsync) overlap; the catalog serialises its own transactions.
    let next = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < count) {
          await one(next++);
          if (++done % 250 === 0) log(`published ${done}/${count} modules`);
        }
      }),
    );
  } finally {
    await reg.close();
  }
  return { seconds: (nowMs() - t0) / 1000, bytes, lora };
}

interface ConfigResult {
  name: string;
  n: number;
  batchRows: number;
  open: PhaseResult;
  closed: PhaseResult;
  startSeconds: number;
}

/** The engine counters a configuration reports (the naive server's, fewer). */
interface EngineCounters {
  sessionsBuilt: number;
  runs: number;
  diffCopies?: number;
  diffSetsBuilt?: number;
  runTimes?: EngineStats['runTimes'];
  overwriteUndoMs?: number;
}

interface Config {
  name: string;
  n: number;
  batchRows: number;
  resolveCacheMs: number;
  url: string;
  /** Modules loaded so far by this configuration's server. */
  loads: () => number;
  /** Engine counters (sessions built, onnxruntime runs) for the log line after the timed phases. */
  engineStats: () => EngineCounters;
  stop: () => Promise<void>;
  startSeconds: number;
  open: Phase;
  closed: Phase;
}

/**
 * Starts a server for one configuration and warms it up (graph variants for single rows and mixed batches); with
 * `touchAll` every one of its N modules gets one request before timing, least popular first (steady state).
 */
async function startConfig(name: string, n: number, batchRows: number, resolveCacheMsOf: number, ctx: { dataDir: string; baseDir: string; w: Workload }, touchAll = true, splitCompositions = false, mixedGates = MIXED_GATES, batchByRun = false): Promise<Config> {
  const t0 = nowMs();
  lastEngine = undefined;
  const srv = await serve({ data: ctx.dataDir, base: ctx.baseDir, port: 0, host: '127.0.0.1', device: 'cpu', threads: THREADS, batchRows, batchWaitMs: BATCH_WAIT_MS, anonymousRead: true, splitCompositions, diffMemoryMb: DIFF_MEMORY_MB, maxSessions: MAX_SESSIONS, moduleMemoryMb: MODULE_MEMORY_MB, poolMemoryMb: POOL_MEMORY_MB, heapGrowingPercent: HEAP_GROWING_PERCENT, runOverheadTokens: RUN_OVERHEAD_TOKENS, mixedGates, batchByRun });
  const engine = takeLastEngine();
  if (!engine) throw new Error('bench: serve() did not create an Engine through Engine.create');
  lastMixedGates = engine.mixedGates;
  const c: Config = { name, n, batchRows, resolveCacheMs: resolveCacheMsOf, url: srv.url, loads: () => engine.stats.moduleLoads, engineStats: () => engine.stats, stop: srv.stop, startSeconds: (nowMs() - t0) / 1000, open: new Phase(), closed: new Phase() };
  await withConfig(c, async () => {
    const warm = Math.min(n, 4);
    for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 40 }, (_, j) => request(`${c.url}/v1/infer`, 'POST', ctx.w.body(j % warm, j))));
    for (let i = 0; i < 5; i++) await request(`${c.url}/v1/infer`, 'POST', ctx.w.body(0, i));
    if (touchAll) {
      const t1 = nowMs();
      // least popular first: the caches' least-recently-used order then starts as the traffic's popularity order, as
      // a server that has served this traffic a while would have it. In rank order, every cache smaller than the
      // traffic's modules (BERT-base's 1000 MB of sparse-diff sets hold ~98 of 125) began the timed phases holding the
      // least popular and rebuilt the popular ones while timed (42 LT-SFT sets in one three-round run).
      let next = n - 1;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next >= 0) {
            const i = next--;
            const r = await request(`${c.url}/v1/infer`, 'POST', ctx.w.body(i, i % ctx.w.texts.length));
            if (r.status !== 200) throw new Error(`bench: touching module ${i} of ${name}: ${r.status} ${r.text.slice(0, 200)}`);
          }
        }),
      );
      log(`${name}: touched all ${n} modules in ${((nowMs() - t1) / 1000).toFixed(1)} s (${engine.stats.moduleLoads} loaded)`);
      // and what they set off: the sparse-diff copies the worker makes between runs (in this process they would
      // otherwise take the gaps of other configurations' timed phases)
      const t2 = nowMs();
      await engine.copiesMade();
      log(`${name}: ${engine.stats.diffCopies} sparse-diff copies made in ${((nowMs() - t2) / 1000).toFixed(1)} s after that`);
    }
  });
  return c;
}

/**
 * The naive design as an HTTP server in this process: one Engine (its own session, module tensors in it) per
 * composition, at most `cache` of them (LRU; a miss builds one, the evicted one is closed), each request run
 * alone in arrival order; more than 64 waiting requests are refused (429) so the open loop cannot pile up.
 */
async function startNaive(name: string, n: number, cache: number, ctx: { dataDir: string; baseDir: string; w: Workload }): Promise<Config> {
  const t0 = nowMs();
  const base = await loadBase(ctx.baseDir);
  const reg = await openRegistry({ dataDir: ctx.dataDir });
  const lru = new Map<string, Promise<Engine>>();
  let loads = 0;
  let batches = 0;
  let waiting = 0;
  let chain: Promise<unknown> = Promise.resolve();
  const engineFor = async (key: string): Promise<Engine> => {
    const hit = lru.get(key);
    if (hit) {
      lru.delete(key);
      lru.set(key, hit);
      return hit;
    }
    // Requests run one at a time here, so the least recently used engine is idle: free it before building the
    // next (at BERT-base each holds ~1 GB; closing it in the background let a run outgrow the machine).
    if (lru.size >= cache) {
      const [oldKey, old] = lru.entries().next().value as [string, Promise<Engine>];
      lru.delete(oldKey);
      await (await old).close();
    }
    const made = createEngine({ base, resolver: reg, threads: THREADS, maxSessions: 2 });
    lru.set(key, made);
    return made;
  };
  const handle = async (body: string): Promise<string> => {
    const req = JSON.parse(body) as { inputs: { text: string }[]; composition: unknown };
    const key = JSON.stringify(req.composition);
    const e = await engineFor(key);
    const before = e.stats.moduleLoads;
    const plans = await e.plan(req.composition);
    const enc = await base.tokenizer.encodeBatch(req.inputs.map((i) => i.text));
    const out = await e.forward(enc, req.inputs.map(() => plans[0]));
    loads += e.stats.moduleLoads - before;
    batches++;
    return JSON.stringify({ results: out.map((o) => ({ label: o.clsLogits ? Array.from(o.clsLogits).indexOf(Math.max(...o.clsLogits)) : null })) });
  };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      res.end(`modhub_infer_batch_rows_sum ${batches}\nmodhub_infer_batch_rows_count ${batches}\n`);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (waiting >= 64) {
        res.writeHead(429, { 'retry-after': '1' }).end('{"error":{"code":"QUEUE_FULL"}}');
        return;
      }
      waiting++;
      const run = chain.then(() => handle(Buffer.concat(chunks).toString('utf8')));
      chain = run.catch(() => undefined);
      run.then(
        (text) => res.writeHead(200, { 'content-type': 'application/json' }).end(text),
        (err: Error) => res.writeHead(500).end(JSON.stringify({ error: { message: err.message } })),
      ).finally(() => waiting--);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const stop = async () => {
    await new Promise<void>((r) => server.close(() => r()));
    for (const e of lru.values()) await (await e).close();
    await reg.close();
  };
  // Warm-up as for the others: the most popular compositions only (it cannot hold N of them anyway).
  for (let i = 0; i < 5; i++) await request(`${url}/v1/infer`, 'POST', ctx.w.body(i % Math.min(n, cache), i));
  return { name, n, batchRows: 1, resolveCacheMs: 0, url, loads: () => loads, engineStats: () => ({ sessionsBuilt: 0, runs: batches }), stop, startSeconds: (nowMs() - t0) / 1000, open: new Phase(), closed: new Phase() };
}

/** First-request cost of modules not in memory: fresh server, `k` never-requested modules, one request at a time. */
interface ColdSample {
  kind: string;
  coldMs: number;
  warmMs: number;
  /**
   * Minor page faults of the whole process (both threads) during the first request, and the median over the three
   * loaded ones: memory it touched for the first time, 3–4 µs a page on the VM we measure on, more when both
   * threads fault at once. A steadier measure of a change than first-request times, which move by ±50% run to run.
   */
  coldFaults: number;
  warmFaults: number;
  /** Instrumented stages (see instrument()) of the first request, and their mean over the three loaded ones. */
  coldStages: Record<string, Timer>;
  warmStages: Record<string, Timer>;
}

async function coldStart(n: number, k: number, ctx: { dataDir: string; baseDir: string; w: Workload }): Promise<ColdSample[]> {
  const srv = await serve({ data: ctx.dataDir, base: ctx.baseDir, port: 0, host: '127.0.0.1', device: 'cpu', threads: THREADS, batchRows: BATCH_ROWS, batchWaitMs: BATCH_WAIT_MS, anonymousRead: true, diffMemoryMb: DIFF_MEMORY_MB, maxSessions: MAX_SESSIONS, moduleMemoryMb: MODULE_MEMORY_MB, poolMemoryMb: POOL_MEMORY_MB, heapGrowingPercent: HEAP_GROWING_PERCENT, runOverheadTokens: RUN_OVERHEAD_TOKENS, mixedGates: MIXED_GATES });
  takeLastEngine();
  const out: ColdSample[] = [];
  try {
    resetAgent();
    // Warm the graph variants of every kind with the most popular modules: ranks 0-3 cover the four kinds, rank 3's
    // diff is BitFit (it rides in the batch's run), rank 7's LT-SFT (its group runs on the weights-as-inputs session).
    const warmRanks = [0, 1, 2, 3, 7].filter((i) => i < n);
    for (let r = 0; r < 3; r++) for (const i of warmRanks) await request(`${srv.url}/v1/infer`, 'POST', ctx.w.body(i, r));
    for (let i = 8; i < Math.min(8 + COLD_FILL, n - k); i++) {
      const r = await request(`${srv.url}/v1/infer`, 'POST', ctx.w.body(i, 0));
      if (r.status !== 200) throw new Error(`bench: fill request for module ${i}: ${r.status} ${r.text.slice(0, 200)}`);
    }
    for (let j = 0; j < k; j++) {
      const i = n - 1 - j; // the unpopular end: never requested before
      const faults: number[] = [];
      const time = async () => {
        const f0 = process.resourceUsage().minorPageFault;
        const t0 = nowMs();
        const r = await request(`${srv.url}/v1/infer`, 'POST', ctx.w.body(i, 0));
        if (r.status !== 200) throw new Error(`bench: cold request for module ${i}: ${r.status} ${r.text.slice(0, 200)}`);
        const ms = nowMs() - t0;
        faults.push(process.resourceUsage().minorPageFault - f0);
        return ms;
      };
      const t0 = snapshotTimers();
      const coldMs = await time();
      const t1 = snapshotTimers();
      const warm = [await time(), await time(), await time()].sort((a, b) => a - b);
      const warmStages = diffTimers(t1, snapshotTimers());
      for (const t of Object.values(warmStages)) (t.ms /= 3), (t.calls /= 3);
      const warmFaults = faults.slice(1).sort((a, b) => a - b)[1];
      out.push({ kind: coldKindOf(i), coldMs, warmMs: warm[1], coldFaults: faults[0], warmFaults, coldStages: diffTimers(t0, t1), warmStages });
    }
  } finally {
    await srv.stop();
  }
  return out;
}

/** Runs `fn` with the what-if switch of configuration `c`. */
async function withConfig<T>(c: Config, fn: () => Promise<T>): Promise<T> {
  resolveCacheMs = c.resolveCacheMs;
  try {
    return await fn();
  } finally {
    resolveCacheMs = 0;
  }
}

function configResult(c: Config): ConfigResult {
  return { name: c.name, n: c.n, batchRows: c.batchRows, open: c.open.result(), closed: c.closed.result(), startSeconds: c.startSeconds };
}

// ---- report ------------------------------------------------------------------------------------------------
/** The cold-start table, per kind and over all. */
function coldTable(cold: ColdSample[]): string[] {
  const byKind = [...new Set(cold.map((x) => x.kind))];
  const stages = [...new Set(cold.flatMap((x) => Object.keys(x.coldStages)))].filter((st) => cold.some((x) => x.coldStages[st].calls > 0));
  const stageMs = (x: ColdSample, st: string, which: 'coldStages' | 'warmStages') => x[which][st]?.ms ?? 0;
  return [
    `Cold start (${COLD_FILL ? `server that first loaded ${COLD_FILL} other modules, module memory ${MODULE_MEMORY_MB ?? 2048} MB, pools ${POOL_MEMORY_MB ?? 1024} MB` : 'fresh server'}, ${COLD} modules never requested before, one request at a time; extra = first request − same request once loaded)`,
    table(
      ['kind', 'modules', 'first ms (median)', 'loaded ms (median)', 'extra ms (median)', 'extra ms (max)', 'page faults first / loaded (median)'],
      [...byKind, 'all'].map((k) => {
        const xs = cold.filter((x) => k === 'all' || x.kind === k);
        return [k, String(xs.length), f(median(xs.map((x) => x.coldMs))), f(median(xs.map((x) => x.warmMs))), f(median(xs.map((x) => x.coldMs - x.warmMs))), f(Math.max(...xs.map((x) => x.coldMs - x.warmMs))), `${median(xs.map((x) => x.coldFaults))} / ${median(xs.map((x) => x.warmFaults))}`];
      }),
    ),
    '',
    'Where a first request goes (instrumented stages, median ms per request; async stages overlap one another)',
    table(
      ['stage', ...byKind.flatMap((k) => [`${k} first`, `${k} loaded`])],
      stages.map((st) => [st, ...byKind.flatMap((k) => {
        const xs = cold.filter((x) => x.kind === k);
        return [f(median(xs.map((x) => stageMs(x, st, 'coldStages')))), f(median(xs.map((x) => stageMs(x, st, 'warmStages'))))];
      })]),
    ),
  ];
}

function pad(s: string, w: number, left = false): string {
  return left ? s.padEnd(w) : s.padStart(w);
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i], i === 0)).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function main(): Promise<void> {
  const began = nowMs();
  instrument();
  setHeapGrowingPercent(HEAP_GROWING_PERCENT); // every server of the run, the naive one too
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-serve-'));
  const baseDir = path.join(root, 'base');
  const dataDir = path.join(root, 'data');
  try {
    log(`base: bert ${BASE_SHAPE.layers}L/${BASE_SHAPE.hidden}H/${BASE_SHAPE.heads} heads in ${root}`);
    await createTinyBase({ out: baseDir, family: 'bert', ...BASE_SHAPE, seed: 0 });
    const base = await loadBase(baseDir);
    const maxN = Math.max(...NS);
    const pub = await publishModules(dataDir, base, maxN, LORA_FRAC);
    log(`published ${maxN} modules (${pub.lora} LoRA r=8) in ${pub.seconds.toFixed(1)} s, ${(pub.bytes / 2 ** 20).toFixed(0)} MiB`);
    const rng = new Rng(SEED);
    const { texts, meanTokens } = await makeSentences(base, 512, rng);
    log(`${texts.length} sentences, mean ${meanTokens.toFixed(1)} tokens`);
    const w = workload(texts);
    if (COLD_ONLY) {
      const cold = await coldStart(maxN, COLD, { dataDir, baseDir, w });
      process.stdout.write(`modhub serving benchmark, cold start only: base bert ${BASE_SHAPE.layers}L/${BASE_SHAPE.hidden}H, ${maxN} modules published\n` + coldTable(cold).join('\n') + '\n');
      // the samples, so that runs can be pooled (one run's 32 modules spread as widely as the changes measured)
      if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ bench: 'serve', coldOnly: true, date: new Date().toISOString(), cores: os.cpus().length, base: { family: 'bert', ...BASE_SHAPE, fingerprint: base.fingerprint }, argv, coldStart: cold }, null, 2) + '\n');
      return;
    }

    // Every configuration gets its own server, all started up front; the measurement runs in ROUNDS, each
    // round running every configuration once in a rotated order, so that load from other processes on this
    // machine hits all configurations alike (the ratios are what this bench is for).
    const ctx = { dataDir, baseDir, w };
    const configs: Config[] = [];
    for (const n of NS) configs.push(await startConfig(`N=${n}`, n, BATCH_ROWS, 0, ctx));
    const nobatch = CORE_ONLY ? null : await startConfig(`N=${NOBATCH_N}, batching off`, NOBATCH_N, 1, 0, ctx);
    if (nobatch) configs.push(nobatch);
    // The same traffic with each composition of a batch run as its own uniform group (serve --split-compositions).
    if (!CORE_ONLY) configs.push(await startConfig(`N=${maxN}, split by composition`, maxN, BATCH_ROWS, 0, ctx, true, true));
    if (GATES_AB) {
      // the other setting than the N rows' (their engine's own choice when --mixed-gates is left out)
      const other = lastMixedGates ? 'off' : 'on';
      configs.push(await startConfig(`N=${maxN}, mixed gates ${other}`, maxN, BATCH_ROWS, 0, ctx, true, false, other));
    }
    if (BATCH_AB) configs.push(await startConfig(`N=${maxN}, batches by run (rank classes)`, maxN, BATCH_ROWS, 0, ctx, true, false, MIXED_GATES, true));
    const naive = await startNaive(`N=${maxN}, naive: session per composition (LRU ${NAIVE_CACHE})`, maxN, NAIVE_CACHE, ctx);
    configs.push(naive);
    // What-if rows: the same traffic with ref resolution memoised until the registry changes (see resolveCacheMs).
    if (WHAT_IF) for (const n of [1, maxN]) configs.push(await startConfig(`N=${n}, what-if: resolve cached`, n, BATCH_ROWS, Infinity, ctx));
    log(`${configs.length} servers started (${configs.map((c) => `${c.startSeconds.toFixed(1)} s`).join(', ')})`);
    let results: ConfigResult[];
    let rate: number;
    try {
      if (FIXED_RATE !== null) rate = FIXED_RATE;
      else {
        // Calibration on N=1 (not part of the results): closed-loop capacity; the open-loop rate is a fraction of it.
        const cal = new Phase();
        await cal.measure(configs[0].url, configs[0].loads, closedLoop(configs[0].url, w, 1, CONCURRENCY, QUICK ? 100 : 200, MAX_SECONDS, SEED + 99));
        const cap = cal.result().throughput;
        rate = Math.max(1, Math.round(cap * RATE_FRACTION));
        log(`calibration: N=1 closed-loop capacity ${cap.toFixed(1)} req/s -> open-loop rate ${rate} req/s for every configuration`);
      }
      const rounds = Math.max(1, Math.min(ROUNDS, Math.floor(REQUESTS / 50)));
      const perRound = Math.ceil(REQUESTS / rounds);
      const stats0 = configs.map((c) => ({ ...c.engineStats() }));
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < configs.length; k++) {
          const c = configs[(k + r) % configs.length];
          await withConfig(c, async () => {
            // MAX_SECONDS bounds a configuration's whole measurement: both phases, all rounds.
            const cap = MAX_SECONDS / rounds / 2;
            await c.open.measure(c.url, c.loads, openLoop(c.url, w, c.n, rate, perRound, cap, SEED + 10 * r), c.engineStats);
            await c.closed.measure(c.url, c.loads, closedLoop(c.url, w, c.n, CONCURRENCY, perRound, cap, SEED + 10 * r + 1), c.engineStats);
          });
        }
        log(`round ${r + 1}/${rounds} done (${((nowMs() - began) / 1000).toFixed(0)} s)`);
      }
      results = configs.map(configResult);
      configs.forEach((c, i) => {
        const s = c.engineStats();
        const reqs = c.open.ok + c.closed.ok;
        const diffs = s.diffCopies === undefined ? '' : `, sparse-diff copies made ${s.diffCopies - stats0[i].diffCopies!} and sets built ${s.diffSetsBuilt! - stats0[i].diffSetsBuilt!}`;
        log(`${c.name}: ${s.sessionsBuilt - stats0[i].sessionsBuilt} sessions built while timed${diffs}, ${((s.runs - stats0[i].runs) / Math.max(1, c.open.batches + c.closed.batches)).toFixed(2)} onnxruntime runs per batch (${reqs} requests)`);
      });
      for (const r of results) {
        log(`${r.name}: open ${r.open.throughput.toFixed(1)} req/s p50 ${r.open.p50.toFixed(1)} ms p99 ${r.open.p99.toFixed(1)} ms, rows/batch ${r.open.batchRowsMean.toFixed(1)}; closed ${r.closed.throughput.toFixed(1)} req/s, rows/batch ${r.closed.batchRowsMean.toFixed(1)}`);
      }
    } finally {
      for (const c of configs) await c.stop();
    }
    const nobatchResult = nobatch ? results[configs.indexOf(nobatch)] : null;
    const naiveResult = results[configs.indexOf(naive)];
    log(`cold start: ${COLD} never-requested modules on a fresh server`);
    const cold = await coldStart(maxN, COLD, ctx);

    // ---- tables --------------------------------------------------------------------------------------------
    const ref = results[0];
    const slo = 5 * ref.open.p50;
    const attain = (p: PhaseResult) => (100 * p.latencies.filter((x) => x <= slo).length) / Math.max(1, p.requests);
    const out: string[] = [];
    out.push('');
    out.push(`modhub serving benchmark: real HTTP server on 127.0.0.1, base bert ${BASE_SHAPE.layers}L/${BASE_SHAPE.hidden}H (${base.fingerprint.slice(0, 15)}…), ${os.cpus().length} cores, onnxruntime threads ${THREADS || 'all'}`);
    out.push(
      KINDS === 'mixed'
        ? `modules: mixed kinds by rank (seq_bn adapter, LoRA r=8 q/v, MAD-X stack [lang seq_bn_inv reduction ${LANG_REDUCTION} (1 of ${LANGS}), task seq_bn], sparse diff BitFit / LT-SFT 1%), each with a 2-layer classification head; traffic: 1 sentence/request (mean ${meanTokens.toFixed(1)} tokens), Zipf alpha ${ZIPF_ALPHA} over N modules; steady state (every module requested once before timing)`
        : `modules: seq_bn adapters (reduction 16) + 2-layer classification heads${pub.lora ? `, ${pub.lora} of ${maxN} LoRA r=8 (q,v)` : ''}; traffic: 1 sentence/request (mean ${meanTokens.toFixed(1)} tokens), Zipf alpha ${ZIPF_ALPHA} over N modules; steady state`,
    );
    out.push(`batching: up to ${BATCH_ROWS} rows, wait ${BATCH_WAIT_MS} ms; open loop: Poisson at ${rate} req/s (${FIXED_RATE === null ? `${RATE_FRACTION * 100}% of N=1 closed-loop capacity` : 'fixed by --rate'}), ≤${REQUESTS} requests per phase or ${MAX_SECONDS} s per configuration, in ${Math.max(1, Math.min(ROUNDS, Math.floor(REQUESTS / 50)))} interleaved rounds; closed loop: ${CONCURRENCY} clients`);
    out.push(`SLO: latency ≤ 5 × N=1 open-loop p50 = ${f(slo)} ms (latency counted from the scheduled send time)`);
    out.push('');
    out.push('Open loop (fixed arrival rate)');
    out.push(
      table(
        ['config', 'req/s', 'vs N=1', 'p50 ms', 'p90 ms', 'p99 ms', 'p99 vs N=1', 'SLO %', 'rows/batch', 'loads', 'CPU ms/req', 'errors'],
        results.map((r) => [
          r.name,
          f(r.open.throughput),
          f(r.open.throughput / ref.open.throughput, 3),
          f(r.open.p50),
          f(r.open.p90),
          f(r.open.p99),
          f(r.open.p99 / ref.open.p99, 2),
          f(attain(r.open)),
          f(r.open.batchRowsMean),
          String(r.open.moduleLoads),
          f(r.open.cpuMsPerRequest, 2),
          String(r.open.errors),
        ]),
      ),
    );
    // which kinds the open loop's tail comes from: a kind whose share of the slowest 1% exceeds its share of requests
    const kindRows = results.filter((r) => r.open.byKind.length > 1).flatMap((r) => r.open.byKind.map((k) => [r.name, k.kind, f(100 * k.share, 1), f(k.p50), f(k.p90), f(k.p99), f(100 * k.slowestShare, 0)]));
    if (kindRows.length) {
      out.push('Open loop by kind of module asked for (share of requests, latency, share of the slowest 1% of the configuration\'s requests)');
      out.push(table(['config', 'kind', 'requests %', 'p50 ms', 'p90 ms', 'p99 ms', 'slowest 1% %'], kindRows));
    }
    out.push('');
    out.push(`Closed loop (${CONCURRENCY} clients back to back: saturated throughput, the figure S-LoRA's tables compare)`);
    out.push(
      table(
        ['config', 'req/s', 'vs N=1', 'p50 ms', 'p99 ms', 'rows/batch', 'loads', 'distinct', 'CPU ms/req', 'errors'],
        results.map((r) => [
          r.name,
          f(r.closed.throughput),
          f(r.closed.throughput / ref.closed.throughput, 3),
          f(r.closed.p50),
          f(r.closed.p99),
          f(r.closed.batchRowsMean),
          String(r.closed.moduleLoads),
          String(r.closed.distinctModules),
          f(r.closed.cpuMsPerRequest, 2),
          String(r.closed.errors),
        ]),
      ),
    );
    // a round's phases of all configurations run back to back, so its ratio compares like with like; the spread over
    // rounds says how far one run's ratio can be trusted on a shared machine
    out.push('Closed loop vs N=1 per round (each round runs every configuration back to back):');
    for (const r of results.slice(1).filter((x) => x.closed.rounds.length === ref.closed.rounds.length)) {
      const ratios = r.closed.rounds.map((x, i) => x / ref.closed.rounds[i]);
      out.push(`  ${r.name}: ${ratios.map((x) => f(x, 3)).join(', ')} (median ${f(median(ratios), 3)})`);
    }
    // what a request that was not answered 200 got (429 or 504 when a queue fell behind, or a client error)
    for (const r of results)
      for (const [loop, p] of [['open', r.open], ['closed', r.closed]] as const) if (p.errors > 0) out.push(`Errors, ${r.name}, ${loop} loop: ${p.errors}; the first: ${p.errorSample ?? '?'}`);
    out.push('');
    out.push('Where the time goes (closed loop; ms per request, summed over the phase / requests; async wall times overlap)');
    const labels = [...new Set(results.flatMap((r) => Object.keys(r.closed.timers)))];
    out.push(
      table(
        ['config', 'event loop busy', ...labels.map((l) => l.split(' ')[0])],
        results.map((r) => [r.name, `${f(100 * r.closed.eventLoopUtilization, 0)}%`, ...labels.map((l) => f((r.closed.timers[l]?.ms ?? 0) / Math.max(1, r.closed.requests), 3))]),
      ),
    );
    out.push('  ' + labels.join('\n  '));
    const workerRows = (['closed', 'open'] as const).flatMap((loop) => results.flatMap((r) => workerTimeRows(r.name, loop, r[loop])));
    if (workerRows.length) {
      out.push('');
      out.push('Where the session worker\'s time goes (timed phases; per run: rows, tokens with padding, ms setting up feeds and sparse overwrites, ms in onnxruntime; ms a request; share)');
      out.push(table(['config', 'loop', 'run', 'runs', 'rows/run', 'tokens/run', 'feeds ms/run', 'onnxruntime ms/run', 'worker ms/request', '%'], workerRows));
      const excess = (['closed', 'open'] as const).flatMap((loop) => results.slice(1).map((r) => diffRunExcess(ref[loop], r.name, loop, r[loop]))).filter((x): x is string => !!x);
      if (excess.length) out.push('Sparse-diff runs beyond what their rows cost at N=1 (worker time; 1 request = 1 row):', ...excess);
    }
    out.push('');
    out.push('S-LoRA (Sheng et al. 2023) reports 8.05 req/s with 5 adapters and 7.61 req/s with 2000 (0.945×) on A100 for Llama-7B;');
    const last = results[NS.length - 1];
    out.push(
      `here N=${last.n} keeps ${f(last.closed.throughput / ref.closed.throughput, 3)}× of N=1's saturated throughput and ${f(last.open.throughput / ref.open.throughput, 3)}× of its open-loop throughput ` +
        `(p99 at the fixed rate ${f(last.open.p99 / ref.open.p99, 2)}× N=1's); ` +
        (nobatchResult ? `batching off at N=${NOBATCH_N} keeps ${f(nobatchResult.closed.throughput / ref.closed.throughput, 3)}×; ` : '') +
        `the naive design at N=${maxN} keeps ${f(naiveResult.closed.throughput / ref.closed.throughput, 3)}×.`,
    );
    out.push('');
    out.push(...coldTable(cold));
    process.stdout.write(out.join('\n') + '\n');
    log(`total ${((nowMs() - began) / 1000).toFixed(0)} s`);

    if (JSON_OUT) {
      const strip = (p: PhaseResult) => {
        const { latencies: _l, ...rest } = p;
        void _l;
        return { ...rest, sloAttainmentPct: attain(p) };
      };
      const json = {
        bench: 'serve',
        quick: QUICK,
        date: new Date().toISOString(),
        cores: os.cpus().length,
        base: { family: 'bert', ...BASE_SHAPE, fingerprint: base.fingerprint },
        modules: { count: maxN, lora: pub.lora, publishSeconds: pub.seconds, bytes: pub.bytes },
        workload: { meanTokens, zipfAlpha: ZIPF_ALPHA, requests: REQUESTS, rounds: Math.max(1, Math.min(ROUNDS, Math.floor(REQUESTS / 50))), maxSeconds: MAX_SECONDS, rate, rateFraction: FIXED_RATE === null ? RATE_FRACTION : null, concurrency: CONCURRENCY, batchRows: BATCH_ROWS, batchWaitMs: BATCH_WAIT_MS },
        sloMs: slo,
        kinds: KINDS,
        coldStart: cold,
        results: results.map((r) => ({ name: r.name, n: r.n, batchRows: r.batchRows, startSeconds: r.startSeconds, open: strip(r.open), closed: strip(r.closed) })),
        seconds: (nowMs() - began) / 1000,
      };
      fs.writeFileSync(JSON_OUT, JSON.stringify(json, null, 2) + '\n');
      log(`wrote ${JSON_OUT}`);
    }
  } finally {
    agent.destroy();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench:serve failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
