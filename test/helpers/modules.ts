/**
 * Fixture makers for module packages (docs/module-format.md, format version 1) with seeded random, non-zero
 * weights (N(0, scale²), default scale 0.1), so that a wrong wiring changes the outputs. Also a tiny random
 * HF-named base (`makeRefBase`) for tests that must not depend on the engine's own tiny model.
 *
 * Example:
 *   const base = makeRefBase({ family: 'bert', seed: 1 });
 *   const lang = makeAdapterModule({ id: 'lang/de', base: base.info, preset: 'seq_bn_inv', seed: 2 });
 *   const task = makeAdapterModule({ id: 'task/topic', base: base.info, preset: 'seq_bn', head: { type: 'classification', num_labels: 3 }, seed: 3 });
 */
import type { Tensor } from '../../modules-store/safetensors';
import type { RefHeadConfig, RefManifest, RefModule } from '../reference/modules';
import { BN_PRESETS, bottleneckSize, resolveBnConfig, LORA_TARGETS, LoraTarget } from '../reference/modules';

// ---------------------------------------------------------------------------------------------------------
// Seeded randomness.

/** mulberry32: a small, fast, seeded uniform PRNG on [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller) from a seeded uniform PRNG. */
export function normalSampler(seed: number): () => number {
  const u = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u1 = u();
    while (u1 <= 1e-12) u1 = u();
    const u2 = u();
    const r = Math.sqrt(-2 * Math.log(u1));
    spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  };
}

/** An F32 tensor of N(mean, std²) samples. */
export function randomTensor(shape: number[], rnd: () => number, std = 0.1, mean = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = mean + std * rnd();
  return { dtype: 'F32', shape, data };
}

function fill(shape: number[], v: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'F32', shape, data: new Float32Array(n).fill(v) };
}

// ---------------------------------------------------------------------------------------------------------
// Manifests.

export type Family = 'bert' | 'roberta' | 'xlm-roberta' | 'distilbert';

/** What a fixture needs to know of its base; `intermediate_size` (default 4·hidden_size) sizes ffn LoRAs. */
export interface BaseInfo {
  family: Family | string;
  fingerprint: string;
  hidden_size: number;
  num_layers: number;
  vocab_size: number;
  intermediate_size?: number;
}

export interface HeadSpec {
  type: RefHeadConfig['type'];
  num_labels?: number;
  layers?: 1 | 2;
  activation?: string;
  labels?: string[];
}

/** A fixed fingerprint for tests: 'sha256:' + 64 hex digits derived from `s`. */
export function fakeFingerprint(s = 'tiny'): string {
  let h = 2166136261;
  for (const ch of s) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return 'sha256:' + (h.toString(16).padStart(8, '0')).repeat(8);
}

interface CommonOpts {
  id: string;
  version?: string;
  base: BaseInfo;
  head?: HeadSpec;
  seed: number;
  /** Standard deviation of the random weights, default 0.1. */
  scale?: number;
  task?: string;
  language?: string;
}

function manifest(o: CommonOpts, kind: RefManifest['kind'], config: Record<string, unknown>): RefManifest {
  const head: RefHeadConfig | null = o.head
    ? o.head.type === 'masked_lm'
      ? { type: 'masked_lm' }
      : o.head.type === 'classification'
        ? { type: 'classification', num_labels: o.head.num_labels!, layers: o.head.layers ?? 2, activation: o.head.activation ?? 'tanh' }
        : { type: 'token_classification', num_labels: o.head.num_labels! }
    : null;
  const C = o.head?.num_labels ?? 0;
  const base: RefManifest['base'] = {
    family: o.base.family,
    fingerprint: o.base.fingerprint,
    hidden_size: o.base.hidden_size,
    num_layers: o.base.num_layers,
    vocab_size: o.base.vocab_size,
  };
  if (o.base.intermediate_size !== undefined) base.intermediate_size = o.base.intermediate_size;
  return {
    format_version: 1,
    id: o.id,
    version: o.version ?? '1.0.0',
    kind,
    config,
    head,
    task: o.task ?? (o.head ? (o.head.type === 'masked_lm' ? 'mlm' : o.head.type === 'classification' ? 'classification' : 'ner') : 'adapter'),
    ...(o.language ? { language: o.language } : {}),
    labels: head && head.type !== 'masked_lm' ? (o.head!.labels ?? Array.from({ length: C }, (_, i) => `label_${i}`)) : [],
    base,
    license: 'apache-2.0',
    description: `test fixture ${o.id}`,
  };
}

