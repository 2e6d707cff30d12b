/**
 * Reference semantics of modhub modules at one site of the encoder, written from AdapterHub `adapters`
 * (v1.x: src/adapters/configuration/adapter_config.py, methods/modeling.py, methods/bottleneck.py,
 * methods/adapter_layer_base.py, methods/invertible.py, composition.py) and from docs/module-format.md —
 * never from the engine. Used by test/reference/encoder.ts.
 * Shape letters: N rows (B·T tokens), D hidden size, r bottleneck size.
 * Example: `const cfg = resolveBnConfig({ preset: 'seq_bn', reduction_factor: 4 })`.
 */
import type { Tensor } from '../../modules-store/safetensors';
import { numel } from '../../modules-store/safetensors';
import { Mat, activate, add, concatCols, layerNorm, linear, scale, sliceCols, softmax } from './ops';

// ---------------------------------------------------------------------------------------------------------
// Module package types (docs/module-format.md). Deliberately minimal and local: the oracle does not import
// the store's zod schema, so that a mistake there cannot hide behind the same mistake here.

export type ModuleKind = 'bottleneck' | 'lora' | 'diff' | 'fusion' | 'ia3';

export interface RefHeadConfig {
  type: 'classification' | 'token_classification' | 'masked_lm';
  num_labels?: number;
  /** classification: 2 (default: dense + activation + out_proj) or 1 (out_proj only). */
  layers?: number;
  /** classification: activation between dense and out_proj, default tanh. */
  activation?: string;
}

export interface RefManifest {
  format_version: number;
  id: string;
  version: string;
  kind: ModuleKind;
  config: Record<string, unknown>;
  head: RefHeadConfig | null;
  task?: string;
  language?: string;
  labels: string[];
  base: { family: string; fingerprint: string; hidden_size: number; num_layers: number; vocab_size: number; [k: string]: unknown };
  [k: string]: unknown;
}

/** One module package as the oracle takes it: its manifest and all its tensors (head included). */
export interface RefModule {
  manifest: RefManifest;
  tensors: Map<string, Tensor>;
}

export type Site = 'attention' | 'output';
export const SITES: readonly Site[] = ['attention', 'output'];

/** Tensor → float64 copy (F16/BF16 are already widened to F32 by the codec). */
export function f64(t: Tensor): Mat {
  if (t.data instanceof BigInt64Array) return Float64Array.from(t.data, (v) => Number(v));
  return Float64Array.from(t.data as ArrayLike<number>);
}

function need(mod: RefModule, name: string, shape: number[]): Mat {
  const t = mod.tensors.get(name);
  if (!t) throw new RangeError(`module '${mod.manifest.id}': missing tensor '${name}'`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(`module '${mod.manifest.id}': tensor '${name}' has shape [${t.shape}], expected [${shape}]`);
  }
  return f64(t);
}

// ---------------------------------------------------------------------------------------------------------
// Bottleneck configs.

export type ResidualBeforeLn = boolean | 'post_add';

/** The BnConfig fields modhub uses (docs/module-format.md `kind: bottleneck`). */
export interface BnConfig {
  mh_adapter: boolean;
  output_adapter: boolean;
  reduction_factor: number | Record<string, number>;
  non_linearity: string;
  original_ln_before: boolean;
  original_ln_after: boolean;
  residual_before_ln: ResidualBeforeLn;
  adapter_residual_before_ln: boolean;
  ln_before: boolean;
  ln_after: boolean;
  is_parallel: boolean;
  scaling: number;
  leave_out: number[];
  inv_adapter: 'nice' | null;
  inv_adapter_reduction_factor: number | null;
}

/**
 * `BnConfig` dataclass defaults, copied from AdapterHub adapters src/adapters/configuration/adapter_config.py
 * (class BnConfig: original_ln_before=False, original_ln_after=True, ln_before=False, ln_after=False,
 * is_parallel=False, scaling=1.0, residual_before_ln=True, adapter_residual_before_ln=False, inv_adapter=None,
 * inv_adapter_reduction_factor=None, leave_out=[]; mh_adapter, output_adapter, reduction_factor and
 * non_linearity have no default there).
 */
export const BN_DEFAULTS: Omit<BnConfig, 'mh_adapter' | 'output_adapter' | 'reduction_factor' | 'non_linearity'> = {
  original_ln_before: false,
  original_ln_after: true,
  residual_before_ln: true,
  adapter_residual_before_ln: false,
  ln_before: false,
  ln_after: false,
  is_parallel: false,
  scaling: 1.0,
  leave_out: [],
  inv_adapter: null,
  inv_adapter_reduction_factor: null,
};

