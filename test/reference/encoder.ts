/**
 * The independent oracle: a plain-loop reference forward pass of a frozen encoder (BERT, RoBERTa / XLM-R,
 * DistilBERT) with modhub modules composed on it, written from Hugging Face transformers
 * (modeling_bert.py, modeling_roberta.py, modeling_distilbert.py) and AdapterHub `adapters` (see
 * test/reference/modules.ts) — never from the engine. The engine's outputs are compared to these at 1e-4.
 * Float64 inside, F32 tensors out. Shape letters: B rows, T tokens, D hidden, H heads, F FFN size, V vocab.
 *
 * Example:
 *   const out = referenceForward({ config, weights, inputIds: [[101, 7592, 102]], attentionMask: [[1, 1, 1]],
 *                                  composition: { stack: [langAdapter, taskAdapter] }, outputs: ['hidden', 'head'] });
 *   out.head!.shape  // [1, C] for a classification head
 */
import type { Tensor } from '../../modules-store/safetensors';
import { numel } from '../../modules-store/safetensors';
import { Mat, activate, layerNorm, linear } from './ops';
import {
  BnAdapter,
  FusionModule,
  Ia3Module,
  LoraModule,
  LoraTarget,
  ParamDiff,
  RefHeadConfig,
  RefModule,
  SiteContext,
  SiteNode,
  adapterSite,
  applyDiff,
  applyIa3,
  applyLoras,
  f64,
  invertibleForward,
  loadBottleneck,
  loadFusion,
  loadIa3,
  loadLora,
  readDiffs,
} from './modules';

export type { RefModule, RefManifest, RefHeadConfig } from './modules';
export { BN_PRESETS, BN_DEFAULTS, resolveBnConfig, resolveFusionConfig } from './modules';

/** A composition of modules (docs/module-format.md, "Composition"), with the modules themselves as leaves. */
export type RefComposition =
  | RefModule
  | { stack: RefComposition[] }
  | { sum: RefComposition[] }
  | { fuse: RefComposition[]; fusion: RefModule }
  | { parallel: RefComposition[] }
  | { average: RefComposition[]; weights?: number[]; normalize_weights?: boolean };

export type RefOutputKind = 'hidden' | 'head' | 'mlm';

export interface RefOptions {
  /**
   * How `average` combines adapter outputs. 'adapterhub' (default) is what AdapterHub's BottleneckLayer.mean
   * computes, `torch.mean(stack(h_i)·w_i)` = Σ w_i·h_i / n; 'weighted_sum' is Σ w_i·h_i.
   */
  average?: 'adapterhub' | 'weighted_sum';
}

export interface RefForwardArgs {
  /** The base's raw HF config.json. */
  config: Record<string, unknown>;
  /** Base weights by HF name, with or without the `bert.` / `roberta.` / `distilbert.` prefix. */
  weights: Map<string, Tensor>;
  inputIds: number[][];
  attentionMask: number[][];
  tokenTypeIds?: number[][];
  composition?: RefComposition;
  outputs: RefOutputKind[];
  options?: RefOptions;
}

export interface RefOutputs {
  /** Last hidden state [B, T, D]. */
  hidden?: Tensor;
  /** The composition's head: classification [B, C], token_classification [B, T, C], masked_lm [B, T, V]. */
  head?: Tensor;
  headType?: RefHeadConfig['type'];
  /** Masked-LM logits [B, T, V]: the composition's masked_lm head when a module brings one, else the base's. */
  mlm?: Tensor;
}

/** One result; a composition with `parallel` gives one entry in `branches` per branch (and nothing at top level). */
export interface RefResult extends RefOutputs {
  branches?: RefOutputs[];
}

// ---------------------------------------------------------------------------------------------------------
// Base config.

export type Family = 'bert' | 'roberta' | 'distilbert';

export interface EncoderConfig {
  family: Family;
  D: number;
  L: number;
  H: number;
  F: number;
  V: number;
  /** Base LayerNorm eps: config.layer_norm_eps (BERT default 1e-12); DistilBERT hard-codes 1e-12. */
  eps: number;
  /** FFN activation: hidden_act (BERT, RoBERTa) or activation (DistilBERT). */
  act: string;
  padId: number;
  tieWordEmbeddings: boolean;
}

