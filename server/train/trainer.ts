/**
 * The training loop: methods (bottleneck adapters, MAD-X language adapters, LoRA, BitFit, full fine-tuning,
 * MLM pretraining), objectives (sequence classification, token classification, masked LM), AdamW with linear
 * warmup/decay, clipping, gradient accumulation, periodic dev evaluation with the task metric, best-checkpoint
 * selection, early stopping, resumable checkpoints, and a module package as the result.
 *
 * One optimiser step = `gradAccum` session runs of the training graph (server/train/graph.ts), each returning
 * the loss and all gradients, accumulated and applied by AdamW (server/train/optim.ts) in onnxruntime.
 * Example:
 *   const res = await train({ base, method: 'seq_bn', task: 'classification', train: data.examples, labels });
 *   await writeModulePackage(out, res.manifest, res.tensors);
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Base } from '../model/base';
import type { EncodedBatch } from '../model/tokenizer';
import { initModule } from '../model/module-init';
import { Rng } from '../model/random';
import { Session, type HostTensor, type OutputBuffers } from '../runtime/session';
import type { Manifest, ManifestInput } from '../../modules-store/manifest';
import { parseManifest } from '../../modules-store/manifest';
import type { Tensor } from '../../modules-store/safetensors';
import { parseSafetensors, serializeSafetensors } from '../../modules-store/safetensors';
import { buildTrainGraph, decays, type Objective, type SlotModule } from './graph';
import { AdamW, ParamStore, accumulate, linearSchedule, type ParamSpec } from './optim';

export const METHODS = ['seq_bn', 'double_seq_bn', 'bapna', 'par_bn', 'seq_bn_inv', 'lora', 'bitfit', 'diff-pruning', 'lt-sft', 'fusion', 'full'] as const;
export type Method = (typeof METHODS)[number];
export const TASKS = ['classification', 'token_classification', 'mlm'] as const;
export type Task = (typeof TASKS)[number];

/** Defaults per method, as the method's paper / library uses them (AdapterHub, PEFT, BitFit, HF Trainer). */
export const METHOD_DEFAULTS: Record<Method, { lr: number; config: Record<string, unknown>; what: string }> = {
  seq_bn: { lr: 1e-4, config: { preset: 'seq_bn' }, what: 'Pfeiffer bottleneck adapter after the FFN (relu, reduction 16)' },
  double_seq_bn: { lr: 1e-4, config: { preset: 'double_seq_bn' }, what: 'Houlsby adapters after attention and FFN (swish, reduction 16)' },
  bapna: { lr: 1e-4, config: { preset: 'seq_bn', ln_before: true, residual_before_ln: false }, what: 'Bapna & Firat adapter with its own LayerNorm (ln_before)' },
  par_bn: { lr: 1e-4, config: { preset: 'par_bn' }, what: 'parallel adapter (reduction 2, scaling 4)' },
  seq_bn_inv: { lr: 1e-4, config: { preset: 'seq_bn_inv', non_linearity: 'gelu', reduction_factor: 2 }, what: 'MAD-X language adapter + invertible adapter (MLM; gelu, reduction 2)' },
  lora: { lr: 5e-4, config: { r: 8, lora_alpha: 8, target_modules: ['query', 'value'] }, what: 'LoRA on query and value (r 8, alpha 8)' },
  bitfit: { lr: 1e-3, config: { method: 'bitfit' }, what: 'BitFit: bias terms + head' },
  'diff-pruning': { lr: 1e-3, config: { method: 'diff-pruning', density: 0.005 }, what: 'Diff Pruning: hard-concrete L0 gates (Louizos 2017; beta 2/3, gamma -0.1, zeta 1.1, lambda 1.25e-7), magnitude projection to density 0.5%, fixed-mask fine-tuning' },
  'lt-sft': { lr: 2e-5, config: { method: 'lt-sft', density: 0.01 }, what: 'LT-SFT: full fine-tune, keep the top 1% |change|, reset, train only those' },
  fusion: { lr: 5e-5, config: { dynamic: true, temperature: 1 }, what: 'AdapterFusion over frozen adapters (--fuse), dynamic (query, key, value; value regularised to identity)' },
  full: { lr: 2e-5, config: { method: 'full' }, what: 'full fine-tuning (dense diff of every tensor)' },
};

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

