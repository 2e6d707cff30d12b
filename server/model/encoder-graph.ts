/**
 * Emits the encoder (BERT / RoBERTa / XLM-R / DistilBERT, post-LN) as one ONNX graph whose modules are run-time
 * data: per-row indices into per-batch pools of adapter, LoRA, invertible-adapter, fusion and head tensors.
 * A batch may mix compositions; a row whose indices point at the zero entry of every pool equals the bare base.
 *
 * The graph's structure depends only on a `Variant` (which features some row of the batch uses, stack depth,
 * whether a per-row flag is uniform or mixed), never on which modules are loaded, so a handful of sessions
 * serve every composition (see server/runtime/engine.ts).
 *
 * Shape letters: B rows, T tokens, D hidden, H heads, F ffn, R (padded) rank, S stack slots, P pool entries,
 * L layers, C (padded) labels, N fused adapters.
 */
import type { BaseConfig } from './config';
import { GraphBuilder, unknownDim, type Value } from './graph/builder';
import { ia3Scales, type Ia3Target } from '../../modules-store/kinds/ia3';

// Sites, targets, activations and the per-slot adapter switches are defined by the module kinds.
export { SITES, ACTIVATIONS, ADAPTER_FLAGS, type Site, type Activation, type AdapterFlag } from '../../modules-store/kinds/bottleneck';
export { LORA_TARGETS, type LoraTarget } from '../../modules-store/kinds/lora';
export { IA3_TARGETS, type Ia3Target } from '../../modules-store/kinds/ia3';
import type { Activation, AdapterFlag, Site } from '../../modules-store/kinds/bottleneck';
import { ACTIVATIONS, SITES } from '../../modules-store/kinds/bottleneck';
import type { LoraTarget } from '../../modules-store/kinds/lora';
/** 'off': 0 for every row (op omitted); 'on': 1 for every row (no mixing); 'mixed': fed per row. */
export type FlagMode = 'off' | 'on' | 'mixed';

export interface SiteVariant {
  /** Stack depth S at this site (empty slots are identity). */
  slots: number;
  flags: Record<AdapterFlag, FlagMode>;
  /** Site-final original LayerNorm `LN(out + x)` (AdapterHub `original_ln_after`); 'on' for the bare base. */
  finalLn: FlagMode;
  /**
   * One activation for all rows, or 'mixed' (one-hot per row and slot); an array gives it per slot (a MAD-X stack
   * has gelu in the language slot and relu in the task slot, each uniform across rows).
   */
  act: Activation | 'mixed' | (Activation | 'mixed')[];
  /** AdapterFusion width N after the stack (0 = no fusion). */
  fuse: number;
  /** Residual scale per (layer, slot, row): 'off' when 1 everywhere; AdapterHub's Average divides by n. */
  resScale: 'off' | 'mixed';
  /** Every row uses the same adapter in each slot: one [D, R] weight per slot, a 2-D GEMM instead of per-row ones. */
  uniform?: boolean;
  /**
   * Per slot (the stack, then with fusion the pre-step and the fused adapters), the rank class of its adapters
   * (variants.ts rankClass; 0: no row has an adapter there). A mixed slot gathers from its class's pool, padded to
   * the widest rank written there, not the site's: a MAD-X language adapter (reduction 2) does not make every
   * other row's slot as wide. Absent in graphs built without it (the trainer's): one pool per site.
   */
  ranks?: number[];
}

export interface Variant {
  sites: Partial<Record<Site, SiteVariant>>;
  lora: LoraTarget[];
  /** Every row uses the same LoRA set (one [in, R] / [R, out] pair per layer, no per-row gather). */
  loraUniform?: boolean;
  /**
   * Per LoRA target, the rank class of its rows' sets (variants.ts rankClass): a mixed target gathers from that
   * class's pool, as adapter slots do (SiteVariant.ranks). Absent in graphs built without it (the trainer's).
   */
  loraRanks?: Partial<Record<LoraTarget, number>>;
  /** Linear layers some row scales with IA³ (absent = none). */
  ia3?: Ia3Target[];
  /** Every row uses the same IA³ set (one product vector per layer fed directly, no per-row gather). */
  ia3Uniform?: boolean;
  invertible: boolean;
  /** Every row uses the same invertible adapter (its weights fed directly, no per-row gathers). */
  invUniform?: boolean;
  invAct: Activation | 'mixed';
  heads: { cls: boolean; tok: boolean; mlm: boolean };
  /** Classification heads with a dense+tanh layer before out_proj ('mixed' when rows differ). */
  clsDense: FlagMode;
  /** Some row brings bias-only diffs (RowPlan.rowBias): every Linear bias and LayerNorm shift is per row (absent = none). */
  rowBias?: boolean;
}

/**
 * Parameters a row's bias-only diffs may change in the batch's own run: Linear biases (fed per row as b + Σδ)
 * and the shifts of the embedding and site LayerNorms (Σδ added to their output).
 */
export const ROW_BIAS_PARAM = /^(layers\.\d+\.(attn\.[qkvo]|ffn_in|ffn_out|attn_ln|ffn_ln)|embeddings\.ln)\.bias$/;

/** Whether a row-bias parameter is a LayerNorm shift (added after the LayerNorm) rather than a Linear bias. */
export function isLayerNormShift(name: string): boolean {
  return /(_ln|\.ln)\.bias$/.test(name);
}

/**
 * Whether a site can carry z = cur + x through its stack (EncoderEmitter.carriedSite): every slot runs the
 * original LN before the adapter and adds back the pre-LN sub-layer output, with no fusion, no residual scale,
 * no parallel adapters and no residual inside the adapter's own LayerNorm.
 */
export function carriesSum(sv: SiteVariant): boolean {
  const f = sv.flags;
  return sv.fuse === 0 && sv.resScale === 'off' && f.obf === 'on' && f.resPost === 'off' && f.resPostAdd === 'off' && f.parallel === 'off' && f.adResBeforeLn === 'off';
}

/** The activation of stack slot s at a site. */
export function slotActivation(sv: SiteVariant, s: number): Activation | 'mixed' {
  return Array.isArray(sv.act) ? (sv.act[s] ?? 'mixed') : sv.act;
}

/**
 * The rank class of the pool a mixed site's slot s gathers from (POOL.adapter's `rank`): the slot's own, the
 * smallest class for a slot no row fills, undefined without SiteVariant.ranks (one pool per site).
 */