/** Reads the dimensions of an HF config.json (model_type bert, roberta, xlm-roberta, camembert, distilbert). */
export function parseEncoderConfig(raw: Record<string, unknown>): EncoderConfig {
  const mt = String(raw.model_type ?? '');
  const tie = raw.tie_word_embeddings === undefined ? true : Boolean(raw.tie_word_embeddings);
  if (mt === 'distilbert') {
    return {
      family: 'distilbert',
      D: Number(raw.dim),
      L: Number(raw.n_layers),
      H: Number(raw.n_heads),
      F: Number(raw.hidden_dim),
      V: Number(raw.vocab_size),
      eps: 1e-12, // DistilBERT: nn.LayerNorm(config.dim, eps=1e-12) everywhere
      act: String(raw.activation ?? 'gelu'),
      padId: Number(raw.pad_token_id ?? 0),
      tieWordEmbeddings: tie,
    };
  }
  let family: Family;
  if (mt === 'bert') family = 'bert';
  else if (mt === 'roberta' || mt === 'xlm-roberta' || mt === 'camembert') family = 'roberta';
  else throw new RangeError(`config: model_type '${mt}' is not supported, expected bert, roberta, xlm-roberta or distilbert`);
  const pet = raw.position_embedding_type ?? 'absolute';
  if (pet !== 'absolute') throw new RangeError(`config: position_embedding_type '${String(pet)}' is not supported, expected 'absolute'`);
  return {
    family,
    D: Number(raw.hidden_size),
    L: Number(raw.num_hidden_layers),
    H: Number(raw.num_attention_heads),
    F: Number(raw.intermediate_size),
    V: Number(raw.vocab_size),
    eps: Number(raw.layer_norm_eps ?? 1e-12),
    act: String(raw.hidden_act ?? 'gelu'),
    padId: Number(raw.pad_token_id ?? (family === 'roberta' ? 1 : 0)),
    tieWordEmbeddings: tie,
  };
}

/** HF parameter names (without the model prefix) of layer l. */
export function layerParamNames(family: Family, l: number): Record<LoraTarget | 'attn_ln' | 'out_ln', string> {
  if (family === 'distilbert') {
    const p = `transformer.layer.${l}.`;
    return {
      query: p + 'attention.q_lin',
      key: p + 'attention.k_lin',
      value: p + 'attention.v_lin',
      attn_output: p + 'attention.out_lin',
      attn_ln: p + 'sa_layer_norm',
      ffn_in: p + 'ffn.lin1',
      ffn_out: p + 'ffn.lin2',
      out_ln: p + 'output_layer_norm',
    };
  }
  const p = `encoder.layer.${l}.`;
  return {
    query: p + 'attention.self.query',
    key: p + 'attention.self.key',
    value: p + 'attention.self.value',
    attn_output: p + 'attention.output.dense',
    attn_ln: p + 'attention.output.LayerNorm',
    ffn_in: p + 'intermediate.dense',
    ffn_out: p + 'output.dense',
    out_ln: p + 'output.LayerNorm',
  };
}

const MODEL_PREFIXES = ['bert.', 'roberta.', 'distilbert.'];

/**
 * A base parameter name without its model prefix (`bert.encoder...` → `encoder...`); old TF-converted BERT
 * LayerNorm names `gamma` / `beta` read as `weight` / `bias` (HF's _load_pretrained_model renames them too).
 */
export function canonicalParamName(name: string): string {
  let n = name;
  for (const p of MODEL_PREFIXES) if (n.startsWith(p)) n = n.slice(p.length);
  if (/(LayerNorm|layer_norm)\.gamma$/.test(n)) n = n.replace(/\.gamma$/, '.weight');
  if (/(LayerNorm|layer_norm)\.beta$/.test(n)) n = n.replace(/\.beta$/, '.bias');
  return n;
}

/** Base weights by canonical name, converted to float64 once, with the branch's diffs added (θ = θ₀ + Σδ). */
class BaseWeights {
  private readonly raw = new Map<string, Tensor>();
  private readonly cache = new Map<string, Mat>();
  private readonly diffs = new Map<string, { d: ParamDiff; owner: string }[]>();