export interface TrainOptions {
  base: Base;
  method: Method;
  task: Task;
  /** Training examples (ClsExample for classification, TokExample for token_classification, MlmExample for mlm). */
  train: (ClsExample | TokExample | MlmExample)[];
  dev?: (ClsExample | TokExample | MlmExample)[];
  /** Label names (index = logit index); default: sorted labels of the training data. */
  labels?: string[];
  /** Module config overrides (AdapterHub / PEFT names). */
  config?: Record<string, unknown>;
  /** Frozen modules stacked below the trained adapter (MAD-X: the language adapter). */
  stackOn?: { manifest: Manifest; tensors: Map<string, Tensor> }[];
  /** AdapterFusion: the frozen adapters to fuse, in order. */
  fuse?: { manifest: Manifest; tensors: Map<string, Tensor> }[];
  id?: string;
  version?: string;
  language?: string;
  /** default 3 */
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
  /** Sparse methods: fraction of base parameters kept (default: the method's) or an exact count. */
  density?: number;
  nnz?: number;
  /** Diff Pruning L0 coefficient per parameter (default 1.25e-7, Guo et al.). */
  l0Lambda?: number;
  /** @internal phase plumbing of the sparse methods */
  _phase?: { start?: Map<string, Float32Array>; masks?: Map<string, Float32Array>; head?: Map<string, Tensor>; gates?: boolean };
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

export type Metrics = Record<string, number>;

export interface TrainResult {
  manifest: Manifest;
  tensors: Map<string, Tensor>;
  metrics: Metrics;
  history: { step: number; loss: number; eval?: Metrics }[];
  steps: number;
  /** Logits of `predict` on the dev set with the final (best) weights, for consistency checks. */
  predict: (examples: (ClsExample | TokExample | MlmExample)[]) => Promise<Float32Array[]>;
  release: () => Promise<void>;
}

const METRIC_OF: Record<Task, { name: string; higher: boolean }> = {
  classification: { name: 'accuracy', higher: true },
  token_classification: { name: 'f1', higher: true },
  mlm: { name: 'perplexity', higher: false },
};

// ---- batches -------------------------------------------------------------------------------------------

interface Batch {
  feeds: Record<string, HostTensor>;
  tokens: number;
  B: number;
  T: number;
  /** gold label per scored position (-1 = ignored): [B] or [B*T] */
  gold: Int32Array;
}

function i64(dims: number[], src: ArrayLike<number>): HostTensor {
  const d = new BigInt64Array(src.length);
  for (let i = 0; i < src.length; i++) d[i] = BigInt(src[i]);
  return { type: 'int64', dims, data: d };
}

function baseFeeds(base: Base, enc: EncodedBatch): Record<string, HostTensor> {
  const B = enc.batch;
  const T = enc.length;
  const f: Record<string, HostTensor> = {
    input_ids: i64([B, T], enc.inputIds),
    position_ids: i64([B, T], enc.positionIds),
    attention_mask: { type: 'float32', dims: [B, T], data: Float32Array.from(enc.attentionMask) },
  };
  if (base.config.typeVocabSize > 0) f.token_type_ids = i64([B, T], enc.tokenTypeIds);
  return f;
}

async function clsBatch(base: Base, ex: ClsExample[], labelIndex: Map<string, number>, maxLength: number): Promise<Batch> {
  const pairs = ex.some((e) => e.pair !== undefined) ? ex.map((e) => e.pair ?? '') : undefined;
  const enc = await base.tokenizer.encodeBatch(ex.map((e) => e.text), pairs, { maxLength });
  const B = enc.batch;
  const gold = Int32Array.from(ex.map((e) => labelIndex.get(e.label) ?? -1));
  const w = Float32Array.from(gold, (x) => (x >= 0 ? 1 / B : 0));
  return {
    feeds: { ...baseFeeds(base, enc), labels: i64([B, 1], Array.from(gold, (x) => Math.max(0, x))), label_weights: { type: 'float32', dims: [B, 1], data: w } },
    tokens: enc.lengths.reduce((a, b) => a + b, 0),
    B,
    T: enc.length,
    gold,
  };
}

async function tokBatch(base: Base, ex: TokExample[], labelIndex: Map<string, number>, maxLength: number): Promise<Batch> {
  // words joined by spaces; the first sub-token of each word carries the word's tag (HF run_ner default)
  const enc = await base.tokenizer.encodeBatch(ex.map((e) => e.tokens.join(' ')), undefined, { maxLength });
  const B = enc.batch;
  const T = enc.length;
  const gold = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) {
    let prev: number | null = null;
    enc.wordIds[b].forEach((wid, t) => {
      if (wid !== null && wid !== prev && wid < ex[b].tags.length) gold[b * T + t] = labelIndex.get(ex[b].tags[wid]) ?? -1;
      prev = wid;
    });
  }
  const n = gold.reduce((a, x) => a + (x >= 0 ? 1 : 0), 0) || 1;
  return {
    feeds: { ...baseFeeds(base, enc), labels: i64([B, T, 1], Array.from(gold, (x) => Math.max(0, x))), label_weights: { type: 'float32', dims: [B, T, 1], data: Float32Array.from(gold, (x) => (x >= 0 ? 1 / n : 0)) } },
    tokens: enc.lengths.reduce((a, b) => a + b, 0),
    B,
    T,
    gold,
  };
}