/** Head tensors under `head.` (docs/module-format.md "heads"). */
function headTensors(o: CommonOpts, rnd: () => number, t: Map<string, Tensor>): void {
  if (!o.head) return;
  const D = o.base.hidden_size;
  const s = o.scale ?? 0.1;
  if (o.head.type === 'masked_lm') {
    t.set('head.transform.dense.weight', randomTensor([D, D], rnd, s));
    t.set('head.transform.dense.bias', randomTensor([D], rnd, s));
    t.set('head.transform.layer_norm.weight', randomTensor([D], rnd, s, 1));
    t.set('head.transform.layer_norm.bias', randomTensor([D], rnd, s));
    t.set('head.decoder.bias', randomTensor([o.base.vocab_size], rnd, s));
    return;
  }
  const C = o.head.num_labels;
  if (!C || C < 1) throw new RangeError(`head: 'num_labels' must be >= 1 for ${o.head.type}`);
  if (o.head.type === 'classification' && (o.head.layers ?? 2) === 2) {
    t.set('head.dense.weight', randomTensor([D, D], rnd, s));
    t.set('head.dense.bias', randomTensor([D], rnd, s));
  }
  t.set('head.out_proj.weight', randomTensor([C, D], rnd, s));
  t.set('head.out_proj.bias', randomTensor([C], rnd, s));
}

// ---------------------------------------------------------------------------------------------------------
// Module makers.

export interface AdapterOpts extends CommonOpts {
  /** seq_bn | double_seq_bn | par_bn | seq_bn_inv | double_seq_bn_inv (or the AdapterHub aliases). */
  preset?: string;
  /** BnConfig fields that override the preset. ln_before / ln_after weights are drawn N(1, scale²), biases N(0, scale²). */
  config?: Record<string, unknown>;
}

/** A `bottleneck` module with every tensor its config implies (sites, ln_before/after, invertible F/G, head). */
export function makeAdapterModule(o: AdapterOpts): RefModule {
  if (o.preset && !(o.preset in BN_PRESETS)) throw new RangeError(`makeAdapterModule: unknown preset '${o.preset}'`);
  const config: Record<string, unknown> = { ...(o.preset ? { preset: o.preset } : {}), ...(o.config ?? {}) };
  const cfg = resolveBnConfig(config);
  const rnd = normalSampler(o.seed);
  const s = o.scale ?? 0.1;
  const D = o.base.hidden_size;
  const t = new Map<string, Tensor>();
  for (let l = 0; l < o.base.num_layers; l++) {
    if (cfg.leave_out.includes(l)) continue;
    for (const site of ['attention', 'output'] as const) {
      if (site === 'attention' ? !cfg.mh_adapter : !cfg.output_adapter) continue;
      const r = bottleneckSize(cfg, D, l);
      const p = `layers.${l}.${site}.`;
      t.set(p + 'adapter_down.weight', randomTensor([r, D], rnd, s));
      t.set(p + 'adapter_down.bias', randomTensor([r], rnd, s));
      t.set(p + 'adapter_up.weight', randomTensor([D, r], rnd, s));
      t.set(p + 'adapter_up.bias', randomTensor([D], rnd, s));
      if (cfg.ln_before) {
        t.set(p + 'ln_before.weight', randomTensor([D], rnd, s, 1));
        t.set(p + 'ln_before.bias', randomTensor([D], rnd, s));
      }
      if (cfg.ln_after) {
        t.set(p + 'ln_after.weight', randomTensor([D], rnd, s, 1));
        t.set(p + 'ln_after.bias', randomTensor([D], rnd, s));
      }
    }
  }
  if (cfg.inv_adapter === 'nice') {
    const rf = cfg.inv_adapter_reduction_factor ?? 2;
    const n1 = Math.floor(D / 2);
    const n2 = D - n1;
    const sub = (name: string, nin: number, nout: number) => {
      const m = Math.floor(nin / rf);
      t.set(`invertible.${name}.down.weight`, randomTensor([m, nin], rnd, s));
      t.set(`invertible.${name}.down.bias`, randomTensor([m], rnd, s));
      t.set(`invertible.${name}.up.weight`, randomTensor([nout, m], rnd, s));
      t.set(`invertible.${name}.up.bias`, randomTensor([nout], rnd, s));
    };
    sub('F', n2, n1);
    sub('G', n1, n2);
  }
  headTensors(o, rnd, t);
  return { manifest: manifest(o, 'bottleneck', config), tensors: t };
}