  constructor(weights: Map<string, Tensor>) {
    for (const [name, t] of weights) this.raw.set(canonicalParamName(name), t);
  }

  addDiffs(owner: string, ds: ParamDiff[]): void {
    for (const d of ds) {
      const name = canonicalParamName(d.param);
      if (!this.raw.has(name)) throw new RangeError(`diff module '${owner}': '${d.param}' is not a parameter of the base`);
      const list = this.diffs.get(name) ?? [];
      list.push({ d, owner });
      this.diffs.set(name, list);
    }
  }

  has(name: string): boolean {
    return this.raw.has(name);
  }

  shape(name: string): number[] {
    const t = this.raw.get(name);
    if (!t) throw new RangeError(`base weights: missing '${name}'`);
    return t.shape;
  }

  get(name: string, shape?: number[]): Mat {
    const t = this.raw.get(name);
    if (!t) throw new RangeError(`base weights: missing '${name}' (with or without a bert./roberta./distilbert. prefix)`);
    if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new RangeError(`base weights: '${name}' has shape [${t.shape}], expected [${shape}]`);
    }
    let m = this.cache.get(name);
    if (!m) {
      m = f64(t);
      for (const { d, owner } of this.diffs.get(name) ?? []) applyDiff(m, t.shape, d, owner);
      this.cache.set(name, m);
    }
    return m;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Composition: parallel branches, then per branch the leaves by kind, the head module and the site tree.

function isModule(c: RefComposition): c is RefModule {
  return (c as RefModule).manifest !== undefined && (c as RefModule).tensors !== undefined;
}

/**
 * Expands `parallel` into branches: `{stack: [a, {parallel: [b, c]}]}` → `[stack(a, b), stack(a, c)]` — what
 * AdapterHub computes by replicating the batch (Parallel; one head per branch). Parallel inside fuse / sum /
 * average is refused (AdapterHub ALLOWED_NESTINGS does not allow it either).
 */
export function expandParallel(c: RefComposition): RefComposition[] {
  if (isModule(c)) return [c];
  if ('parallel' in c) return c.parallel.flatMap(expandParallel);
  if ('stack' in c) {
    let acc: RefComposition[][] = [[]];
    for (const child of c.stack) {
      const options = expandParallel(child);
      acc = acc.flatMap((prefix) => options.map((o) => [...prefix, o]));
    }
    return acc.map((children) => ({ stack: children }));
  }
  const children = 'sum' in c ? c.sum : 'fuse' in c ? c.fuse : c.average;
  for (const child of children) {
    if (expandParallel(child).length !== 1) throw new RangeError('composition: parallel is only allowed at the top level or inside stack');
  }
  return [c];
}

interface Branch {
  root: SiteNode;
  loras: LoraModule[];
  /** IA³ modules of the branch; several scaling the same layer multiply. */
  ia3s: Ia3Module[];
  diffs: { owner: string; ds: ParamDiff[] }[];
  /** The first bottleneck module (depth-first) that has an invertible adapter (docs/module-format.md, stack). */
  inv: BnAdapter | null;
  /**
   * The composition's head: the last module (depth-first; a fuse's fusion module after its children) with a
   * prediction head (classification, token classification), else the last with a masked-LM head.
   */
  headModule: RefModule | null;
  /** The last module with a masked-LM head: fill-mask output uses it; without one, the base's own MLM head. */
  mlmModule: RefModule | null;
}

/** Records a module's head: prediction heads and masked-LM heads serve different outputs and don't displace each other. */
function noteHead(b: Branch, m: RefModule): void {
  const h = m.manifest.head;
  if (!h) return;
  if (h.type === 'masked_lm') {
    b.mlmModule = m;
    if (!b.headModule || b.headModule.manifest.head?.type === 'masked_lm') b.headModule = m;
  } else b.headModule = m;
}

function resolveBranch(c: RefComposition, cfg: EncoderConfig, dims: (t: LoraTarget) => [number, number]): Branch {
  const b: Branch = { root: { kind: 'none' }, loras: [], ia3s: [], diffs: [], inv: null, headModule: null, mlmModule: null };
  const cache = new Map<RefModule, BnAdapter | FusionModule | LoraModule>();
  const visit = (node: RefComposition, inside: 'top' | 'sum' | 'fuse' | 'average'): SiteNode => {
    if (isModule(node)) {
      noteHead(b, node);
      switch (node.manifest.kind) {
        case 'bottleneck': {
          if (inside === 'sum') throw new RangeError(`composition: 'sum' takes diff modules, '${node.manifest.id}' is a bottleneck`);
          const a = (cache.get(node) as BnAdapter | undefined) ?? loadBottleneck(node, cfg.D, cfg.L);
          cache.set(node, a);
          if (a.inv && !b.inv) b.inv = a;
          return { kind: 'adapter', adapter: a };
        }
        case 'lora':
          if (inside === 'fuse' || inside === 'average') throw new RangeError(`composition: LoRA module '${node.manifest.id}' inside '${inside}' is not supported`);
          b.loras.push(loadLora(node, cfg.L, dims));
          return { kind: 'none' };
        case 'diff':
          b.diffs.push({ owner: node.manifest.id, ds: readDiffs(node) });
          return { kind: 'none' };
        case 'ia3':
          if (inside !== 'top') throw new RangeError(`composition: IA³ module '${node.manifest.id}' inside '${inside}' is not supported (it belongs in a stack)`);
          b.ia3s.push(loadIa3(node, cfg.L, dims));
          return { kind: 'none' };
        case 'fusion':
          throw new RangeError(`composition: fusion module '${node.manifest.id}' must be given as the 'fusion' of a 'fuse' block`);
        default:
          throw new RangeError(`composition: module '${(node as RefModule).manifest.id}' has unknown kind '${String((node as RefModule).manifest.kind)}'`);
      }
    }
    if ('stack' in node) return { kind: 'stack', children: node.stack.map((ch) => visit(ch, inside === 'top' ? 'top' : inside)) };
    if ('sum' in node) return { kind: 'stack', children: node.sum.map((ch) => visit(ch, 'sum')) };
    if ('fuse' in node) {
      const children = node.fuse.map((ch) => visit(ch, 'fuse'));
      noteHead(b, node.fusion);
      return { kind: 'fuse', children, fusion: loadFusion(node.fusion, cfg.D, cfg.L) };
    }
    if ('average' in node) {
      const n = node.average.length;
      // AdapterHub composition.Average: weights default 1/n; normalize_weights (default true) divides by their sum
      let w = node.weights ?? Array.from({ length: n }, () => 1 / n);
      if (w.length !== n) throw new RangeError(`composition: 'weights' has ${w.length} entries for ${n} averaged modules`);
      if (node.weights && node.normalize_weights !== false) {
        const s = w.reduce((x, y) => x + y, 0);
        w = w.map((x) => x / s);
      }
      return { kind: 'average', children: node.average.map((ch) => visit(ch, 'average')), weights: w };
    }
    throw new TypeError('composition: expected a module, stack, sum, fuse, parallel or average');
  };
  b.root = visit(c, 'top');
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// The encoder.

const F32_MIN = -3.4028234663852886e38; // torch.finfo(torch.float32).min, HF's additive mask value

function toTensor(shape: number[], m: Mat): Tensor {
  return { dtype: 'F32', shape, data: Float32Array.from(m) };
}

/**
 * Embeddings (HF BertEmbeddings / RobertaEmbeddings / DistilBERT Embeddings), then LayerNorm; dropout is off.
 * BERT: word + position (0..T−1) + token_type. RoBERTa / XLM-R: position ids from
 * create_position_ids_from_input_ids (padding_idx + cumsum of `input_id != padding_idx`, padding keeps
 * padding_idx) — from the ids, not the attention mask. DistilBERT: word + position, no token types.
 */
function embeddings(cfg: EncoderConfig, W: BaseWeights, ids: number[][], types: number[][] | undefined, B: number, T: number): Mat {
  const { D } = cfg;
  const word = W.get('embeddings.word_embeddings.weight', [cfg.V, D]);
  const posShape = W.shape('embeddings.position_embeddings.weight');
  const pos = W.get('embeddings.position_embeddings.weight');
  const type = cfg.family === 'distilbert' ? null : W.get('embeddings.token_type_embeddings.weight');
  const typeRows = type ? W.shape('embeddings.token_type_embeddings.weight')[0] : 0;
  const x = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    let cum = 0;
    for (let t = 0; t < T; t++) {
      const id = ids[b][t];
      if (!(id >= 0 && id < cfg.V)) throw new RangeError(`inputIds[${b}][${t}] = ${id} is outside the vocabulary (${cfg.V})`);
      let p = t;
      if (cfg.family === 'roberta') {
        const notPad = id !== cfg.padId ? 1 : 0;
        cum += notPad;
        p = cum * notPad + cfg.padId;
      }
      if (p >= posShape[0]) throw new RangeError(`position ${p} exceeds max_position_embeddings (${posShape[0]})`);
      const tt = types ? types[b][t] : 0;
      if (type && !(tt >= 0 && tt < typeRows)) throw new RangeError(`tokenTypeIds[${b}][${t}] = ${tt} is outside type_vocab_size (${typeRows})`);
      const o = (b * T + t) * D;
      for (let d = 0; d < D; d++) {
        x[o + d] = word[id * D + d] + pos[p * D + d] + (type ? type[tt * D + d] : 0);
      }
    }
  }
  return layerNorm(x, B * T, D, W.get('embeddings.LayerNorm.weight', [D]), W.get('embeddings.LayerNorm.bias', [D]), cfg.eps);
}

/**
 * A base linear layer with the branch's modules on it: IA³ input scaling x' = x ⊙ l (ffn_out), then
 * `x'·Wᵀ + b + Σ scaling·(x'·Aᵀ)·Bᵀ`, then IA³ output scaling ⊙ l of that sum (docs/module-format.md, ia3).
 */
function baseLinear(W: BaseWeights, stem: string, x0: Mat, N: number, I: number, O: number, br: Branch, layer: number, target: LoraTarget): Mat {
  const x = applyIa3(x0, N, I, br.ia3s, layer, target, 'input');
  const y = linear(x, N, I, W.get(stem + '.weight', [O, I]), W.get(stem + '.bias', [O]), O);
  return applyIa3(applyLoras(y, x, N, br.loras, layer, target), N, O, br.ia3s, layer, target, 'output');
}

/**
 * Multi-head self-attention (HF BertSelfAttention eager path / DistilBERT MultiHeadSelfAttention):
 * softmax(Q·Kᵀ/√dh + mask) over keys, mask → torch.finfo(float32).min where attention_mask is 0
 * (BERT adds it, DistilBERT masked_fills it; a fully masked row becomes uniform either way).
 */
function selfAttention(cfg: EncoderConfig, q: Mat, k: Mat, v: Mat, mask: number[][], B: number, T: number): Mat {
  const { D, H } = cfg;
  const dh = D / H;
  const inv = 1 / Math.sqrt(dh);
  const out = new Float64Array(B * T * D);
  const scores = new Array<number>(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const qo = (b * T + i) * D + h * dh;
        let mx = -Infinity;
        for (let j = 0; j < T; j++) {
          const ko = (b * T + j) * D + h * dh;
          let s = 0;
          for (let d = 0; d < dh; d++) s += q[qo + d] * k[ko + d];
          s *= inv;
          if (cfg.family === 'distilbert') s = mask[b][j] ? s : F32_MIN;
          else s += (1 - mask[b][j]) * F32_MIN;
          scores[j] = s;
          if (s > mx) mx = s;
        }
        let sum = 0;
        for (let j = 0; j < T; j++) {
          scores[j] = Math.exp(scores[j] - mx);
          sum += scores[j];
        }
        for (let j = 0; j < T; j++) {
          const p = scores[j] / sum;
          const vo = (b * T + j) * D + h * dh;
          for (let d = 0; d < dh; d++) out[qo + d] += p * v[vo + d];
        }
      }
    }
  }
  return out;
}

