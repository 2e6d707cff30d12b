/**
 * The interface every training method implements (one file per method in this folder, listed in index.ts):
 * its defaults, what a phase trains (module stack, base tensors, extra graph terms, start values, masks) and,
 * for methods with phases, how the phases run and how the result is packaged. The loop (server/train/loop.ts)
 * knows no method by name.
 * Example (a method that trains a new module kind, see module-method.ts):
 *   export const myKind: MethodStrategy = moduleMethod('my_kind', { lr: 1e-3, config: {}, what: 'my kind' });
 */
import type { Base } from '../../model/base';
import type { SlotModule, TrainGraphSpec } from '../graph';
import type { Task, TrainOptions, TrainResult } from '../types';

/** A method's defaults, as its paper / library uses them (shown by `modhub train --help`). */
export interface MethodDefaults {
  lr: number;
  config: Record<string, unknown>;
  what: string;
}

/** What a method sees of the run: the options and the values the trainer derived from them. */
export interface MethodContext {
  o: TrainOptions;
  base: Base;
  task: Task;
  /** Label names, index = logit index. */
  labels: string[];
  /** The trained module's id. */
  id: string;
  seed: number;
}

/** Extra terms of the training graph (regularisers, reparametrised base tensors); see TrainGraphSpec. */
export type GraphTerms = Pick<TrainGraphSpec, 'baseParam' | 'extraLoss' | 'extraTrainable' | 'untieDecoder'>;

/** What one training phase trains. */
export interface PhasePlan {
  /** Modules in stack order; the last one is trained (unless `trainable` is false) and is the result's manifest. */
  modules: SlotModule[];
  /** Canonical base tensors to train. */
  trainableBase: string[];
  /** Extra graph terms for the training graph (`training` true) and the evaluation graph. */
  graphTerms?: (training: boolean) => GraphTerms;
  /** Start value of a trainable input, where it is not the module's tensor or the base weight. */
  paramInit?: (name: string) => { data: Float32Array; dims: number[] } | undefined;
  /** Weight decay per trainable input (default: HF Trainer's policy, `decays` in graph.ts). */
  decay?: (name: string) => boolean;
  /** 0/1 masks of base tensors (canonical names): only the selected entries change. */
  masks?: Map<string, Float32Array>;
}

/** How one phase runs, besides its plan. */
export interface PhaseSettings {
  lr: number;
  /** The method's one-line description, for the manifest. */
  what: string;
  checkpointDir?: string;
}

/** Trains one phase; the result holds the phase's trained tensors packaged as a module (loop.ts). */
export type RunPhase = (ctx: MethodContext, plan: PhasePlan, settings: PhaseSettings) => Promise<TrainResult>;

export interface MethodStrategy {
  readonly defaults: MethodDefaults;
  /** The method-specific options it reads (`config`, `fuse`, `density`, …); others given are an error. */
  readonly uses?: readonly (keyof TrainOptions)[];
  /** What the (first) phase trains. */
  plan(ctx: MethodContext): PhasePlan;
  /** Methods with phases run them here and package the result; without it the method is one phase of `plan`. */
  run?(ctx: MethodContext, runPhase: RunPhase): Promise<TrainResult>;
}
