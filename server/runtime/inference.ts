/**
 * Inference service: texts + a composition in, predictions out. A request is planned and tokenised, admitted
 * into the queue (queue.ts: capacity in rows and tokens, deadlines, dropped when the client leaves), batched with
 * whatever else waits — compositions may differ, the engine serves mixed batches — and its rows' outputs become
 * predictions (outputs.ts). Lifecycle: with `requireWarmUp` not ready until `warmUp`; refuses new work once `drain`
 * began.
 * Example:
 *   const svc = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 5 });
 *   await svc.warmUp();
 *   const res = await svc.infer({ inputs: [{ text: 'Hallo Welt' }], composition: { stack: ['lang/de', 'task/topic'] } });
 */
import client from 'prom-client';
import { EMPTY_PLAN, type RowPlan } from '../model/composition';
import type { EncodedBatch } from '../model/tokenizer';
import { CodedError } from '../../modules-store/errors';
import type { Engine, EngineMemory, RowOutput } from './engine';
import { pool, softmax, tokenClassification, topIndices, type Aggregation, type Entity, type Pooling, type TokenLabel } from './outputs';
import { BatchQueue, ClientGoneError, DeadlineError, type QueueJob, type QueueOptions } from './queue';

export { ClientGoneError, DeadlineError, QueueFullError, RequestTooLargeError } from './queue';

export interface InferInput {
  text: string;
  text_pair?: string;
}

export interface InferRequest {
  inputs: InferInput[];
  /** AdapterHub-style composition; null/absent = the bare base. */
  composition?: unknown;
  /** The module whose head to use when the composition brings competing heads (AdapterHub's active_head). */
  head?: string;
  /** What to return: 'auto' (the head's prediction, else an embedding), 'embedding', or 'fill_mask'. */
  task?: 'auto' | 'embedding' | 'fill_mask';
  /** Labels/tokens returned per prediction (default 1 for classification, 5 for fill_mask). */
  top_k?: number;
  /** Longest tokenised input (default: the base's maximum). */
  max_length?: number;
  /** Token classification: how tokens group into entities (HF pipelines' aggregation_strategy; default 'simple'). */
  aggregation_strategy?: Aggregation;
  /** Embeddings: 'cls', 'mean' (default) or 'max' over the attended tokens. */
  pooling?: Pooling;
  /** Embeddings: scale to unit L2 norm (default false). */
  normalize?: boolean;
  /** Deadline in ms from arrival (default: the service's `defaultTimeoutMs`); past it the request fails with DeadlineError. */
  timeout_ms?: number;
}

export type Prediction =
  | { type: 'classification'; label: string; score: number; scores: { label: string; score: number }[] }
  | { type: 'token_classification'; tokens: TokenLabel[]; entities: Entity[]; aggregation_strategy: Aggregation }
  | { type: 'fill_mask'; masks: { position: number; candidates: { token: string; token_id: number; score: number }[] }[] }
  | { type: 'embedding'; embedding: number[]; pooling: Pooling; normalized: boolean };

export interface InferResult {
  /** One entry per input; each holds one prediction per output branch (parallel gives several). */
  results: { branches: Prediction[] }[];
  /** The modules each branch resolved to (`id@version`). */
  modules: string[][];
}

export interface BatcherOptions extends QueueOptions {
  /**
   * Form batches by the runs their rows join, rank classes included (Engine.runKey); default false: only a
   * sparse-diff set's rows, which have runs of their own, are taken together, the rest by length.
   */
  batchByRun?: boolean;
  /** Deadline of a request without `timeout_ms` (default 30000 ms). */
  defaultTimeoutMs?: number;
  /** Answer 503 NOT_READY until `warmUp()` ran (what `modhub serve` does; default false: ready at once). */
  requireWarmUp?: boolean;
  /** Prometheus registry for queue, batch and run metrics (optional). */
  metrics?: client.Registry;
}

/** The service cannot take work now: not warmed up yet, or draining for shutdown (503 NOT_READY). */
export class UnavailableError extends CodedError {
  constructor(
    readonly reason: 'starting' | 'draining',
    message: string,
  ) {
    super('NOT_READY', message);
    this.name = 'UnavailableError';
  }
}

