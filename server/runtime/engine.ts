/**
 * The inference engine: one frozen base, modules as run-time data, batches that mix compositions.
 *
 * A batch of rows (each with its own RowPlan) becomes: a Variant (which features some row uses; picks one of a
 * few cached sessions), pools (a zero entry + each distinct module's tensors, rank-padded; for mixed batches the
 * slots of resident pools, pool-space.ts) and per-row indices into them. Rows whose sparse diffs differ run as
 * separate groups on the "weights as inputs" session, fed the base's weights plus each set's non-zeros as a sparse
 * overwrite, or θ₀+δ once the set came back often enough (see README, Design decisions: sparse diffs). The other
 * rows run as the length ranges that pad less than another run costs (length-runs.ts).
 * `Engine` coordinates; each concern has its own file: module-cache.ts (resolve, load, LRU), variants.ts
 * (variant choice), session-cache.ts (sessions per variant), pools.ts (+ adapter-pools.ts, head-pools.ts, pool-space.ts),
 * diff-weights.ts (sparse overwrites, θ₀+δ), base-params.ts (base weights in engine layout), length-runs.ts.
 * Example:
 *   const engine = await Engine.create({ base, resolver: registry });
 *   const plans = await engine.plan({ stack: ['lang/de', 'task/topic'] });
 *   const out = await engine.forward(await base.tokenizer.encodeBatch(['Hallo Welt']), [plans[0]]);
 */
import { performance } from 'perf_hooks';
import type { Manifest } from '../../modules-store/manifest';
import type { Tensor } from '../../modules-store/safetensors';
import type { Base } from '../model/base';
import { EMPTY_PLAN, type PlanOptions, type RowPlan } from '../model/composition';
import { IO, ROW_BIAS_PARAM, gateValues, isLayerNormShift, type Variant } from '../model/encoder-graph';
import type { EngineModule, HeadWeights } from '../model/modules';
import type { EncodedBatch } from '../model/tokenizer';
import { BaseParams, type BaseWeights } from './base-params';
import { DiffWeights, diffSetKey, type DiffStats } from './diff-weights';
import { ModuleCache, type ModuleResolver } from './module-cache';
import { BatchPools } from './pools';
import { Session, type Device, type HostTensor, type RunTiming } from './session';
import { SessionCache, type SessionBuilt } from './session-cache';
import { lengthRuns, overheadTokensFrom } from './length-runs';
import { chooseVariant, isUniform, laneGroups, rankGroups, runClass } from './variants';

export type { ModuleResolver } from './module-cache';
export type { SessionBuilt } from './session-cache';