export function slotRank(sv: SiteVariant, s: number): number | undefined {
  if (!sv.ranks) return undefined;
  return sv.ranks[s] || MIN_RANK_CLASS;
}

/** The smallest rank class (variants.ts rankClass). */
export const MIN_RANK_CLASS = 16;

/**
 * Slots whose weights the engine feeds pre-folded (uniform carried slots without adapter LayerNorms): `down_wf`
 * = (I − 11ᵀ/D)·(γ⊙Wd), i.e. γ⊙Wd with its column means removed, so that z·down_wf = (z − mean(z))·(γ⊙Wd);
 * `down_bf` = β·Wd + bd (γ, β: the site's original LayerNorm); `up_wb` = [Wu; bu]. With relu, the down
 * projection gets one more column (weights 0, bias 1) whose activation is the ones column that carries bu
 * through the up GEMM. null: the slot reads the plain module tensors.
 */
export function foldedSlot(sv: SiteVariant, s: number): { biasColumn: boolean } | null {
  if (!sv.uniform || !carriesSum(sv) || sv.flags.lnBefore !== 'off' || sv.flags.lnAfter !== 'off') return null;
  return { biasColumn: slotActivation(sv, s) === 'relu' };
}

/** Lanes of a laned slot (lanedSlot): a run holds at most this many distinct adapters there (variants.ts laneGroups). */
export const LANES = 4;

/** Whether a slot of this rank class runs in lanes where it can (lanedSlot; variants.ts laneGroups splits runs by it). */
export function wideClass(rankClass: number, hidden: number): boolean {
  return rankClass > hidden;
}

/**
 * Mixed carried slots whose rank class is wider than the hidden size (a MAD-X language adapter: rank 384, class 1024
 * at BERT-base) run in LANES lanes instead of per-row products: a lane is the rows of one adapter, gathered from the
 * batch and run through that adapter's folded weights (foldedSlot's form, fed per lane and layer) as 2-D GEMMs, then
 * scattered back. Per row, the slot gathers each row's [D, R] weights and folds the LayerNorm into them: 8 rows with
 * rank-384 adapters added 33% to the base GEMMs' time that way, where their multiply-adds as 2-D GEMMs come to ~8%
 * (probe in docs/serving-performance.md); and such adapters are few (one a language) and shared by many rows. Needs
 * no adapter LayerNorms and one activation in the slot; null: per-row products.
 */
export function lanedSlot(sv: SiteVariant, s: number, hidden: number): { biasColumn: boolean } | null {
  if (sv.uniform || !sv.ranks || !wideClass(sv.ranks[s] ?? 0, hidden) || !carriesSum(sv) || sv.flags.lnBefore !== 'off' || sv.flags.lnAfter !== 'off') return null;
  const act = slotActivation(sv, s);
  return act === 'mixed' ? null : { biasColumn: act === 'relu' };
}

/**
 * The down projection of a folded slot before its activation: LN(z)·Wd + bd = rstd ⊙ (z·down_wf) + down_bf, with
 * the weights folded as foldedSlot describes. Neither z − mean nor the normalised z is written: z is read three
 * times (two reductions, one GEMM) and only [rows, R] is written. var = E[z²] − mean², clamped at 0 against rounding.
 */
export function foldedSlotDown(g: GraphBuilder, z: Value, downWf: Value, downBf: Value, eps: number, meanColumn?: Value): Value {
  // meanColumn ([D, 1] of 1/D): the row means as a product, right on zero rows too (a laned slot's empty lane), where
  // onnxruntime's ReduceMean of an empty [0, D] gives [0, D], not [0, 1]
  const rowMean = (t: Value) => (meanColumn ? g.matmul(t, meanColumn) : g.reduce('ReduceMean', t, [-1], true));
  const mean = rowMean(z);
  const variance = g.unary('Relu', g.sub(rowMean(g.mul(z, z)), g.mul(mean, mean)));
  const rstd = g.pow(g.add(variance, g.constFloat(eps)), g.constFloat(-0.5));
  return g.add(g.mul(g.matmul(z, downWf), rstd), downBf);
}

export function variantKey(v: Variant): string {
  // keys sorted: variants built by different code paths (chooseVariant, joinVariants) compare equal
  return JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([p], [q]) => (p < q ? -1 : 1))) : x));
}

/** Supplies base parameters; the caller decides initializer (prepacked) vs graph input (diffs, training). */
export interface ParamProvider {
  /** Weight of a Linear by canonical stem (e.g. 'layers.0.attn.q'), transposed to [in, out] for MatMul. */
  linearT(stem: string): Value;
  /** Any other parameter by canonical name (biases, LayerNorms, embeddings). */
  tensor(name: string): Value;
  /** x [B, T, in] · Wᵀ of an encoder Linear, when the provider computes the product itself (else x · linearT). */
  product?(x: Value, stem: string): Value;
}

/** Names of the graph's fixed inputs and outputs (the runtime builds feeds with these). */
export const IO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  tokenTypeIds: 'token_type_ids',
  attentionMask: 'attention_mask',
  hidden: 'hidden',
  clsLogits: 'cls_logits',
  tokLogits: 'tok_logits',
  mlmLogits: 'mlm_logits',
} as const;

