/**
 * Kind `lora`: PEFT LoRA on the encoder's Linear layers, y = x·Wᵀ + b + (lora_alpha / r)·(x·Aᵀ)·Bᵀ.
 * Config in PEFT names (`r`, `lora_alpha`, `target_modules`) plus AdapterHub's `leave_out`; targets are
 * modhub's layer names (query, key, value, attn_output, ffn_in = intermediate.dense, ffn_out = output.dense).
 * Tensors: `layers.{l}.{target}.lora_A` [r, in], `layers.{l}.{target}.lora_B` [out, r].
 * Init: PEFT's (A Kaiming-uniform, bound 1/sqrt(in); B = 0, so a fresh module equals the base).
 * Example: `{ kind: 'lora', config: { r: 8, lora_alpha: 16, target_modules: ['query', 'value'] } }`.
 */
import { z } from 'zod';
import type { SafetensorsHeader, Tensor } from '../safetensors';
import { FLOAT, layersOf, needFfn, scaled, type BaseDims, type Expected, type KindDescriptor, type LoadedCommon } from './types';

/** The encoder's Linear layers a LoRA or IA³ module may target. */
export const LINEAR_TARGETS = ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'] as const;
export type LinearTarget = (typeof LINEAR_TARGETS)[number];
export const LORA_TARGETS = LINEAR_TARGETS;
export type LoraTarget = LinearTarget;

/** [in, out] of a target Linear (the FFN size is needed only for ffn_in / ffn_out). */
export function targetDims(target: LinearTarget, dims: BaseDims): { inDim: number; outDim: number } {
  const D = dims.hidden;
  if (target === 'ffn_in') return { inDim: D, outDim: needFfn(dims, `target '${target}'`) };
  if (target === 'ffn_out') return { inDim: needFfn(dims, `target '${target}'`), outDim: D };
  return { inDim: D, outDim: D };
}

const configSchema = z.looseObject({
  r: z.number().int().min(1).max(4096),
  lora_alpha: z.number().positive().optional(),
  target_modules: z.array(z.enum(LORA_TARGETS)).min(1),
  leave_out: z.array(z.number().int().min(0)).default([]).optional(),
});
export type LoraConfig = z.infer<typeof configSchema>;

/** Tensor names (package layout). */
export const LORA = {
  A: (l: number, t: LoraTarget) => `layers.${l}.${t}.lora_A`,
  B: (l: number, t: LoraTarget) => `layers.${l}.${t}.lora_B`,
};

/** PEFT's scaling = lora_alpha / r (lora_alpha defaults to r here: scaling 1). */
export function loraScaling(c: LoraConfig): number {
  return (c.lora_alpha ?? c.r) / c.r;
}

export interface LoraLayout {
  kind: 'lora';
  r: number;
  /** [layer][target] → A^T [in, r], (scaling·B)^T [r, out]. */
  layers: Partial<Record<LoraTarget, { AT: Float32Array; BT: Float32Array; inDim: number; outDim: number }>>[];
}
export type LoraModule = LoadedCommon & LoraLayout;

function expected(c: LoraConfig, dims: BaseDims): Map<string, Expected> {
  const exp = new Map<string, Expected>();
  for (const l of layersOf(dims.layers, c.leave_out)) {
    for (const t of new Set(c.target_modules)) {
      const { inDim, outDim } = targetDims(t, dims);
      exp.set(LORA.A(l, t), { shape: [c.r, inDim], dtypes: FLOAT });
      exp.set(LORA.B(l, t), { shape: [outDim, c.r], dtypes: FLOAT });
    }
  }
  return exp;
}

export const lora: KindDescriptor<'lora', typeof configSchema, LoraLayout> = {
  kind: 'lora',
  summary: 'PEFT LoRA on query/key/value/attn_output/ffn_in/ffn_out',
  cardTags: ['lora', 'peft'],
  config: configSchema,
  initConfig: (config) => ({ r: 8, lora_alpha: 8, target_modules: ['query', 'value'], ...config }),
  expected,
  ffnFromTensors(_c: LoraConfig, h: SafetensorsHeader) {
    for (const [name, e] of h.entries) {
      if (/^layers\.\d+\.ffn_in\.lora_B$/.test(name) && e.shape.length === 2) return e.shape[0];
      if (/^layers\.\d+\.ffn_out\.lora_A$/.test(name) && e.shape.length === 2) return e.shape[1];
    }
    return undefined;
  },
  init(c, ctx) {
    const t = new Map<string, Tensor>();
    for (const l of layersOf(ctx.dims.layers, c.leave_out)) {
      for (const target of new Set(c.target_modules)) {
        const { inDim, outDim } = targetDims(target, ctx.dims);
        // Kaiming-uniform with a = sqrt(5) (nn.Linear's default, which PEFT keeps for A): bound = 1/sqrt(in).
        t.set(LORA.A(l, target), ctx.uniform([c.r, inDim], 1 / Math.sqrt(inDim)));
        t.set(LORA.B(l, target), ctx.fill([outDim, c.r], 0));
      }
    }
    return t;
  },
  load(c, { reader: t, dims }) {
    const scaling = loraScaling(c);
    const leave = c.leave_out ?? [];
    const layers: LoraLayout['layers'] = [];
    for (let l = 0; l < dims.layers; l++) {
      const entry: LoraLayout['layers'][number] = {};
      if (!leave.includes(l)) {
        for (const target of c.target_modules) {
          const { inDim, outDim } = targetDims(target, dims);
          entry[target] = { inDim, outDim, AT: t.linT(LORA.A(l, target), c.r, inDim), BT: scaled(t.linT(LORA.B(l, target), outDim, c.r), scaling) };
        }
      }
      layers.push(entry);
    }
    return { kind: 'lora', r: c.r, layers };
  },
  trainable: (c, dims) => [...expected(c, dims).keys()],
};