/** BERT masking: each non-special token with probability p; of those 80% [MASK], 10% random, 10% kept. */
async function mlmBatch(base: Base, ex: MlmExample[], rng: Rng, p: number, maxLength: number): Promise<Batch> {
  const tok = base.tokenizer;
  const enc = await tok.encodeBatch(ex.map((e) => e.text), undefined, { maxLength });
  const B = enc.batch;
  const T = enc.length;
  const ids = Int32Array.from(enc.inputIds);
  const gold = new Int32Array(B * T).fill(-1);
  const V = base.config.vocabSize;
  for (let i = 0; i < B * T; i++) {
    if (enc.specialTokensMask[i] || !enc.attentionMask[i]) continue;
    if (rng.next() >= p) continue;
    gold[i] = ids[i];
    const r = rng.next();
    if (r < 0.8) ids[i] = tok.maskId;
    else if (r < 0.9) ids[i] = rng.int(Math.min(V, tok.vocabSize));
  }
  // at least one scored token per batch, so the loss is defined
  if (!gold.some((x) => x >= 0)) {
    const i = enc.specialTokensMask.findIndex((s, k) => !s && enc.attentionMask[k] === 1);
    if (i >= 0) {
      gold[i] = ids[i];
      ids[i] = tok.maskId;
    }
  }
  const n = gold.reduce((a, x) => a + (x >= 0 ? 1 : 0), 0) || 1;
  const feeds = baseFeeds(base, { ...enc, inputIds: ids });
  return {
    feeds: { ...feeds, labels: i64([B, T, 1], Array.from(gold, (x) => Math.max(0, x))), label_weights: { type: 'float32', dims: [B, T, 1], data: Float32Array.from(gold, (x) => (x >= 0 ? 1 / n : 0)) } },
    tokens: enc.lengths.reduce((a, b) => a + b, 0),
    B,
    T,
    gold,
  };
}

// ---- metrics -------------------------------------------------------------------------------------------

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

// ---- method setup --------------------------------------------------------------------------------------

function headConfig(task: Task, labels: string[]): { type: 'classification' | 'token_classification' | 'masked_lm'; labels?: string[]; layers?: 1 | 2 } {
  if (task === 'classification') return { type: 'classification', labels, layers: 2 };
  if (task === 'token_classification') return { type: 'token_classification', labels };
  return { type: 'masked_lm' };
}

/** A head-only module (BitFit, full FT): the head tensors of a diff module. */
function headOnlyModule(base: Base, task: Task, labels: string[], seed: number, id: string, method: string): SlotModule {
  if (task === 'mlm') {
    const m = parseManifest(diffManifestInput(base, id, '0.1.0', method, null, [], 'mlm'));
    return { manifest: m, tensors: new Map(), trainable: true };
  }
  const init = initModule(base, { kind: 'lora', id, config: { r: 1, lora_alpha: 1, target_modules: ['query'], leave_out: [...Array(base.config.numLayers).keys()] }, head: headConfig(task, labels), seed });
  const tensors = new Map([...init.tensors].filter(([k]) => k.startsWith('head.')));
  const manifest = parseManifest(diffManifestInput(base, id, '0.1.0', method, init.manifest.head, labels, task));
  return { manifest, tensors, trainable: true };
}

function diffManifestInput(base: Base, id: string, version: string, method: string, head: Manifest['head'] | null, labels: string[], task: string): ManifestInput {
  const cfg = base.config;
  return {
    format_version: 1,
    id,
    version,
    kind: 'diff',
    config: { method },
    head,
    task,
    labels,
    base: { family: cfg.family, fingerprint: base.fingerprint, hidden_size: cfg.hiddenSize, num_layers: cfg.numLayers, vocab_size: cfg.vocabSize, intermediate_size: cfg.intermediateSize },
    description: `${method} module trained by modhub`,
  } as ManifestInput;
}

function shuffle<T>(a: T[], rng: Rng): T[] {
  const out = a.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Trains a module; see TrainOptions for the defaults. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  if (o.method === 'diff-pruning' || o.method === 'lt-sft') return trainSparse(o);
  return trainCore(o);
}