/** Pool input names (documented once; the runtime and trainer address pools through these). */
export const POOL = {
  /** A mixed site's adapter pool part; with `rank`, the pool of that rank class (SiteVariant.ranks). */
  adapter: (site: Site, part: string, rank?: number) => (rank ? `ad.${site}.r${rank}.${part}` : `ad.${site}.${part}`),
  adapterFlag: (site: Site, flag: string) => `ad.${site}.flag.${flag}`,
  /** A mixed LoRA target's pool part; with `rank`, the pool of that rank class (Variant.loraRanks). */
  lora: (target: LoraTarget, part: 'A' | 'B' | 'idx', rank?: number) => (rank ? `lora.${target}.r${rank}.${part}` : `lora.${target}.${part}`),
  /** Uniform batches feed each layer's (and slot's) entry directly, without pool + index gathers. */
  adapterSlot: (site: Site, part: string, l: number, s: number) => `ad.${site}.${part}@${l}.${s}`,
  loraLayer: (target: LoraTarget, part: 'A' | 'B', l: number) => `lora.${target}.${part}@${l}`,
  /** A laned slot (lanedSlot): lane k's rows [n] (the same at every layer), and its adapter's folded weights at layer l. */
  laneRows: (site: Site, s: number, k: number) => `ad.${site}.lane@${s}.${k}`,
  laneSlot: (site: Site, part: string, l: number, s: number, k: number) => `ad.${site}.${part}@${l}.${s}.${k}`,
  /** IA³: per-row pool [L·P, 1, n] of scaling vectors (entry 0 = ones) and its row index [L, B]. */
  ia3: (target: Ia3Target, part: 's' | 'idx') => `ia3.${target}.${part}`,
  /** IA³, uniform batches: layer l's product vector [n]. */
  ia3Layer: (target: Ia3Target, l: number) => `ia3.${target}.s@${l}`,
  inv: (part: string) => `inv.${part}`,
  fuse: (site: Site, part: string) => `fuse.${site}.${part}`,
  head: (part: string) => `head.${part}`,
  /** Bias-only diffs: per-row pool [P, 1, n] of one parameter (Linear: b + Σδ; LayerNorm shift: Σδ), and the row index [B]. */
  rowBias: (name: string) => `bias.${name}`,
  /** A gated graph's bool scalar: whether the batch runs a per-row feature at all (gateValues). */
  gate: (feature: string) => `gate.${feature}`,
};

/**
 * The gates of a graph built with `gates` for `session`, and their values for a batch whose own variant is `rows`:
 * each per-row feature of a mixed graph (a stack slot at a site, a LoRA target, the invertible adapter) runs inside
 * an ONNX If that is open only when some row uses it. A mixed graph serves every batch it covers (the session
 * cache's envelope), and a batch of a few rows mostly needs a part of it: a lone adapter row on the envelope of
 * adapters, LoRA and MAD-X stacks skips the second slot, LoRA and the invertible adapter. Skipped parts are exact
 * identities for the batch's rows (empty slots, zero LoRA factors), so their outputs do not change (the test
 * compares each lone row on a gated mixed session with its own session and its row in the mixed batch, 1e-5).
 * Row biases stay ungated: their per-linear gather costs about what an If does.
 */
export function gateValues(session: Variant, rows: Variant): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const site of SITES) {
    const sv = session.sites[site];
    if (!sv || sv.uniform) continue;
    for (let s = 0; s < sv.slots; s++) out[POOL.gate(`${site}.${s}`)] = (rows.sites[site]?.slots ?? 0) > s;
  }
  if (!session.loraUniform) for (const t of session.lora) out[POOL.gate(`lora.${t}`)] = rows.lora.includes(t);
  if (session.invertible && !session.invUniform) out[POOL.gate('inv')] = rows.invertible;
  return out;
}

/** nn.LayerNorm's default epsilon, used by AdapterHub's adapter LayerNorms. */
const ADAPTER_LN_EPS = 1e-5;

export interface EncoderGraph {
  graph: GraphBuilder;
  variant: Variant;
}

export interface EncoderGraphOptions {
  /** Run the mixed graph's per-row features inside Ifs on gate inputs (gateValues); serving only, autodiff has no If. */
  gates?: boolean;
}

/** Builds the encoder graph for one variant. */
export function buildEncoderGraph(config: BaseConfig, variant: Variant, params: (g: GraphBuilder) => ParamProvider, name = 'modhub-encoder', options: EncoderGraphOptions = {}): EncoderGraph {
  const g = new GraphBuilder(name);
  const p = params(g);
  new EncoderEmitter(g, config, variant, p, !!options.gates).emit();
  return { graph: g, variant };
}

class EncoderEmitter {
  private readonly D: number;
  private readonly H: number;
  private readonly L: number;
  private readonly eps: number;
  private one!: Value;
  private ones: Value | null = null;
  private hiddenShape: Value | null = null;
  /** [D, 1] of 1/D: laned slots' row means (foldedSlotDown). A constant, so If branches may share it. */
  private meanColumn: Value | null = null;
  /** Values built once per graph (flags, row indices); a branch starts from a copy, so none leaks out of it. */
  private flagCache = new Map<string, Value>();

  constructor(
    /** The builder nodes go to: the graph's, or an If branch's while `gated` builds one. */
    private g: GraphBuilder,
    private readonly cfg: BaseConfig,
    private readonly v: Variant,
    private readonly p: ParamProvider,
    private readonly gates: boolean,
  ) {
    this.D = cfg.hiddenSize;
    this.H = cfg.numHeads;
    this.L = cfg.numLayers;
    this.eps = cfg.layerNormEps;
  }

  emit(): void {
    const { g, cfg, v } = this;
    this.one = g.constFloat(1);
    const ids = g.input(IO.inputIds, 'int64', ['B', 'T']);
    const pos = g.input(IO.positionIds, 'int64', ['B', 'T']);
    const mask = g.input(IO.attentionMask, 'float32', ['B', 'T']);
    let x = g.add(g.gather(this.p.tensor('embeddings.word'), ids), g.gather(this.p.tensor('embeddings.position'), pos));
    if (cfg.typeVocabSize > 0) {
      const tt = g.input(IO.tokenTypeIds, 'int64', ['B', 'T']);
      x = g.add(x, g.gather(this.p.tensor('embeddings.token_type'), tt));
    }
    x = this.shifted(g.layerNorm(x, this.p.tensor('embeddings.ln.weight'), this.p.tensor('embeddings.ln.bias'), this.eps), 'embeddings.ln.bias');
    if (v.invertible) {
      const e = x;
      x = v.invUniform ? this.invertible(e, false) : this.gated('inv', () => this.invertible(e, false), () => e);
    }

    // Additive attention mask [B,1,1,T]: 0 for tokens, a large negative for padding (HF uses dtype min).
    const neg = g.mul(g.sub(this.one, mask), g.constFloat(-3.4028234663852886e38));
    const addMask = g.unsqueeze(neg, [1, 2]);

    for (let l = 0; l < this.L; l++) x = this.layer(x, l, addMask);
    g.output(x, IO.hidden);
    this.heads(x);
  }