export interface EngineOptions {
  base: Base;
  resolver?: ModuleResolver;
  device?: Device;
  threads?: number;
  /** Byte budget of loaded modules kept in memory (default 2 GiB). */
  moduleCacheBytes?: number;
  /** Byte budget of sparse-diff sets: their non-zeros, and θ₀+δ of sets that come back (default 2 GiB; diff-weights.ts). */
  diffCacheBytes?: number;
  /**
   * Byte budget of the resident pools mixed batches gather from (default 1 GiB; pool-space.ts): past it, the
   * least recently used module slots are reused. With `worker` (the default) the worker holds the only copy.
   */
  residentPoolBytes?: number;
  /**
   * Run onnxruntime in a worker thread so the event loop stays free during a batch (default true). Repeated large
   * feeds (base weights of diff groups, cached pools) cross to the worker once.
   */
  worker?: boolean;
  /**
   * Most graph-variant sessions kept (default 8). Each holds its own copy of the base weights, so this bounds
   * memory; to make room an idle session that another covers is released first, then the least recently used idle
   * one, never one a running batch uses.
   */
  maxSessions?: number;
  /**
   * A composition served by a mixed session gets its own (uniform) session once its runs there have taken this many
   * times the mean session build so far (session-cache.ts UNIFORM_PAYBACK, default 10; 0: after 3 misses).
   */
  uniformPayback?: number;
  /**
   * Run the rows of each composition of a batch as their own uniform group instead of one mixed run (default
   * false). On a small CPU the uniform graph (one adapter for all rows: folded 2-D GEMMs) can beat the per-row
   * gathers of a mixed batch by more than the extra runs cost; bench:serve measures both.
   */
  splitCompositions?: boolean;
  /**
   * Diff groups of at most this many tokens (rows × the group's length) multiply their input weights the other
   * way round (BaseWeights 'inputs-left'; default LEFT_MAX_TOKENS, 0 never). bench:diff-groups compares the two.
   */
  leftMaxTokens?: number;
  /**
   * Intra-op threads of the sessions that run small sparse-diff groups, of at most `leftMaxTokens` tokens (default:
   * 1 on a base of hidden size ≤ 512, else as `threads`). Such a group is one diff set's rows, most often one row,
   * whose run is small ops that a second thread hardly speeds up (small base, single row: 5.3–7.1 ms on two threads,
   * 5.6–7.4 ms on one); on one thread they leave a core to prepare the next batch beside them (`onCoresFree`).
   * Larger diff groups (a popular set's rows) run on `threads`.
   */
  diffThreads?: number;
  /**
   * A run's fixed cost in padded tokens: the rows of a group run as length ranges where that pads less than it
   * costs in runs (length-runs.ts). Default: measured by `create` on the CPU (two bare runs of one row, 3 rounds);
   * Infinity (every group runs whole) on CUDA, where padding is nearly free.
   */
  runOverheadTokens?: number;
  /**
   * Build mixed sessions with gates, so that a batch skips the stack slots, LoRA targets and invertible adapter none
   * of its rows uses (encoder-graph.ts gateValues). Default: on a base wider than 512, where a lone row on the mixed
   * session ran 14–18% slower than on its own and 4–8% gated; on the small base bench:serve's closed loop at N=1000
   * spent 5–8% more CPU a request with them (open gates in every large mixed batch), so there they are off.
   */
  gateMixedSessions?: boolean;
  /** Called once each onnxruntime session is built (serve logs them: a build holds up the runs behind it). */
  onSessionBuilt?: (built: SessionBuilt) => void;
}

/** Per-row results of one forward pass; arrays are views into the run's outputs. */
export interface RowOutput {
  length: number;
  hidden?: Float32Array; // [T, D], T = the longest row of the row's group (positions past the row's length are padding)
  clsLogits?: Float32Array; // [C]
  tokLogits?: Float32Array; // [T, C], T as for hidden
  mlmLogits?: Float32Array; // [T, V]
  head: HeadWeights | null;
}

export interface ForwardOptions {
  hidden?: boolean;
  mlm?: boolean;
  /**
   * Called as each row group's run finishes (`rows`: batch row indices, `out[j]` belongs to `rows[j]`), before
   * `forward` resolves: a caller can answer those rows without waiting for the batch's other groups.
   */
  onGroup?: (rows: number[], out: RowOutput[]) => void;
  /**
   * Called once what is left of the batch is sparse-diff groups on sessions of one thread (`diffThreads` 1), or
   * nothing: a caller may prepare its next batch beside those runs (BatchQueue `release`), whose core is free.
   */
  onCoresFree?: () => void;
}

/** Bytes held against one of the engine's budgets. */
export interface BudgetUse {
  bytes: number;
  budget: number;
}

/** What the engine holds against its byte budgets (/metrics: an operator sizes the budgets from these). */
export interface EngineMemory {
  /** Loaded modules in engine layout (`moduleCacheBytes`); `count` of them. */
  modules: BudgetUse & { count: number };
  /** Resident pools of mixed batches (`residentPoolBytes`). */
  pools: BudgetUse;
  /** Sparse-diff sets: non-zeros, and θ₀+δ of sets that came back (`diffCacheBytes`). */
  diffs: BudgetUse;
}