async function trainCore(o: TrainOptions): Promise<TrainResult> {
  const { base, method, task } = o;
  if (!(METHODS as readonly string[]).includes(method)) throw new RangeError(`'method' must be one of ${METHODS.join(', ')}; got '${method}'`);
  if (!(TASKS as readonly string[]).includes(task)) throw new RangeError(`'task' must be one of ${TASKS.join(', ')}; got '${task}'`);
  if (!o.train.length) throw new RangeError("'train' has no examples");
  const seed = o.seed ?? 0;
  const defaults = METHOD_DEFAULTS[method];
  const objective: Objective = task === 'classification' ? 'cls' : task === 'token_classification' ? 'tok' : 'mlm';
  const labels =
    o.labels ??
    (task === 'classification'
      ? [...new Set((o.train as ClsExample[]).map((e) => e.label))].sort()
      : task === 'token_classification'
        ? [...new Set((o.train as TokExample[]).flatMap((e) => e.tags))].sort()
        : []);
  const labelIndex = new Map(labels.map((l, i) => [l, i]));
  const id = o.id ?? `local/${method}-${task.replace('_', '-')}`;
  const maxLength = o.maxLength ?? 128;

  // modules + trainable base tensors
  const modules: SlotModule[] = (o.stackOn ?? []).map((m) => ({ ...m, trainable: false }));
  let trainableBase: string[] = [];
  const isAdapter = ['seq_bn', 'double_seq_bn', 'bapna', 'par_bn', 'seq_bn_inv'].includes(method);
  if (method === 'fusion') {
    if (!o.fuse?.length) throw new RangeError("method 'fusion' needs 'fuse': the adapters to fuse");
    for (const m of o.fuse) modules.push({ ...m, trainable: false });
    const init = initModule(base, {
      kind: 'fusion',
      id,
      version: o.version,
      config: { ...defaults.config, ...(o.config ?? {}), adapters: o.fuse.map((m) => m.manifest.id) },
      head: headConfig(task, labels),
      task: task === 'classification' ? 'classification' : task,
      seed,
    });
    modules.push({ manifest: init.manifest, tensors: init.tensors, trainable: true });
  } else if (isAdapter || method === 'lora') {
    const init = initModule(base, {
      kind: method === 'lora' ? 'lora' : 'bottleneck',
      id,
      version: o.version,
      config: { ...defaults.config, ...(o.config ?? {}) },
      head: headConfig(task, labels),
      task: task === 'mlm' ? 'mlm' : task === 'classification' ? 'classification' : 'ner',
      language: o.language,
      seed,
    });
    modules.push({ manifest: init.manifest, tensors: init.tensors, trainable: true });
  } else {
    modules.push(headOnlyModule(base, task, labels, seed, id, method));
    const names = [...base.weights.keys()].filter((n) => !n.startsWith('pooler.'));
    trainableBase = method === 'bitfit' ? names.filter((n) => n.endsWith('.bias')) : names;
    if (task !== 'mlm') trainableBase = trainableBase.filter((n) => !n.startsWith('mlm.'));
  }

  if (o._phase?.head) for (const [k, t] of o._phase.head) modules[modules.length - 1].tensors.set(k, t);
  const gated = o._phase?.gates ? new Set(trainableBase.filter((n) => !n.startsWith('mlm.'))) : null;
  if (gated) trainableBase = [];
  const gateHooks = (training: boolean) => (gated ? hardConcreteGates(base, gated, training, seed, o.l0Lambda ?? 1.25e-7) : {});
  const spec = { base, modules, objective, trainableBase };
  const tg = buildTrainGraph({ ...spec, ...gateHooks(true) });
  const eg = buildTrainGraph({ ...spec, ...gateHooks(false), grad: false });
  const [stepSess, evalSess] = await Promise.all([Session.create(tg.bytes, { threads: o.threads }), Session.create(eg.bytes, { threads: o.threads })]);

  // parameters
  const initial = new Map<string, Float32Array>();
  const specs: ParamSpec[] = tg.params.map((name) => {
    let data: Float32Array;
    let dims: number[];
    if (name.startsWith('base:')) {
      const t = base.weights.get(name.slice(5))!;
      data = o._phase?.start?.get(name.slice(5)) ?? t.data;
      dims = [...t.shape];
    } else if (name.startsWith('dp.')) {
      const t = base.weights.get(name.slice(name.indexOf(':') + 1))!;
      dims = [...t.shape];
      // w starts at 0 (θ = θ₀); log α at 3 (gates open with probability ~0.99 at the start)
      data = new Float32Array(t.data.length).fill(name.startsWith('dp.la:') ? 3 : 0);
    } else {
      const m = /^m(\d+):(.*)$/.exec(name)!;
      const t = modules[Number(m[1])].tensors.get(m[2])!;
      data = t.data as Float32Array;
      dims = [...t.shape];
    }
    initial.set(name, data);
    return { name, dims, data, decay: !name.startsWith('dp.la:') && decays(name) };
  });
  const store = new ParamStore(specs);
  for (const [n, m] of o._phase?.masks ?? []) if (store.views.has(`base:${n}`)) store.setMask(`base:${n}`, m);
  const opt = await AdamW.create(store, { lr: o.lr ?? defaults.lr, weightDecay: o.weightDecay ?? 0.01, maxGradNorm: o.maxGradNorm ?? 1.0 });

  const batchSize = o.batchSize ?? 16;
  const accum = o.gradAccum ?? 1;
  const epochs = o.epochs ?? 3;
  const stepsPerEpoch = Math.max(1, Math.floor(Math.ceil(o.train.length / batchSize) / accum));
  const totalSteps = o.maxSteps ?? stepsPerEpoch * epochs;
  const warmup = Math.round((o.warmupRatio ?? 0.06) * totalSteps);
  const evalEvery = o.evalEvery ?? stepsPerEpoch;
  const metric = METRIC_OF[task];
  const outsideIdx = labelIndex.get('O') ?? -1;

  const makeBatch = (ex: unknown[], r: Rng) =>
    objective === 'cls' ? clsBatch(base, ex as ClsExample[], labelIndex, maxLength) : objective === 'tok' ? tokBatch(base, ex as TokExample[], labelIndex, maxLength) : mlmBatch(base, ex as MlmExample[], r, o.mlmProbability ?? 0.15, maxLength);

  const run = async (sess: Session, b: Batch, outputs: string[], into?: OutputBuffers) => sess.run({ ...b.feeds, ...tg.indexFeeds(b.B), ...store.feeds() }, outputs, into);
  // The first micro-batch of a step writes its gradients straight into the store's accumulators.
  const gradBuffers = store.gradBuffers(tg.params, tg.gradNames);

  /** Dev evaluation with the task metric (MLM masks with a fixed seed, so evaluations compare). */
  const evaluate = async (examples: unknown[]): Promise<Metrics> => {
    const er = new Rng(seed + 1);
    const gold: number[] = [];
    const pred: number[] = [];
    let nll = 0;
    let count = 0;
    for (let i = 0; i < examples.length; i += batchSize) {
      const b = await makeBatch(examples.slice(i, i + batchSize), er);
      const r = await run(evalSess, b, [eg.logits, 'task_loss']);
      if (objective === 'mlm') {
        const n = b.gold.reduce((a, x) => a + (x >= 0 ? 1 : 0), 0);
        nll += (r.task_loss.data as Float32Array)[0] * n;
        count += n;
        continue;
      }
      const C = labels.length;
      const p = argmaxRows(r[eg.logits].data as Float32Array, C);
      b.gold.forEach((x, k) => {
        gold.push(x);
        pred.push(p[k]);
      });
    }
    if (objective === 'mlm') return { perplexity: Math.exp(nll / Math.max(1, count)), loss: nll / Math.max(1, count) };
    if (objective === 'cls') return classificationMetrics(gold, pred, labels.length);
    return tokenMetrics(gold, pred, outsideIdx);
  };

  // resumable checkpoint
  let step = 0;
  let epochOrder: unknown[] = [];
  let cursor = 0;
  const history: TrainResult['history'] = [];
  let best: { value: number; snap: Float32Array[]; metrics: Metrics; step: number } | null = null;
  let bad = 0;
  const ckDir = o.checkpointDir;
  if (ckDir && fs.existsSync(path.join(ckDir, 'state.json'))) {
    const st = JSON.parse(fs.readFileSync(path.join(ckDir, 'state.json'), 'utf8'));
    const t = parseSafetensors(fs.readFileSync(path.join(ckDir, 'optimizer.safetensors'))).tensors;
    store.groups.forEach((g, i) => {
      g.params.set(t.get(`p${i}`)!.data as Float32Array);
      g.m.set(t.get(`m${i}`)!.data as Float32Array);
      g.v.set(t.get(`v${i}`)!.data as Float32Array);
    });
    step = st.step;
    opt.t = st.t;
    bad = st.bad ?? 0;
    history.push(...st.history);
    if (st.best) best = { value: st.best.value, metrics: st.best.metrics, step: st.best.step, snap: store.groups.map((_, i) => t.get(`best${i}`)!.data as Float32Array) };
  }
  const saveCheckpoint = () => {
    if (!ckDir) return;
    fs.mkdirSync(ckDir, { recursive: true });
    const t = new Map<string, Tensor>();
    store.groups.forEach((g, i) => {
      t.set(`p${i}`, { dtype: 'F32', shape: [g.params.length], data: g.params });
      t.set(`m${i}`, { dtype: 'F32', shape: [g.m.length], data: g.m });
      t.set(`v${i}`, { dtype: 'F32', shape: [g.v.length], data: g.v });
      if (best) t.set(`best${i}`, { dtype: 'F32', shape: [best.snap[i].length], data: best.snap[i] });
    });
    fs.writeFileSync(path.join(ckDir, 'optimizer.safetensors.tmp'), serializeSafetensors(t));
    fs.renameSync(path.join(ckDir, 'optimizer.safetensors.tmp'), path.join(ckDir, 'optimizer.safetensors'));
    fs.writeFileSync(path.join(ckDir, 'state.json'), JSON.stringify({ step, t: opt.t, bad, history, best: best && { value: best.value, metrics: best.metrics, step: best.step } }));
  };

  // Data order is a pure function of (seed, epoch), so a resumed run sees the same batches.
  const orderFor = (epoch: number) => shuffle(o.train, new Rng(seed * 1000003 + epoch));
  const t0 = Date.now();
  let tokens = 0;
  const maskRng = new Rng(seed + 7);
  while (step < totalSteps) {
    const epoch = Math.floor(step / stepsPerEpoch);
    const within = step % stepsPerEpoch;
    epochOrder = orderFor(epoch);
    cursor = within * accum * batchSize;
    let lossSum = 0;
    for (let a = 0; a < accum; a++) {
      let ex = epochOrder.slice(cursor, cursor + batchSize);
      if (!ex.length) ex = epochOrder.slice(0, batchSize);
      cursor += batchSize;
      const b = await makeBatch(ex, maskRng);
      tokens += b.tokens;
      const r = await run(stepSess, b, ['loss', ...tg.gradNames], a === 0 ? gradBuffers : undefined);
      lossSum += (r.loss.data as Float32Array)[0];
      if (a > 0) for (let k = 0; k < tg.params.length; k++) await accumulate(store.views.get(tg.params[k])!.grad, r[tg.gradNames[k]].data as Float32Array);
    }
    const lrf = linearSchedule(step, warmup, totalSteps);
    await opt.step(lrf, accum);
    step++;
    const loss = lossSum / accum;
    const h: TrainResult['history'][number] = { step, loss };
    const doEval = o.dev && o.dev.length && (step % evalEvery === 0 || step === totalSteps);
    if (doEval) {
      const m = await evaluate(o.dev!);
      h.eval = m;
      const v = m[metric.name];
      if (!best || (metric.higher ? v > best.value : v < best.value)) {
        best = { value: v, snap: store.snapshot(), metrics: m, step };
        bad = 0;
      } else bad++;
    }
    history.push(h);
    o.onProgress?.({ step, totalSteps, loss, lr: opt.opts.lr * lrf, tokens, elapsedMs: Date.now() - t0, eval: h.eval });
    if (doEval) saveCheckpoint();
    if (doEval && o.patience !== undefined && bad >= o.patience) break;
    if (o.stopAtStep !== undefined && step >= o.stopAtStep) break;
  }
  if (best) store.restore(best.snap);
  const metrics: Metrics = best ? { ...best.metrics } : o.dev?.length ? await evaluate(o.dev) : {};

  // ---- package ----------------------------------------------------------------------------------------
  const trainedMod = modules[modules.length - 1];
  const tensors = new Map<string, Tensor>();
  for (const name of tg.params) {
    const data = store.get(name).slice();
    const dims = store.views.get(name)!.dims;
    if (name.startsWith('base:')) {
      const canonical = name.slice(5);
      const hf = base.hfNames.get(canonical) ?? canonical;
      const init = initial.get(name)!;
      const delta = new Float32Array(data.length);
      // delta = θ - θ₀ once at packaging time (not a training hot path)
      for (let i = 0; i < delta.length; i++) delta[i] = data[i] - init[i];
      tensors.set(`${hf}.dense`, { dtype: 'F32', shape: dims, data: delta });
    } else if (name.startsWith('dp.')) {
      tensors.set(name, { dtype: 'F32', shape: dims, data });
    } else {
      tensors.set(name.replace(/^m\d+:/, ''), { dtype: 'F32', shape: dims, data });
    }
  }
  // frozen tensors of the trained module that were not graph inputs (none today) keep their values
  for (const [k, t] of trainedMod.tensors) if (!tensors.has(k) && trainedMod.trainable) tensors.set(k, t);
  const baseManifest = trainedMod.manifest;
  const manifest = parseManifest({
    ...(baseManifest as unknown as Record<string, unknown>),
    id,
    version: o.version ?? baseManifest.version,
    metrics: Object.fromEntries(Object.entries(metrics).filter(([, v]) => Number.isFinite(v))),
    description: `${defaults.what}; trained by modhub for ${task} (${step} steps)`,
    ...(o.language ? { language: o.language } : {}),
  });

  const predict = async (examples: unknown[]): Promise<Float32Array[]> => {
    const out: Float32Array[] = [];
    const er = new Rng(seed + 1);
    for (let i = 0; i < examples.length; i += batchSize) {
      const b = await makeBatch(examples.slice(i, i + batchSize), er);
      const r = await run(evalSess, b, [eg.logits]);
      const all = r[eg.logits].data as Float32Array;
      const per = all.length / b.B;
      for (let k = 0; k < b.B; k++) out.push(all.slice(k * per, (k + 1) * per));
    }
    return out;
  };
  return {
    manifest,
    tensors,
    metrics,
    history,
    steps: step,
    predict: predict as TrainResult['predict'],
    release: async () => {
      await stepSess.release();
      await evalSess.release();
    },
  };
}

