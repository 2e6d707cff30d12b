/**
 * The training methods by name, in the order `modhub train --help` lists them. Adding a method: one file in
 * this folder exporting a MethodStrategy (strategy.ts), one line here.
 */
import { bapna, doubleSeqBn, parBn, seqBn, seqBnInv } from './adapter';
import { bitfit } from './bitfit';
import { diffPruning } from './diff-pruning';
import { full } from './full';
import { fusion } from './fusion';
import { ia3 } from './ia3';
import { lora } from './lora';
import { ltSft } from './lt-sft';
import type { MethodDefaults, MethodStrategy } from './strategy';

export const STRATEGIES = {
  seq_bn: seqBn,
  double_seq_bn: doubleSeqBn,
  bapna,
  par_bn: parBn,
  seq_bn_inv: seqBnInv,
  lora,
  ia3,
  bitfit,
  'diff-pruning': diffPruning,
  'lt-sft': ltSft,
  fusion,
  full,
} satisfies Record<string, MethodStrategy>;

export type Method = keyof typeof STRATEGIES;
export const METHODS = Object.keys(STRATEGIES) as Method[];

/** Defaults per method, as the method's paper / library uses them (AdapterHub, PEFT, BitFit, HF Trainer). */
export const METHOD_DEFAULTS = Object.fromEntries(METHODS.map((m) => [m, STRATEGIES[m].defaults])) as Record<Method, MethodDefaults>;

/** The strategy of `method`, or a RangeError naming the methods there are. */
export function strategyOf(method: string): MethodStrategy {
  if (!Object.prototype.hasOwnProperty.call(STRATEGIES, method)) throw new RangeError(`'method' must be one of ${METHODS.join(', ')}; got '${method}'`);
  return STRATEGIES[method as Method];
}
export type { MethodStrategy } from './strategy';