export interface LoraOpts extends CommonOpts {
  r?: number;
  lora_alpha?: number;
  target_modules?: LoraTarget[];
  leave_out?: number[];
}

/** A `lora` module (PEFT names); B is random too (not PEFT's zero init), so the LoRA path is visible. */
export function makeLoraModule(o: LoraOpts): RefModule {
  const r = o.r ?? 8;
  const alpha = o.lora_alpha ?? 8;
  const targets = o.target_modules ?? ['query', 'value'];
  const leaveOut = o.leave_out ?? [];
  const D = o.base.hidden_size;
  const F = o.base.intermediate_size ?? 4 * D;
  const rnd = normalSampler(o.seed);
  const s = o.scale ?? 0.1;
  const t = new Map<string, Tensor>();
  for (const tg of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(tg)) throw new RangeError(`makeLoraModule: unknown target '${tg}'`);
    const [I, O] = tg === 'ffn_in' ? [D, F] : tg === 'ffn_out' ? [F, D] : [D, D];
    for (let l = 0; l < o.base.num_layers; l++) {
      if (leaveOut.includes(l)) continue;
      t.set(`layers.${l}.${tg}.lora_A`, randomTensor([r, I], rnd, s));
      t.set(`layers.${l}.${tg}.lora_B`, randomTensor([O, r], rnd, s));
    }
  }
  headTensors(o, rnd, t);
  const config: Record<string, unknown> = { r, lora_alpha: alpha, target_modules: targets };
  if (leaveOut.length) config.leave_out = leaveOut;
  return { manifest: manifest(o, 'lora', config), tensors: t };
}

export interface Ia3Opts extends CommonOpts {
  /** Default AdapterHub's placement: key, value, ffn_in. */
  target_modules?: LoraTarget[];
  leave_out?: number[];
}

/**
 * An `ia3` module: vectors 1 + N(0, scale²) (not the identity init, so every scaling is visible); stored in
 * PEFT's shapes, [out, 1] for output-scaled targets and [1, in] for ffn_out (input-scaled).
 */
export function makeIa3Module(o: Ia3Opts): RefModule {
  const targets = o.target_modules ?? ['key', 'value', 'ffn_in'];
  const leaveOut = o.leave_out ?? [];
  const D = o.base.hidden_size;
  const F = o.base.intermediate_size ?? 4 * D;
  const rnd = normalSampler(o.seed);
  const s = o.scale ?? 0.1;
  const t = new Map<string, Tensor>();
  for (const tg of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(tg)) throw new RangeError(`makeIa3Module: unknown target '${tg}'`);
    const shape = tg === 'ffn_out' ? [1, F] : [tg === 'ffn_in' ? F : D, 1];
    for (let l = 0; l < o.base.num_layers; l++) {
      if (leaveOut.includes(l)) continue;
      t.set(`layers.${l}.${tg}.ia3_l`, randomTensor(shape, rnd, s, 1));
    }
  }
  headTensors(o, rnd, t);
  const config: Record<string, unknown> = { target_modules: targets };
  if (leaveOut.length) config.leave_out = leaveOut;
  return { manifest: manifest(o, 'ia3', config), tensors: t };
}

export interface DiffTarget {
  /** HF name of the base parameter, e.g. 'bert.encoder.layer.0.attention.self.query.weight'. */
  name: string;
  shape: number[];
}