interface InferenceMetrics {
  queueSeconds: client.Histogram<string>;
  runSeconds: client.Histogram<string>;
  batchRows: client.Histogram<string>;
  batchPadding: client.Histogram<string>;
  queued: client.Gauge<string>;
  rejected: client.Counter<string>;
  dropped: client.Counter<string>;
}

/**
 * The engine's memory against its budgets and its counts, read when /metrics is scraped: module loads that keep
 * climbing under steady traffic mean the module budget is smaller than the working set.
 */
function engineMetrics(reg: client.Registry, engine: Engine): void {
  const registers = [reg];
  const gauge = (name: string, help: string, read: (m: EngineMemory) => number) => {
    if (reg.getSingleMetric(name)) return;
    new client.Gauge({ name, help, registers, collect() { this.set(read(engine.memory())); } });
  };
  gauge('modhub_engine_module_bytes', 'Bytes of loaded modules (engine layout)', (m) => m.modules.bytes);
  gauge('modhub_engine_module_budget_bytes', 'Budget of loaded modules (serve --module-memory-mb)', (m) => m.modules.budget);
  gauge('modhub_engine_modules_loaded', 'Modules loaded', (m) => m.modules.count);
  gauge('modhub_engine_pool_bytes', 'Bytes of the resident pools of mixed batches', (m) => m.pools.bytes);
  gauge('modhub_engine_pool_budget_bytes', 'Budget of the resident pools (serve --pool-memory-mb)', (m) => m.pools.budget);
  gauge('modhub_engine_diff_bytes', 'Bytes of sparse-diff sets kept (non-zeros, materialised weights)', (m) => m.diffs.bytes);
  gauge('modhub_engine_diff_budget_bytes', 'Budget of sparse-diff sets (serve --diff-memory-mb)', (m) => m.diffs.budget);
  const counter = (name: string, help: string, read: () => number) => {
    if (reg.getSingleMetric(name)) return;
    let seen = 0; // the first scrape counts everything since the engine started
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        const now = read();
        this.inc(now - seen);
        seen = now;
      },
    });
  };
  counter('modhub_engine_module_loads_total', 'Modules read and loaded (cache misses)', () => engine.stats.moduleLoads);
  counter('modhub_engine_runs_total', 'onnxruntime runs (a batch runs one per row group)', () => engine.stats.runs);
  counter('modhub_engine_sessions_built_total', 'onnxruntime sessions built', () => engine.stats.sessionsBuilt);
  counter('modhub_engine_slot_folds_total', "A uniform batch's adapter slots folded with their LayerNorm, one per layer (kept per module, layer and slot)", () => engine.stats.slotFolds);
  counter('modhub_engine_diff_sets_built_total', 'Sparse-diff sets whose non-zeros were built (first use, or after eviction)', () => engine.stats.diffSetsBuilt);
  counter('modhub_engine_diff_copies_total', 'Dense copies (base weights + deltas) of sparse-diff sets made, by the worker between runs', () => engine.stats.diffCopies);
  counter('modhub_engine_diff_copies_dropped_total', 'Dense copies dropped (for a set that ran more often, or lost by a restarted worker)', () => engine.stats.diffCopiesDropped);
}