/** Statistics the benchmark and /metrics read. */
export interface EngineStats extends DiffStats {
  sessionsBuilt: number;
  sessionsReleased: number;
  runs: number;
  /** Rows × length of every run, summed: the tokens the runs computed, padding included. */
  paddedTokens: number;
  moduleLoads: number;
  /** A uniform slot's weights folded at one layer (pools.ts keeps them per module, layer and slot). */
  slotFolds: number;
  /** Runs by the kind of session and weights they ran on (RunKind), with where their time went on the thread that ran them. */
  runTimes: Partial<Record<RunKind, RunTime>>;
  /** This engine's sparse overwrites undone so far by the session worker, ms (RunTiming.undoMsTotal: one run behind). */
  overwriteUndoMs: number;
}

/**
 * What a run ran on: a mixed session (rows of many compositions, per-row pools), a composition's own uniform one, or a
 * sparse-diff set's weights as inputs, on the set's copy (θ₀+Σδ) or on the base's arrays with the set's non-zeros
 * written in for the run (overwrite).
 */
export type RunKind = 'mixed' | 'uniform' | 'sparse-diff copy' | 'sparse-diff overwrite';

/** Runs of one kind, summed: `feedsMs` and `runMs` as RunTiming measures them. */
export interface RunTime {
  runs: number;
  rows: number;
  /** Rows × the run's length, padding included. */
  tokens: number;
  feedsMs: number;
  runMs: number;
}

let engineCounter = 0;

/**
 * Diff groups of at most this many tokens (rows × the group's length) run with their weights on the left
 * (BaseWeights 'inputs-left'). `npm run bench:diff-groups` at BERT-base, ms per run right / left: one row of 20
 * tokens 39.5 / 32.2, 64 tokens 64.4 / 54.2, 128 tokens 102.5 / 96.0; four rows of 38 tokens 117.2 / 122.7. On the
 * small base the two are within noise.
 */
const LEFT_MAX_TOKENS = 128;

export class Engine {
  readonly stats: EngineStats = { sessionsBuilt: 0, sessionsReleased: 0, runs: 0, paddedTokens: 0, moduleLoads: 0, slotFolds: 0, diffSetsBuilt: 0, diffCopies: 0, diffCopiesDropped: 0, runTimes: {}, overwriteUndoMs: 0 };
  /** Prefix of this engine's shared worker feeds (engines in one process share the worker). */
  private readonly shareId = `e${engineCounter++}`;
  private readonly modules: ModuleCache;
  private readonly sessions: SessionCache;
  private readonly diffs: DiffWeights;
  private readonly pools: BatchPools;
  /** Intra-op threads of the sparse-diff groups' sessions (EngineOptions.diffThreads; 0: one per core). */
  private readonly diffThreads: number;
  /** EngineOptions.runOverheadTokens (the bare graph's), measured by `create` unless given. */
  runOverheadTokens = Infinity;
  /** Whether mixed sessions are built with gates (EngineOptions.gateMixedSessions, or its default for this base). */
  readonly mixedGates: boolean;
  /** Nodes of the bare graph: a larger graph's run costs more (runOverhead). */
  private bareNodes = 1;

  private constructor(
    readonly base: Base,
    private readonly options: EngineOptions,
  ) {
    const params = new BaseParams(base);
    this.diffThreads = options.diffThreads ?? (base.config.hiddenSize <= 512 ? 1 : (options.threads ?? 0));
    this.modules = new ModuleCache(base, options.resolver, options.moduleCacheBytes ?? 2 ** 31, this.stats);
    this.diffs = new DiffWeights(params, options.diffCacheBytes ?? 2 ** 31, this.shareId, this.stats, options.worker ?? true);
    this.mixedGates = options.gateMixedSessions ?? base.config.hiddenSize > 512;
    this.sessions = new SessionCache(base.config, params, { ...options, diffThreads: this.diffThreads, gates: this.mixedGates, onBuilt: options.onSessionBuilt }, this.stats);
    this.pools = new BatchPools(base, (name, diffs) => this.diffs.effective(name, diffs), this.shareId, options.residentPoolBytes, !(options.worker ?? true), this.stats);
  }