/**
 * One post-LN transformer layer (HF BertLayer / TransformerBlock) with AdapterHub's adapter sites: the
 * `attention` site wraps BertSelfOutput's `LayerNorm(dense(ctx) + input)`, the `output` site wraps BertOutput's
 * `LayerNorm(dense(ffn) + attention_output)` (DistilBERT: sa_layer_norm / output_layer_norm).
 */
function layer(cfg: EncoderConfig, W: BaseWeights, br: Branch, l: number, x: Mat, mask: number[][], B: number, T: number, avg: SiteContext['average']): Mat {
  const { D, F } = cfg;
  const N = B * T;
  const n = layerParamNames(cfg.family, l);
  const q = baseLinear(W, n.query, x, N, D, D, br, l, 'query');
  const k = baseLinear(W, n.key, x, N, D, D, br, l, 'key');
  const v = baseLinear(W, n.value, x, N, D, D, br, l, 'value');
  const ctx = selfAttention(cfg, q, k, v, mask, B, T);
  const attnDense = baseLinear(W, n.attn_output, ctx, N, D, D, br, l, 'attn_output');
  const ln = (stem: string) => (h: Mat) => layerNorm(h, N, D, W.get(stem + '.weight', [D]), W.get(stem + '.bias', [D]), cfg.eps);
  const attnOut = adapterSite(br.root, attnDense, x, { N, D, layer: l, site: 'attention', ln: ln(n.attn_ln), average: avg });
  const inter = activate(baseLinear(W, n.ffn_in, attnOut, N, D, F, br, l, 'ffn_in'), cfg.act);
  const ffnDense = baseLinear(W, n.ffn_out, inter, N, F, D, br, l, 'ffn_out');
  return adapterSite(br.root, ffnDense, attnOut, { N, D, layer: l, site: 'output', ln: ln(n.out_ln), average: avg });
}

