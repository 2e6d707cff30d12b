/**
 * Prediction heads, shared by every module kind: the `head` block of module.json, the head tensors
 * (HF names: `head.dense`, `head.out_proj`, `head.transform.*`, `head.decoder.bias`), their initialisation
 * (N(0, 0.02) weights, zero biases, LayerNorm 1/0) and their engine layout ([in, out] matrices).
 * The only place head tensor names are spelled. Example: `expectedHead(m.head, dims)`.
 */
import { z } from 'zod';
import type { Tensor } from '../safetensors';
import { expectLayerNorm, expectLinear, type BaseDims, type Expected, type InitContext, type TensorReader } from './types';

export const headSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('classification'),
    num_labels: z.number().int().min(1).max(1_000_000),
    layers: z.union([z.literal(1), z.literal(2)]).default(2),
    activation: z.string().default('tanh'),
  }),
  z.object({ type: z.literal('token_classification'), num_labels: z.number().int().min(1).max(1_000_000) }),
  z.object({ type: z.literal('masked_lm') }),
]);
export type HeadConfig = z.infer<typeof headSchema>;
export const HEAD_TYPES = ['classification', 'token_classification', 'masked_lm'] as const;

/** Head tensor names (package layout, PyTorch [out, in] weights). */
export const HEAD = {
  clsDense: 'head.dense',
  outProj: 'head.out_proj',
  mlmDense: 'head.transform.dense',
  mlmLn: 'head.transform.layer_norm',
  mlmBias: 'head.decoder.bias',
} as const;

/** A head in engine layout. */
export interface HeadWeights {
  config: HeadConfig;
  labels: string[];
  clsDenseT?: Float32Array; // [D, D]
  clsDenseB?: Float32Array;
  outT?: Float32Array; // [D, C]
  outB?: Float32Array; // [C]
  mlm?: { denseT: Float32Array; denseB: Float32Array; lnG: Float32Array; lnB: Float32Array; bias: Float32Array };
}

/** True for a tensor name that belongs to the head (every kind's packages may carry one). */
export function isHeadTensor(name: string): boolean {
  return name.startsWith('head.');
}

/** The head tensors a package with this head must hold. */
export function expectedHead(h: HeadConfig | null, dims: BaseDims): Map<string, Expected> {
  const exp = new Map<string, Expected>();
  const D = dims.hidden;
  if (!h) return exp;
  if (h.type === 'classification') {
    if (h.layers === 2) expectLinear(exp, HEAD.clsDense, D, D);
    expectLinear(exp, HEAD.outProj, h.num_labels, D);
  } else if (h.type === 'token_classification') {
    expectLinear(exp, HEAD.outProj, h.num_labels, D);
  } else {
    expectLinear(exp, HEAD.mlmDense, D, D);
    expectLayerNorm(exp, HEAD.mlmLn, D);
    exp.set(HEAD.mlmBias, { shape: [dims.vocab], dtypes: ['F32', 'F16', 'BF16'] });
  }
  return exp;
}

/** Fresh head tensors (weights N(0, 0.02), biases 0, LayerNorm 1/0), as HF's `_init_weights`. */
export function initHead(h: HeadConfig, ctx: InitContext): Map<string, Tensor> {
  const t = new Map<string, Tensor>();
  const D = ctx.dims.hidden;
  const linear = (p: string, out: number, inn: number) => {
    t.set(`${p}.weight`, ctx.normal([out, inn]));
    t.set(`${p}.bias`, ctx.fill([out], 0));
  };
  if (h.type === 'masked_lm') {
    linear(HEAD.mlmDense, D, D);
    t.set(`${HEAD.mlmLn}.weight`, ctx.fill([D], 1));
    t.set(`${HEAD.mlmLn}.bias`, ctx.fill([D], 0));
    t.set(HEAD.mlmBias, ctx.fill([ctx.dims.vocab], 0));
    return t;
  }
  if (h.type === 'classification' && h.layers === 2) linear(HEAD.clsDense, D, D);
  linear(HEAD.outProj, h.num_labels, D);
  return t;
}

/** A package's head in engine layout (null without a head). */
export function loadHead(h: HeadConfig | null, labels: string[], t: TensorReader, dims: Required<BaseDims>): HeadWeights | null {
  if (!h) return null;
  const D = dims.hidden;
  if (h.type === 'classification') {
    const C = h.num_labels;
    return {
      config: h,
      labels,
      clsDenseT: h.layers === 2 ? t.linT(`${HEAD.clsDense}.weight`, D, D) : undefined,
      clsDenseB: h.layers === 2 ? t.f32(`${HEAD.clsDense}.bias`, [D]) : undefined,
      outT: t.linT(`${HEAD.outProj}.weight`, C, D),
      outB: t.f32(`${HEAD.outProj}.bias`, [C]),
    };
  }
  if (h.type === 'token_classification') {
    const C = h.num_labels;
    return { config: h, labels, outT: t.linT(`${HEAD.outProj}.weight`, C, D), outB: t.f32(`${HEAD.outProj}.bias`, [C]) };
  }
  return {
    config: h,
    labels,
    mlm: {
      denseT: t.linT(`${HEAD.mlmDense}.weight`, D, D),
      denseB: t.f32(`${HEAD.mlmDense}.bias`, [D]),
      lnG: t.f32(`${HEAD.mlmLn}.weight`, [D]),
      lnB: t.f32(`${HEAD.mlmLn}.bias`, [D]),
      bias: t.f32(HEAD.mlmBias, [dims.vocab]),
    },
  };
}

/** The head tensors the trainer trains (all of them). */
export function trainableHead(h: HeadConfig | null, dims: BaseDims): string[] {
  return [...expectedHead(h, dims).keys()];
}