  // ---- encoder layer ----------------------------------------------------------------------------------
  /**
   * A base Linear with its module terms: IA³ input scaling (ffn_out) before the product, LoRA's delta added,
   * IA³ output scaling of the whole result (base + LoRA) last.
   */
  private linear(input: Value, l: number, stem: string, target?: LoraTarget): Value {
    const { g } = this;
    const ia3 = target && this.v.ia3?.includes(target) ? ia3Scales(target) : null;
    const x = ia3 === 'input' ? g.mul(input, this.ia3Scale(l, target!)) : input;
    const bias = `layers.${l}.${stem}.bias`;
    const W = `layers.${l}.${stem}`;
    const xW = this.p.product ? this.p.product(x, W) : g.matmul(x, this.p.linearT(W));
    let y = g.add(xW, this.v.rowBias ? this.rowBias(bias) : this.p.tensor(bias));
    if (target && this.v.lora.includes(target)) {
      const base = y;
      y = this.v.loraUniform ? g.add(base, this.loraDelta(x, l, target)) : this.gated(`lora.${target}`, () => this.g.add(base, this.loraDelta(x, l, target)), () => base);
    }
    if (ia3 === 'output') y = g.mul(y, this.ia3Scale(l, target!));
    return y;
  }

  /** IA³ scaling vector of layer l at a target: [n] when uniform, else gathered per row [B, 1, n] (entry 0 = ones). */
  private ia3Scale(l: number, target: Ia3Target): Value {
    if (this.v.ia3Uniform) return this.poolInput(POOL.ia3Layer(target, l), ['?n']);
    const pool = this.poolInput(POOL.ia3(target, 's'), ['LP', 1, '?n']);
    return this.g.gather(pool, this.layerIndex(POOL.ia3(target, 'idx'), l));
  }

  /** Per-row LoRA: (x · A[idx]) · B[idx], scaling folded into B; pool entry 0 is zeros. */
  private loraDelta(x: Value, l: number, target: LoraTarget): Value {
    const { g } = this;
    if (this.v.loraUniform) {
      const A = this.poolInput(POOL.loraLayer(target, 'A', l), ['?in', 'R']);
      const Bm = this.poolInput(POOL.loraLayer(target, 'B', l), ['R', '?out']);
      return g.matmul(g.matmul(x, A), Bm);
    }
    const rank = this.v.loraRanks?.[target];
    const A = this.poolInput(POOL.lora(target, 'A', rank), ['LP', '?in', 'R']);
    const Bm = this.poolInput(POOL.lora(target, 'B', rank), ['LP', 'R', '?out']);
    const idx = this.layerIndex(POOL.lora(target, 'idx'), l);
    return g.matmul(g.matmul(x, g.gather(A, idx)), g.gather(Bm, idx));
  }