/** The tied decoder: word embeddings (with diffs), unless the config unties them and the checkpoint has a decoder. */
function decoderWeight(cfg: EncoderConfig, W: BaseWeights): Mat {
  const own = { bert: 'cls.predictions.decoder.weight', roberta: 'lm_head.decoder.weight', distilbert: 'vocab_projector.weight' }[cfg.family];
  if (!cfg.tieWordEmbeddings && W.has(own)) return W.get(own, [cfg.V, cfg.D]);
  return W.get('embeddings.word_embeddings.weight', [cfg.V, cfg.D]);
}

/**
 * Masked-LM logits [N, V]: transform (dense → activation → LayerNorm), then AdapterHub's inverse invertible
 * adapter on the input of the vocabulary projection (methods/invertible.py registers inv_hook_fn as a forward
 * *pre*-hook of get_output_embeddings(), i.e. after the transform; heads/language_modeling.py does the same
 * for flex heads), then the tied decoder + bias.
 * Base heads: BERT cls.predictions (activation = config.hidden_act), RoBERTa lm_head (gelu), DistilBERT
 * vocab_transform / vocab_layer_norm / vocab_projector (activation = config.activation).
 * Module head (`masked_lm`): head.transform.dense, gelu, head.transform.layer_norm (eps = base eps, as
 * AdapterHub's BertStyleMaskedLMHead), head.decoder.bias.
 */
