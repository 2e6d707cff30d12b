/**
 * Kind `ia3`: (IA)³ learned scaling vectors (Liu et al. 2022), as AdapterHub's IA3Config and PEFT's IA3Config.
 * Each target Linear gets one vector l: targets query, key, value, attn_output and ffn_in
 * (= intermediate.dense) scale the Linear's OUTPUT, y = (x·Wᵀ + b) ⊙ l; ffn_out (= output.dense) scales its
 * INPUT, y = (x ⊙ l)·Wᵀ + b. AdapterHub's IA3Config (composition_mode "scale", r = alpha = 1, init "ia3",
 * attn_matrices k, v, intermediate_lora) is target_modules [key, value, ffn_in] — the default here — so its FFN
 * scaling comes before the activation; PEFT's BERT default scales key, value and the input of output.dense
 * (after the activation): [key, value, ffn_out].
 * Tensors: `layers.{l}.{target}.ia3_l`, PEFT's shapes: [out, 1] for output-scaled targets, [1, in] for ffn_out.
 * Init: ones (AdapterHub init_weights "ia3", PEFT init_ia3_weights), so a fresh module equals the base.
 * Example: `{ kind: 'ia3', config: { target_modules: ['key', 'value', 'ffn_out'] } }` (PEFT's placement).
 */
import { z } from 'zod';
import type { SafetensorsHeader, Tensor } from '../safetensors';
import { LINEAR_TARGETS, targetDims, type LinearTarget } from './lora';
import { FLOAT, layersOf, type BaseDims, type Expected, type KindDescriptor, type LoadedCommon } from './types';

export const IA3_TARGETS = LINEAR_TARGETS;
export type Ia3Target = LinearTarget;

/** AdapterHub IA3Config's placement: key, value (attn_matrices ["k", "v"]) and intermediate.dense's output. */
export const IA3_DEFAULT_TARGETS: Ia3Target[] = ['key', 'value', 'ffn_in'];

const configSchema = z.looseObject({
  target_modules: z.array(z.enum(IA3_TARGETS)).min(1).default(IA3_DEFAULT_TARGETS),
  leave_out: z.array(z.number().int().min(0)).default([]),
});
export type Ia3Config = z.infer<typeof configSchema>;

/** Whether a target's vector scales the Linear's input (PEFT feedforward modules) or its output. */
export function ia3Scales(target: Ia3Target): 'input' | 'output' {
  return target === 'ffn_out' ? 'input' : 'output';
}

/** Length of a target's scaling vector and its stored (PEFT) shape. */
export function ia3Shape(target: Ia3Target, dims: BaseDims): { n: number; shape: [number, number] } {
  const { inDim, outDim } = targetDims(target, dims);
  return ia3Scales(target) === 'input' ? { n: inDim, shape: [1, inDim] } : { n: outDim, shape: [outDim, 1] };
}

/** Tensor names (package layout). */
export const IA3 = {
  l: (layer: number, t: Ia3Target) => `layers.${layer}.${t}.ia3_l`,
};

export interface Ia3Layout {
  kind: 'ia3';
  /** [layer][target] → the scaling vector (length out, or in for ffn_out); absent = 1. */
  layers: Partial<Record<Ia3Target, Float32Array>>[];
}
export type Ia3Module = LoadedCommon & Ia3Layout;

function expected(c: Ia3Config, dims: BaseDims): Map<string, Expected> {
  const exp = new Map<string, Expected>();
  for (const l of layersOf(dims.layers, c.leave_out)) {
    for (const t of new Set(c.target_modules)) exp.set(IA3.l(l, t), { shape: ia3Shape(t, dims).shape, dtypes: FLOAT });
  }
  return exp;
}

export const ia3: KindDescriptor<'ia3', typeof configSchema, Ia3Layout> = {
  kind: 'ia3',
  summary: '(IA)³ scaling vectors on key/value/FFN (AdapterHub IA3Config, PEFT IA3Config)',
  cardTags: ['ia3', 'peft'],
  config: configSchema,
  initConfig: (config) => ({ target_modules: [...IA3_DEFAULT_TARGETS], ...config }),
  expected,
  ffnFromTensors(_c: Ia3Config, h: SafetensorsHeader) {
    for (const [name, e] of h.entries) {
      if (/^layers\.\d+\.ffn_in\.ia3_l$/.test(name) && e.shape.length === 2) return e.shape[0];
      if (/^layers\.\d+\.ffn_out\.ia3_l$/.test(name) && e.shape.length === 2) return e.shape[1];
    }
    return undefined;
  },
  init(c, ctx) {
    const t = new Map<string, Tensor>();
    for (const [name, e] of expected(c, ctx.dims)) t.set(name, ctx.fill(e.shape, 1));
    return t;
  },
  load(c, { reader: t, dims }) {
    const layers: Ia3Layout['layers'] = [];
    const covered = new Set(layersOf(dims.layers, c.leave_out));
    for (let l = 0; l < dims.layers; l++) {
      const entry: Ia3Layout['layers'][number] = {};
      if (covered.has(l)) for (const target of new Set(c.target_modules)) entry[target] = t.f32(IA3.l(l, target), ia3Shape(target, dims).shape);
      layers.push(entry);
    }
    return { kind: 'ia3', layers };
  },
  trainable: (c, dims) => [...expected(c, dims).keys()],
};