export interface DiffOpts extends CommonOpts {
  targets: DiffTarget[];
  /** Fraction of each target's entries that differ (sparse `.index` / `.values`); ignored when `dense`. Default 0.1. */
  density?: number;
  /** Store `P.dense` instead of index/values. */
  dense?: boolean;
  /** I64 (default) or I32 indices. */
  indexDtype?: 'I64' | 'I32';
  method?: 'bitfit' | 'diff-pruning' | 'lt-sft' | 'full' | 'custom';
}

/** A `diff` module: per target either sorted unique flat indices + values, or a dense difference. */
export function makeDiffModule(o: DiffOpts): RefModule {
  const rnd = normalSampler(o.seed);
  const uni = mulberry32(o.seed ^ 0x9e3779b9);
  const s = o.scale ?? 0.1;
  const density = o.density ?? 0.1;
  const t = new Map<string, Tensor>();
  let nnz = 0;
  let total = 0;
  for (const tg of o.targets) {
    const n = tg.shape.reduce((a, b) => a * b, 1);
    total += n;
    if (o.dense) {
      t.set(`${tg.name}.dense`, randomTensor(tg.shape, rnd, s));
      nnz += n;
      continue;
    }
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (uni() < density) idx.push(i);
    if (idx.length === 0) idx.push(Math.floor(uni() * n));
    nnz += idx.length;
    t.set(
      `${tg.name}.index`,
      o.indexDtype === 'I32'
        ? { dtype: 'I32', shape: [idx.length], data: Int32Array.from(idx) }
        : { dtype: 'I64', shape: [idx.length], data: BigInt64Array.from(idx.map((i) => BigInt(i))) },
    );
    t.set(`${tg.name}.values`, randomTensor([idx.length], rnd, s));
  }
  headTensors(o, rnd, t);
  const config: Record<string, unknown> = { method: o.method ?? (o.dense ? 'full' : 'diff-pruning'), nnz };
  if (!o.dense) config.density = total ? nnz / total : 0;
  return { manifest: manifest(o, 'diff', config), tensors: t };
}

/** HF names of the base parameters of a family (prefixed, as in the checkpoint), with shapes. */
export function baseParamShapes(base: BaseInfo, opts: { maxPositions?: number; typeVocab?: number } = {}): DiffTarget[] {
  const D = base.hidden_size;
  const F = base.intermediate_size ?? 4 * D;
  const V = base.vocab_size;
  const out: DiffTarget[] = [];
  const lin = (stem: string, O: number, I: number) => out.push({ name: stem + '.weight', shape: [O, I] }, { name: stem + '.bias', shape: [O] });
  const ln = (stem: string) => out.push({ name: stem + '.weight', shape: [D] }, { name: stem + '.bias', shape: [D] });
  const maxPos = opts.maxPositions ?? 64;
  if (base.family === 'distilbert') {
    out.push({ name: 'distilbert.embeddings.word_embeddings.weight', shape: [V, D] }, { name: 'distilbert.embeddings.position_embeddings.weight', shape: [maxPos, D] });
    ln('distilbert.embeddings.LayerNorm');
    for (let l = 0; l < base.num_layers; l++) {
      const p = `distilbert.transformer.layer.${l}.`;
      lin(p + 'attention.q_lin', D, D);
      lin(p + 'attention.k_lin', D, D);
      lin(p + 'attention.v_lin', D, D);
      lin(p + 'attention.out_lin', D, D);
      ln(p + 'sa_layer_norm');
      lin(p + 'ffn.lin1', F, D);
      lin(p + 'ffn.lin2', D, F);
      ln(p + 'output_layer_norm');
    }
    return out;
  }
  const pre = base.family === 'bert' ? 'bert.' : 'roberta.';
  out.push(
    { name: pre + 'embeddings.word_embeddings.weight', shape: [V, D] },
    { name: pre + 'embeddings.position_embeddings.weight', shape: [maxPos, D] },
    { name: pre + 'embeddings.token_type_embeddings.weight', shape: [opts.typeVocab ?? (base.family === 'bert' ? 2 : 1), D] },
  );
  ln(pre + 'embeddings.LayerNorm');
  for (let l = 0; l < base.num_layers; l++) {
    const p = `${pre}encoder.layer.${l}.`;
    lin(p + 'attention.self.query', D, D);
    lin(p + 'attention.self.key', D, D);
    lin(p + 'attention.self.value', D, D);
    lin(p + 'attention.output.dense', D, D);
    ln(p + 'attention.output.LayerNorm');
    lin(p + 'intermediate.dense', F, D);
    lin(p + 'output.dense', D, F);
    ln(p + 'output.LayerNorm');
  }
  return out;
}

