/**
 * A typed builder for compositions, AdapterHub's block vocabulary as the server takes it (`composition` of
 * POST /v1/infer). Each function returns the plain JSON block, so the result can be logged, stored or sent as is.
 * Example: `stack('lang/de', 'task/topic')` → `{ stack: ['lang/de', 'task/topic'] }`;
 *          `parallel(stack('lang/de', 'task/topic'), 'task/ner')`;
 *          `average(['sft/de', 'sft/en'], { weights: [0.7, 0.3] })`.
 */
import type { Composition } from './wire';

export type { Composition };
/** A module reference: `ns/name`, `ns/name@1.0.0` or `ns/name@tag`. */
export type ModuleRef = string;
export interface StackBlock { stack: Composition[] }
export interface SumBlock { sum: Composition[] }
export interface FuseBlock { fuse: Composition[]; fusion: ModuleRef }
export interface ParallelBlock { parallel: Composition[] }
export interface AverageBlock { average: Composition[]; weights?: number[]; normalize_weights?: boolean }

const REF = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+(@[A-Za-z0-9._+-]+)?$/;

function children(block: string, items: Composition[]): Composition[] {
  if (items.length === 0) throw new RangeError(`'${block}' needs at least one module or block, got none`);
  for (const c of items) {
    if (typeof c === 'string' && !REF.test(c)) throw new TypeError(`'${block}': '${c}' is not a module reference (ns/name, ns/name@1.0.0 or ns/name@tag)`);
    if (typeof c !== 'string' && (c === null || typeof c !== 'object')) throw new TypeError(`'${block}': each child must be a module reference or a block, got ${String(c)}`);
  }
  return items;
}

/** Runs the children one after another, each on the output of the one before (MAD-X: language, then task). */
export function stack(...items: Composition[]): StackBlock {
  return { stack: children('stack', items) };
}

/** Adds the children's outputs (LoRA / adapters side by side; sparse diffs summed into the weights). */
export function sum(...items: Composition[]): SumBlock {
  return { sum: children('sum', items) };
}

/** AdapterFusion: attention over the children's outputs, with the fusion module `fusion`. */
export function fuse(fusion: ModuleRef, ...items: Composition[]): FuseBlock {
  if (!REF.test(fusion)) throw new TypeError(`'fuse': the fusion module '${fusion}' is not a module reference (ns/name[@version])`);
  return { fuse: children('fuse', items), fusion };
}

/** Runs each child as its own branch over the same input: one prediction per branch. */
export function parallel(...items: Composition[]): ParallelBlock {
  return { parallel: children('parallel', items) };
}

/** Averages the children's weights (optionally weighted; `normalizeWeights` scales the weights to sum to 1). */
export function average(items: Composition[], opts: { weights?: number[]; normalizeWeights?: boolean } = {}): AverageBlock {
  const block: AverageBlock = { average: children('average', items) };
  if (opts.weights) {
    if (opts.weights.length !== items.length) throw new RangeError(`'average': 'weights' needs one number per child (${items.length}), got ${opts.weights.length}`);
    if (opts.weights.some((w) => !Number.isFinite(w))) throw new RangeError(`'average': 'weights' must be finite numbers, got ${JSON.stringify(opts.weights)}`);
    block.weights = opts.weights;
  }
  if (opts.normalizeWeights !== undefined) block.normalize_weights = opts.normalizeWeights;
  return block;
}