// ---- sparse methods ------------------------------------------------------------------------------------

/** Hard-concrete stretch and temperature (Louizos et al. 2017, as Guo et al. 2020 use them). */
const HC = { beta: 2 / 3, gamma: -0.1, zeta: 1.1 };

/**
 * Diff Pruning gates: θ = θ₀ + z ⊙ w with z = min(1, max(0, sigmoid((log u − log(1−u) + log α)/β)(ζ−γ)+γ)),
 * u ~ U(0,1) drawn in the graph (RandomUniformLike, seeded); at evaluation z uses sigmoid(log α). Adds the
 * expected-L0 penalty λ Σ sigmoid(log α − β log(−γ/ζ)).
 */
function hardConcreteGates(base: Base, gated: Set<string>, training: boolean, seed: number, lambda: number) {
  const created: import('../model/graph/builder').Value[] = [];
  const l0: import('../model/graph/builder').Value[] = [];
  let n = 0;
  return {
    baseParam: (g: import('../model/graph/builder').GraphBuilder, name: string, frozen: import('../model/graph/builder').Value) => {
      if (!gated.has(name)) return null;
      const t = base.weights.get(name)!;
      const w = g.input(`dp.w:${name}`, 'float32', [...t.shape]);
      const la = g.input(`dp.la:${name}`, 'float32', [...t.shape]);
      created.push(w, la);
      n += t.data.length;
      let s: import('../model/graph/builder').Value;
      if (training) {
        const u = g.node('RandomUniformLike', [la], { low: { float: 1e-6 }, high: { float: 1 - 1e-6 }, seed: { float: seed * 7919 + created.length } }, [{ type: 'float32', shape: la.shape }])[0];
        const logit = g.sub(g.unary('Log', u), g.unary('Log', g.sub(g.constFloat(1), u)));
        s = g.unary('Sigmoid', g.div(g.add(logit, la), g.constFloat(HC.beta)));
      } else s = g.unary('Sigmoid', la);
      const z = g.min(g.constFloat(1), g.max(g.constFloat(0), g.add(g.mul(s, g.constFloat(HC.zeta - HC.gamma)), g.constFloat(HC.gamma))));
      l0.push(g.reduce('ReduceSum', g.unary('Sigmoid', g.sub(la, g.constFloat(HC.beta * Math.log(-HC.gamma / HC.zeta)))), t.shape.map((_, i) => i), false));
      return g.add(frozen, g.mul(z, w));
    },
    extraLoss: (g: import('../model/graph/builder').GraphBuilder) => {
      if (!l0.length) return null;
      let sum = l0[0];
      for (let i = 1; i < l0.length; i++) sum = g.add(sum, l0[i]);
      void n;
      return g.mul(sum, g.constFloat(lambda));
    },
    extraTrainable: () => created,
  };
}

