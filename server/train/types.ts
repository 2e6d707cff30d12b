/**
 * The trainer's public types: tasks, examples, options, progress reports and the result of `train`
 * (server/train/trainer.ts). Methods and their defaults are listed in server/train/methods/index.ts.
 * Example:
 *   const o: TrainOptions = { base, method: 'lora', task: 'classification', train: [{ text: 'good', label: 'pos' }] };
 */
import type { Base } from '../model/base';
import type { Manifest } from '../../modules-store/manifest';
import type { Tensor } from '../../modules-store/safetensors';
import type { Method } from './methods';

export const TASKS = ['classification', 'token_classification', 'mlm'] as const;
export type Task = (typeof TASKS)[number];

export interface ClsExample {
  text: string;
  pair?: string;
  label: string;
}
export interface TokExample {
  tokens: string[];
  tags: string[];
}
export interface MlmExample {
  text: string;
}
export type Example = ClsExample | TokExample | MlmExample;

/** A frozen or fused module given to the trainer: its manifest and tensors. */
export interface GivenModule {
  manifest: Manifest;
  tensors: Map<string, Tensor>;
}

export interface TrainOptions {
  base: Base;
  method: Method;
  task: Task;
  /** Training examples (ClsExample for classification, TokExample for token_classification, MlmExample for mlm). */
  train: Example[];
  dev?: Example[];
  /** Label names (index = logit index); default: sorted labels of the training data. */
  labels?: string[];
  /** Module config overrides (AdapterHub / PEFT names). */
  config?: Record<string, unknown>;
  /**
   * Frozen modules below the trained one: adapters / LoRA stay modules of the graph (MAD-X: the language
   * adapter); diff modules are added to the base first (composable-sft: the language SFT), see stacked-base.ts.
   */
  stackOn?: GivenModule[];
  /** AdapterFusion: the frozen adapters to fuse, in order. */
  fuse?: GivenModule[];
  id?: string;
  version?: string;
  language?: string;
  /** default 3; fractions allowed (the step count rounds up) */
  epochs?: number;
  /** Stop after this many optimiser steps (default: epochs). */
  maxSteps?: number;
  /** Stop (as if interrupted) after this optimiser step, schedule unchanged; resume from `checkpointDir`. */
  stopAtStep?: number;
  /** default 16 */
  batchSize?: number;
  /** default 1 */
  gradAccum?: number;
  /** default: the method's */
  lr?: number;
  /** default 0.01 */
  weightDecay?: number;
  /** Fraction of steps for linear warmup (default 0.06). */
  warmupRatio?: number;
  /** default 1.0 */
  maxGradNorm?: number;
  /** default 0 */
  seed?: number;
  /** default 128 */
  maxLength?: number;
  /**
   * Which weights the result holds: 'best' (the best dev evaluation; default with a dev set) or 'last' (the
   * last step; default without one). The end of training always evaluates on dev.
   */
  keep?: 'best' | 'last';
  /** Evaluate on dev every N optimiser steps (default: once per epoch). */
  evalEvery?: number;
  /** Stop after this many evaluations without improvement (default: off). */
  patience?: number;
  /** MLM masking probability (default 0.15). */
  mlmProbability?: number;
  /** Folder for resumable checkpoints (written at each evaluation); resumes when it holds one. */
  checkpointDir?: string;
  /** Threads for onnxruntime (default: all). */
  threads?: number;
  onProgress?: (p: Progress) => void;
  /** Called when a phase of a two-phase method starts. */
  onPhase?: (p: PhaseMarker) => void;
  /**
   * Sparse methods: the number of parameters selected, as a fraction of the eligible ones (composable-sft's
   * ft_params_proportion, rounded down; default the method's: 0.01 LT-SFT, 0.005 Diff Pruning) or exactly
   * (ft_params_num). Not both.
   */
  density?: number;
  nnz?: number;
  /**
   * LT-SFT: tensor groups that may not be selected (composable-sft's freeze_* flags): 'embeddings',
   * 'layer_norm', and for task mlm 'decoder' (output embeddings untied, frozen) and 'head' (the MLM head).
   * Default as composable-sft's scripts: ['layer_norm', 'decoder'] for mlm, ['layer_norm'] for other tasks;
   * [] makes every group eligible. See server/train/methods/sft-groups.ts.
   */
  freeze?: string[];
  /** Diff Pruning L0 coefficient per parameter (default 1.25e-7, Guo et al.). */
  l0Lambda?: number;
}

export interface Progress {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  tokens: number;
  elapsedMs: number;
  eval?: Metrics;
}

/** The start of a phase of a two-phase method (Diff Pruning, LT-SFT); step counts restart in each phase. */
export interface PhaseMarker {
  index: number;
  count: number;
  /** What the phase does, for the progress output. */
  name: string;
}

export type Metrics = Record<string, number>;

export interface TrainResult {
  manifest: Manifest;
  tensors: Map<string, Tensor>;
  metrics: Metrics;
  /** Dev metrics of the starting point (the base, or the base with the frozen stack), before any step. */
  before?: Metrics;
  history: { step: number; loss: number; eval?: Metrics }[];
  steps: number;
  /** Which weights the result holds: the best dev evaluation's or the last step's, at which step of how many. */
  saved: { which: 'best' | 'last'; step: number; of: number };
  /** Entries of the base / module the optimiser changed (the selected ones for sparse methods; heads included). */
  trainableParams: number;
  /** Logits of `predict` on the dev set with the final (best) weights, for consistency checks. */
  predict: (examples: Example[]) => Promise<Float32Array[]>;
  release: () => Promise<void>;
}