const SEQ_BN: BnConfig = {
  // SeqBnConfig (Pfeiffer et al. 2020) in adapter_config.py
  ...BN_DEFAULTS,
  original_ln_before: true,
  original_ln_after: true,
  residual_before_ln: true,
  adapter_residual_before_ln: false,
  ln_before: false,
  ln_after: false,
  mh_adapter: false,
  output_adapter: true,
  non_linearity: 'relu',
  reduction_factor: 16,
};
const DOUBLE_SEQ_BN: BnConfig = {
  // DoubleSeqBnConfig (Houlsby et al. 2019) in adapter_config.py
  ...BN_DEFAULTS,
  original_ln_before: false,
  original_ln_after: true,
  residual_before_ln: true,
  adapter_residual_before_ln: false,
  ln_before: false,
  ln_after: false,
  mh_adapter: true,
  output_adapter: true,
  non_linearity: 'swish',
  reduction_factor: 16,
};
const PAR_BN: BnConfig = {
  // ParBnConfig (He et al. 2021) in adapter_config.py; residual_before_ln keeps the BnConfig default (True), it is
  // unused by ParallelAdapter. init_weights="mam_adapter" only matters for training.
  ...BN_DEFAULTS,
  original_ln_before: false,
  original_ln_after: true,
  ln_before: false,
  ln_after: false,
  mh_adapter: false,
  output_adapter: true,
  non_linearity: 'relu',
  reduction_factor: 2,
  is_parallel: true,
  scaling: 4.0,
};
/** SeqBnInvConfig / DoubleSeqBnInvConfig add inv_adapter="nice", inv_adapter_reduction_factor=2. */
const INV = { inv_adapter: 'nice' as const, inv_adapter_reduction_factor: 2 };

/**
 * Presets, from AdapterHub adapter_config.py ADAPTER_CONFIG_MAP (current names and the deprecated aliases
 * pfeiffer, houlsby, parallel, pfeiffer+inv, houlsby+inv).
 */
export const BN_PRESETS: Record<string, BnConfig> = {
  seq_bn: SEQ_BN,
  double_seq_bn: DOUBLE_SEQ_BN,
  par_bn: PAR_BN,
  seq_bn_inv: { ...SEQ_BN, ...INV },
  double_seq_bn_inv: { ...DOUBLE_SEQ_BN, ...INV },
  pfeiffer: SEQ_BN,
  houlsby: DOUBLE_SEQ_BN,
  parallel: PAR_BN,
  'pfeiffer+inv': { ...SEQ_BN, ...INV },
  'houlsby+inv': { ...DOUBLE_SEQ_BN, ...INV },
};

/** Preset defaults, then explicit fields (docs/module-format.md: "preset fills the defaults, explicit fields override"). */
export function resolveBnConfig(raw: Record<string, unknown>): BnConfig {
  const preset = raw.preset as string | undefined;
  let base: Partial<BnConfig>;
  if (preset !== undefined) {
    if (!(preset in BN_PRESETS)) throw new RangeError(`bottleneck config: unknown preset '${preset}', expected one of ${Object.keys(BN_PRESETS).join(', ')}`);
    base = BN_PRESETS[preset];
  } else {
    base = { ...BN_DEFAULTS };
  }
  const cfg = { ...base } as Record<string, unknown>;
  for (const [k, v] of Object.entries(raw)) if (k !== 'preset' && v !== undefined) cfg[k] = v;
  for (const k of ['mh_adapter', 'output_adapter', 'reduction_factor', 'non_linearity']) {
    if (cfg[k] === undefined) throw new RangeError(`bottleneck config: '${k}' is required when no preset is given`);
  }
  if (cfg.use_gating) throw new RangeError("bottleneck config: 'use_gating' is not part of modhub format v1");
  if (typeof cfg.scaling !== 'number') throw new RangeError(`bottleneck config: 'scaling' must be a number, got ${JSON.stringify(cfg.scaling)}`);
  if (cfg.inv_adapter !== null && cfg.inv_adapter !== 'nice') throw new RangeError(`bottleneck config: 'inv_adapter' must be null or "nice", got ${JSON.stringify(cfg.inv_adapter)}`);
  if (cfg.inv_adapter === 'nice' && cfg.inv_adapter_reduction_factor == null) cfg.inv_adapter_reduction_factor = 2;
  if (cfg.residual_before_ln === 'post_add' && !cfg.original_ln_before && !cfg.is_parallel) {
    // AdapterHub Adapter.pre_forward never binds `residual` in this case (UnboundLocalError in Python).
    throw new RangeError("bottleneck config: residual_before_ln='post_add' needs original_ln_before=true");
  }
  return cfg as unknown as BnConfig;
}

/** Bottleneck size at layer l: int(D // reduction_factor), at least 1 (AdapterHub BottleneckLayer.add_adapter / Adapter). */
export function bottleneckSize(cfg: BnConfig, D: number, layer: number): number {
  let rf = cfg.reduction_factor;
  if (typeof rf === 'object') {
    const per = rf[String(layer)] ?? rf.default;
    if (per === undefined) throw new RangeError("bottleneck config: a per-layer 'reduction_factor' map needs a 'default'");
    rf = per;
  }
  return Math.max(1, Math.floor(D / rf));
}

