/**
 * Foreign tensor names ↔ modhub's, per base family (bert, roberta, xlm-roberta, distilbert), built on the engine's
 * one name map (modules-store/hf-names.ts: canonicalToHf / hfToCanonical, which the engine uses too), so
 * DistilBERT's q_lin / k_lin / v_lin / out_lin / ffn.lin1 / ffn.lin2 and BERT's attention.self.query / ... are
 * spelled in one place. Also the shared helpers of the format files: JSON parsing and refusals that name the field.
 * Example: `linearOf('distilbert', 'distilbert.transformer.layer.1.ffn.lin2')` → `{ layer: 1, target: 'ffn_out' }`.
 */
import { canonicalToHf, hfToCanonical, type Family } from '../hf-names';
import { StoreError } from '../errors';
import type { LinearTarget } from '../kinds/lora';
import type { BaseRef } from '../manifest';
import { parseSafetensors, type Tensor } from '../safetensors';
import { readTorchStateDict } from './pickle';

export const INTEROP_FAMILIES = ['bert', 'roberta', 'xlm-roberta', 'distilbert'] as const;

/** The base family as the name map knows it; other families are refused. */
export function familyOf(base: BaseRef): Family {
  if (!(INTEROP_FAMILIES as readonly string[]).includes(base.family)) {
    throw new StoreError('INVALID_PACKAGE', `base family '${base.family}' has no foreign-format name map; supported: ${INTEROP_FAMILIES.join(', ')}`);
  }
  return base.family as Family;
}

/** Refusal of a foreign file: names the file, the field and the value. */
export function unsupported(file: string, field: string, value: unknown, why: string): never {
  throw new StoreError('INVALID_PACKAGE', `${file}: ${field} = ${JSON.stringify(value)} cannot be expressed as a modhub module: ${why}`);
}

/** Parses a JSON file of a foreign folder (an object), naming the file on failure. */
export function jsonFile(files: Map<string, Buffer>, name: string): Record<string, unknown> {
  const b = files.get(name);
  if (!b) throw new StoreError('INVALID_PACKAGE', `the folder has no ${name}`);
  let v: unknown;
  try {
    v = JSON.parse(b.toString('utf8'));
  } catch (e) {
    throw new StoreError('INVALID_PACKAGE', `${name} is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new StoreError('INVALID_PACKAGE', `${name} must be a JSON object`);
  return v as Record<string, unknown>;
}

const CANONICAL_TO_TARGET: Record<string, LinearTarget> = {
  'attn.q': 'query',
  'attn.k': 'key',
  'attn.v': 'value',
  'attn.o': 'attn_output',
  ffn_in: 'ffn_in',
  ffn_out: 'ffn_out',
};
const TARGET_TO_CANONICAL = Object.fromEntries(Object.entries(CANONICAL_TO_TARGET).map(([c, t]) => [t, c])) as Record<LinearTarget, string>;

/** The encoder prefix of *ForMaskedLM / *ForSequenceClassification checkpoints (`bert.`, `roberta.`, `distilbert.`). */
export function familyPrefix(family: Family): string {
  const full = canonicalToHf(family, 'embeddings.word');
  return full.slice(0, full.length - canonicalToHf(family, 'embeddings.word', false).length);
}

/** The layer and modhub target of an encoder Linear's module path (with or without the family prefix), or null. */
export function linearOf(family: Family, modulePath: string): { layer: number; target: LinearTarget } | null {
  const c = hfToCanonical(family, `${modulePath}.weight`);
  const m = c ? /^layers\.(\d+)\.(.+)\.weight$/.exec(c) : null;
  if (!m || !(m[2] in CANONICAL_TO_TARGET)) return null;
  return { layer: Number(m[1]), target: CANONICAL_TO_TARGET[m[2]] };
}

/** The module path of a target Linear (prefixed as in task-model checkpoints unless `prefixed` is false). */
export function linearPath(family: Family, layer: number, target: LinearTarget, prefixed = true): string {
  return canonicalToHf(family, `layers.${layer}.${TARGET_TO_CANONICAL[target]}.weight`, prefixed).replace(/\.weight$/, '');
}

/** The module path of layer `l` (`bert.encoder.layer.3`, `distilbert.transformer.layer.3`). */
export function layerPath(family: Family, layer: number, prefixed = true): string {
  const q = linearPath(family, layer, 'query', prefixed);
  return q.slice(0, q.indexOf(`.${layer}.`) + `.${layer}`.length);
}

/** Strips the family prefix (and PEFT's `base_model.model.`) from a tensor name. */
export function stripPrefix(family: Family, name: string): string {
  let n = name.startsWith('base_model.model.') ? name.slice('base_model.model.'.length) : name;
  const p = familyPrefix(family);
  if (n.startsWith(p)) n = n.slice(p.length);
  return n;
}

/** Layers of the base that are not in `covered` (modhub's leave_out). */
export function leaveOutOf(numLayers: number, covered: Set<number>): number[] {
  const out: number[] = [];
  for (let l = 0; l < numLayers; l++) if (!covered.has(l)) out.push(l);
  return out;
}

/** `labels` from an HF / AdapterHub `label2id` or `id2label` map, else LABEL_i. */
export function labelsOf(numLabels: number, label2id?: unknown, id2label?: unknown): string[] {
  const out = Array.from({ length: numLabels }, (_, i) => `LABEL_${i}`);
  if (label2id && typeof label2id === 'object') {
    for (const [name, id] of Object.entries(label2id as Record<string, unknown>)) if (typeof id === 'number' && id >= 0 && id < numLabels) out[id] = name;
  } else if (id2label && typeof id2label === 'object') {
    for (const [id, name] of Object.entries(id2label as Record<string, unknown>)) if (Number(id) < numLabels && typeof name === 'string') out[Number(id)] = name;
  }
  return out;
}

/** The tensors of the first present weights file among `names` (safetensors, or a torch .bin read safely). */
export function weightsOf(files: Map<string, Buffer>, names: string[]): { file: string; tensors: Map<string, Tensor> } {
  for (const file of names) {
    const b = files.get(file);
    if (!b) continue;
    if (file.endsWith('.safetensors')) {
      try {
        return { file, tensors: parseSafetensors(b).tensors };
      } catch (e) {
        throw new StoreError('INVALID_WEIGHTS', `${file}: ${(e as Error).message}`);
      }
    }
    return { file, tensors: readTorchStateDict(b, file) };
  }
  throw new StoreError('INVALID_PACKAGE', `the folder has none of ${names.join(', ')}`);
}

/** A float tensor of exactly `shape`, or an error naming the foreign key. */
export function floatAt(tensors: Map<string, Tensor>, key: string, file: string, shape?: number[]): Tensor {
  const t = tensors.get(key);
  if (!t) throw new StoreError('INVALID_WEIGHTS', `${file} has no tensor '${key}'`);
  if (!(t.data instanceof Float32Array)) throw new StoreError('INVALID_WEIGHTS', `${file}: '${key}' must be a float tensor, got ${t.dtype}`);
  if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
    throw new StoreError('INVALID_WEIGHTS', `${file}: '${key}' has shape [${t.shape}], expected [${shape}]`);
  }
  return { dtype: 'F32', shape: [...t.shape], data: t.data };
}