/** Deterministic gate value at the end of Diff Pruning (one-time, load-time JS). */
function gateValue(la: number): number {
  const s = 1 / (1 + Math.exp(-la));
  return Math.min(1, Math.max(0, s * (HC.zeta - HC.gamma) + HC.gamma));
}

/** 0/1 masks selecting exactly K entries of largest |value| over all tensors (ties broken by order). */
export function topKMasks(deltas: Map<string, Float32Array>, K: number): Map<string, Float32Array> {
  const total = [...deltas.values()].reduce((a, d) => a + d.length, 0);
  if (!Number.isInteger(K) || K < 1 || K > total) throw new RangeError(`'nnz' must be an integer in [1, ${total}], got ${K}`);
  const all = new Float32Array(total);
  let off = 0;
  for (const d of deltas.values()) {
    for (let i = 0; i < d.length; i++) all[off + i] = Math.abs(d[i]);
    off += d.length;
  }
  const sorted = all.slice().sort();
  const thr = sorted[total - K];
  let above = 0;
  for (let i = 0; i < total; i++) if (all[i] > thr) above++;
  let ties = K - above;
  const masks = new Map<string, Float32Array>();
  for (const [name, d] of deltas) {
    const m = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) {
      const a = Math.abs(d[i]);
      if (a > thr) m[i] = 1;
      else if (a === thr && ties > 0) {
        m[i] = 1;
        ties--;
      }
    }
    masks.set(name, m);
  }
  return masks;
}