function mlmLogits(cfg: EncoderConfig, W: BaseWeights, hidden: Mat, N: number, br: Branch, moduleHead: RefModule | null): Mat {
  const { D, V } = cfg;
  let h: Mat;
  let bias: Mat;
  if (moduleHead) {
    const t = (name: string, shape: number[]) => {
      const x = moduleHead.tensors.get(name);
      if (!x) throw new RangeError(`module '${moduleHead.manifest.id}': missing head tensor '${name}'`);
      if (x.shape.join() !== shape.join()) throw new RangeError(`module '${moduleHead.manifest.id}': '${name}' has shape [${x.shape}], expected [${shape}]`);
      return f64(x);
    };
    h = activate(linear(hidden, N, D, t('head.transform.dense.weight', [D, D]), t('head.transform.dense.bias', [D]), D), 'gelu');
    h = layerNorm(h, N, D, t('head.transform.layer_norm.weight', [D]), t('head.transform.layer_norm.bias', [D]), cfg.eps);
    bias = t('head.decoder.bias', [V]);
  } else {
    const names = {
      bert: { dense: 'cls.predictions.transform.dense', ln: 'cls.predictions.transform.LayerNorm', bias: ['cls.predictions.bias', 'cls.predictions.decoder.bias'], act: cfg.act },
      roberta: { dense: 'lm_head.dense', ln: 'lm_head.layer_norm', bias: ['lm_head.bias', 'lm_head.decoder.bias'], act: 'gelu' },
      distilbert: { dense: 'vocab_transform', ln: 'vocab_layer_norm', bias: ['vocab_projector.bias'], act: cfg.act },
    }[cfg.family];
    h = activate(linear(hidden, N, D, W.get(names.dense + '.weight', [D, D]), W.get(names.dense + '.bias', [D]), D), names.act);
    h = layerNorm(h, N, D, W.get(names.ln + '.weight', [D]), W.get(names.ln + '.bias', [D]), cfg.eps);
    const bn = names.bias.find((x) => W.has(x));
    if (!bn) throw new RangeError(`base weights: missing the MLM bias '${names.bias[0]}'`);
    bias = W.get(bn, [V]);
  }
  if (br.inv) h = invertibleForward(br.inv, h, N, true);
  return linear(h, N, D, decoderWeight(cfg, W), bias, V);
}

