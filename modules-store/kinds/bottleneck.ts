/**
 * Kind `bottleneck`: AdapterHub bottleneck adapters (Pfeiffer / seq_bn, Houlsby / double_seq_bn, parallel,
 * MAD-X invertible language adapters). Config in AdapterHub's BnConfig names with its presets; per layer and
 * site (`attention` = after the attention output, `output` = after the FFN output) a down/up projection pair and
 * optional adapter LayerNorms; optionally NICE invertible couplings on the embeddings.
 * Tensors: `layers.{l}.{site}.adapter_down|adapter_up.{weight,bias}`, `layers.{l}.{site}.ln_before|ln_after.*`,
 * `invertible.{F,G}.{down,up}.{weight,bias}`. Init: AdapterHub "bert" (N(0, 0.02), biases 0, LN 1/0).
 * Example: `resolveBottleneckConfig({ preset: 'houlsby' }).mh_adapter === true`.
 */
import { z } from 'zod';
import { StoreError } from '../errors';
import type { Tensor } from '../safetensors';
import { expectLayerNorm, expectLinear, layersOf, scaled, type BaseDims, type Expected, type KindDescriptor, type LoadedCommon } from './types';

export const SITES = ['attention', 'output'] as const;
export type Site = (typeof SITES)[number];
export const ACTIVATIONS = ['relu', 'gelu', 'swish', 'tanh'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

export const BOTTLENECK_PRESETS = ['seq_bn', 'pfeiffer', 'double_seq_bn', 'houlsby', 'par_bn', 'parallel', 'seq_bn_inv', 'double_seq_bn_inv'] as const;

const layerList = z.array(z.number().int().min(0)).default([]);
const reductionFactor = z.union([z.number().positive(), z.record(z.string(), z.number().positive())]);

const configSchema = z.looseObject({
  preset: z.enum(BOTTLENECK_PRESETS).optional(),
  mh_adapter: z.boolean().optional(),
  output_adapter: z.boolean().optional(),
  reduction_factor: reductionFactor.optional(),
  non_linearity: z.enum(ACTIVATIONS).optional(),
  original_ln_before: z.boolean().optional(),
  original_ln_after: z.boolean().optional(),
  residual_before_ln: z.union([z.boolean(), z.literal('post_add')]).optional(),
  adapter_residual_before_ln: z.boolean().optional(),
  ln_before: z.boolean().optional(),
  ln_after: z.boolean().optional(),
  is_parallel: z.boolean().optional(),
  scaling: z.number().optional(),
  leave_out: layerList.optional(),
  inv_adapter: z.union([z.literal('nice'), z.null()]).optional(),
  inv_adapter_reduction_factor: z.number().positive().optional(),
});
export type BottleneckConfigInput = z.infer<typeof configSchema>;

/** A bottleneck config with every field resolved from its preset (AdapterHub defaults). */
export interface ResolvedBottleneckConfig {
  mh_adapter: boolean;
  output_adapter: boolean;
  reduction_factor: number | Record<string, number>;
  non_linearity: Activation;
  original_ln_before: boolean;
  original_ln_after: boolean;
  residual_before_ln: boolean | 'post_add';
  adapter_residual_before_ln: boolean;
  ln_before: boolean;
  ln_after: boolean;
  is_parallel: boolean;
  scaling: number;
  leave_out: number[];
  inv_adapter: 'nice' | null;
  inv_adapter_reduction_factor: number;
}

const SEQ_BN: ResolvedBottleneckConfig = {
  mh_adapter: false,
  output_adapter: true,
  reduction_factor: 16,
  non_linearity: 'relu',
  original_ln_before: true,
  original_ln_after: true,
  residual_before_ln: true,
  adapter_residual_before_ln: false,
  ln_before: false,
  ln_after: false,
  is_parallel: false,
  scaling: 1.0,
  leave_out: [],
  inv_adapter: null,
  inv_adapter_reduction_factor: 2,
};
const DOUBLE_SEQ_BN: ResolvedBottleneckConfig = { ...SEQ_BN, mh_adapter: true, non_linearity: 'swish', original_ln_before: false };
const PAR_BN: ResolvedBottleneckConfig = { ...SEQ_BN, reduction_factor: 2, original_ln_before: false, is_parallel: true, scaling: 4.0 };

const PRESETS: Record<(typeof BOTTLENECK_PRESETS)[number], ResolvedBottleneckConfig> = {
  seq_bn: SEQ_BN,
  pfeiffer: SEQ_BN,
  double_seq_bn: DOUBLE_SEQ_BN,
  houlsby: DOUBLE_SEQ_BN,
  par_bn: PAR_BN,
  parallel: PAR_BN,
  seq_bn_inv: { ...SEQ_BN, inv_adapter: 'nice' },
  double_seq_bn_inv: { ...DOUBLE_SEQ_BN, inv_adapter: 'nice' },
};

/** Fills a bottleneck config from its preset (`seq_bn` when none is named); explicit fields win. */
export function resolveBottleneckConfig(config: BottleneckConfigInput): ResolvedBottleneckConfig {
  const base = PRESETS[config.preset ?? 'seq_bn'];
  const out: ResolvedBottleneckConfig = { ...base };
  for (const key of Object.keys(base) as (keyof ResolvedBottleneckConfig)[]) {
    const v = (config as Record<string, unknown>)[key];
    if (v !== undefined) (out as unknown as Record<string, unknown>)[key] = v;
  }
  return out;
}

/** Bottleneck size of layer `l`: floor(D / reduction_factor) (per-layer maps use the key `"l"`, else `"default"`). */
export function bottleneckSize(cfg: ResolvedBottleneckConfig, hidden: number, layer: number): number {
  const rf = typeof cfg.reduction_factor === 'number' ? cfg.reduction_factor : (cfg.reduction_factor[String(layer)] ?? cfg.reduction_factor.default);
  if (rf === undefined) {
    throw new StoreError('INVALID_MANIFEST', `config.reduction_factor has no entry for layer ${layer} and no "default"`);
  }
  const r = Math.floor(hidden / rf);
  if (r < 1) throw new StoreError('INVALID_MANIFEST', `config.reduction_factor ${rf} leaves no bottleneck units for hidden_size ${hidden}`);
  return r;
}

/** The sites a config puts adapters at. */
export function sitesOf(c: ResolvedBottleneckConfig): Site[] {
  return SITES.filter((s) => (s === 'attention' ? c.mh_adapter : c.output_adapter));
}

/** Tensor names (package layout). */
export const BN = {
  down: (l: number, site: Site) => `layers.${l}.${site}.adapter_down`,
  up: (l: number, site: Site) => `layers.${l}.${site}.adapter_up`,
  lnBefore: (l: number, site: Site) => `layers.${l}.${site}.ln_before`,
  lnAfter: (l: number, site: Site) => `layers.${l}.${site}.ln_after`,
  inv: (net: 'F' | 'G', part: 'down' | 'up') => `invertible.${net}.${part}`,
};

/** Width n of the half the NICE coupling splits off and its bottleneck m. */
export function invertibleDims(c: ResolvedBottleneckConfig, hidden: number): { n: number; m: number } {
  if (hidden % 2 !== 0) throw new StoreError('INVALID_MANIFEST', `inv_adapter "nice" needs an even hidden_size, got ${hidden}`);
  const n = hidden / 2;
  const m = Math.floor(n / c.inv_adapter_reduction_factor);
  if (m < 1) throw new StoreError('INVALID_MANIFEST', `inv_adapter_reduction_factor ${c.inv_adapter_reduction_factor} is too large for hidden_size ${hidden}`);
  return { n, m };
}

// ---- AdapterHub switches per stack slot --------------------------------------------------------------------

/** Per-slot switches of AdapterHub's bottleneck forward that the engine's graph reads (encoder-graph.ts). */
export const ADAPTER_FLAGS = ['obf', 'resPost', 'resPostAdd', 'lnBefore', 'lnAfter', 'adResBeforeLn', 'parallel', 'parLast'] as const;
export type AdapterFlag = (typeof ADAPTER_FLAGS)[number];

/**
 * The switch values of one stack slot run with config `c` (null: no adapter in this slot). `preOnly`: the
 * slot only runs AdapterHub's pre-forward (the fusion pre-step). `null` values mean "don't care" (the op is
 * skipped for this row anyway), so they never force a per-row flag. obf = original_ln_before; resPost = the
 * residual is taken after the original LN (residual_before_ln false); resPostAdd = residual_before_ln
 * 'post_add'; adResBeforeLn = adapter_residual_before_ln; parallel = is_parallel; parLast = a parallel adapter
 * that is its row's last adapter at this layer and site (`last`): AdapterHub's ParallelAdapter.post_forward adds
 * the sub-layer output back after it (encoder-graph.ts adapterSlot).
 */
export function adapterSwitches(c: ResolvedBottleneckConfig | null, preOnly = false, last = true): Record<AdapterFlag, number | null> {
  const own = c && !preOnly;
  return {
    obf: c ? +c.original_ln_before : null,
    resPost: c ? +(c.residual_before_ln === false) : 0,
    resPostAdd: c ? +(c.residual_before_ln === 'post_add') : 0,
    lnBefore: own ? +c.ln_before : null,
    lnAfter: own ? +c.ln_after : null,
    adResBeforeLn: own ? +c.adapter_residual_before_ln : 0,
    parallel: own ? +c.is_parallel : null,
    parLast: own && c.is_parallel ? +last : null,
  };
}

// ---- engine layout ----------------------------------------------------------------------------------------

/** One adapter site of one layer, in engine layout. */
export interface AdapterSiteWeights {
  downT: Float32Array; // [D, r]
  downB: Float32Array; // [r]
  upT: Float32Array; // [r, D], scaling folded in
  upB: Float32Array; // [D], scaling folded in
  r: number;
  lnBefore?: { g: Float32Array; b: Float32Array };
  lnAfter?: { g: Float32Array; b: Float32Array };
}

export interface InvertibleWeights {
  m: number;
  F: { downT: Float32Array; downB: Float32Array; upT: Float32Array; upB: Float32Array };
  G: { downT: Float32Array; downB: Float32Array; upT: Float32Array; upB: Float32Array };
}

export interface BottleneckLayout {
  kind: 'bottleneck';
  config: ResolvedBottleneckConfig;
  /** [layer][site] → weights, absent where the adapter has none (leave_out, disabled site). */
  layers: Partial<Record<Site, AdapterSiteWeights>>[];
  invertible: InvertibleWeights | null;
  /** Factor on the adapter residual (1; AdapterHub's Average gives Σw/n, see composition.ts). */
  residualScale?: number;
}
export type AdapterModule = LoadedCommon & BottleneckLayout;

function expected(config: BottleneckConfigInput, dims: BaseDims): Map<string, Expected> {
  const exp = new Map<string, Expected>();
  const D = dims.hidden;
  const cfg = resolveBottleneckConfig(config);
  const sites = sitesOf(cfg);
  if (sites.length === 0 && !cfg.inv_adapter) {
    throw new StoreError('INVALID_MANIFEST', 'config enables no adapter: set mh_adapter or output_adapter (or inv_adapter)');
  }
  for (const l of layersOf(dims.layers, cfg.leave_out)) {
    const r = bottleneckSize(cfg, D, l);
    for (const site of sites) {
      expectLinear(exp, BN.down(l, site), r, D);
      expectLinear(exp, BN.up(l, site), D, r);
      if (cfg.ln_before) expectLayerNorm(exp, BN.lnBefore(l, site), D);
      if (cfg.ln_after) expectLayerNorm(exp, BN.lnAfter(l, site), D);
    }
  }
  if (cfg.inv_adapter === 'nice') {
    const { n, m } = invertibleDims(cfg, D);
    for (const f of ['F', 'G'] as const) {
      expectLinear(exp, BN.inv(f, 'down'), m, n);
      expectLinear(exp, BN.inv(f, 'up'), n, m);
    }
  }
  return exp;
}

export const bottleneck: KindDescriptor<'bottleneck', typeof configSchema, BottleneckLayout> = {
  kind: 'bottleneck',
  summary: 'AdapterHub bottleneck adapter (seq_bn/pfeiffer, double_seq_bn/houlsby, par_bn, *_inv with MAD-X invertible adapters)',
  cardTags: ['adapters'],
  config: configSchema,
  initConfig: (config) => ({ ...config, preset: config.preset ?? 'seq_bn' }),
  expected,
  init(config, ctx) {
    const t = new Map<string, Tensor>();
    const D = ctx.dims.hidden;
    const c = resolveBottleneckConfig(config);
    const linear = (p: string, out: number, inn: number) => {
      t.set(`${p}.weight`, ctx.normal([out, inn]));
      t.set(`${p}.bias`, ctx.fill([out], 0));
    };
    for (const l of layersOf(ctx.dims.layers, c.leave_out)) {
      for (const site of sitesOf(c)) {
        const r = bottleneckSize(c, D, l);
        linear(BN.down(l, site), r, D);
        linear(BN.up(l, site), D, r);
        for (const p of [c.ln_before ? BN.lnBefore(l, site) : null, c.ln_after ? BN.lnAfter(l, site) : null]) {
          if (!p) continue;
          t.set(`${p}.weight`, ctx.fill([D], 1));
          t.set(`${p}.bias`, ctx.fill([D], 0));
        }
      }
    }
    if (c.inv_adapter === 'nice') {
      const { n, m } = invertibleDims(c, D);
      for (const w of ['F', 'G'] as const) {
        linear(BN.inv(w, 'down'), m, n);
        linear(BN.inv(w, 'up'), D - n, m);
      }
    }
    return t;
  },
  load(config, { reader: t, dims }) {
    const c = resolveBottleneckConfig(config);
    const D = dims.hidden;
    const layers: BottleneckLayout['layers'] = [];
    for (let l = 0; l < dims.layers; l++) {
      const entry: Partial<Record<Site, AdapterSiteWeights>> = {};
      if (!c.leave_out.includes(l)) {
        for (const site of sitesOf(c)) {
          const r = bottleneckSize(c, D, l);
          const ln = (p: string) => ({ g: t.f32(`${p}.weight`, [D]), b: t.f32(`${p}.bias`, [D]) });
          entry[site] = {
            r,
            downT: t.linT(`${BN.down(l, site)}.weight`, r, D),
            downB: t.f32(`${BN.down(l, site)}.bias`, [r]),
            upT: scaled(t.linT(`${BN.up(l, site)}.weight`, D, r), c.scaling),
            upB: scaled(t.f32(`${BN.up(l, site)}.bias`, [D]), c.scaling),
            lnBefore: c.ln_before ? ln(BN.lnBefore(l, site)) : undefined,
            lnAfter: c.ln_after ? ln(BN.lnAfter(l, site)) : undefined,
          };
        }
      }
      layers.push(entry);
    }
    let invertible: InvertibleWeights | null = null;
    if (c.inv_adapter === 'nice') {
      const { n, m } = invertibleDims(c, D);
      const net = (w: 'F' | 'G') => ({
        downT: t.linT(`${BN.inv(w, 'down')}.weight`, m, n),
        downB: t.f32(`${BN.inv(w, 'down')}.bias`, [m]),
        upT: t.linT(`${BN.inv(w, 'up')}.weight`, D - n, m),
        upB: t.f32(`${BN.inv(w, 'up')}.bias`, [D - n]),
      });
      invertible = { m, F: net('F'), G: net('G') };
    }
    return { kind: 'bottleneck', config: c, layers, invertible };
  },
  trainable: (config, dims) => [...expected(config, dims).keys()],
};