// ---------------------------------------------------------------------------------------------------------
// Resolved bottleneck adapters.

interface SiteWeights {
  downW: Mat;
  downB: Mat;
  upW: Mat;
  upB: Mat;
  r: number;
  lnBefore?: { w: Mat; b: Mat };
  lnAfter?: { w: Mat; b: Mat };
}

interface InvWeights {
  n1: number; // split_len1 = D // 2
  n2: number; // split_len2 = D − D // 2
  F: { downW: Mat; downB: Mat; upW: Mat; upB: Mat; m: number };
  G: { downW: Mat; downB: Mat; upW: Mat; upB: Mat; m: number };
}

export interface BnAdapter {
  id: string;
  module: RefModule;
  cfg: BnConfig;
  D: number;
  /** Weights per `${layer}.${site}`; absent where the adapter has no module (site disabled or leave_out). */
  sites: Map<string, SiteWeights>;
  inv: InvWeights | null;
}

/** PyTorch nn.LayerNorm default eps: the adapters' own ln_before / ln_after are built as nn.LayerNorm(D). */
export const ADAPTER_LN_EPS = 1e-5;

/** Reads and shape-checks a bottleneck module for a base with hidden size D and L layers. */
export function loadBottleneck(mod: RefModule, D: number, L: number): BnAdapter {
  if (mod.manifest.kind !== 'bottleneck') throw new TypeError(`module '${mod.manifest.id}' is a '${mod.manifest.kind}', expected 'bottleneck'`);
  const cfg = resolveBnConfig(mod.manifest.config);
  const sites = new Map<string, SiteWeights>();
  for (let l = 0; l < L; l++) {
    if (cfg.leave_out.includes(l)) continue;
    for (const site of SITES) {
      if (site === 'attention' ? !cfg.mh_adapter : !cfg.output_adapter) continue;
      const r = bottleneckSize(cfg, D, l);
      const p = `layers.${l}.${site}.`;
      const w: SiteWeights = {
        downW: need(mod, p + 'adapter_down.weight', [r, D]),
        downB: need(mod, p + 'adapter_down.bias', [r]),
        upW: need(mod, p + 'adapter_up.weight', [D, r]),
        upB: need(mod, p + 'adapter_up.bias', [D]),
        r,
      };
      if (cfg.ln_before) w.lnBefore = { w: need(mod, p + 'ln_before.weight', [D]), b: need(mod, p + 'ln_before.bias', [D]) };
      if (cfg.ln_after) w.lnAfter = { w: need(mod, p + 'ln_after.weight', [D]), b: need(mod, p + 'ln_after.bias', [D]) };
      sites.set(`${l}.${site}`, w);
    }
  }
  let inv: InvWeights | null = null;
  if (cfg.inv_adapter === 'nice') {
    // NICECouplingBlock (methods/modeling.py): F: split_len2 → split_len1, G: split_len1 → split_len2, each
    // Linear(n, int(n // reduction)) → activation → Linear(·, out) (get_subnet_constructor).
    const rf = cfg.inv_adapter_reduction_factor ?? 2;
    const n1 = Math.floor(D / 2);
    const n2 = D - n1;
    const mF = Math.floor(n2 / rf);
    const mG = Math.floor(n1 / rf);
    const sub = (name: 'F' | 'G', nin: number, m: number, nout: number) => ({
      downW: need(mod, `invertible.${name}.down.weight`, [m, nin]),
      downB: need(mod, `invertible.${name}.down.bias`, [m]),
      upW: need(mod, `invertible.${name}.up.weight`, [nout, m]),
      upB: need(mod, `invertible.${name}.up.bias`, [nout]),
      m,
    });
    inv = { n1, n2, F: sub('F', n2, mF, n1), G: sub('G', n1, mG, n2) };
  }
  return { id: mod.manifest.id, module: mod, cfg, D, sites, inv };
}

/**
 * The NICE invertible adapter (NICECouplingBlock.forward in methods/modeling.py), x [N, D]:
 * forward `y1 = x1 + F(x2)`, `y2 = x2 + G(y1)`; rev `x2 = y2 − G(y1)`, `x1 = y1 − F(x2)`; x1 = first D//2 channels.
 * F and G use the adapter's non_linearity.
 */