  /** Creates an engine over a loaded base; sessions are built lazily per variant (the bare one eagerly). */
  static async create(options: EngineOptions): Promise<Engine> {
    const e = new Engine(options.base, options);
    const entry = e.sessions.acquire(e.variantFor([EMPTY_PLAN], {}), 'init');
    e.sessions.done(entry);
    await entry.session;
    e.bareNodes = entry.nodes;
    e.runOverheadTokens = options.runOverheadTokens ?? (e.device === 'cuda' ? Infinity : await e.measureRunOverhead());
    return e;
  }

  /** A run's fixed cost in tokens on this machine: one bare row of a few tokens against one of ~64, median of 3. */
  private async measureRunOverhead(): Promise<number> {
    const most = Math.max(4, Math.min(64, this.base.config.maxSequenceLength - 2));
    const [short, long] = await Promise.all([2, most - 2].map((n) => this.base.tokenizer.encodeBatch([Array(n).fill('a').join(' ')])));
    const time = async (b: EncodedBatch) => {
      const t0 = performance.now();
      await this.runGroup(b, [0], [EMPTY_PLAN], {});
      return performance.now() - t0;
    };
    const ts: number[][] = [[], []];
    for (let r = 0; r < 4; r++) for (const [i, b] of [short, long].entries()) ts[i].push(await time(b)); // the first round warms up
    const med = (x: number[]) => [...x.slice(1)].sort((p, q) => p - q)[1];
    this.stats.runs = 0;
    return overheadTokensFrom(med(ts[0]), short.length, med(ts[1]), long.length);
  }

  /** Sets where module references resolve (the hub registry, once it is open). */
  setResolver(resolver: ModuleResolver): void {
    this.options.resolver = resolver;
    this.modules.resolver = resolver;
  }

  get device(): Device {
    return this.options.device ?? 'cpu';
  }

  memory(): EngineMemory {
    return { modules: this.modules.usage(), pools: { bytes: this.pools.spaces.bytes, budget: this.pools.spaces.maxBytes }, diffs: this.diffs.usage() };
  }

  /** Resolves and loads one module (cached by `id@version`). */
  module(ref: string): Promise<EngineModule> {
    return this.modules.module(ref);
  }

  /** Adds an already-loaded module package (tests, trainer) without a registry. */
  addModule(manifest: Manifest, tensors: Map<string, Tensor>): EngineModule {
    return this.modules.add(manifest, tensors);
  }

  /** Parses a composition (JSON) and resolves its modules into one RowPlan per output branch; `opts.head` picks the head. */
  plan(raw: unknown, opts: PlanOptions = {}): Promise<RowPlan[]> {
    return this.modules.plan(raw, opts);
  }

  /** The graph variant a group of rows needs. */
  variantFor(plans: RowPlan[], opts: ForwardOptions): Variant {
    return chooseVariant(this.base.config.numLayers, plans, !!opts.mlm);
  }

  /**
   * Which of a batch's runs a row of this plan joins: '' for the batch's shared run, else a key that the rows of
   * one run of their own share (a sparse-diff set's; with `splitCompositions`, every composition's).
   */
  groupKey(plan: RowPlan): string {
    const p = rowBiasPlan(plan);
    return this.options.splitCompositions ? `${p.key}#${p.head?.key ?? ''}#${p.mlmHead?.key ?? ''}` : diffSetKey(p.diffs);
  }

  /**
   * The run a row of this plan joins, for the queue (QueueJob `run`): its group's key where it has a run of its own
   * (groupKey), else its adapters' rank classes (variants.ts runClass: the run of the shared ones it joins);
   * undefined where it fits any run. With `byClass` false it names only the runs of their own (serve's default).
   */
  runKey(plan: RowPlan, byClass: boolean): string | undefined {
    const own = this.groupKey(plan);
    if (own) return `own:${own}`;
    return byClass ? runClass(plan, this.base.config.numLayers) : undefined;
  }