export interface BitfitOpts extends CommonOpts {
  /** Also the LayerNorm biases (BitFit trains every bias term), default true. */
  layerNormBiases?: boolean;
}

/** A BitFit `diff` module: dense differences on every bias of the encoder (and, optionally, none on LN weights). */
export function makeBitfitModule(o: BitfitOpts): RefModule {
  const targets = baseParamShapes(o.base).filter((p) => p.name.endsWith('.bias') && (o.layerNormBiases !== false || !/(LayerNorm|layer_norm)\.bias$/.test(p.name)));
  const m = makeDiffModule({ ...o, targets, dense: true, method: 'bitfit' });
  m.manifest.config = { method: 'bitfit', nnz: m.manifest.config.nnz };
  return m;
}

export interface FusionOpts extends CommonOpts {
  /** Ids of the fused modules, in order. */
  adapters: string[];
  dynamic?: boolean;
  temperature?: number;
  sites?: ('attention' | 'output')[];
  query_before_ln?: boolean;
  residual_before?: boolean;
  value_before_softmax?: boolean;
  /** Value matrix near identity (AdapterHub's value_initialized: 1e-6 off the diagonal, 1 on it) plus noise; default true. */
  valueNearIdentity?: boolean;
}

/** A `fusion` module with query/key (+ value when dynamic) per layer and site. */
export function makeFusionModule(o: FusionOpts): RefModule {
  const rnd = normalSampler(o.seed);
  const s = o.scale ?? 0.1;
  const D = o.base.hidden_size;
  const dynamic = o.dynamic ?? true;
  const sites = o.sites ?? ['output'];
  const t = new Map<string, Tensor>();
  for (let l = 0; l < o.base.num_layers; l++) {
    for (const site of sites) {
      const p = `layers.${l}.${site}.`;
      t.set(p + 'query.weight', randomTensor([D, D], rnd, s));
      t.set(p + 'query.bias', randomTensor([D], rnd, s));
      t.set(p + 'key.weight', randomTensor([D, D], rnd, s));
      t.set(p + 'key.bias', randomTensor([D], rnd, s));
      if (dynamic) {
        const v = randomTensor([D, D], rnd, s);
        if (o.valueNearIdentity !== false) for (let i = 0; i < D; i++) (v.data as Float32Array)[i * D + i] += 1;
        t.set(p + 'value.weight', v);
      }
    }
  }
  headTensors(o, rnd, t);
  const config: Record<string, unknown> = { adapters: o.adapters, dynamic, temperature: o.temperature ?? 1, sites };
  if (o.query_before_ln !== undefined) config.query_before_ln = o.query_before_ln;
  if (o.residual_before !== undefined) config.residual_before = o.residual_before;
  if (o.value_before_softmax !== undefined) config.value_before_softmax = o.value_before_softmax;
  return { manifest: manifest(o, 'fusion', config), tensors: t };
}

// ---------------------------------------------------------------------------------------------------------
// A tiny HF-named random base (for the oracle's own tests; the engine has server/model/tiny.ts).

export interface RefBaseOpts {
  family: Family;
  seed: number;
  hidden_size?: number;
  num_layers?: number;
  num_heads?: number;
  intermediate_size?: number;
  vocab_size?: number;
  max_positions?: number;
  hidden_act?: string;
  /** Prefix the names with bert. / roberta. / distilbert. (default true). */
  prefixed?: boolean;
  scale?: number;
}

export interface RefBase {
  config: Record<string, unknown>;
  weights: Map<string, Tensor>;
  info: BaseInfo;
}

