/**
 * Evaluates a composition of modules with the inference engine on labelled data: accuracy and macro-F1
 * (classification), token micro-F1 (tagging, the first sub-token of each word as in training), perplexity
 * (masked LM). Batches and MLM masks are built exactly as the trainer's dev evaluation builds them (same batch
 * size, seed → same masks), so a module's `modhub eval` figure equals the dev metric its training reported.
 * Example:
 *   const r = await evaluateComposition({ engine, composition: { stack: ['lang/de', 'task/topic'] }, task: 'classification', examples });
 *   r.metrics.accuracy
 */
import { Rng } from '../model/random';
import type { RowPlan } from '../model/composition';
import type { Engine } from '../runtime/engine';
import { batchMaker } from './batches';
import { classificationMetrics, tokenMetrics } from './evaluate';
import type { ClsExample, Example, Metrics, MlmExample, Task, TokExample } from './types';

export interface EvalOptions {
  engine: Engine;
  /** A composition as the inference API takes it (null: the bare base). */
  composition: unknown;
  task: Task;
  examples: Example[];
  /** default 16 (the trainer's default, which decides the MLM masks) */
  batchSize?: number;
  /** default 128 */
  maxLength?: number;
  /** default 0 (the trainer's) */
  seed?: number;
  /** default 0.15 */
  mlmProbability?: number;
}

export interface EvalResult {
  metrics: Metrics;
  /** Examples evaluated. */
  examples: number;
  /** The head's labels (classification, tagging). */
  labels: string[];
  /** Modules of the composition, `id@version` (diffs, adapters, LoRA, fusion). */
  modules: string[];
}

function argmax(x: Float32Array, off: number, n: number): number {
  let best = 0;
  for (let c = 1; c < n; c++) if (x[off + c] > x[off + best]) best = c;
  return best;
}

/** The head's labels; every gold label must be one of them. */
function headLabels(plan: RowPlan, task: Task, gold: string[]): string[] {
  const want = task === 'classification' ? 'classification' : 'token_classification';
  const head = plan.head?.weights;
  if (!head || head.config.type !== want) throw new RangeError(`task '${task}' needs a composition whose head is a ${want} head; this one has ${head ? `a ${head.config.type} head` : 'none'}`);
  const known = new Set(head.labels);
  const unknown = [...new Set(gold.filter((g) => !known.has(g)))];
  if (unknown.length) throw new RangeError(`the data has labels the head does not know: ${unknown.slice(0, 10).join(', ')} (the head's labels: ${head.labels.join(', ')})`);
  return head.labels;
}

export async function evaluateComposition(o: EvalOptions): Promise<EvalResult> {
  const { engine, task, examples } = o;
  if (!examples.length) throw new RangeError('the evaluation data has no examples');
  const base = engine.base;
  const batchSize = o.batchSize ?? 16;
  const maxLength = o.maxLength ?? 128;
  const plans = await engine.plan(o.composition ?? null);
  if (plans.length !== 1) throw new RangeError(`eval needs a composition with one output branch; this one has ${plans.length}`);
  const plan = plans[0];
  const modules = [...plan.diffs, ...plan.adapters, ...plan.loras, ...(plan.fuse ? [...plan.fuse.adapters, plan.fuse.fusion] : [])].map((m) => m.key);
  const gold = task === 'classification' ? (examples as ClsExample[]).map((e) => e.label) : task === 'token_classification' ? (examples as TokExample[]).flatMap((e) => e.tags) : [];
  const labels = task === 'mlm' ? [] : headLabels(plan, task, gold);
  const objective = task === 'classification' ? 'cls' : task === 'token_classification' ? 'tok' : 'mlm';
  const make = batchMaker({ base, objective, labelIndex: new Map(labels.map((l, i) => [l, i])), maxLength, mlmProbability: o.mlmProbability ?? 0.15 });
  // the trainer's evaluator draws masks from Rng(seed + 1) across the batches in order
  const rng = new Rng((o.seed ?? 0) + 1);
  const goldAll: number[] = [];
  const predAll: number[] = [];
  let nll = 0;
  let count = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const chunk = examples.slice(i, i + batchSize);
    const b = await make(chunk, rng);
    const texts = task === 'token_classification' ? (chunk as TokExample[]).map((e) => e.tokens.join(' ')) : (chunk as (ClsExample | MlmExample)[]).map((e) => e.text);
    const pairs = task === 'classification' && (chunk as ClsExample[]).some((e) => e.pair !== undefined) ? (chunk as ClsExample[]).map((e) => e.pair ?? '') : undefined;
    const enc = await base.tokenizer.encodeBatch(texts, pairs, { maxLength });
    // MLM: the masked ids of the batch (the encoding is the same; only some ids were replaced)
    if (task === 'mlm') enc.inputIds = Int32Array.from(b.feeds.input_ids.data as BigInt64Array, Number);
    const out = await engine.forward(enc, chunk.map(() => plan), { mlm: task === 'mlm' });
    const T = enc.length;
    out.forEach((r, row) => {
      if (task === 'classification') {
        goldAll.push(b.gold[row]);
        predAll.push(argmax(r.clsLogits!, 0, labels.length));
        return;
      }
      for (let t = 0; t < T; t++) {
        const g = b.gold[row * T + t];
        if (g < 0) continue;
        if (task === 'token_classification') {
          goldAll.push(g);
          predAll.push(argmax(r.tokLogits!, t * labels.length, labels.length));
          continue;
        }
        const V = r.mlmLogits!.length / T;
        const off = t * V;
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, r.mlmLogits![off + v]);
        let sum = 0;
        for (let v = 0; v < V; v++) sum += Math.exp(r.mlmLogits![off + v] - max);
        nll += max + Math.log(sum) - r.mlmLogits![off + g];
        count++;
      }
    });
  }
  let metrics: Metrics;
  if (task === 'mlm') metrics = { perplexity: Math.exp(nll / Math.max(1, count)), loss: nll / Math.max(1, count), masked_tokens: count };
  else if (task === 'classification') metrics = classificationMetrics(goldAll, predAll, labels.length);
  else metrics = tokenMetrics(goldAll, predAll, labels.lastIndexOf('O'));
  return { metrics, examples: examples.length, labels, modules };
}