export function invertibleForward(a: BnAdapter, x: Mat, N: number, rev = false): Mat {
  const inv = a.inv;
  if (!inv) throw new RangeError(`module '${a.id}' has no invertible adapter`);
  const { n1, n2 } = inv;
  const act = a.cfg.non_linearity;
  const sub = (s: InvWeights['F'], v: Mat, nin: number, nout: number) =>
    linear(activate(linear(v, N, nin, s.downW, s.downB, s.m), act), N, s.m, s.upW, s.upB, nout);
  const a1 = sliceCols(x, N, n1 + n2, 0, n1);
  const a2 = sliceCols(x, N, n1 + n2, n1, n1 + n2);
  if (!rev) {
    const y1 = add(a1, sub(inv.F, a2, n2, n1));
    const y2 = add(a2, sub(inv.G, y1, n1, n2));
    return concatCols(y1, n1, y2, n2, N);
  }
  const x2 = add(a2, scale(sub(inv.G, a1, n1, n2), -1));
  const x1 = add(a1, scale(sub(inv.F, x2, n2, n1), -1));
  return concatCols(x1, n1, x2, n2, N);
}

// ---------------------------------------------------------------------------------------------------------
// AdapterFusion.

export interface FusionConfig {
  query: boolean;
  key: boolean;
  value: boolean;
  query_before_ln: boolean;
  residual_before: boolean;
  value_before_softmax: boolean;
  temperature: number;
}

export interface FusionModule {
  id: string;
  module: RefModule;
  cfg: FusionConfig;
  /** Per `${layer}.${site}`. */
  sites: Map<string, { qW: Mat; qB: Mat; kW: Mat; kB: Mat; vW: Mat | null }>;
}

/**
 * Fusion config: defaults from docs/module-format.md, checked against AdapterHub DynamicAdapterFusionConfig
 * (key=query=value=True, query_before_ln=False, residual_before=False, value_before_softmax=True,
 * temperature=False → T=1) and StaticAdapterFusionConfig (value=False). AdapterHub's `temperature` is a bool
 * (True = T starts at 50 and is lowered by T/1000 on every forward call, a training-time schedule); modhub's is
 * the number T itself. `true` is refused here because its value depends on how many calls came before.
 */
export function resolveFusionConfig(raw: Record<string, unknown>): FusionConfig {
  const dynamic = raw.dynamic === undefined ? true : Boolean(raw.dynamic);
  let T = 1;
  if (typeof raw.temperature === 'number') T = raw.temperature;
  else if (raw.temperature === true) throw new RangeError("fusion config: 'temperature: true' (AdapterHub's annealed T) is stateful; give the number T");
  if (!(T > 0)) throw new RangeError(`fusion config: 'temperature' must be > 0, got ${T}`);
  return {
    query: true,
    key: true,
    value: dynamic,
    query_before_ln: Boolean(raw.query_before_ln ?? false),
    residual_before: Boolean(raw.residual_before ?? false),
    value_before_softmax: raw.value_before_softmax === undefined ? true : Boolean(raw.value_before_softmax),
    temperature: T,
  };
}

export function loadFusion(mod: RefModule, D: number, L: number): FusionModule {
  if (mod.manifest.kind !== 'fusion') throw new TypeError(`module '${mod.manifest.id}' is a '${mod.manifest.kind}', expected 'fusion'`);
  const cfg = resolveFusionConfig(mod.manifest.config);
  const sites: FusionModule['sites'] = new Map();
  for (let l = 0; l < L; l++) {
    for (const site of SITES) {
      const p = `layers.${l}.${site}.`;
      if (!mod.tensors.has(p + 'query.weight')) continue;
      sites.set(`${l}.${site}`, {
        qW: need(mod, p + 'query.weight', [D, D]),
        qB: need(mod, p + 'query.bias', [D]),
        kW: need(mod, p + 'key.weight', [D, D]),
        kB: need(mod, p + 'key.bias', [D]),
        vW: cfg.value ? need(mod, p + 'value.weight', [D, D]) : null,
      });
    }
  }
  return { id: mod.manifest.id, module: mod, cfg, sites };
}

// ---------------------------------------------------------------------------------------------------------
// The composition state machine at one site (AdapterHub BottleneckLayer.bottleneck_layer_forward +
// ComposableAdapterLayerBase.compose_*), on N rows of width D.

export type SiteNode =
  | { kind: 'adapter'; adapter: BnAdapter }
  | { kind: 'stack'; children: SiteNode[] }
  | { kind: 'fuse'; children: SiteNode[]; fusion: FusionModule }
  | { kind: 'average'; children: SiteNode[]; weights: number[] }
  /** LoRA / diff leaves: not bottleneck adapters, skipped like AdapterHub skips names it has no module for. */
  | { kind: 'none' };

/** BottleneckState: hidden states, sub-layer input (`input_tensor`), adapter residual, last up, last adapter. */
interface State {
  hidden: Mat;
  input: Mat;
  residual: Mat;
  up: Mat | null;
  last: BnAdapter | null;
}