/** Classification (first token: [dense → activation →] out_proj) or token classification (every token). */
function classifierLogits(mod: RefModule, hidden: Mat, B: number, T: number, D: number): { shape: number[]; data: Mat } {
  const head = mod.manifest.head!;
  const C = Number(head.num_labels);
  const t = (name: string, shape: number[]) => {
    const x = mod.tensors.get(name);
    if (!x) throw new RangeError(`module '${mod.manifest.id}': missing head tensor '${name}'`);
    if (x.shape.join() !== shape.join()) throw new RangeError(`module '${mod.manifest.id}': '${name}' has shape [${x.shape}], expected [${shape}]`);
    return f64(x);
  };
  const perToken = head.type === 'token_classification';
  const layers = head.layers ?? (perToken ? 1 : 2);
  let x: Mat;
  let N: number;
  if (perToken) {
    x = hidden;
    N = B * T;
  } else {
    // AdapterHub ClassificationHead: cls_output = sequence_output[:, 0]
    N = B;
    x = new Float64Array(B * D);
    for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) x[b * D + d] = hidden[b * T * D + d];
  }
  if (layers === 2) x = activate(linear(x, N, D, t('head.dense.weight', [D, D]), t('head.dense.bias', [D]), D), head.activation ?? 'tanh');
  else if (layers !== 1) throw new RangeError(`module '${mod.manifest.id}': head 'layers' must be 1 or 2, got ${layers}`);
  const y = linear(x, N, D, t('head.out_proj.weight', [C, D]), t('head.out_proj.bias', [C]), C);
  return { shape: perToken ? [B, T, C] : [B, C], data: y };
}

function checkInputs(args: RefForwardArgs): { B: number; T: number } {
  const B = args.inputIds.length;
  if (B === 0) throw new RangeError("'inputIds' must have at least one row");
  const T = args.inputIds[0].length;
  const grids: [string, number[][] | undefined][] = [
    ['inputIds', args.inputIds],
    ['attentionMask', args.attentionMask],
    ['tokenTypeIds', args.tokenTypeIds],
  ];
  for (const [name, g] of grids) {
    if (!g) continue;
    if (g.length !== B || g.some((row) => row.length !== T)) throw new RangeError(`'${name}' must be [${B}, ${T}] like inputIds`);
  }
  return { B, T };
}

/** Runs one branch (no parallel left in it). */
function forwardBranch(args: RefForwardArgs, cfg: EncoderConfig, comp: RefComposition | undefined, B: number, T: number): RefOutputs {
  const { D, F } = cfg;
  const N = B * T;
  const dims = (t: LoraTarget): [number, number] => (t === 'ffn_in' ? [D, F] : t === 'ffn_out' ? [F, D] : [D, D]);
  const br: Branch = comp ? resolveBranch(comp, cfg, dims) : { root: { kind: 'none' }, loras: [], ia3s: [], diffs: [], inv: null, headModule: null, mlmModule: null };
  const W = new BaseWeights(args.weights);
  for (const { owner, ds } of br.diffs) W.addDiffs(owner, ds);

  let x = embeddings(cfg, W, args.inputIds, args.tokenTypeIds, B, T);
  // AdapterHub init_invertible_adapters: a forward hook on the embeddings module, i.e. after its LayerNorm
  if (br.inv) x = invertibleForward(br.inv, x, N, false);
  const avg = args.options?.average ?? 'adapterhub';
  for (let l = 0; l < cfg.L; l++) x = layer(cfg, W, br, l, x, args.attentionMask, B, T, avg);

  const out: RefOutputs = {};
  const head = br.headModule?.manifest.head ?? null;
  if (args.outputs.includes('hidden')) out.hidden = toTensor([B, T, D], x);
  if (args.outputs.includes('head')) {
    if (!br.headModule || !head) throw new RangeError("outputs: 'head' asked for, but no module in the composition has a head");
    out.headType = head.type;
    if (head.type === 'masked_lm') out.head = toTensor([B, T, cfg.V], mlmLogits(cfg, W, x, N, br, br.headModule));
    else {
      const c = classifierLogits(br.headModule, x, B, T, D);
      out.head = toTensor(c.shape, c.data);
    }
  }
  if (args.outputs.includes('mlm')) {
    out.mlm = toTensor([B, T, cfg.V], mlmLogits(cfg, W, x, N, br, br.mlmModule));
  }
  return out;
}

