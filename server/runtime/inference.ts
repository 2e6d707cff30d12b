/**
 * Inference service: texts + a composition in, predictions out. Requests arriving within a few milliseconds of
 * each other are merged into one engine batch even when their compositions differ (the engine serves mixed
 * batches); results are turned into labels, scores, token labels with character offsets, fill-mask tokens or
 * embeddings.
 * Example:
 *   const svc = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 5 });
 *   const res = await svc.infer({ inputs: [{ text: 'Hallo Welt' }], composition: { stack: ['lang/de', 'task/topic'] } });
 */
import client from 'prom-client';
import type { RowPlan } from '../model/composition';
import type { EncodedBatch } from '../model/tokenizer';
import { ModuleError } from '../model/modules';
import type { Engine, RowOutput } from './engine';

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
}

export type Prediction =
  | { type: 'classification'; label: string; score: number; scores: { label: string; score: number }[] }
  | { type: 'token_classification'; tokens: { token: string; label: string; score: number; start: number; end: number }[] }
  | { type: 'fill_mask'; masks: { position: number; candidates: { token: string; token_id: number; score: number }[] }[] }
  | { type: 'embedding'; embedding: number[] };

export interface InferResult {
  /** One entry per input; each holds one prediction per output branch (parallel gives several). */
  results: { branches: Prediction[] }[];
  /** The modules each branch resolved to (`id@version`). */
  modules: string[][];
}

export interface BatcherOptions {
  /** Most rows merged into one engine run (default 32). */
  maxBatchRows?: number;
  /** How long the first queued request waits for company (default 5 ms). */
  maxWaitMs?: number;
  /** Rows allowed to wait; beyond it requests are refused with ServerBusyError (default 4096). */
  maxQueueRows?: number;
  /** Prometheus registry for queue, batch and run metrics (optional). */
  metrics?: client.Registry;
}

/** The queue is full: the HTTP layer answers 503 with Retry-After. */
export class ServerBusyError extends Error {
  constructor(readonly queued: number) {
    super(`the server has ${queued} rows waiting; retry shortly`);
  }
}

interface InferenceMetrics {
  queueSeconds: client.Histogram<string>;
  runSeconds: client.Histogram<string>;
  batchRows: client.Histogram<string>;
  queued: client.Gauge<string>;
  rejected: client.Counter<string>;
}