export interface SiteContext {
  N: number;
  D: number;
  layer: number;
  site: Site;
  /** The site's original (base) LayerNorm. */
  ln: (x: Mat) => Mat;
  /** 'adapterhub' (default): torch.mean(stack(h_i)·w_i) = Σ w_i h_i / n, as AdapterHub BottleneckLayer.mean. */
  average: 'adapterhub' | 'weighted_sum';
}

function key(ctx: SiteContext): string {
  return `${ctx.layer}.${ctx.site}`;
}

function present(node: SiteNode, ctx: SiteContext): boolean {
  switch (node.kind) {
    case 'adapter':
      return node.adapter.sites.has(key(ctx));
    case 'none':
      return false;
    default:
      return node.children.some((c) => present(c, ctx));
  }
}

function leaves(node: SiteNode): BnAdapter[] {
  if (node.kind === 'adapter') return [node.adapter];
  if (node.kind === 'none') return [];
  return node.children.flatMap(leaves);
}

function firstAdapter(node: SiteNode, ctx: SiteContext): BnAdapter {
  // AdapterCompositionBlock.first(): the first leaf; AdapterHub raises KeyError when it has no module here.
  const a = leaves(node)[0];
  if (!a || !a.sites.has(key(ctx))) throw new RangeError(`composition: the first adapter of a block has no module at layer ${ctx.layer} ${ctx.site}`);
  return a;
}

function lastAdapter(node: SiteNode, ctx: SiteContext): BnAdapter {
  const all = leaves(node);
  const a = all[all.length - 1];
  if (!a || !a.sites.has(key(ctx))) throw new RangeError(`composition: the last adapter of a block has no module at layer ${ctx.layer} ${ctx.site}`);
  return a;
}

/**
 * Adapter.pre_forward / ParallelAdapter.pre_forward (methods/modeling.py): returns the adapter input, the
 * fusion query and the adapter residual. Note the residual is taken *before* the original LN when
 * residual_before_ln is true.
 */
function preForward(a: BnAdapter, hidden: Mat, input: Mat, ctx: SiteContext, fusion?: FusionConfig): { hidden: Mat; query: Mat | null; residual: Mat } {
  if (a.cfg.is_parallel) return { hidden: input, query: fusion ? input : null, residual: input };
  const rbl = a.cfg.residual_before_ln;
  let residual: Mat | undefined;
  let query: Mat | null = null;
  if (rbl === true) residual = hidden;
  if (fusion && fusion.query_before_ln) query = hidden;
  if (a.cfg.original_ln_before) {
    hidden = add(hidden, input);
    if (rbl === 'post_add') residual = hidden;
    hidden = ctx.ln(hidden);
  }
  if (!rbl) residual = hidden;
  if (fusion && !fusion.query_before_ln) query = hidden;
  return { hidden, query, residual: residual! };
}

/** Adapter.forward / ParallelAdapter.forward: returns the output (with the adapter residual unless parallel) and the scaled up. */
function adapterForward(a: BnAdapter, x: Mat, residualInput: Mat, ctx: SiteContext): { output: Mat; up: Mat } {
  const w = a.sites.get(key(ctx))!;
  const { N, D } = ctx;
  let h = x;
  if (w.lnBefore) h = layerNorm(h, N, D, w.lnBefore.w, w.lnBefore.b, ADAPTER_LN_EPS);
  const down = activate(linear(h, N, D, w.downW, w.downB, w.r), a.cfg.non_linearity);
  const up = scale(linear(down, N, w.r, w.upW, w.upB, D), a.cfg.scaling);
  let output = up;
  if (a.cfg.is_parallel) {
    if (w.lnAfter) output = layerNorm(output, N, D, w.lnAfter.w, w.lnAfter.b, ADAPTER_LN_EPS);
    return { output, up };
  }
  if (a.cfg.adapter_residual_before_ln) output = add(output, residualInput);
  if (w.lnAfter) output = layerNorm(output, N, D, w.lnAfter.w, w.lnAfter.b, ADAPTER_LN_EPS);
  if (!a.cfg.adapter_residual_before_ln) output = add(output, residualInput);
  return { output, up };
}

/**
 * Adapter.post_forward: `LN(h + x)` when original_ln_after, else h unchanged. ParallelAdapter.post_forward first
 * adds the sub-layer output (`input_hidden_states`) back: `LN(h_adapter + h_sublayer + x)`.
 */
function postForward(a: BnAdapter, hidden: Mat, sublayerOut: Mat, input: Mat, ctx: SiteContext): Mat {
  if (a.cfg.is_parallel) hidden = add(hidden, sublayerOut);
  if (a.cfg.original_ln_after) return ctx.ln(add(hidden, input));
  return hidden;
}

function preBlock(node: SiteNode, s: State, ctx: SiteContext): State {
  const a = node.kind === 'adapter' ? node.adapter : firstAdapter(node, ctx);
  const p = preForward(a, s.hidden, s.input, ctx);
  return { ...s, hidden: p.hidden, residual: p.residual };
}