  /** Runs a tokenised batch; `plans[i]` is row i's composition. Rows with different diff sets run as groups. */
  async forward(batch: EncodedBatch, plans: RowPlan[], opts: ForwardOptions = {}): Promise<RowOutput[]> {
    if (plans.length !== batch.batch) throw new RangeError(`'plans' has ${plans.length} entries for a batch of ${batch.batch} rows`);
    plans = plans.map(rowBiasPlan);
    const byKey = new Map<string, number[]>();
    plans.forEach((p, i) => {
      const key = this.groupKey(p);
      const g = byKey.get(key);
      if (g) g.push(i);
      else byKey.set(key, [i]);
    });
    // rows without their own sparse diffs run apart where their adapters' rank classes differ (variants.ts
    // rankGroups), and any run apart where it holds more wide adapters in a slot than the graph has lanes
    // (laneGroups); then as length ranges that pad less than another run costs (length-runs.ts); so does a diff
    // group that runs on its set's copy, but one on a sparse overwrite stays whole (each of its runs would write
    // and undo the overwrite: ~20 ms at BERT-base, LT-SFT at 1%)
    const groups: number[][] = [];
    const { numLayers, hiddenSize } = this.base.config;
    for (const [key, all] of byKey)
      for (const rows of (key === '' && all.length > 1 ? rankGroups(all, plans, numLayers) : [all]).flatMap((g) => laneGroups(g, plans, numLayers, hiddenSize)))
        if ((key !== '' && this.diffs.overwrites(plans[rows[0]].diffs)) || rows.length < 2 || !Number.isFinite(this.runOverheadTokens)) groups.push(rows);
        else for (const run of lengthRuns(rows.map((r) => groupLength(batch, [r])), this.runOverhead(rows.map((r) => plans[r]), opts))) groups.push(run.map((k) => rows[k]));
    const out: RowOutput[] = new Array(plans.length);
    // Every group's run is posted at once: the worker runs them back to back, without waiting for this thread to
    // take one group's outputs and build the next group's feeds in between (at N=1000 on the small base the worker
    // sat idle 15–17% of a closed loop, against 7% with one module). Largest group first (the rows without their
    // own sparse diffs, as a rule): with `onGroup` most rows are answered after one run.
    const order = groups.sort((a, b) => b.length - a.length);
    const runs = order.map((rows) =>
      this.runGroup(batch, rows, rows.map((i) => plans[i]), opts).then((res) => {
        rows.forEach((r, j) => (out[r] = res[j]));
        opts.onGroup?.(rows, res);
      }),
    );
    const onCoresFree = opts.onCoresFree;
    if (onCoresFree && this.diffThreads === 1) void Promise.allSettled(runs.filter((_, k) => this.weightsOf(batch, order[k], plans[order[k][0]].diffs.length > 0) !== 'inputs-left')).then(() => onCoresFree());
    const settled = await Promise.allSettled(runs);
    // settled first: no group's run is still in flight when the batch fails
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return out;
  }

  /**
   * The fixed cost in tokens of one more run of these rows: the bare graph's, scaled by the node count of the session
   * they would run on (a mixed graph of the traffic's kinds has ~2× the bare one's nodes, and most of a run's fixed
   * cost is onnxruntime's per node on the small base). At BERT-base less of it is, but a fit of each session's own
   * runs, which split batches more finely there, was no faster (docs/serving-performance.md).
   */
  runOverhead(plans: RowPlan[], opts: ForwardOptions = {}): number {
    const entry = this.sessions.peek(this.variantFor(plans, opts), 'init');
    return this.runOverheadTokens * Math.max(1, (entry?.nodes ?? this.bareNodes) / this.bareNodes);
  }

  /** Resolves once the sparse-diff copies the worker is making in the background are made (tests, benchmarks). */
  copiesMade(): Promise<void> {
    return this.diffs.copiesMade();
  }