/** The reference forward pass; see the file header. Parallel compositions return `branches`. */
export function referenceForward(args: RefForwardArgs): RefResult {
  const cfg = parseEncoderConfig(args.config);
  if (cfg.D % cfg.H !== 0) throw new RangeError(`config: hidden size ${cfg.D} is not a multiple of the ${cfg.H} heads`);
  const { B, T } = checkInputs(args);
  if (!args.composition) return forwardBranch(args, cfg, undefined, B, T);
  const branches = expandParallel(args.composition);
  if (!containsParallel(args.composition)) return forwardBranch(args, cfg, branches[0], B, T);
  return { branches: branches.map((c) => forwardBranch(args, cfg, c, B, T)) };
}

function containsParallel(c: RefComposition): boolean {
  if (isModule(c)) return false;
  if ('parallel' in c) return true;
  const children = 'stack' in c ? c.stack : 'sum' in c ? c.sum : 'fuse' in c ? c.fuse : c.average;
  return children.some(containsParallel);
}

/** Float tensor → nested arrays (for readable test failures). */
export function nested(t: Tensor): unknown {
  const data = Array.from(t.data as ArrayLike<number>);
  const build = (dim: number, off: number): unknown => {
    if (dim === t.shape.length - 1) return data.slice(off, off + t.shape[dim]);
    const stride = numel(t.shape.slice(dim + 1));
    return Array.from({ length: t.shape[dim] }, (_, i) => build(dim + 1, off + i * stride));
  };
  return build(0, 0);
}

/** A composition as the request JSON spells it (docs/module-format.md): module refs instead of modules. */
export type RequestComposition =
  | string
  | { stack: RequestComposition[] }
  | { sum: RequestComposition[] }
  | { fuse: RequestComposition[]; fusion: string }
  | { parallel: RequestComposition[] }
  | { average: RequestComposition[]; weights?: number[]; normalize_weights?: boolean };

/**
 * Turns request JSON (`"ns/name"`, `"ns/name@1.2.0"`, blocks) into a RefComposition, asking `lookup` for each
 * module ref; e.g. `fromRequestComposition({stack: ['lang/de', 'task/topic']}, (ref) => fixtures.get(ref)!)`.
 */
export function fromRequestComposition(c: RequestComposition, lookup: (ref: string) => RefModule | undefined): RefComposition {
  const get = (ref: string): RefModule => {
    const m = lookup(ref);
    if (!m) throw new RangeError(`composition: no module for '${ref}'`);
    return m;
  };
  const rec = (x: RequestComposition): RefComposition => {
    if (typeof x === 'string') return get(x);
    if ('stack' in x) return { stack: x.stack.map(rec) };
    if ('sum' in x) return { sum: x.sum.map(rec) };
    if ('fuse' in x) return { fuse: x.fuse.map(rec), fusion: get(x.fusion) };
    if ('parallel' in x) return { parallel: x.parallel.map(rec) };
    if ('average' in x) return { average: x.average.map(rec), weights: x.weights, normalize_weights: x.normalize_weights };
    throw new TypeError(`composition: expected a module ref or one of stack, sum, fuse, parallel, average; got ${JSON.stringify(x)}`);
  };
  return rec(c);
}