function inferenceMetrics(reg: client.Registry): InferenceMetrics {
  const get = <T>(name: string, make: () => T): T => (reg.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [reg];
  return {
    queueSeconds: get('modhub_infer_queue_seconds', () => new client.Histogram({ name: 'modhub_infer_queue_seconds', help: 'Time a row waits before its batch runs', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers })),
    runSeconds: get('modhub_infer_run_seconds', () => new client.Histogram({ name: 'modhub_infer_run_seconds', help: 'Engine time per batch', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers })),
    batchRows: get('modhub_infer_batch_rows', () => new client.Histogram({ name: 'modhub_infer_batch_rows', help: 'Rows per engine batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers })),
    queued: get('modhub_infer_queued_rows', () => new client.Gauge({ name: 'modhub_infer_queued_rows', help: 'Rows waiting for a batch', registers })),
    rejected: get('modhub_infer_rejected_total', () => new client.Counter({ name: 'modhub_infer_rejected_total', help: 'Requests refused because the queue was full', registers })),
  };
}

interface Job {
  enc: EncodedBatch;
  row: number;
  plan: RowPlan;
  wantHidden: boolean;
  wantMlm: boolean;
  enqueued: bigint;
  resolve: (o: RowOutput) => void;
  reject: (e: unknown) => void;
}

export class InferenceService {
  private queue: Job[] = [];
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  /** Rows queued or running. */
  private pending = 0;
  readonly stats = { batches: 0, rows: 0 };
  private readonly metrics: InferenceMetrics | null;

  constructor(
    readonly engine: Engine,
    private readonly opts: BatcherOptions = {},
  ) {
    this.metrics = opts.metrics ? inferenceMetrics(opts.metrics) : null;
  }

  async infer(req: InferRequest): Promise<InferResult> {
    const task = req.task ?? 'auto';
    if (!Array.isArray(req.inputs) || req.inputs.length === 0) throw new ModuleError('INVALID_COMPOSITION', "'inputs' must be a non-empty array of {text, text_pair?}");
    const plans = await this.engine.plan(req.composition ?? null, req.head === undefined ? {} : { head: req.head });
    const rows = req.inputs.length * plans.length;
    if (this.pending + rows > (this.opts.maxQueueRows ?? 4096)) {
      this.metrics?.rejected.inc();
      throw new ServerBusyError(this.pending);
    }
    const tok = this.engine.base.tokenizer;
    const texts = req.inputs.map((i) => i.text);
    const hasPairs = req.inputs.some((i) => i.text_pair !== undefined);
    if (hasPairs && !req.inputs.every((i) => typeof i.text_pair === 'string')) {
      throw new ModuleError('INVALID_COMPOSITION', "either every input has a 'text_pair' or none does");
    }
    const enc = await tok.encodeBatch(texts, hasPairs ? req.inputs.map((i) => i.text_pair!) : undefined, req.max_length ? { maxLength: req.max_length } : {});
    const wantMlm = task === 'fill_mask';
    // 'auto' answers with the head's prediction; branches without a classification head give an embedding.
    const wantHidden = task === 'embedding' || (task === 'auto' && plans.some((p) => !p.head || p.head.weights.config.type === 'masked_lm'));
    const outs = await Promise.all(
      req.inputs.flatMap((_, row) => plans.map((plan) => this.enqueue({ enc, row, plan, wantHidden, wantMlm }))),
    );
    const results = req.inputs.map((_, row) => ({
      branches: plans.map((_, b) => this.predict(outs[row * plans.length + b], enc, row, task, req.top_k)),
    }));
    return { results, modules: plans.map((p) => moduleKeys(p)) };
  }

  private enqueue(j: Omit<Job, 'resolve' | 'reject' | 'enqueued'>): Promise<RowOutput> {
    this.pending++;
    this.metrics?.queued.set(this.pending);
    return new Promise<RowOutput>((resolve, reject) => {
      const done = () => {
        this.pending--;
        this.metrics?.queued.set(this.pending);
      };
      this.queue.push({
        ...j,
        enqueued: process.hrtime.bigint(),
        resolve: (o) => {
          done();
          resolve(o);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      this.schedule();
    });
  }

  /**
   * Batch formation: while the engine runs, arrivals wait and the next batch takes everything waiting (up to
   * maxBatchRows) the moment it is free; an idle engine waits maxWaitMs for company before running a lone row.
   */
  private schedule(): void {
    if (this.busy) return;
    const max = this.opts.maxBatchRows ?? 32;
    if (this.queue.length >= max) return this.runNext();
    if (!this.timer) this.timer = setTimeout(() => this.runNext(), this.opts.maxWaitMs ?? 5);
  }

  private runNext(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.busy || !this.queue.length) return;
    const jobs = this.queue.splice(0, this.opts.maxBatchRows ?? 32);
    this.busy = true;
    void this.runJobs(jobs).finally(() => {
      this.busy = false;
      if (this.queue.length) {
        // Whatever arrived during the run goes next, at once.
        if (this.queue.length >= (this.opts.maxBatchRows ?? 32)) this.runNext();
        else setImmediate(() => this.runNext());
      }
    });
  }

  private async runJobs(jobs: Job[]): Promise<void> {
    // Rows that need MLM logits or hidden states run with those outputs; others skip the cost.
    const groups = new Map<string, Job[]>();
    for (const j of jobs) {
      const k = `${j.wantHidden}:${j.wantMlm}`;
      const g = groups.get(k);
      if (g) g.push(j);
      else groups.set(k, [j]);
    }
    for (const group of groups.values()) {
      try {
        const started = process.hrtime.bigint();
        for (const j of group) this.metrics?.queueSeconds.observe(Number(started - j.enqueued) / 1e9);
        const batch = mergeRows(group.map((j) => ({ enc: j.enc, row: j.row })), this.engine.base.tokenizer.padId, this.engine.base.config.positionOffset);
        const out = await this.engine.forward(batch, group.map((j) => j.plan), { hidden: group[0].wantHidden, mlm: group[0].wantMlm });
        this.stats.batches++;
        this.stats.rows += group.length;
        this.metrics?.runSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        this.metrics?.batchRows.observe(group.length);
        group.forEach((j, i) => j.resolve(out[i]));
      } catch (e) {
        group.forEach((j) => j.reject(e));
      }
    }
  }

  private predict(o: RowOutput, enc: EncodedBatch, row: number, task: string, topK?: number): Prediction {
    const T = enc.length;
    const h = o.head?.config;
    if (task === 'fill_mask') {
      const V = this.engine.base.config.vocabSize;
      const maskId = this.engine.base.tokenizer.maskId;
      const masks: { position: number; candidates: { token: string; token_id: number; score: number }[] }[] = [];
      for (let t = 0; t < o.length; t++) {
        if (enc.inputIds[row * T + t] !== maskId) continue;
        const probs = softmax(o.mlmLogits!.subarray(t * V, (t + 1) * V));
        masks.push({
          position: t,
          candidates: topIndices(probs, topK ?? 5).map((id) => ({ token: this.engine.base.tokenizer.idToToken(id) ?? '', token_id: id, score: probs[id] })),
        });
      }
      if (!masks.length) throw new ModuleError('INVALID_COMPOSITION', `fill_mask needs at least one '${this.engine.base.tokenizer.maskToken}' token in every input`);
      return { type: 'fill_mask', masks };
    }
    if (task === 'auto' && h?.type === 'classification' && o.clsLogits) {
      const probs = softmax(o.clsLogits);
      const labels = o.head!.labels;
      const name = (i: number) => labels[i] ?? `LABEL_${i}`;
      const best = topIndices(probs, 1)[0];
      return { type: 'classification', label: name(best), score: probs[best], scores: topIndices(probs, topK ?? probs.length).map((i) => ({ label: name(i), score: probs[i] })) };
    }
    if (task === 'auto' && h?.type === 'token_classification' && o.tokLogits) {
      const C = h.num_labels;
      const labels = o.head!.labels;
      const tokens: { token: string; label: string; score: number; start: number; end: number }[] = [];
      for (let t = 0; t < o.length; t++) {
        if (enc.specialTokensMask[row * T + t]) continue;
        const probs = softmax(o.tokLogits.subarray(t * C, (t + 1) * C));
        const best = topIndices(probs, 1)[0];
        const [start, end] = enc.offsets[row][t] ?? [0, 0];
        tokens.push({ token: enc.tokens[row][t], label: labels[best] ?? `LABEL_${best}`, score: probs[best], start, end });
      }
      return { type: 'token_classification', tokens };
    }
    // Embedding: mean of the real tokens' last hidden states.
    const D = this.engine.base.config.hiddenSize;
    const emb = new Float64Array(D);
    let n = 0;
    for (let t = 0; t < o.length; t++) {
      if (!enc.attentionMask[row * T + t]) continue;
      n++;
      for (let d = 0; d < D; d++) emb[d] += o.hidden![t * D + d];
    }
    return { type: 'embedding', embedding: Array.from(emb, (x) => x / Math.max(1, n)) };
  }
}

function moduleKeys(p: RowPlan): string[] {
  const keys = [...p.diffs, ...p.adapters, ...p.loras].map((m) => m.key);
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

function softmax(x: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]);
  const out = new Float64Array(x.length);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += out[i] = Math.exp(x[i] - m);
  for (let i = 0; i < x.length; i++) out[i] /= s;
  return out;
}

function topIndices(p: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: p.length }, (_, i) => i)
    .sort((a, b) => p[b] - p[a])
    .slice(0, Math.max(1, Math.min(k, p.length)));
}