/** Diff Pruning and LT-SFT: phase 1 (gated / full), select K, phase 2 with fixed masks; sparse diff module. */
async function trainSparse(o: TrainOptions): Promise<TrainResult> {
  const { base } = o;
  const defaults = METHOD_DEFAULTS[o.method];
  const inner: TrainOptions = { ...o, method: 'full', lr: o.lr ?? defaults.lr };
  const names = [...base.weights.keys()].filter((n) => !n.startsWith('pooler.') && (o.task === 'mlm' || !n.startsWith('mlm.')));
  const N = names.reduce((a, n) => a + base.weights.get(n)!.data.length, 0);
  const density = o.density ?? (defaults.config.density as number);
  const K = o.nnz ?? Math.max(1, Math.round(density * N));

  // phase 1
  const p1 = await trainCore({ ...inner, _phase: { gates: o.method === 'diff-pruning' } });
  await p1.release();
  const byHf = new Map([...base.hfNames].map(([c, h]) => [h, c]));
  const deltas = new Map<string, Float32Array>();
  if (o.method === 'diff-pruning') {
    for (const n of names) {
      const w = p1.tensors.get(`dp.w:${n}`)?.data as Float32Array | undefined;
      const la = p1.tensors.get(`dp.la:${n}`)?.data as Float32Array | undefined;
      if (!w || !la) continue;
      deltas.set(n, Float32Array.from(w, (x, i) => x * gateValue(la[i])));
    }
  } else {
    for (const [k, t] of p1.tensors) {
      if (!k.endsWith('.dense')) continue;
      const c = byHf.get(k.slice(0, -6)) ?? k.slice(0, -6);
      if (names.includes(c)) deltas.set(c, t.data as Float32Array);
    }
  }
  const masks = topKMasks(deltas, K);
  // phase 2 starts from θ₀ + projected δ (Diff Pruning) or θ₀ (LT-SFT reset), training only the K entries
  const start = new Map<string, Float32Array>();
  for (const n of names) {
    const t0 = base.weights.get(n)!.data;
    const d = deltas.get(n);
    const m = masks.get(n);
    start.set(n, o.method === 'diff-pruning' && d && m ? Float32Array.from(t0, (x, i) => x + d[i] * m[i]) : t0);
  }
  const head = new Map([...p1.tensors].filter(([k]) => k.startsWith('head.')));
  const p2 = await trainCore({ ...inner, _phase: { start, masks, head } });
  // final diff = (start − θ₀) + phase-2 change, kept at the K selected entries: P.index / P.values
  const tensors = new Map<string, Tensor>([...p2.tensors].filter(([k]) => k.startsWith('head.')));
  let nnz = 0;
  for (const n of names) {
    const m = masks.get(n)!;
    const hf = base.hfNames.get(n) ?? n;
    const dense = p2.tensors.get(`${hf}.dense`)?.data as Float32Array | undefined;
    const t0 = base.weights.get(n)!.data;
    const s0 = start.get(n)!;
    const idx: number[] = [];
    const vals: number[] = [];
    for (let i = 0; i < m.length; i++) {
      if (!m[i]) continue;
      idx.push(i);
      vals.push(s0[i] - t0[i] + (dense ? dense[i] : 0));
    }
    if (!idx.length) continue;
    nnz += idx.length;
    tensors.set(`${hf}.index`, { dtype: 'I64', shape: [idx.length], data: BigInt64Array.from(idx.map(BigInt)) });
    tensors.set(`${hf}.values`, { dtype: 'F32', shape: [vals.length], data: Float32Array.from(vals) });
  }
  const manifest = parseManifest({
    ...(p2.manifest as unknown as Record<string, unknown>),
    config: { method: o.method, density: nnz / N, nnz },
    description: `${defaults.what}; trained by modhub for ${o.task}`,
  });
  return { ...p2, manifest, tensors, history: [...p1.history, ...p2.history], steps: p1.steps + p2.steps };
}
