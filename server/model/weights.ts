/**
 * Maps each family's Hugging Face tensor names to the ONE canonical naming our engine uses, both ways (the tables
 * live in modules-store/hf-names.ts, which the package format shares), and checks shapes against the config. Loading: `fromHf(config, tensors)`; writing and sparse diffs (whose
 * tensor names in module files are the HF names): `canonicalToHf` / `toHf`.
 *
 * Canonical names (weights in PyTorch Linear layout [out, in]):
 *   embeddings.word [V,D]  embeddings.position [P,D]  embeddings.token_type [TV,D]  embeddings.ln.{weight,bias}
 *   layers.{l}.attn.{q,k,v,o}.{weight,bias}  layers.{l}.attn_ln.*  layers.{l}.ffn_in.* [F,D]
 *   layers.{l}.ffn_out.* [D,F]  layers.{l}.ffn_ln.*
 *   mlm.dense.*  mlm.ln.*  mlm.decoder.bias [V]  (mlm.decoder.weight [V,D] only when untied)  pooler.dense.*
 * Example: `canonicalToHf('bert', 'layers.3.ffn_out.weight')` → 'bert.encoder.layer.3.output.dense.weight'.
 */
import type { Tensor } from '../../modules-store/safetensors';
import type { BaseConfig } from './config';
import { CANONICAL_LAYER, canonicalToHf, familyNames, hfToCanonical, LAYER_MODULES } from '../../modules-store/hf-names';

export { canonicalToHf, hfToCanonical };

export type F32Tensor = Tensor & { dtype: 'F32'; data: Float32Array };

/** Shape the config implies for a canonical tensor name. */
export function canonicalShape(config: BaseConfig, canonical: string): number[] {
  const D = config.hiddenSize;
  const F = config.intermediateSize;
  const V = config.vocabSize;
  switch (canonical) {
    case 'embeddings.word':
      return [V, D];
    case 'embeddings.position':
      return [config.maxPositions, D];
    case 'embeddings.token_type':
      if (config.typeVocabSize === 0) break;
      return [config.typeVocabSize, D];
    case 'embeddings.ln.weight':
    case 'embeddings.ln.bias':
    case 'mlm.dense.bias':
    case 'mlm.ln.weight':
    case 'mlm.ln.bias':
    case 'pooler.dense.bias':
      return [D];
    case 'mlm.dense.weight':
    case 'pooler.dense.weight':
      return [D, D];
    case 'mlm.decoder.bias':
      return [V];
    case 'mlm.decoder.weight':
      return [V, D];
  }
  const m = CANONICAL_LAYER.exec(canonical);
  if (m && Number(m[1]) < config.numLayers) {
    const isW = m[3] === 'weight';
    switch (m[2]) {
      case 'ffn_in':
        return isW ? [F, D] : [F];
      case 'ffn_out':
        return isW ? [D, F] : [D];
      case 'attn_ln':
      case 'ffn_ln':
        return [D];
      default:
        return isW ? [D, D] : [D];
    }
  }
  throw new RangeError(`'canonical' is not a tensor of this ${config.family} config (${config.numLayers} layers): '${canonical}'`);
}

/** Canonical names the encoder needs (embeddings + every layer), in a stable order. */
export function requiredCanonicalNames(config: BaseConfig): string[] {
  const names = ['embeddings.word', 'embeddings.position'];
  if (config.typeVocabSize > 0) names.push('embeddings.token_type');
  names.push('embeddings.ln.weight', 'embeddings.ln.bias');
  for (let l = 0; l < config.numLayers; l++) {
    for (const mod of LAYER_MODULES) names.push(`layers.${l}.${mod}.weight`, `layers.${l}.${mod}.bias`);
  }
  return names;
}

/**
 * Whether the engine keeps a canonical base weight transposed to [in, out] (so a MatMul reads it without a
 * Transpose): the encoder's Linear weights and the MLM head's dense weight. Sparse diffs on these address that
 * layout (the module loader remaps HF [out, in] indices), so the loader and the engine must agree: both ask here.
 */
/** The encoder's Linear weights (attention q/k/v/o and the FFN's two), canonical names. */
export const ENCODER_LINEAR_WEIGHT = /^layers\.\d+\.(attn\.[qkvo]|ffn_in|ffn_out)\.weight$/;

export function isTransposedLinear(canonical: string): boolean {
  return ENCODER_LINEAR_WEIGHT.test(canonical) || canonical === 'mlm.dense.weight';
}

