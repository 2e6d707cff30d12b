/**
 * Trains a module: methods (bottleneck adapters, MAD-X language adapters, LoRA, BitFit, Diff Pruning, LT-SFT,
 * AdapterFusion, full fine-tuning, MLM pretraining), objectives (sequence classification, token
 * classification, masked LM), AdamW with linear warmup/decay, clipping, gradient accumulation, periodic dev
 * evaluation with the task metric, best-checkpoint selection, early stopping, resumable checkpoints, and a
 * module package as the result.
 *
 * Where things are: one strategy per method in methods/ (what trains, extra graph terms, phases, packaging),
 * the loop of one phase in loop.ts, batches in batches.ts, metrics in evaluate.ts, checkpoints in
 * checkpoint.ts, packaging in package.ts, the training graph in graph.ts and AdamW in optim.ts.
 * Example:
 *   const res = await train({ base, method: 'seq_bn', task: 'classification', train: data.examples, labels });
 *   await writeModulePackage(out, res.manifest, res.tensors);
 */
import { runPhase } from './loop';
import { strategyOf } from './methods';
import type { MethodContext } from './methods/strategy';
import { TASKS, type ClsExample, type TokExample, type TrainOptions, type TrainResult } from './types';

export { METHODS, METHOD_DEFAULTS, type Method } from './methods';
export { topKMasks } from './methods/sparse';
export { classificationMetrics, tokenMetrics } from './evaluate';
export * from './types';

/** Label names of the training data, sorted (the default of `labels`). */
function labelsOf(o: TrainOptions): string[] {
  if (o.task === 'classification') return [...new Set((o.train as ClsExample[]).map((e) => e.label))].sort();
  if (o.task === 'token_classification') return [...new Set((o.train as TokExample[]).flatMap((e) => e.tags))].sort();
  return [];
}

/** Trains a module; see TrainOptions for the defaults. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const strategy = strategyOf(o.method);
  if (!(TASKS as readonly string[]).includes(o.task)) throw new RangeError(`'task' must be one of ${TASKS.join(', ')}; got '${o.task}'`);
  if (!o.train.length) throw new RangeError("'train' has no examples");
  const ctx: MethodContext = {
    o,
    base: o.base,
    task: o.task,
    labels: o.labels ?? labelsOf(o),
    id: o.id ?? `local/${o.method}-${o.task.replace('_', '-')}`,
    seed: o.seed ?? 0,
  };
  if (strategy.run) return strategy.run(ctx, runPhase);
  return runPhase(ctx, strategy.plan(ctx), { lr: o.lr ?? strategy.defaults.lr, what: strategy.defaults.what, checkpointDir: o.checkpointDir });
}