  /** Frees all sessions. */
  async close(): Promise<void> {
    await this.sessions.close();
    await this.pools.close();
    await Session.forgetShared(`${this.shareId}:`);
  }

  private async runGroup(batch: EncodedBatch, rows: number[], plans: RowPlan[], opts: ForwardOptions): Promise<RowOutput[]> {
    const variant = this.variantFor(plans, opts);
    // A group runs only as long as its own longest row (a diff group of one short row in a batch padded to a long
    // one would otherwise pay for the padding): rows are right-padded, and masked keys add exactly 0 in attention.
    const T = groupLength(batch, rows);
    const entry = this.sessions.acquire(variant, this.weightsOf(batch, rows, plans[0].diffs.length > 0));
    const timing: RunTiming = { feedsMs: 0, runMs: 0 };
    try {
      return await this.runOn(await entry.session, batch, rows, T, plans, entry.variant, opts, variant, timing);
    } finally {
      this.sessions.done(entry, { variant, ms: timing.feedsMs + timing.runMs });
    }
  }

  /**
   * The base weights a group's session takes: its own initializers, or (a diff group) the weights as inputs, multiplied
   * the other way round for a group of few tokens. Those sessions run on `diffThreads` (SessionCache); larger diff
   * groups (a popular set's rows) on every thread: on the small base 24 rows of one LT-SFT set ran 0.62× of one
   * adapter's rows on one thread, 0.97× on two (bench:mixed `uniLtsft`, with the length ranges of a set's copy).
   */
  private weightsOf(batch: EncodedBatch, rows: number[], diffs: boolean): BaseWeights {
    if (!diffs) return 'init';
    return rows.length * groupLength(batch, rows) <= (this.options.leftMaxTokens ?? LEFT_MAX_TOKENS) ? 'inputs-left' : 'inputs';
  }

