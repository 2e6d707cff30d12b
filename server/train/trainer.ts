/**
 * Trains a module: methods (bottleneck adapters, MAD-X language adapters, LoRA, BitFit, Diff Pruning, LT-SFT,
 * AdapterFusion, full fine-tuning, MLM pretraining), objectives (sequence classification, token
 * classification, masked LM), AdamW with linear warmup/decay, clipping, gradient accumulation, periodic dev
 * evaluation with the task metric (also before the first step and always at the end), best- or last-weights
 * selection, early stopping, resumable checkpoints, and a module package as the result. Options that cannot
 * apply to the method are errors; diffs in `stackOn` are applied to the base before training.
 *
 * Where things are: one strategy per method in methods/ (what trains, extra graph terms, phases, packaging),
 * the loop of one phase in loop.ts, batches in batches.ts, metrics in evaluate.ts, checkpoints in
 * checkpoint.ts, packaging in package.ts, stacked diffs in stacked-base.ts, the training graph in graph.ts,
 * AdamW in optim.ts; evaluation of a packaged composition with the engine in engine-eval.ts.
 * Example:
 *   const res = await train({ base, method: 'seq_bn', task: 'classification', train: data.examples, labels });
 *   await writeModulePackage(out, res.manifest, res.tensors);
 */
import { runPhase } from './loop';
import { strategyOf } from './methods';
import type { MethodContext } from './methods/strategy';
import { applyStackedDiffs } from './stacked-base';
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

/** Options that only some methods read (MethodStrategy.uses); the others refuse them rather than ignore them. */
const METHOD_OPTIONS = ['config', 'fuse', 'density', 'nnz', 'l0Lambda', 'freeze'] as const satisfies readonly (keyof TrainOptions)[];

/** Every option that cannot apply to this run is an error that says why (no silent no-ops). */
function checkOptions(o: TrainOptions, strategy: ReturnType<typeof strategyOf>): void {
  const uses = new Set<string>(strategy.uses ?? []);
  for (const k of METHOD_OPTIONS) {
    const v = o[k];
    const set = k === 'config' ? v !== undefined && Object.keys(v as object).length > 0 : k === 'fuse' ? Array.isArray(v) && v.length > 0 : v !== undefined;
    if (set && !uses.has(k)) throw new RangeError(`'${k}' does not apply to method '${o.method}'${uses.size ? ` (it reads ${[...uses].join(', ')})` : ''}`);
  }
  if (o.density !== undefined && o.nnz !== undefined) throw new RangeError("give 'density' or 'nnz', not both");
  const noDev = !o.dev || !o.dev.length;
  if (o.epochs !== undefined && !(o.epochs > 0)) throw new RangeError(`'epochs' must be > 0, got ${o.epochs}`);
  // counts that would make the loop divide by zero, never evaluate or stop at once
  for (const k of ['batchSize', 'gradAccum', 'evalEvery', 'patience', 'maxSteps'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new RangeError(`'${k}' must be an integer >= 1, got ${v}`);
  }
  if (o.maxLength !== undefined && !(Number.isInteger(o.maxLength) && o.maxLength >= 3)) throw new RangeError(`'maxLength' must be an integer >= 3 (room for the special tokens), got ${o.maxLength}`);
  if (o.warmupRatio !== undefined && !(o.warmupRatio >= 0 && o.warmupRatio <= 1)) throw new RangeError(`'warmupRatio' must be in [0, 1], got ${o.warmupRatio}`);
  if (o.mlmProbability !== undefined && !(o.mlmProbability > 0 && o.mlmProbability < 1)) throw new RangeError(`'mlmProbability' must be in (0, 1), got ${o.mlmProbability}`);
  if (o.mlmProbability !== undefined && o.task !== 'mlm') throw new RangeError(`'mlmProbability' applies to task 'mlm', not '${o.task}'`);
  if (o.keep !== undefined && o.keep !== 'best' && o.keep !== 'last') throw new RangeError(`'keep' must be 'best' or 'last', got '${String(o.keep)}'`);
  if (noDev && o.keep === 'best') throw new RangeError("'keep: best' needs a dev set ('dev') to choose the best evaluation");
  if (noDev && o.evalEvery !== undefined) throw new RangeError("'evalEvery' needs a dev set ('dev')");
  if (noDev && o.patience !== undefined) throw new RangeError("'patience' (early stopping) needs a dev set ('dev')");
}

/** Trains a module; see TrainOptions for the defaults. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const strategy = strategyOf(o.method);
  if (!(TASKS as readonly string[]).includes(o.task)) throw new RangeError(`'task' must be one of ${TASKS.join(', ')}; got '${o.task}'`);
  if (!o.train.length) throw new RangeError("'train' has no examples");
  checkOptions(o, strategy);
  // diffs in the stack are added to the base: every method then trains on the base as the composition runs it
  const stacked = applyStackedDiffs(o.base, o.stackOn ?? []);
  const ctx: MethodContext = {
    o: { ...o, base: stacked.base, stackOn: stacked.stackOn },
    base: stacked.base,
    task: o.task,
    labels: o.labels ?? labelsOf(o),
    id: o.id ?? `local/${o.method}-${o.task.replace('_', '-')}`,
    seed: o.seed ?? 0,
  };
  if (strategy.run) return strategy.run(ctx, runPhase);
  return runPhase(ctx, strategy.plan(ctx), { lr: o.lr ?? strategy.defaults.lr, what: strategy.defaults.what, checkpointDir: o.checkpointDir });
}