function inferenceMetrics(reg: client.Registry): InferenceMetrics {
  const get = <T>(name: string, make: () => T): T => (reg.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [reg];
  return {
    queueSeconds: get('modhub_infer_queue_seconds', () => new client.Histogram({ name: 'modhub_infer_queue_seconds', help: 'Time a row waits before its batch runs', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers })),
    runSeconds: get('modhub_infer_run_seconds', () => new client.Histogram({ name: 'modhub_infer_run_seconds', help: 'Engine time per batch', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers })),
    batchRows: get('modhub_infer_batch_rows', () => new client.Histogram({ name: 'modhub_infer_batch_rows', help: 'Rows per engine batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers })),
    batchPadding: get('modhub_infer_batch_padding_ratio', () => new client.Histogram({ name: 'modhub_infer_batch_padding_ratio', help: 'Padded tokens / real tokens per batch', buckets: [1, 1.1, 1.25, 1.5, 2, 3, 5], registers })),
    queued: get('modhub_infer_queued_rows', () => new client.Gauge({ name: 'modhub_infer_queued_rows', help: 'Rows admitted and not finished', registers })),
    rejected: get('modhub_infer_rejected_total', () => new client.Counter({ name: 'modhub_infer_rejected_total', help: 'Requests refused because the queue was full', registers })),
    dropped: get('modhub_infer_dropped_rows_total', () => new client.Counter({ name: 'modhub_infer_dropped_rows_total', help: 'Rows dropped before running (client gone or deadline passed)', labelNames: ['reason'], registers })),
  };
}

interface Job extends QueueJob {
  enc: EncodedBatch;
  row: number;
  plan: RowPlan;
  wantHidden: boolean;
  wantMlm: boolean;
  enqueued: bigint;
  out?: RowOutput;
}

export class InferenceService {
  private readonly queue: BatchQueue<Job>;
  private readonly metrics: InferenceMetrics | null;
  private state: 'starting' | 'ready' | 'draining';

  constructor(
    readonly engine: Engine,
    private readonly opts: BatcherOptions = {},
  ) {
    this.state = opts.requireWarmUp ? 'starting' : 'ready';
    this.metrics = opts.metrics ? inferenceMetrics(opts.metrics) : null;
    if (opts.metrics) engineMetrics(opts.metrics, engine);
    this.queue = new BatchQueue<Job>(opts, (jobs, finished, release) => this.runJobs(jobs, finished, release));
    this.queue.onBatch = (b) => {
      this.metrics?.batchRows.observe(b.rows);
      this.metrics?.batchPadding.observe(b.paddedTokens / Math.max(1, b.tokens));
    };
  }

  /** Batches run, rows run, rows dropped before running, requests refused, high-water marks of admitted rows/tokens. */
  get stats(): BatchQueue<Job>['stats'] {
    return this.queue.stats;
  }

  /** The queue (limits, reserved capacity, drain rate, batch hook). */
  get batching(): BatchQueue<Job> {
    return this.queue;
  }

  /** Whether the service takes requests (warmed up and not draining). */
  get ready(): boolean {
    return this.state === 'ready';
  }

  get draining(): boolean {
    return this.state === 'draining';
  }

  /** Runs one bare-base row through the engine (builds the sessions the first requests need) and marks ready. */
  async warmUp(): Promise<void> {
    const enc = await this.engine.base.tokenizer.encodeBatch(['warm up']);
    await this.engine.forward(enc, [EMPTY_PLAN], { hidden: true });
    if (this.state === 'starting') this.state = 'ready';
  }

  /** Marks the service ready without a warm-up run (tests, embedders that warmed the engine themselves). */
  markReady(): void {
    if (this.state === 'starting') this.state = 'ready';
  }

  /** Refuses new requests from now on and resolves once every admitted row has finished (or `timeoutMs` passed). */
  async drain(timeoutMs = 30_000): Promise<{ finished: boolean; pendingRows: number }> {
    this.state = 'draining';
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([this.queue.idle().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(timer);
    return { finished, pendingRows: this.queue.reserved.rows };
  }

  /**
   * Answers one request. `signal` aborts it (the HTTP layer aborts with ClientGoneError when the client leaves);
   * the deadline (`timeout_ms`) aborts it with DeadlineError. Aborted rows that still wait are dropped unrun.
   */
  async infer(req: InferRequest, signal?: AbortSignal): Promise<InferResult> {
    if (this.state !== 'ready') {
      throw new UnavailableError(this.state, this.state === 'starting' ? 'the server is starting (loading the base, warming up); retry shortly' : 'the server is shutting down and takes no new requests');
    }
    const task = req.task ?? 'auto';
    if (!Array.isArray(req.inputs) || req.inputs.length === 0) throw new CodedError('INVALID_INPUT', "'inputs' must be a non-empty array of {text, text_pair?}");
    const timeoutMs = req.timeout_ms ?? this.opts.defaultTimeoutMs ?? 30_000;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new DeadlineError(timeoutMs)), timeoutMs);
    const onAbort = () => ctl.abort(signal!.reason ?? new ClientGoneError());
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const plans = await this.engine.plan(req.composition ?? null, req.head === undefined ? {} : { head: req.head });
      const tok = this.engine.base.tokenizer;
      const texts = req.inputs.map((i) => i.text);
      const hasPairs = req.inputs.some((i) => i.text_pair !== undefined);
      if (hasPairs && !req.inputs.every((i) => typeof i.text_pair === 'string')) {
        throw new CodedError('INVALID_INPUT', "either every input has a 'text_pair' or none does");
      }
      const minLength = tok.numSpecialTokens(hasPairs) + (hasPairs ? 2 : 1);
      if (req.max_length !== undefined && !(Number.isInteger(req.max_length) && req.max_length >= minLength && req.max_length <= tok.defaultMaxLength)) {
        throw new CodedError('INVALID_INPUT', `'max_length' must be an integer from ${minLength} to ${tok.defaultMaxLength} (this base's position table), got ${req.max_length}`);
      }
      const enc = await tok.encodeBatch(texts, hasPairs ? req.inputs.map((i) => i.text_pair!) : undefined, req.max_length ? { maxLength: req.max_length } : {});
      if (ctl.signal.aborted) throw ctl.signal.reason;
      const wantMlm = task === 'fill_mask';
      // 'auto' answers with the head's prediction; branches without a classification head give an embedding.
      const wantHidden = task === 'embedding' || (task === 'auto' && plans.some((p) => !p.head || p.head.weights.config.type === 'masked_lm'));
      const jobs: Job[] = req.inputs.flatMap((_, row) =>
        plans.map((plan) => {
          const run = this.engine.runKey(plan, this.opts.batchByRun ?? false); // which run it joins (queue.ts formBatch)
          return { enc, row, plan, wantHidden, wantMlm, tokens: enc.lengths[row], group: `${wantHidden}:${wantMlm}`, run, signal: ctl.signal, enqueued: process.hrtime.bigint() };
        }),
      );
      // Admission after tokenisation, in rows and tokens, reserved in the same step as the check.
      try {
        this.queue.reserve(jobs.length, jobs.reduce((a, j) => a + j.tokens, 0));
      } catch (e) {
        this.metrics?.rejected.inc();
        throw e;
      }
      this.metrics?.queued.set(this.queue.reserved.rows);
      const settled = await Promise.allSettled(jobs.map((j) => this.queue.push(j)));
      this.metrics?.queued.set(this.queue.reserved.rows);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        const dropped = settled.filter((r) => r.status === 'rejected').length;
        if (failed.reason instanceof DeadlineError) this.metrics?.dropped.inc({ reason: 'deadline' }, dropped);
        else if (failed.reason instanceof ClientGoneError) this.metrics?.dropped.inc({ reason: 'client_gone' }, dropped);
        throw failed.reason;
      }
      const results = req.inputs.map((_, row) => ({
        branches: plans.map((_, b) => this.predict(jobs[row * plans.length + b].out!, enc, row, task, req)),
      }));
      return { results, modules: plans.map((p) => moduleKeys(p)) };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async runJobs(jobs: Job[], finished: (i: number) => void, release: () => void): Promise<void> {
    const started = process.hrtime.bigint();
    for (const j of jobs) this.metrics?.queueSeconds.observe(Number(started - j.enqueued) / 1e9);
    const batch = mergeRows(jobs.map((j) => ({ enc: j.enc, row: j.row })), this.engine.base.tokenizer.padId, this.engine.base.config.positionOffset);
    // Each row group's rows are answered as soon as their run is over; after a turn of the event loop, so that the
    // engine posts the batch's next group to the worker before the answers' own work (predictions, JSON) runs here.
    const onGroup = (rows: number[], out: RowOutput[]) => {
      rows.forEach((r, k) => (jobs[r].out = out[k]));
      setImmediate(() => rows.forEach(finished));
    };
    // the next batch is prepared beside this one's single-thread sparse-diff runs (BatchQueue: release)
    await this.engine.forward(batch, jobs.map((j) => j.plan), { hidden: jobs[0].wantHidden, mlm: jobs[0].wantMlm, onGroup, onCoresFree: release });
    this.metrics?.runSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  private predict(o: RowOutput, enc: EncodedBatch, row: number, task: string, req: InferRequest): Prediction {
    const T = enc.length;
    const h = o.head?.config;
    const tok = this.engine.base.tokenizer;
    if (task === 'fill_mask') {
      const V = this.engine.base.config.vocabSize;
      const masks: { position: number; candidates: { token: string; token_id: number; score: number }[] }[] = [];
      for (let t = 0; t < o.length; t++) {
        if (enc.inputIds[row * T + t] !== tok.maskId) continue;
        const probs = softmax(o.mlmLogits!.subarray(t * V, (t + 1) * V));
        masks.push({
          position: t,
          candidates: topIndices(probs, req.top_k ?? 5).map((id) => ({ token: tok.idToToken(id) ?? '', token_id: id, score: probs[id] })),
        });
      }
      if (!masks.length) throw new CodedError('INVALID_INPUT', `fill_mask needs at least one '${tok.maskToken}' token in every input`);
      return { type: 'fill_mask', masks };
    }
    if (task === 'auto' && h?.type === 'classification' && o.clsLogits) {
      const probs = softmax(o.clsLogits);
      const labels = o.head!.labels;
      const name = (i: number) => labels[i] ?? `LABEL_${i}`;
      const best = topIndices(probs, 1)[0];
      return { type: 'classification', label: name(best), score: probs[best], scores: topIndices(probs, req.top_k ?? probs.length).map((i) => ({ label: name(i), score: probs[i] })) };
    }
    if (task === 'auto' && h?.type === 'token_classification' && o.tokLogits) {
      const aggregation = req.aggregation_strategy ?? 'simple';
      const input = req.inputs[row];
      const rowTokens = {
        length: o.length,
        tokens: enc.tokens[row],
        offsets: enc.offsets[row],
        wordIds: enc.wordIds[row],
        sequenceIds: enc.sequenceIds[row],
        special: enc.specialTokensMask.subarray(row * T, (row + 1) * T),
        texts: [input.text, input.text_pair] as [string, string | undefined],
      };
      const { tokens, entities } = tokenClassification(o.tokLogits, h.num_labels, o.head!.labels, rowTokens, aggregation);
      return { type: 'token_classification', tokens, entities, aggregation_strategy: aggregation };
    }
    const pooling = req.pooling ?? 'mean';
    const normalized = req.normalize ?? false;
    const D = this.engine.base.config.hiddenSize;
    return { type: 'embedding', embedding: pool(o.hidden!, D, enc.attentionMask.subarray(row * T, (row + 1) * T), o.length, pooling, normalized), pooling, normalized };
  }
}

function moduleKeys(p: RowPlan): string[] {
  const keys = [...p.diffs, ...p.adapters, ...p.loras, ...p.ia3s].map((m) => m.key);
  if (p.fuse) keys.push(...p.fuse.adapters.map((a) => a.key), p.fuse.fusion.key);
  return keys;
}

/** Stacks rows of several tokenised batches into one, padded to the longest. */
export function mergeRows(rows: { enc: EncodedBatch; row: number }[], padId: number, positionOffset: number): EncodedBatch {
  const T = Math.max(...rows.map((r) => r.enc.length));
  const B = rows.length;
  const ids = new Int32Array(B * T).fill(padId);
  const mask = new Int32Array(B * T);
  const types = new Int32Array(B * T);
  const pos = new Int32Array(B * T);
  const special = new Int32Array(B * T).fill(1);
  rows.forEach(({ enc, row }, b) => {
    const t0 = enc.length;
    ids.set(enc.inputIds.subarray(row * t0, (row + 1) * t0), b * T);
    mask.set(enc.attentionMask.subarray(row * t0, (row + 1) * t0), b * T);
    types.set(enc.tokenTypeIds.subarray(row * t0, (row + 1) * t0), b * T);
    pos.set(enc.positionIds.subarray(row * t0, (row + 1) * t0), b * T);
    special.set(enc.specialTokensMask.subarray(row * t0, (row + 1) * t0), b * T);
    // Extra padding: position ids as the family computes them for pads (masked out of attention anyway).
    for (let t = t0; t < T; t++) pos[b * T + t] = positionOffset > 0 ? positionOffset - 1 : t;
  });
  return {
    batch: B,
    length: T,
    inputIds: ids,
    attentionMask: mask,
    tokenTypeIds: types,
    positionIds: pos,
    specialTokensMask: special,
    lengths: rows.map((r) => r.enc.lengths[r.row]),
    tokens: rows.map((r) => r.enc.tokens[r.row]),
    offsets: rows.map((r) => r.enc.offsets[r.row]),
    wordIds: rows.map((r) => r.enc.wordIds[r.row]),
    sequenceIds: rows.map((r) => r.enc.sequenceIds[r.row]),
  };
}