function composeSingle(a: BnAdapter, s: State, ctx: SiteContext): State {
  const { output, up } = adapterForward(a, s.hidden, s.residual, ctx);
  return { ...s, hidden: output, up, last: a };
}

function compose(node: SiteNode, s: State, ctx: SiteContext): State {
  switch (node.kind) {
    case 'adapter':
      return node.adapter.sites.has(key(ctx)) ? composeSingle(node.adapter, s, ctx) : s;
    case 'none':
      return s;
    case 'stack':
      return composeStack(node.children, s, ctx);
    case 'fuse':
      return composeFuse(node, s, ctx);
    case 'average':
      return composeAverage(node, s, ctx);
  }
}

/** compose_stack: each adapter runs pre_block (its own pre_forward) then its forward, on the running output. */
function composeStack(children: SiteNode[], s: State, ctx: SiteContext): State {
  for (const child of children) {
    if (child.kind === 'adapter') {
      if (!child.adapter.sites.has(key(ctx))) continue; // leave_out / site disabled: AdapterHub skips it
      s = preBlock(child, s, ctx);
      s = composeSingle(child.adapter, s, ctx);
    } else {
      s = compose(child, s, ctx);
    }
  }
  return s;
}

/**
 * BottleneckLayer.compose_fuse: the *last* fused adapter's pre_forward gives the query and the residual;
 * each child runs on that state; BertFusion attends over the children's scaled `up` outputs.
 */
function composeFuse(node: Extract<SiteNode, { kind: 'fuse' }>, s: State, ctx: SiteContext): State {
  const { N, D } = ctx;
  const fcfg = node.fusion.cfg;
  const last = lastAdapter(node, ctx);
  const pre = preForward(last, s.hidden, s.input, ctx, fcfg);
  s = { ...s, hidden: pre.hidden, residual: pre.residual };
  const ups: Mat[] = [];
  for (const child of node.children) {
    if (!present(child, ctx)) continue;
    const cs = child.kind === 'adapter' ? composeSingle(child.adapter, s, ctx) : compose(child, s, ctx);
    ups.push(cs.up!);
  }
  const fw = node.fusion.sites.get(key(ctx));
  if (!fw) throw new RangeError(`fusion module '${node.fusion.id}': missing tensor 'layers.${ctx.layer}.${ctx.site}.query.weight' for a site its adapters have`);
  const hidden = bertFusion(fcfg, fw, pre.query!, ups, s.residual, N, D);
  return { ...s, hidden, last };
}

/**
 * BertFusion.forward (methods/modeling.py) per token. AdapterHub passes the same tensor as key and value and
 * `residual_before` adds the residual to it in place, so then the keys include the residual too.
 */
function bertFusion(
  cfg: FusionConfig,
  fw: FusionModule['sites'] extends Map<string, infer V> ? V : never,
  query: Mat,
  ups: Mat[],
  residual: Mat,
  N: number,
  D: number,
): Mat {
  const A = ups.length;
  const vals = cfg.residual_before ? ups.map((u) => add(u, residual)) : ups;
  const q = cfg.query ? linear(query, N, D, fw.qW, fw.qB, D) : query;
  const k = vals.map((v) => (cfg.key ? linear(v, N, D, fw.kW, fw.kB, D) : v));
  const vProj = cfg.value && cfg.value_before_softmax ? vals.map((v) => linear(v, N, D, fw.vW!, null, D)) : vals;
  let ctxOut: Mat = new Float64Array(N * D);
  for (let n = 0; n < N; n++) {
    const scores: number[] = [];
    for (let i = 0; i < A; i++) {
      let sdot = 0;
      for (let d = 0; d < D; d++) sdot += q[n * D + d] * k[i][n * D + d];
      scores.push(sdot / cfg.temperature);
    }
    const p = softmax(scores);
    for (let i = 0; i < A; i++) for (let d = 0; d < D; d++) ctxOut[n * D + d] += p[i] * vProj[i][n * D + d];
  }
  if (cfg.value && !cfg.value_before_softmax) ctxOut = linear(ctxOut, N, D, fw.vW!, null, D);
  if (!cfg.residual_before) ctxOut = add(ctxOut, residual);
  return ctxOut;
}

/**
 * compose_average: pre_block with the first adapter, each child on that state, then BottleneckLayer.mean:
 * `torch.mean(torch.stack(h_i) * w_i, dim=0)` — i.e. Σ w_i·h_i / n with the (normalised) weights — and the
 * post-step of the last child.
 */
