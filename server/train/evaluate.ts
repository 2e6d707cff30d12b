/**
 * Evaluation during and after training: the task metric on a dev set (accuracy / macro-F1 for classification,
 * token micro-F1 for tagging, perplexity for MLM), which metric selects the best checkpoint, and the logits
 * of `predict`. MLM masks with a fixed seed, so evaluations of one run compare.
 * Example:
 *   const ev = evaluator({ makeBatch, run, logits: eg.logits, objective: 'cls', labels, batchSize: 16, seed: 0 });
 *   const m = await ev.evaluate(dev);   // { accuracy, macro_f1 }
 */
import { Rng } from '../model/random';
import type { HostTensor } from '../runtime/session';
import type { Objective } from './graph';
import type { Batch, BatchMaker } from './batches';
import type { Example, Metrics, Task } from './types';

/** The metric that selects the best checkpoint, per task. */
export const METRIC_OF: Record<Task, { name: string; higher: boolean }> = {
  classification: { name: 'accuracy', higher: true },
  token_classification: { name: 'f1', higher: true },
  mlm: { name: 'perplexity', higher: false },
};

function argmaxRows(logits: Float32Array, C: number): Int32Array {
  const n = logits.length / C;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[i * C + c] > logits[i * C + best]) best = c;
    out[i] = best;
  }
  return out;
}

/** Accuracy and macro-F1 over labels that occur in gold or predictions. */
export function classificationMetrics(gold: ArrayLike<number>, pred: ArrayLike<number>, C: number): Metrics {
  let correct = 0;
  let n = 0;
  const tp = new Float64Array(C);
  const fp = new Float64Array(C);
  const fn = new Float64Array(C);
  for (let i = 0; i < gold.length; i++) {
    if (gold[i] < 0) continue;
    n++;
    if (gold[i] === pred[i]) {
      correct++;
      tp[gold[i]]++;
    } else {
      fp[pred[i]]++;
      fn[gold[i]]++;
    }
  }
  let f1 = 0;
  let k = 0;
  for (let c = 0; c < C; c++) {
    if (tp[c] + fp[c] + fn[c] === 0) continue;
    k++;
    f1 += (2 * tp[c]) / (2 * tp[c] + fp[c] + fn[c]);
  }
  return { accuracy: n ? correct / n : 0, macro_f1: k ? f1 / k : 0 };
}

/** Token-level micro F1 over tags other than `O` (plus accuracy). */
export function tokenMetrics(gold: ArrayLike<number>, pred: ArrayLike<number>, outside: number): Metrics {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let correct = 0;
  let n = 0;
  for (let i = 0; i < gold.length; i++) {
    if (gold[i] < 0) continue;
    n++;
    if (gold[i] === pred[i]) correct++;
    if (pred[i] !== outside && pred[i] === gold[i]) tp++;
    else {
      if (pred[i] !== outside) fp++;
      if (gold[i] !== outside) fn++;
    }
  }
  return { f1: tp + fp + fn ? (2 * tp) / (2 * tp + fp + fn) : 1, accuracy: n ? correct / n : 0 };
}

export interface Evaluator {
  /** Dev metrics with the current weights. */
  evaluate(examples: Example[]): Promise<Metrics>;
  /** Logits per example with the current weights. */
  predict(examples: Example[]): Promise<Float32Array[]>;
}

/** Runs the evaluation graph over examples in batches; `run` feeds a batch (plus the weights) to that graph. */
export function evaluator(o: {
  makeBatch: BatchMaker;
  run: (b: Batch, outputs: string[]) => Promise<Record<string, HostTensor>>;
  logits: string;
  objective: Objective;
  labels: string[];
  batchSize: number;
  seed: number;
}): Evaluator {
  const { makeBatch, run, logits, objective, labels, batchSize, seed } = o;
  const outsideIdx = labels.lastIndexOf('O'); // as a name → index map of `labels` would give it
  return {
    async evaluate(examples) {
      const er = new Rng(seed + 1);
      const gold: number[] = [];
      const pred: number[] = [];
      let nll = 0;
      let count = 0;
      for (let i = 0; i < examples.length; i += batchSize) {
        const b = await makeBatch(examples.slice(i, i + batchSize), er);
        const r = await run(b, [logits, 'task_loss']);
        if (objective === 'mlm') {
          const n = b.gold.reduce((a, x) => a + (x >= 0 ? 1 : 0), 0);
          nll += (r.task_loss.data as Float32Array)[0] * n;
          count += n;
          continue;
        }
        const p = argmaxRows(r[logits].data as Float32Array, labels.length);
        b.gold.forEach((x, k) => {
          gold.push(x);
          pred.push(p[k]);
        });
      }
      if (objective === 'mlm') return { perplexity: Math.exp(nll / Math.max(1, count)), loss: nll / Math.max(1, count) };
      if (objective === 'cls') return classificationMetrics(gold, pred, labels.length);
      return tokenMetrics(gold, pred, outsideIdx);
    },
    async predict(examples) {
      const out: Float32Array[] = [];
      const er = new Rng(seed + 1);
      for (let i = 0; i < examples.length; i += batchSize) {
        const b = await makeBatch(examples.slice(i, i + batchSize), er);
        const r = await run(b, [logits]);
        const all = r[logits].data as Float32Array;
        const per = all.length / b.B;
        for (let k = 0; k < b.B; k++) out.push(all.slice(k * per, (k + 1) * per));
      }
      return out;
    },
  };
}