/** A random base with HF config.json fields and checkpoint names, MLM head included (decoder tied). */
export function makeRefBase(o: RefBaseOpts): RefBase {
  const D = o.hidden_size ?? 32;
  const L = o.num_layers ?? 2;
  const H = o.num_heads ?? 4;
  const F = o.intermediate_size ?? 4 * D;
  const V = o.vocab_size ?? 50;
  const P = o.max_positions ?? 64;
  const s = o.scale ?? 0.1;
  const rnd = normalSampler(o.seed);
  const info: BaseInfo = { family: o.family, fingerprint: fakeFingerprint(`${o.family}-${o.seed}`), hidden_size: D, num_layers: L, vocab_size: V, intermediate_size: F };
  const shapes = baseParamShapes(info, { maxPositions: o.family === 'bert' || o.family === 'distilbert' ? P : P + 2 });
  const weights = new Map<string, Tensor>();
  for (const p of shapes) {
    const isLnWeight = /(LayerNorm|layer_norm)\.weight$/.test(p.name);
    // embeddings larger than the rest, as in real checkpoints, so that the hidden states are not tiny
    const std = p.name.includes('embeddings.') ? 0.5 : s;
    weights.set(p.name, randomTensor(p.shape, rnd, isLnWeight ? s : std, isLnWeight ? 1 : 0));
  }
  const lin = (stem: string, O: number, I: number) => {
    weights.set(stem + '.weight', randomTensor([O, I], rnd, s));
    weights.set(stem + '.bias', randomTensor([O], rnd, s));
  };
  const ln = (stem: string) => {
    weights.set(stem + '.weight', randomTensor([D], rnd, s, 1));
    weights.set(stem + '.bias', randomTensor([D], rnd, s));
  };
  let config: Record<string, unknown>;
  if (o.family === 'distilbert') {
    lin('vocab_transform', D, D);
    ln('vocab_layer_norm');
    weights.set('vocab_projector.bias', randomTensor([V], rnd, s));
    config = { model_type: 'distilbert', dim: D, n_layers: L, n_heads: H, hidden_dim: F, vocab_size: V, max_position_embeddings: P, activation: o.hidden_act ?? 'gelu', pad_token_id: 0 };
  } else if (o.family === 'bert') {
    lin('cls.predictions.transform.dense', D, D);
    ln('cls.predictions.transform.LayerNorm');
    weights.set('cls.predictions.bias', randomTensor([V], rnd, s));
    config = {
      model_type: 'bert', hidden_size: D, num_hidden_layers: L, num_attention_heads: H, intermediate_size: F, vocab_size: V,
      max_position_embeddings: P, type_vocab_size: 2, hidden_act: o.hidden_act ?? 'gelu', layer_norm_eps: 1e-12, pad_token_id: 0,
    };
  } else {
    lin('lm_head.dense', D, D);
    ln('lm_head.layer_norm');
    weights.set('lm_head.bias', randomTensor([V], rnd, s));
    config = {
      model_type: o.family, hidden_size: D, num_hidden_layers: L, num_attention_heads: H, intermediate_size: F, vocab_size: V,
      max_position_embeddings: P + 2, type_vocab_size: 1, hidden_act: o.hidden_act ?? 'gelu', layer_norm_eps: 1e-5, pad_token_id: 1,
      bos_token_id: 0, eos_token_id: 2,
    };
  }
  if (o.prefixed === false) {
    const unprefixed = new Map<string, Tensor>();
    for (const [k, v] of weights) unprefixed.set(k.replace(/^(bert|roberta|distilbert)\./, ''), v);
    return { config, weights: unprefixed, info };
  }
  return { config, weights, info };
}

/** Deep-copies a module (tensors included), e.g. to zero some of its weights in a test. */
export function cloneModule(m: RefModule): RefModule {
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of m.tensors) tensors.set(k, { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() as Tensor['data'] });
  return { manifest: JSON.parse(JSON.stringify(m.manifest)) as RefManifest, tensors };
}

/** Sets every tensor whose name matches `re` to `value` (in place); returns the module. */
export function fillTensors(m: RefModule, re: RegExp, value = 0): RefModule {
  let hit = 0;
  for (const [k, t] of m.tensors) {
    if (re.test(k)) {
      (t.data as Float32Array).fill(value);
      hit++;
    }
  }
  if (!hit) throw new RangeError(`fillTensors: no tensor of '${m.manifest.id}' matches ${re}`);
  return m;
}

export { fill as constantTensor };
