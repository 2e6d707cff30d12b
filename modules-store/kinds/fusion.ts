/**
 * Kind `fusion`: AdapterHub AdapterFusion (BertFusion) over N bottleneck adapters, per layer and site a
 * query / key / value attention over the adapters' outputs. Config in AdapterHub's names (`adapters`,
 * `dynamic` = learned value matrix, `temperature`, ...).
 * Tensors: `layers.{l}.{site}.query|key.{weight,bias}`, `layers.{l}.{site}.value.weight` (dynamic only).
 * Init: AdapterHub's (query/key N(0, 0.02), biases 0; value = identity).
 * Example: `{ kind: 'fusion', config: { adapters: ['task/a', 'task/b'] } }` used as `{fuse: [...], fusion: id}`.
 */
import { z } from 'zod';
import { parseRef } from '../refs';
import type { Tensor } from '../safetensors';
import { SITES, type Site } from './bottleneck';
import { expectLinear, layersOf, type BaseDims, type Expected, type KindDescriptor, type LoadedCommon } from './types';

const configSchema = z.looseObject({
  adapters: z.array(z.string().min(1)).min(1),
  dynamic: z.boolean().optional(),
  temperature: z.number().positive().optional(),
  query_before_ln: z.boolean().optional(),
  residual_before: z.boolean().optional(),
  value_before_softmax: z.boolean().optional(),
  sites: z.array(z.enum(SITES)).min(1).optional(),
  leave_out: z.array(z.number().int().min(0)).default([]).optional(),
});
export type FusionConfig = z.infer<typeof configSchema>;

/** Tensor names (package layout). */
export const FUSE = {
  query: (l: number, site: Site) => `layers.${l}.${site}.query`,
  key: (l: number, site: Site) => `layers.${l}.${site}.key`,
  value: (l: number, site: Site) => `layers.${l}.${site}.value`,
};

/** The sites a fusion config fuses at (default: after the FFN output, as AdapterHub). */
export function fusionSites(c: FusionConfig): Site[] {
  return [...new Set(c.sites ?? ['output'])] as Site[];
}

export interface FusionLayout {
  kind: 'fusion';
  adapters: string[];
  temperature: number;
  /** [layer][site] → query/key/value weights, [in, out] layout; value identity when static. */
  layers: Partial<Record<Site, { qT: Float32Array; qB: Float32Array; kT: Float32Array; kB: Float32Array; vT: Float32Array }>>[];
}
export type FusionModule = LoadedCommon & FusionLayout;

function expected(c: FusionConfig, dims: BaseDims): Map<string, Expected> {
  const exp = new Map<string, Expected>();
  const D = dims.hidden;
  const dynamic = c.dynamic ?? true;
  for (const a of c.adapters) parseRef(a);
  for (const l of layersOf(dims.layers, c.leave_out)) {
    for (const site of fusionSites(c)) {
      expectLinear(exp, FUSE.query(l, site), D, D);
      expectLinear(exp, FUSE.key(l, site), D, D);
      if (dynamic) expectLinear(exp, FUSE.value(l, site), D, D, false);
    }
  }
  return exp;
}

export const fusion: KindDescriptor<'fusion', typeof configSchema, FusionLayout> = {
  kind: 'fusion',
  summary: 'AdapterHub AdapterFusion over bottleneck adapters',
  cardTags: [],
  config: configSchema,
  initConfig(config) {
    if (!Array.isArray(config.adapters) || !config.adapters.length) throw new RangeError('fusion needs config.adapters: the ids of the fused adapters');
    return config;
  },
  expected,
  init(c, ctx) {
    const t = new Map<string, Tensor>();
    const D = ctx.dims.hidden;
    const identity = ctx.fill([D, D], 0);
    for (let i = 0; i < D; i++) (identity.data as Float32Array)[i * D + i] = 1;
    for (const l of layersOf(ctx.dims.layers, c.leave_out)) {
      for (const site of fusionSites(c)) {
        for (const p of [FUSE.query(l, site), FUSE.key(l, site)]) {
          t.set(`${p}.weight`, ctx.normal([D, D]));
          t.set(`${p}.bias`, ctx.fill([D], 0));
        }
        if (c.dynamic ?? true) t.set(`${FUSE.value(l, site)}.weight`, identity);
      }
    }
    return t;
  },
  load(c, { reader: t, dims }) {
    const D = dims.hidden;
    const dynamic = c.dynamic ?? true;
    const leave = c.leave_out ?? [];
    const identity = new Float32Array(D * D);
    for (let i = 0; i < D; i++) identity[i * D + i] = 1;
    const layers: FusionLayout['layers'] = [];
    for (let l = 0; l < dims.layers; l++) {
      const entry: FusionLayout['layers'][number] = {};
      if (!leave.includes(l)) {
        for (const site of fusionSites(c)) {
          entry[site] = {
            qT: t.linT(`${FUSE.query(l, site)}.weight`, D, D),
            qB: t.f32(`${FUSE.query(l, site)}.bias`, [D]),
            kT: t.linT(`${FUSE.key(l, site)}.weight`, D, D),
            kB: t.f32(`${FUSE.key(l, site)}.bias`, [D]),
            vT: dynamic ? t.linT(`${FUSE.value(l, site)}.weight`, D, D) : identity,
          };
        }
      }
      layers.push(entry);
    }
    return { kind: 'fusion', adapters: c.adapters, temperature: c.temperature ?? 1, layers };
  },
  trainable: (c, dims) => [...expected(c, dims).keys()],
};