/** The tied MLM head (dense, LayerNorm, decoder bias); the decoder weight is the word embedding matrix. */
export const MLM_HEAD_NAMES = ['mlm.dense.weight', 'mlm.dense.bias', 'mlm.ln.weight', 'mlm.ln.bias', 'mlm.decoder.bias'] as const;
export const POOLER_NAMES = ['pooler.dense.weight', 'pooler.dense.bias'] as const;

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function sameData(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface CanonicalWeights {
  weights: Map<string, F32Tensor>;
  /** canonical → the HF name it was read from (sparse diffs address base tensors by these). */
  hfNames: Map<string, string>;
  /** HF names present in the checkpoint but not loaded (buffers, other task heads, tied decoder copies). */
  ignored: string[];
}

/**
 * Maps a checkpoint's tensors (HF names, any float dtype already widened to F32 by the safetensors reader) to
 * canonical names, checking every shape against `config`. `source` (default 'model.safetensors') prefixes errors.
 */
export function fromHf(config: BaseConfig, tensors: Map<string, Tensor>, source = 'model.safetensors'): CanonicalWeights {
  const weights = new Map<string, F32Tensor>();
  const hfNames = new Map<string, string>();
  const ignored: string[] = [];
  const n = familyNames(config.family);
  for (const [hf, t] of tensors) {
    const canonical = hfToCanonical(config.family, hf);
    if (canonical === null) {
      // Unknown tensors inside the encoder mean a different architecture or a typo: refuse rather than run without them.
      const encoderLike = hf.startsWith(n.prefix) || /^(embeddings|encoder|transformer)\./.test(hf);
      if (encoderLike && !n.ignored.some((re) => re.test(hf))) {
        throw new RangeError(`${source}: '${hf}' looks like an encoder tensor but is not a known ${config.family} parameter name`);
      }
      ignored.push(hf);
      continue;
    }
    if (hfNames.has(canonical)) {
      // An alias (e.g. cls.predictions.decoder.bias next to cls.predictions.bias): keep the first, they are one tensor.
      ignored.push(hf);
      continue;
    }
    const m = CANONICAL_LAYER.exec(canonical);
    if (m && Number(m[1]) >= config.numLayers) {
      throw new RangeError(`${source}: '${hf}' is layer ${m[1]}, but the config has ${config.numLayers} layers`);
    }
    if (canonical === 'embeddings.token_type' && config.typeVocabSize === 0) {
      throw new RangeError(`${source}: '${hf}' is a token-type table, but the config has no token types`);
    }
    const expected = canonicalShape(config, canonical);
    if (!sameShape(t.shape, expected)) {
      throw new RangeError(`${source}: '${hf}' has shape [${t.shape.join(', ')}], config expects [${expected.join(', ')}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new TypeError(`${source}: '${hf}' has dtype ${t.dtype}, expected a float tensor`);
    weights.set(canonical, { dtype: 'F32', shape: [...t.shape], data: t.data });
    hfNames.set(canonical, hf);
  }
  const missing = requiredCanonicalNames(config).filter((c) => !weights.has(c));
  if (missing.length) {
    const shown = missing.slice(0, 5).map((c) => `'${canonicalToHf(config.family, c)}'`);
    throw new RangeError(`${source}: missing ${missing.length} tensor(s) of the ${config.family} encoder: ${shown.join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  }
  const head = MLM_HEAD_NAMES.filter((c) => weights.has(c));
  if (head.length > 0 && head.length < MLM_HEAD_NAMES.length) {
    const miss = MLM_HEAD_NAMES.filter((c) => !weights.has(c)).map((c) => `'${canonicalToHf(config.family, c)}'`);
    throw new RangeError(`${source}: incomplete MLM head, missing ${miss.join(', ')}`);
  }
  const pool = POOLER_NAMES.filter((c) => weights.has(c));
  if (pool.length === 1) throw new RangeError(`${source}: incomplete pooler, only '${hfNames.get(pool[0])}' present`);
  const dec = weights.get('mlm.decoder.weight');
  if (dec && sameData(dec.data, weights.get('embeddings.word')!.data)) {
    // A stored copy of the tied decoder: same tensor as the word embeddings, not a separate parameter.
    ignored.push(hfNames.get('mlm.decoder.weight')!);
    weights.delete('mlm.decoder.weight');
    hfNames.delete('mlm.decoder.weight');
  }
  return { weights, hfNames, ignored };
}

/** Canonical tensors → HF names of `config.family` (prefixed as in *ForMaskedLM checkpoints), shapes checked. */
export function toHf(config: BaseConfig, weights: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [c, t] of weights) {
    const expected = canonicalShape(config, c);
    if (!sameShape(t.shape, expected)) throw new RangeError(`'weights': '${c}' has shape [${t.shape.join(', ')}], config expects [${expected.join(', ')}]`);
    out.set(canonicalToHf(config.family, c), t);
  }
  return out;
}

/**
 * The base's parameters by HF name (with or without the encoder prefix) → shape in HF layout, null for names
 * the base does not have: what the registry needs to check diff modules against this base at upload.
 */
export function hfParameterShapes(config: BaseConfig): (hfName: string) => number[] | null {
  return (hfName) => {
    const canonical = hfToCanonical(config.family, hfName);
    if (!canonical) return null;
    try {
      return canonicalShape(config, canonical);
    } catch {
      return null; // e.g. a layer index beyond this base's layers
    }
  };
}