  /** Runs `rows` over their first `T` positions; `variant`: the session's (feeds follow it); `needed`: the rows' own (outputs follow it); `timing` gets the run's. */
  private async runOn(session: Session, batch: EncodedBatch, rows: number[], T: number, plans: RowPlan[], variant: Variant, opts: ForwardOptions, needed: Variant, timing: RunTiming): Promise<RowOutput[]> {
    const cfg = this.base.config;
    const B = rows.length;
    const D = cfg.hiddenSize;
    const diffs = plans[0].diffs;
    const feeds: Record<string, HostTensor> = {};
    const stride = batch.length;
    const pick = (src: Int32Array) => {
      const o = new BigInt64Array(B * T);
      rows.forEach((r, j) => {
        for (let t = 0; t < T; t++) o[j * T + t] = BigInt(src[r * stride + t]);
      });
      return o;
    };
    feeds[IO.inputIds] = { type: 'int64', dims: [B, T], data: pick(batch.inputIds) };
    feeds[IO.positionIds] = { type: 'int64', dims: [B, T], data: pick(batch.positionIds) };
    if (cfg.typeVocabSize > 0) feeds[IO.tokenTypeIds] = { type: 'int64', dims: [B, T], data: pick(batch.tokenTypeIds) };
    const mask = new Float32Array(B * T);
    rows.forEach((r, j) => {
      for (let t = 0; t < T; t++) mask[j * T + t] = batch.attentionMask[r * stride + t];
    });
    feeds[IO.attentionMask] = { type: 'float32', dims: [B, T], data: mask };
    const batchFeeds = this.pools.acquire(variant, plans);
    Object.assign(feeds, batchFeeds.pools);
    for (const [name, open] of Object.entries(gateValues(variant, needed))) if (session.inputNames.includes(name)) feeds[name] = { type: 'bool', dims: [], data: Uint8Array.of(open ? 1 : 0) };
    if (diffs.length) Object.assign(feeds, this.diffs.feeds(diffs));

    const wanted: string[] = [];
    if (opts.hidden) wanted.push(IO.hidden);
    if (needed.heads.cls) wanted.push(IO.clsLogits);
    if (needed.heads.tok) wanted.push(IO.tokLogits);
    if (needed.heads.mlm) wanted.push(IO.mlmLogits);
    if (!wanted.length) wanted.push(IO.hidden);
    let res: Record<string, HostTensor>;
    const kind: RunKind = diffs.length ? (this.diffs.overwrites(diffs) ? 'sparse-diff overwrite' : 'sparse-diff copy') : isUniform(variant) ? 'uniform' : 'mixed';
    try {
      const running = session.run(feeds, wanted, undefined, timing);
      if (diffs.length) this.diffs.posted(diffs); // the worker holds the set's non-zeros now: it may make its copy
      res = await running;
    } finally {
      batchFeeds.done();
    }
    this.stats.runs++;
    this.stats.paddedTokens += B * T;
    const rt = (this.stats.runTimes[kind] ??= { runs: 0, rows: 0, tokens: 0, feedsMs: 0, runMs: 0 });
    rt.runs++;
    rt.rows += B;
    rt.tokens += B * T;
    rt.feedsMs += timing.feedsMs;
    rt.runMs += timing.runMs;
    if (timing.undoMsTotal !== undefined) this.stats.overwriteUndoMs = Math.max(this.stats.overwriteUndoMs, timing.undoMsTotal);
    return plans.map((plan, j) => {
      const o: RowOutput = { length: batch.lengths[rows[j]], head: plan.head?.weights ?? null };
      if (res[IO.hidden]) o.hidden = (res[IO.hidden].data as Float32Array).subarray(j * T * D, (j + 1) * T * D);
      const h = plan.head?.weights.config;
      if (res[IO.clsLogits] && h?.type === 'classification') {
        const C = res[IO.clsLogits].dims[1];
        o.clsLogits = (res[IO.clsLogits].data as Float32Array).subarray(j * C, j * C + h.num_labels);
      }
      if (res[IO.tokLogits] && h?.type === 'token_classification') {
        const C = res[IO.tokLogits].dims[2];
        const all = (res[IO.tokLogits].data as Float32Array).subarray(j * T * C, (j + 1) * T * C);
        o.tokLogits = C === h.num_labels ? all : compact(all, T, C, h.num_labels);
      }
      if (res[IO.mlmLogits]) {
        const V = res[IO.mlmLogits].dims[2];
        o.mlmLogits = (res[IO.mlmLogits].data as Float32Array).subarray(j * T * V, (j + 1) * T * V);
      }
      return o;
    });
  }
}

/**
 * A row whose diffs change only biases (BitFit) runs in the batch's own run with per-row bias vectors instead of
 * a group of its own: its diffs move to `rowBias`. A diff on a site LayerNorm's shift qualifies only for a row
 * without bottleneck adapters (its site output is then that LayerNorm's, which the shift is added to).
 */
function rowBiasPlan(p: RowPlan): RowPlan {
  if (!p.diffs.length) return p;
  const noAdapters = !p.adapters.length && !p.fuse;
  for (const d of p.diffs) for (const name of d.params.keys()) if (!ROW_BIAS_PARAM.test(name) || (!noAdapters && name.startsWith('layers.') && isLayerNormShift(name))) return p;
  return { ...p, diffs: [], rowBias: p.diffs };
}

/** Positions up to a group's last attended token (at least 1): the length its run needs. */
function groupLength(batch: EncodedBatch, rows: number[]): number {
  const T = batch.length;
  let n = 1;
  for (const r of rows) for (let t = T - 1; t >= n; t--) if (batch.attentionMask[r * T + t]) {
    n = t + 1;
    break;
  }
  return n;
}

/** Token logits of a head with `c` labels out of a pool padded to `C`. */
function compact(all: Float32Array, T: number, C: number, c: number): Float32Array {
  const out = new Float32Array(T * c);
  for (let t = 0; t < T; t++) out.set(all.subarray(t * C, t * C + c), t * c);
  return out;
}