function composeAverage(node: Extract<SiteNode, { kind: 'average' }>, s: State, ctx: SiteContext): State {
  s = preBlock(node, s, ctx);
  const states: State[] = [];
  const weights: number[] = [];
  node.children.forEach((child, i) => {
    if (!present(child, ctx)) return;
    states.push(child.kind === 'adapter' ? composeSingle(child.adapter, s, ctx) : compose(child, s, ctx));
    weights.push(node.weights[i]);
  });
  const div = ctx.average === 'adapterhub' ? states.length : 1;
  const hidden = new Float64Array(ctx.N * ctx.D);
  states.forEach((st, i) => {
    for (let j = 0; j < hidden.length; j++) hidden[j] += (weights[i] * st.hidden[j]) / div;
  });
  return { hidden, input: states[0].input, residual: states[0].residual, up: states[0].up, last: states[states.length - 1].last };
}

/**
 * One adapter site (BottleneckLayer.bottleneck_layer_forward): `h` the sub-layer output before its residual,
 * `x` the sub-layer input. Without adapters here: `LN(h + x)`.
 */
export function adapterSite(root: SiteNode, h: Mat, x: Mat, ctx: SiteContext): Mat {
  if (!present(root, ctx)) return ctx.ln(add(h, x));
  // parse_composition wraps a single adapter name in Stack at level 0
  const node: SiteNode = root.kind === 'adapter' ? { kind: 'stack', children: [root] } : root;
  const s = compose(node, { hidden: h, input: x, residual: x, up: null, last: null }, ctx);
  if (!s.last) return ctx.ln(add(h, x));
  return postForward(s.last, s.hidden, h, x, ctx);
}

// ---------------------------------------------------------------------------------------------------------
// LoRA and diffs.

export const LORA_TARGETS = ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraModule {
  id: string;
  scaling: number;
  /** Per `${layer}.${target}`: A [r, in], B [out, r]. */
  sites: Map<string, { A: Mat; B: Mat; r: number; in: number; out: number }>;
}

/**
 * PEFT LoRA (peft/tuners/lora/layer.py Linear.forward): scaling = lora_alpha / r,
 * `y = x·Wᵀ + b + scaling·(x·Aᵀ)·Bᵀ` (dropout off). `dims(target)` gives [in, out].
 */
export function loadLora(mod: RefModule, L: number, dims: (t: LoraTarget) => [number, number]): LoraModule {
  if (mod.manifest.kind !== 'lora') throw new TypeError(`module '${mod.manifest.id}' is a '${mod.manifest.kind}', expected 'lora'`);
  const c = mod.manifest.config;
  const r = Number(c.r);
  // PEFT LoraConfig (and AdapterHub LoRAConfig.alpha) default: lora_alpha = 8
  const alpha = c.lora_alpha === undefined ? 8 : Number(c.lora_alpha);
  if (!(r >= 1)) throw new RangeError(`lora config: 'r' must be >= 1, got ${String(c.r)}`);
  const targets = (c.target_modules as string[] | undefined) ?? [];
  const leaveOut = (c.leave_out as number[] | undefined) ?? [];
  const sites: LoraModule['sites'] = new Map();
  for (const t of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new RangeError(`lora config: unknown target '${t}', expected ${LORA_TARGETS.join(', ')}`);
    const [I, O] = dims(t as LoraTarget);
    for (let l = 0; l < L; l++) {
      if (leaveOut.includes(l)) continue;
      sites.set(`${l}.${t}`, { A: need(mod, `layers.${l}.${t}.lora_A`, [r, I]), B: need(mod, `layers.${l}.${t}.lora_B`, [O, r]), r, in: I, out: O });
    }
  }
  return { id: mod.manifest.id, scaling: alpha / r, sites };
}