  private layer(x: Value, l: number, addMask: Value): Value {
    const { g, D, H } = this;
    const dh = D / H;
    const heads = (t: Value) => g.transpose(g.reshape(t, [0, 0, H, dh]), [0, 2, 1, 3]); // [B,H,T,dh]
    const q = heads(this.linear(x, l, 'attn.q', 'query'));
    const k = heads(this.linear(x, l, 'attn.k', 'key'));
    const val = heads(this.linear(x, l, 'attn.v', 'value'));
    const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), g.constFloat(1 / Math.sqrt(dh))), addMask);
    const ctx = g.reshape(g.transpose(g.matmul(g.softmax(scores, -1), val), [0, 2, 1, 3]), [0, 0, D]);
    const attnOut = this.linear(ctx, l, 'attn.o', 'attn_output');
    const a = this.shifted(this.site('attention', l, attnOut, x, `layers.${l}.attn_ln`), `layers.${l}.attn_ln.bias`);
    const inter = this.hiddenAct(this.linear(a, l, 'ffn_in', 'ffn_in'));
    const ffnOut = this.linear(inter, l, 'ffn_out', 'ffn_out');
    return this.shifted(this.site('output', l, ffnOut, a, `layers.${l}.ffn_ln`), `layers.${l}.ffn_ln.bias`);
  }

  /** A row's bias vector [B, 1, n] from the row-bias pool of one parameter. */
  private rowBias(name: string): Value {
    const { g } = this;
    const idx = g.inputs.find((i) => i.name === POOL.rowBias('idx')) ?? g.input(POOL.rowBias('idx'), 'int64', ['B']);
    return g.gather(this.poolInput(POOL.rowBias(name), ['P', 1, '?n']), idx);
  }

  /**
   * A LayerNorm's output with the rows' shift deltas added (rows with bias-only diffs; exact: the engine gives
   * such diffs on site LayerNorms only to rows without adapters there, whose site output is that LayerNorm's).
   */
  private shifted(x: Value, name: string): Value {
    return this.v.rowBias ? this.g.add(x, this.rowBias(name)) : x;
  }

  private hiddenAct(x: Value): Value {
    switch (this.cfg.hiddenAct) {
      case 'gelu':
        return this.g.gelu(x, 'none');
      case 'gelu_new':
        return this.g.gelu(x, 'tanh');
      case 'relu':
        return this.g.unary('Relu', x);
    }
  }

  private act(x: Value, act: Activation): Value {
    const { g } = this;
    switch (act) {
      case 'relu':
        return g.unary('Relu', x);
      case 'gelu':
        return g.gelu(x, 'none');
      case 'swish':
        return g.mul(x, g.unary('Sigmoid', x));
      case 'tanh':
        return g.unary('Tanh', x);
    }
  }

  /**
   * `run()` inside an If on the gate of `feature` (POOL.gate, fed by gateValues), `skip()` when it is closed; inline
   * when the graph is not gated. Both build with `this.g` set to their branch (closures must use `this.g`).
   */
  private gated(feature: string, run: () => Value, skip: () => Value): Value {
    if (!this.gates) return run();
    const outer = this.g;
    const name = POOL.gate(feature);
    const cond = outer.inputs.find((i) => i.name === name) ?? outer.input(name, 'bool', []);
    const inBranch = (fn: () => Value) => (b: GraphBuilder) => {
      const saved = { cache: this.flagCache, ones: this.ones, shape: this.hiddenShape };
      this.g = b;
      this.flagCache = new Map(saved.cache);
      try {
        return [fn()];
      } finally {
        this.g = outer;
        this.flagCache = saved.cache;
        this.ones = saved.ones;
        this.hiddenShape = saved.shape;
      }
    };
    return outer.ifElse(cond, inBranch(run), inBranch(skip))[0];
  }

  // ---- pools and per-row indices ---------------------------------------------------------------------
  private poolInput(name: string, shape: (string | number)[]): Value {
    // Symbolic pool dims differ between pools (P, R per site), so each is declared unknown.
    const existing = this.g.inputs.find((i) => i.name === name);
    return existing ?? this.g.input(name, 'float32', shape.map((d) => (typeof d === 'number' ? d : unknownDim())));
  }

  /** Row indices [B] for layer l from an index input [L, B] (absolute indices into a flattened [L*P, ...] pool). */
  private layerIndex(name: string, l: number, slot?: number): Value {
    const key = `${name}#${l}#${slot ?? ''}`;
    const hit = this.flagCache.get(key);
    if (hit) return hit;
    const { g } = this;
    const input = this.g.inputs.find((i) => i.name === name) ?? g.input(name, 'int64', slot === undefined ? [this.L, 'B'] : [this.L, unknownDim(), 'B']);
    let idx = g.gather(input, g.constInt64([l], []), 0);
    if (slot !== undefined) idx = g.gather(idx, g.constInt64([slot], []), 0);
    this.flagCache.set(key, idx);
    return idx;
  }

  /**
   * A per-row 0/1 flag as [B,1,1] for layer l and slot s (input [L, S, B]). At a uniform site every row has the
   * same value, and the slots may run on flattened [B*T, D] rows (carriedSite), where a [B,1,1] factor would
   * broadcast to [B, B*T, D]: there the flag is row 0's value as [1,1], which broadcasts against either layout.
   */
  private flag(site: Site, flag: string, l: number, s: number): Value {
    const key = `${site}.${flag}#${l}#${s}`;
    const hit = this.flagCache.get(key);
    if (hit) return hit;
    const { g } = this;
    const name = POOL.adapterFlag(site, flag);
    const input = g.inputs.find((i) => i.name === name) ?? g.input(name, 'float32', [this.L, unknownDim(), 'B']);
    const perRow = g.gather(g.gather(input, g.constInt64([l], []), 0), g.constInt64([s], []), 0); // [B]
    const f = this.v.sites[site]?.uniform ? g.unsqueeze(g.slice(perRow, 0, 0, 1), [1]) : g.unsqueeze(perRow, [1, 2]);
    this.flagCache.set(key, f);
    return f;
  }

  /** mode 'on' → a, 'off' → b, 'mixed' → flag·a + (1-flag)·b per row. */
  private mix(mode: FlagMode, flag: () => Value, a: () => Value, b: Value): Value {
    if (mode === 'off') return b;
    if (mode === 'on') return a();
    const { g } = this;
    const f = flag();
    return g.add(b, g.mul(f, g.sub(a(), b)));
  }

  /** LayerNorm without affine, then per-row gamma/beta gathered from a pool. */
  private rowLayerNorm(x: Value, gamma: Value, beta: Value, eps = ADAPTER_LN_EPS): Value {
    const { g } = this;
    const n = g.layerNorm(x, g.constFloat(new Array(this.D).fill(1)), g.constFloat(new Array(this.D).fill(0)), eps);
    return g.add(g.mul(n, gamma), beta);
  }

  // ---- bottleneck adapter site (AdapterHub semantics, see docs/module-format.md) ------------------------
  private site(site: Site, l: number, h: Value, x: Value, lnStem: string): Value {
    const sv = this.v.sites[site];
    const lnW = this.p.tensor(`${lnStem}.weight`);
    const lnB = this.p.tensor(`${lnStem}.bias`);
    // this.g, not g: a gated slot calls it inside its If branch
    const siteLn = (t: Value) => this.g.layerNorm(this.g.add(t, x), lnW, lnB, this.eps);
    if (!sv) return siteLn(h);
    if (carriesSum(sv)) return this.carriedSite(site, sv, l, h, x, lnW, lnB);
    let cur = h;
    let fuseQuery: Value | null = null;
    let fuseResidual: Value | null = null;
    for (let s = 0; s < sv.slots; s++) {
      const prev = cur;
      const step = () => this.adapterSlot(site, sv, l, s, prev, x, h, siteLn).out;
      cur = sv.uniform ? step() : this.gated(`${site}.${s}`, step, () => prev);
    }
    if (sv.fuse > 0) {
      // AdapterFusion after the stack: query = hidden after the pre-step, residual = adapter residual.
      const pre = this.preStep(site, sv, l, sv.slots, cur, x, siteLn);
      fuseQuery = pre.ln;
      fuseResidual = pre.residual;
      cur = this.fusion(site, sv, l, cur, x, fuseQuery, fuseResidual, siteLn);
    }
    return this.mix(sv.finalLn, () => this.flag(site, 'finalLn', l, 0), () => siteLn(cur), cur);
  }

  /**
   * The site for stacks whose every slot runs the original LayerNorm before its adapter and adds back the
   * pre-LN residual (AdapterHub's Pfeiffer / seq_bn, MAD-X language adapters; see carriesSum). Same values as
   * the general path, fewer passes over [B,T,D]:
   *  - the running sum z = cur + x is carried instead of cur: each slot is LN(z) → adapter → z += up, and the
   *    site ends with LN(z) (or z − x without original_ln_after), so no slot adds x again;
   *  - the LayerNorm's scale and shift fold into the down projection, and its 1/std into the [B,T,R] result:
   *    LN(z)·Wd + bd = rstd ⊙ (c·(γ⊙Wd)) + (β·Wd + bd) with c = z − mean(z); the normalised tensor is never
   *    written (uniform slots fold the centring into the weights too, see foldedSlot);
   *  - when all rows share the slot's adapter, up projection, its bias and the residual are one Gemm:
   *    [act, 1]·[Wu; bu] + z.
   */
  private carriedSite(site: Site, sv: SiteVariant, l: number, h: Value, x: Value, lnW: Value, lnB: Value): Value {
    const { g } = this;
    const layerNorm = (t: Value) => g.layerNorm(t, lnW, lnB, this.eps);
    // Uniform slots run on the flattened rows [B*T, D] (plain GEMMs, one reshape per site); per-row pools need
    // the batch axis for their batched products.
    const rows = !!sv.uniform;
    let flatX: Value | null = null;
    const xs = () => (rows ? (flatX ??= g.flatten(x, 2)) : x);
    let z = rows ? g.flatten(g.add(h, x), 2) : g.add(h, x);
    for (let s = 0; s < sv.slots; s++) {
      const prev = z;
      const step = () => this.carriedSlot(site, sv, l, s, prev, lnW, lnB, xs());
      z = rows ? step() : this.gated(`${site}.${s}`, step, () => prev);
    }
    const out = sv.finalLn === 'on' ? layerNorm(z) : this.mix(sv.finalLn, () => this.flag(site, 'finalLn', l, 0), () => layerNorm(z), g.sub(z, xs()));
    if (!rows) return out;
    this.hiddenShape ??= g.shapeOf(x);
    return g.node('Reshape', [out, this.hiddenShape], {}, [{ type: out.type, shape: x.shape }])[0];
  }

  /** Slot s of a carried site: z + the slot's adapter output (xs: the sub-layer input in z's layout). */
  private carriedSlot(site: Site, sv: SiteVariant, l: number, s: number, z: Value, lnW: Value, lnB: Value, xs: Value): Value {
    const { g, D } = this;
    const lane = lanedSlot(sv, s, D);
    if (lane) return this.lanedSlotOut(site, sv, l, s, z, lane.biasColumn);
    const p = (part: string, shape: (string | number)[]) => this.slotParam(site, sv, part, l, s, shape);
    const folded = foldedSlot(sv, s);
    if (folded) {
      // weights folded by the engine (foldedSlot), centring included
      const act = this.slotActivation(site, sv, l, s, foldedSlotDown(g, z, p('down_wf', [D, '?']), p('down_bf', [1, '?']), this.eps));
      return g.gemm(folded.biasColumn ? act : g.concat([act, this.onesColumn(z)], 1), p('up_wb', ['?', D]), { c: z });
    }
    let up: Value;
    if (sv.flags.lnBefore === 'off') {
      const act = this.slotActivation(site, sv, l, s, this.layerNormDown(z, lnW, lnB, p('down_w', [D, 'R']), p('down_b', [1, 'R'])));
      up = g.add(g.matmul(act, p('up_w', ['R', D])), p('up_b', [1, D]));
    } else {
      up = this.bottleneck(site, sv, l, s, g.layerNorm(z, lnW, lnB, this.eps), xs);
    }
    const lnAfter = () => this.rowLayerNorm(up, p('lna_g', [1, D]), p('lna_b', [1, D]));
    return g.add(z, this.mix(sv.flags.lnAfter, () => this.flag(site, 'lnAfter', l, s), lnAfter, up));
  }

  /**
   * A laned slot (lanedSlot) of a mixed carried site: z [B, T, D] with each lane's rows replaced by z + that lane's
   * adapter output, computed as a uniform folded slot on the lane's rows alone; rows in no lane (no adapter in this
   * slot) keep z. An empty lane runs on zero rows.
   */
  private lanedSlotOut(site: Site, sv: SiteVariant, l: number, s: number, z: Value, biasColumn: boolean): Value {
    const { g, D } = this;
    const act = slotActivation(sv, s) as Activation;
    this.meanColumn ??= g.constFloat(new Array(D).fill(1 / D), [D, 1]);
    const lanes: Value[] = [];
    const outs: Value[] = [];
    for (let k = 0; k < LANES; k++) {
      const name = POOL.laneRows(site, s, k);
      const rows = g.inputs.find((i) => i.name === name) ?? g.input(name, 'int64', [unknownDim()]);
      const zk = g.gather(z, rows, 0); // [n, T, D]
      const flat = g.flatten(zk, 2); // [n·T, D]
      const p = (part: string, shape: (string | number)[]) => this.poolInput(POOL.laneSlot(site, part, l, s, k), shape);
      const a = this.act(foldedSlotDown(g, flat, p('down_wf', [D, '?']), p('down_bf', [1, '?']), this.eps, this.meanColumn), act);
      // relu: the down projection's last column is the ones column that carries the up bias (foldedSlot)
      const withOnes = biasColumn ? a : g.concat([a, g.constantOfShape(g.shapeOf(g.slice(a, 1, 0, 1)), 1, [a.shape[0], 1])], 1);
      outs.push(g.reshapeLike(g.gemm(withOnes, p('up_wb', ['?', D]), { c: flat }), zk));
      lanes.push(rows);
    }
    const idx = g.unsqueeze(g.concat(lanes, 0), [1]); // [N, 1]: the lanes' rows, disjoint
    return g.node('ScatterND', [z, idx, g.concat(outs, 0)], {}, [{ type: z.type, shape: z.shape }])[0];
  }

  /** LN(z)·Wd + bd (LN with the base's γ, β) without writing LN(z): rstd ⊙ ((z − mean)·(γ⊙Wd)) + (β·Wd + bd). */
  private layerNormDown(z: Value, gamma: Value, beta: Value, downW: Value, downB: Value): Value {
    const { g } = this;
    const c = g.sub(z, g.reduce('ReduceMean', z, [-1], true));
    const variance = g.reduce('ReduceMean', g.mul(c, c), [-1], true);
    const rstd = g.pow(g.add(variance, g.constFloat(this.eps)), g.constFloat(-0.5));
    const w = g.mul(downW, g.unsqueeze(gamma, [1])); // [D,R] or per row [B,D,R]
    const b = g.add(g.matmul(g.unsqueeze(beta, [0]), downW), downB); // [1,R] or [B,1,R]
    return g.add(g.mul(g.matmul(c, w), rstd), b);
  }

  /** A [rows, 1] column of ones for `like` ([rows, ...]), built once per graph. */
  private onesColumn(like: Value): Value {
    const { g } = this;
    this.ones ??= g.constantOfShape(g.shapeOf(g.slice(like, 1, 0, 1)), 1, [like.shape[0], 1]);
    return this.ones;
  }

  private slotActivation(site: Site, sv: SiteVariant, l: number, s: number, x: Value): Value {
    return this.activation(x, slotActivation(sv, s), (name) => this.flag(site, `act_${name}`, l, s));
  }

  /** AdapterHub steps 1–3: optional original LN before, and the residual the adapter adds back. */
  private preStep(site: Site, sv: SiteVariant, l: number, s: number, cur: Value, x: Value, siteLn: (t: Value) => Value): { ln: Value; residual: Value } {
    const { g } = this;
    const f = (name: AdapterFlag) => () => this.flag(site, name, l, s);
    let lnFull: Value | null = null;
    const lnd = () => (lnFull ??= siteLn(cur));
    const ln = this.mix(sv.flags.obf, f('obf'), lnd, cur);
    let residual = cur;
    residual = this.mix(sv.flags.resPostAdd, f('resPostAdd'), () => g.add(cur, x), residual);
    residual = this.mix(sv.flags.resPost, f('resPost'), () => ln, residual);
    return { ln, residual };
  }

  /**
   * One stack slot. Sequential adapters (AdapterHub Adapter): pre_forward, then out = ln_after(up) + residual (or
   * ln_after(up + residual)). Parallel adapters (ParallelAdapter): pre_forward hands the sub-layer *input* x on
   * (bottleneck reads x), forward gives ln_after(up) with no residual, and post_forward adds the sub-layer output
   * h back, which only the row's last adapter at this site does (parLast); so in Stack(seq_bn, par_bn) the seq_bn
   * output is discarded, as in AdapterHub.
   */
  private adapterSlot(site: Site, sv: SiteVariant, l: number, s: number, cur: Value, x: Value, h: Value, siteLn: (t: Value) => Value): { out: Value } {
    const { g } = this;
    const f = (name: AdapterFlag) => () => this.flag(site, name, l, s);
    const lnAfter = (t: Value) => this.rowLayerNorm(t, this.slotParam(site, sv, 'lna_g', l, s, [1, this.D]), this.slotParam(site, sv, 'lna_b', l, s, [1, this.D]));
    const sequential = (up: Value, pre: { residual: Value }) => {
      const residual = sv.resScale === 'mixed' ? g.mul(pre.residual, this.flag(site, 'resScale', l, s)) : pre.residual;
      // Default (adapter_residual_before_ln = false): out = ln_after(up) + residual.
      const afterThenAdd = () => g.add(this.mix(sv.flags.lnAfter, f('lnAfter'), () => lnAfter(up), up), residual);
      const addThenAfter = () => {
        const sum = g.add(up, residual);
        return this.mix(sv.flags.lnAfter, f('lnAfter'), () => lnAfter(sum), sum);
      };
      return sv.flags.adResBeforeLn === 'off' ? afterThenAdd() : this.mix(sv.flags.adResBeforeLn, f('adResBeforeLn'), addThenAfter, afterThenAdd());
    };
    const parallel = (up: Value) => {
      const o = this.mix(sv.flags.lnAfter, f('lnAfter'), () => lnAfter(up), up);
      return this.mix(sv.flags.parLast, f('parLast'), () => g.add(o, h), o);
    };
    if (sv.flags.parallel === 'on') return { out: parallel(this.bottleneck(site, sv, l, s, cur, x)) };
    const pre = this.preStep(site, sv, l, s, cur, x, siteLn);
    const up = this.bottleneck(site, sv, l, s, pre.ln, x);
    if (sv.flags.parallel === 'off') return { out: sequential(up, pre) };
    return { out: this.mix('mixed', f('parallel'), () => parallel(up), sequential(up, pre)) };
  }

  /** up(act(down(a))) · scaling for slot s (scaling folded into up at pool build time). Returns [B,T,D]. */
  private bottleneck(site: Site, sv: SiteVariant, l: number, s: number, ln: Value, x: Value): Value {
    const { g, D } = this;
    const p = (part: string, shape: (string | number)[]) => this.slotParam(site, sv, part, l, s, shape);
    let a = this.mix(sv.flags.parallel, () => this.flag(site, 'parallel', l, s), () => x, ln);
    a = this.mix(sv.flags.lnBefore, () => this.flag(site, 'lnBefore', l, s), () => this.rowLayerNorm(a, p('lnb_g', [1, D]), p('lnb_b', [1, D])), a);
    const down = g.add(g.matmul(a, p('down_w', [D, 'R'])), p('down_b', [1, 'R']));
    const act = this.slotActivation(site, sv, l, s, down);
    return g.add(g.matmul(act, p('up_w', ['R', D])), p('up_b', [1, D]));
  }

  /**
   * One adapter tensor of slot s at layer l: per-row from the pool ([B, ...shape]) or, when every row shares the
   * slot's adapter, fed directly ([...shape]) so the matmuls are plain 2-D GEMMs with no gathers.
   */
  private slotParam(site: Site, sv: SiteVariant, part: string, l: number, s: number, shape: (string | number)[]): Value {
    if (sv.uniform) return this.poolInput(POOL.adapterSlot(site, part, l, s), shape);
    return this.g.gather(this.poolInput(POOL.adapter(site, part, slotRank(sv, s)), ['LP', ...shape]), this.layerIndex(POOL.adapter(site, 'idx'), l, s));
  }

  private activation(x: Value, act: Activation | 'mixed', flag: (a: Activation) => Value): Value {
    if (act !== 'mixed') return this.act(x, act);
    const { g } = this;
    let out: Value | null = null;
    for (const a of ACTIVATIONS) {
      const term = g.mul(flag(a), this.act(x, a));
      out = out ? g.add(out, term) : term;
    }
    return out!;
  }

  /**
   * AdapterFusion (AdapterHub BertFusion): scores softmax((q·Wq)·(k_i·Wk)ᵀ / T) over the N fused adapters'
   * up outputs, context Σ p_i (v_i·Wv), plus the residual; rows without fusion keep `cur`.
   */
  private fusion(site: Site, sv: SiteVariant, l: number, cur: Value, x: Value, query: Value, residual: Value, siteLn: (t: Value) => Value): Value {
    const { g, D } = this;
    void siteLn;
    const fidx = this.layerIndex(POOL.fuse(site, 'idx'), l);
    const fp = (part: string, shape: (string | number)[]) => g.gather(this.poolInput(POOL.fuse(site, part), shape), fidx);
    const ups: Value[] = [];
    for (let n = 0; n < sv.fuse; n++) {
      // Fused adapters live in the same adapter pool, addressed through slot indices S + n.
      ups.push(g.unsqueeze(this.bottleneck(site, sv, l, sv.slots + 1 + n, query, x), [2])); // [B,T,1,D]
    }
    const values = g.concat(ups, 2); // [B,T,N,D]
    const q = g.add(g.matmul(query, fp('q_w', ['LP', D, D])), fp('q_b', ['LP', 1, D])); // [B,T,D]
    const kW = g.unsqueeze(fp('k_w', ['LP', D, D]), [1]); // [B,1,D,D]
    const kB = g.unsqueeze(fp('k_b', ['LP', 1, D]), [1]); // [B,1,1,D]
    const keys = g.add(g.matmul(values, kW), kB); // [B,T,N,D]
    const scores = g.squeeze(g.matmul(keys, g.unsqueeze(q, [3])), [3]); // [B,T,N]
    const temp = fp('temp', ['LP', 1, 1]); // 1/T per row
    const probs = g.softmax(g.mul(scores, temp), -1);
    const vW = g.unsqueeze(fp('v_w', ['LP', D, D]), [1]);
    const vals = g.matmul(values, vW); // [B,T,N,D]
    const ctx = g.squeeze(g.matmul(g.unsqueeze(probs, [2]), vals), [2]); // [B,T,D]
    const fused = g.add(ctx, residual);
    const has = fp('present', ['LP', 1, 1]);
    return g.add(cur, g.mul(has, g.sub(fused, cur)));
  }

  // ---- invertible adapter (NICE coupling, MAD-X) -------------------------------------------------------
  private invertible(x: Value, inverse: boolean): Value {
    const { g, D } = this;
    if (this.v.invUniform) return this.sharedInvertible(x, inverse);
    const n = Math.floor(D / 2);
    const net = (which: 'F' | 'G', t: Value) => {
      const pool = (part: string, shape: (string | number)[]) => {
        const idx = g.inputs.find((i) => i.name === POOL.inv('idx')) ?? g.input(POOL.inv('idx'), 'int64', ['B']);
        return g.gather(this.poolInput(POOL.inv(`${which}.${part}`), shape), idx);
      };
      const h = g.add(g.matmul(t, pool('down_w', ['P', n, 'M'])), pool('down_b', ['P', 1, 'M']));
      const act = this.activation(h, this.v.invAct, (a) => {
        const name = POOL.inv(`act_${a}`);
        const inp = g.inputs.find((i) => i.name === name) ?? g.input(name, 'float32', ['B']);
        return g.unsqueeze(inp, [1, 2]);
      });
      return g.add(g.matmul(act, pool('up_w', ['P', 'M', D - n])), pool('up_b', ['P', 1, D - n]));
    };
    const x1 = g.slice(x, 2, 0, n);
    const x2 = g.slice(x, 2, n, D);
    if (!inverse) {
      const y1 = g.add(x1, net('F', x2));
      const y2 = g.add(x2, net('G', y1));
      return g.concat([y1, y2], 2);
    }
    const y1 = x1;
    const y2 = x2;
    const xx2 = g.sub(y2, net('G', y1));
    const xx1 = g.sub(y1, net('F', xx2));
    return g.concat([xx1, xx2], 2);
  }

  /**
   * The NICE coupling when every row shares one invertible adapter, on the flattened rows and without splitting
   * the hidden vector: the engine feeds F's and G's weights zero-padded to the full width (`down_wp` [D, M] reads
   * only its half, `up_wbp` [M+1, D] = [Wu; bu] writes only its half), so y1 = x1 + F(x2) is x + [F(x2), 0] and
   * y2 = x2 + G(y1) is y + [0, G(y1)]: each step one activation between two GEMMs, the second accumulating into
   * the running value (alpha −1 for the inverse).
   */
  private sharedInvertible(x: Value, inverse: boolean): Value {
    const { g, D } = this;
    const step = (which: 'F' | 'G', t: Value, sign: 1 | -1) => {
      const p = (part: string, shape: (string | number)[]) => this.poolInput(POOL.inv(`${which}.${part}@shared`), shape);
      const act = this.act(g.gemm(t, p('down_wp', [D, 'M']), { c: p('down_b', [1, 'M']) }), this.v.invAct as Activation);
      return g.gemm(g.concat([act, this.onesColumn(t)], 1), p('up_wbp', ['M1', D]), { c: t, alpha: sign });
    };
    const rows = g.flatten(x, 2);
    const out = inverse ? step('F', step('G', rows, -1), -1) : step('G', step('F', rows, 1), 1);
    return g.reshapeLike(out, x);
  }

  // ---- heads -------------------------------------------------------------------------------------------
  private heads(hidden: Value): void {
    const { g, D, v } = this;
    const hidx = () => g.inputs.find((i) => i.name === POOL.head('idx')) ?? g.input(POOL.head('idx'), 'int64', ['B']);
    const hp = (part: string, shape: (string | number)[]) => g.gather(this.poolInput(POOL.head(part), shape), hidx());
    if (v.heads.cls) {
      let first = g.squeeze(g.slice(hidden, 1, 0, 1), [1]); // [B,D]
      first = g.unsqueeze(first, [1]); // [B,1,D]
      const dense = () => g.unary('Tanh', g.add(g.matmul(first, hp('cls_dense_w', ['P', D, D])), hp('cls_dense_b', ['P', 1, D])));
      const pooled = this.mix(v.clsDense, () => g.unsqueeze(g.inputs.find((i) => i.name === POOL.head('cls_dense')) ?? g.input(POOL.head('cls_dense'), 'float32', ['B']), [1, 2]), dense, first);
      const logits = g.add(g.matmul(pooled, hp('cls_out_w', ['P', D, 'C'])), hp('cls_out_b', ['P', 1, 'C']));
      g.output(g.squeeze(logits, [1]), IO.clsLogits);
    }
    if (v.heads.tok) {
      const logits = g.add(g.matmul(hidden, hp('tok_out_w', ['P', D, 'C'])), hp('tok_out_b', ['P', 1, 'C']));
      g.output(logits, IO.tokLogits);
    }
    if (v.heads.mlm) {
      // Masked-LM: per-row transform (module head or the base's own, placed in the pool by the runtime), then
      // the inverse invertible adapter right before the output projection (AdapterHub applies it before the
      // head's last layer), decoder tied to the word embeddings.
      // BERT / DistilBERT transform with the config's activation; RoBERTa's lm_head always uses exact gelu.
      const dense = g.add(g.matmul(hidden, hp('mlm_dense_w', ['P', D, D])), hp('mlm_dense_b', ['P', 1, D]));
      const t = this.cfg.family === 'roberta' || this.cfg.family === 'xlm-roberta' ? g.gelu(dense, 'none') : this.hiddenAct(dense);
      let n = this.rowLayerNorm(t, hp('mlm_ln_g', ['P', 1, D]), hp('mlm_ln_b', ['P', 1, D]), this.eps);
      if (v.invertible) n = this.invertible(n, true);
      const decoderT = this.p.linearT('mlm.decoder');
      g.output(g.add(g.matmul(n, decoderT), hp('mlm_bias', ['P', 1, 'V'])), IO.mlmLogits);
    }
  }
}