/** Adds `scaling·(x·Aᵀ)·Bᵀ` of every LoRA that targets `${layer}.${target}` to y [N, out]. */
export function applyLoras(y: Mat, x: Mat, N: number, loras: LoraModule[], layer: number, target: LoraTarget): Mat {
  let out = y;
  for (const lo of loras) {
    const s = lo.sites.get(`${layer}.${target}`);
    if (!s) continue;
    const xa = linear(x, N, s.in, s.A, null, s.r);
    out = add(out, scale(linear(xa, N, s.r, s.B, null, s.out), lo.scaling));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// IA³.

export interface Ia3Module {
  id: string;
  /** Per `${layer}.${target}`: the learned vector and whether it scales the layer's input or output. */
  sites: Map<string, { l: Mat; scales: 'input' | 'output' }>;
}

/**
 * (IA)³, written from AdapterHub (methods/lora.py, IA3Config: composition_mode "scale", r = alpha = 1, so
 * `y = y ⊙ lora_B`; default attn_matrices k, v and intermediate_lora = output of intermediate.dense) and PEFT
 * (tuners/ia3/layer.py: non-feedforward `y = base(x) ⊙ ia3_l`, ia3_l [out, 1]; feedforward `y = base(x ⊙ ia3_l)`,
 * ia3_l [1, in]). modhub's ffn_out (output.dense) is PEFT's feedforward module; every other target is scaled
 * at its output. `dims(target)` gives [in, out].
 */
export function loadIa3(mod: RefModule, L: number, dims: (t: LoraTarget) => [number, number]): Ia3Module {
  if (mod.manifest.kind !== 'ia3') throw new TypeError(`module '${mod.manifest.id}' is a '${mod.manifest.kind}', expected 'ia3'`);
  const c = mod.manifest.config;
  const targets = (c.target_modules as string[] | undefined) ?? ['key', 'value', 'ffn_in'];
  const leaveOut = (c.leave_out as number[] | undefined) ?? [];
  const sites: Ia3Module['sites'] = new Map();
  for (const t of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new RangeError(`ia3 config: unknown target '${t}', expected ${LORA_TARGETS.join(', ')}`);
    const [I, O] = dims(t as LoraTarget);
    const input = t === 'ffn_out';
    for (let l = 0; l < L; l++) {
      if (leaveOut.includes(l)) continue;
      sites.set(`${l}.${t}`, { l: need(mod, `layers.${l}.${t}.ia3_l`, input ? [1, I] : [O, 1]), scales: input ? 'input' : 'output' });
    }
  }
  return { id: mod.manifest.id, sites };
}

/** x [N, n] with each column multiplied by the vector of every IA³ module scaling `${layer}.${target}` at `where`. */
export function applyIa3(x: Mat, N: number, n: number, mods: Ia3Module[], layer: number, target: LoraTarget, where: 'input' | 'output'): Mat {
  let out = x;
  for (const m of mods) {
    const s = m.sites.get(`${layer}.${target}`);
    if (!s || s.scales !== where) continue;
    const next = new Float64Array(N * n);
    for (let i = 0; i < N; i++) for (let j = 0; j < n; j++) next[i * n + j] = out[i * n + j] * s.l[j];
    out = next;
  }
  return out;
}

/** One parameter difference of a diff module: sparse (flat indices + values) or dense. */
export interface ParamDiff {
  param: string;
  index?: Float64Array;
  values?: Mat;
  dense?: { shape: number[]; data: Mat };
}

/** The parameter differences of a diff module (everything except `head.*`), by the names it uses. */
export function readDiffs(mod: RefModule): ParamDiff[] {
  if (mod.manifest.kind !== 'diff') throw new TypeError(`module '${mod.manifest.id}' is a '${mod.manifest.kind}', expected 'diff'`);
  const out = new Map<string, ParamDiff>();
  for (const [name, t] of mod.tensors) {
    if (name.startsWith('head.')) continue;
    const m = /^(.*)\.(index|values|dense)$/.exec(name);
    if (!m) throw new RangeError(`diff module '${mod.manifest.id}': tensor '${name}' must end in .index, .values or .dense`);
    const d = out.get(m[1]) ?? { param: m[1] };
    if (m[2] === 'index') {
      if (!(t.dtype === 'I64' || t.dtype === 'I32')) throw new TypeError(`diff module '${mod.manifest.id}': '${name}' must be I64 or I32, got ${t.dtype}`);
      d.index = f64(t);
    } else if (m[2] === 'values') d.values = f64(t);
    else d.dense = { shape: t.shape, data: f64(t) };
    out.set(m[1], d);
  }
  for (const d of out.values()) {
    if (d.dense && (d.index || d.values)) throw new RangeError(`diff module '${mod.manifest.id}': '${d.param}' has both .dense and .index/.values`);
    if (!d.dense && !(d.index && d.values)) throw new RangeError(`diff module '${mod.manifest.id}': '${d.param}' needs both .index and .values`);
    if (d.index && d.index.length !== d.values!.length) throw new RangeError(`diff module '${mod.manifest.id}': '${d.param}.index' and '.values' differ in length`);
  }
  return [...out.values()];
}

/** θ += δ for one parameter of shape `shape` (flat data); checks indices are sorted, unique and in range. */
export function applyDiff(theta: Mat, shape: number[], d: ParamDiff, owner: string): void {
  if (d.dense) {
    if (d.dense.shape.length !== shape.length || d.dense.shape.some((v, i) => v !== shape[i])) {
      throw new RangeError(`diff module '${owner}': '${d.param}.dense' has shape [${d.dense.shape}], the base parameter is [${shape}]`);
    }
    for (let i = 0; i < theta.length; i++) theta[i] += d.dense.data[i];
    return;
  }
  const n = numel(shape);
  let prev = -1;
  for (let j = 0; j < d.index!.length; j++) {
    const i = d.index![j];
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`diff module '${owner}': '${d.param}.index' holds ${i}, outside [0, ${n})`);
    if (i <= prev) throw new RangeError(`diff module '${owner}': '${d.param}.index' must be sorted and unique`);
    prev = i;
    theta[i] += d.values![j];
  }
}
