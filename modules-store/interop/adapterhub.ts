/**
 * AdapterHub (`adapters` library) folders in and out: `adapter_config.json` (`{"config": {...}, "model_name",
 * "model_class", "model_type", "name", "hidden_size", "version"}`) + `adapter.safetensors` / `pytorch_adapter.bin`,
 * the head beside it (`head_config.json` + `model_head.safetensors` / `pytorch_model_head.bin`).
 * Architectures: bottleneck (BnConfig: seq_bn, double_seq_bn, par_bn, *_inv), lora (LoRAConfig,
 * composition_mode "add") and IA³ (LoRAConfig composition_mode "scale"). Key layout, from the library's modules:
 *   bottleneck  {layer}.attention.output.adapters.{name}.adapter_down.{0|1}.weight  (DistilBERT: attention_adapters)
 *               {layer}.output.adapters.{name}.adapter_up.weight                   (DistilBERT: output_adapters)
 *               ...adapter_norm_before / adapter_norm_after (ln_before / ln_after; with ln_before the LayerNorm is
 *               also adapter_down.0 and the Linear adapter_down.1)
 *               invertible_adapters.{name}.{F,G}.{0,2}.{weight,bias}
 *   lora / ia3  {linear}.loras.{name}.lora_A [r, in], .lora_B [out, r] (IA³: lora_B [out, 1] only)
 *   heads       heads.{name}.{i}.weight: classification = Dropout, Linear, act, Dropout, Linear (1 and 4),
 *               tagging = Dropout, Linear (1)
 * Keys carry the model's base prefix (`bert.`, `roberta.`, `distilbert.`) when saved from an AdapterModel.
 * Example: `importAdapterHub(files, base)`; `exportAdapterHub(manifest, tensors)` → Map of file name → bytes.
 */
import type { Family } from '../hf-names';
import { StoreError } from '../errors';
import { ACTIVATIONS, BN, bottleneckSize, invertibleDims, resolveBottleneckConfig, sitesOf, type Site } from '../kinds/bottleneck';
import { HEAD, type HeadConfig } from '../kinds/heads';
import { IA3, ia3Shape, type Ia3Target } from '../kinds/ia3';
import { LORA, type LinearTarget } from '../kinds/lora';
import type { BaseRef, Manifest } from '../manifest';
import { serializeSafetensors, type Tensor } from '../safetensors';
import { familyOf, familyPrefix, floatAt, jsonFile, labelsOf, layerPath, leaveOutOf, linearOf, linearPath, stripPrefix, unsupported, weightsOf } from './names';
import type { ConvertedModule, FileSet } from './types';

export const AH_CONFIG = 'adapter_config.json';
export const AH_WEIGHTS = ['adapter.safetensors', 'pytorch_adapter.bin'];
export const AH_HEAD_CONFIG = 'head_config.json';
export const AH_HEAD_WEIGHTS = ['model_head.safetensors', 'pytorch_model_head.bin'];

/** AdapterHub's per-layer location of a bottleneck site. */
function sitePath(family: Family, layer: number, site: Site, name: string, prefixed: boolean): string {
  const lp = layerPath(family, layer, prefixed);
  if (family === 'distilbert') return `${lp}.${site === 'attention' ? 'attention_adapters' : 'output_adapters'}.adapters.${name}`;
  return `${lp}.${site === 'attention' ? 'attention.output' : 'output'}.adapters.${name}`;
}

/** Tensors by name with the family prefix removed (AdapterHub writes it when saved from an AdapterModel). */
class Keys {
  readonly map = new Map<string, Tensor>();
  private readonly used = new Set<string>();
  constructor(
    family: Family,
    tensors: Map<string, Tensor>,
    readonly file: string,
  ) {
    for (const [k, t] of tensors) this.map.set(stripPrefix(family, k), t);
  }
  take(key: string, shape?: number[]): Tensor {
    this.used.add(key);
    return floatAt(this.map, key, this.file, shape);
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  /** Refuses tensors nobody asked for: they would be silently dropped (a gate, PHM weights, another adapter). */
  done(): void {
    const extra = [...this.map.keys()].filter((k) => !this.used.has(k));
    if (extra.length) throw new StoreError('INVALID_WEIGHTS', `${this.file} has tensors modhub cannot place: ${extra.slice(0, 5).map((k) => `'${k}'`).join(', ')}${extra.length > 5 ? `, ... (${extra.length})` : ''}`);
  }
}

/** AdapterHub BnConfig's dataclass defaults (configuration/adapter_config.py); inv_adapter_reduction_factor None → 2 as modhub's. */
const BN_DEFAULTS = { original_ln_before: false, original_ln_after: true, ln_before: false, ln_after: false, is_parallel: false, scaling: 1.0, residual_before_ln: true, adapter_residual_before_ln: false, inv_adapter: null, inv_adapter_reduction_factor: 2, leave_out: [] };
const BN_FIELDS = ['mh_adapter', 'output_adapter', 'reduction_factor', 'non_linearity', 'original_ln_before', 'original_ln_after', 'residual_before_ln', 'adapter_residual_before_ln', 'ln_before', 'ln_after', 'is_parallel', 'scaling', 'leave_out', 'inv_adapter', 'inv_adapter_reduction_factor'] as const;

function importBottleneck(c: Record<string, unknown>, keys: Keys, family: Family, base: BaseRef, name: string): Pick<ConvertedModule, 'kind' | 'config' | 'tensors'> {
  const f = AH_CONFIG;
  if (c.use_gating === true) unsupported(f, 'config.use_gating', true, 'gated adapters are not part of module format 1');
  if (c.phm_layer === true) unsupported(f, 'config.phm_layer', true, 'PHM (compacter) layers have no modhub kind');
  if (c.scaling !== undefined && typeof c.scaling !== 'number') unsupported(f, 'config.scaling', c.scaling, 'only a numeric scaling is supported ("learned" and "channel" are not)');
  if (c.inv_adapter !== undefined && c.inv_adapter !== null && c.inv_adapter !== 'nice') unsupported(f, 'config.inv_adapter', c.inv_adapter, 'only the NICE invertible adapter is supported');
  if (typeof c.non_linearity === 'string' && !(ACTIVATIONS as readonly string[]).includes(c.non_linearity.toLowerCase())) {
    unsupported(f, 'config.non_linearity', c.non_linearity, `modhub's bottleneck activations are ${ACTIVATIONS.join(', ')}`);
  }
  if (c.cross_adapter === true) unsupported(f, 'config.cross_adapter', true, 'cross-attention adapters need a decoder');
  for (const k of ['mh_adapter', 'output_adapter', 'reduction_factor', 'non_linearity'] as const) {
    if (c[k] === undefined || c[k] === null) throw new StoreError('INVALID_PACKAGE', `${f}: config.${k} is missing (a required field of AdapterHub's BnConfig)`);
  }
  // Fields the file leaves out take BnConfig's own defaults (not a preset's): every field is then explicit.
  const config: Record<string, unknown> = { ...BN_DEFAULTS };
  for (const k of BN_FIELDS) if (c[k] !== undefined && c[k] !== null) config[k] = k === 'non_linearity' ? String(c[k]).toLowerCase() : c[k];
  if (c.inv_adapter === null) config.inv_adapter = null;
  const rc = resolveBottleneckConfig(config);
  const D = base.hidden_size;
  const tensors = new Map<string, Tensor>();
  const covered = new Set(leaveOutOf(base.num_layers, new Set(rc.leave_out)));
  for (let l = 0; l < base.num_layers; l++) {
    if (!covered.has(l)) continue;
    for (const site of sitesOf(rc)) {
      const p = sitePath(family, l, site, name, false);
      const r = bottleneckSize(rc, D, l);
      const li = rc.ln_before ? 1 : 0;
      tensors.set(`${BN.down(l, site)}.weight`, keys.take(`${p}.adapter_down.${li}.weight`, [r, D]));
      tensors.set(`${BN.down(l, site)}.bias`, keys.take(`${p}.adapter_down.${li}.bias`, [r]));
      tensors.set(`${BN.up(l, site)}.weight`, keys.take(`${p}.adapter_up.weight`, [D, r]));
      tensors.set(`${BN.up(l, site)}.bias`, keys.take(`${p}.adapter_up.bias`, [D]));
      if (rc.ln_before) {
        for (const wb of ['weight', 'bias']) {
          tensors.set(`${BN.lnBefore(l, site)}.${wb}`, keys.take(`${p}.adapter_norm_before.${wb}`, [D]));
          keys.take(`${p}.adapter_down.0.${wb}`, [D]); // the same LayerNorm, registered twice by nn.Sequential
        }
      }
      if (rc.ln_after) for (const wb of ['weight', 'bias']) tensors.set(`${BN.lnAfter(l, site)}.${wb}`, keys.take(`${p}.adapter_norm_after.${wb}`, [D]));
    }
  }
  if (rc.inv_adapter === 'nice') {
    const { n, m } = invertibleDims(rc, D);
    for (const net of ['F', 'G'] as const) {
      const p = `invertible_adapters.${name}.${net}`;
      tensors.set(`${BN.inv(net, 'down')}.weight`, keys.take(`${p}.0.weight`, [m, n]));
      tensors.set(`${BN.inv(net, 'down')}.bias`, keys.take(`${p}.0.bias`, [m]));
      tensors.set(`${BN.inv(net, 'up')}.weight`, keys.take(`${p}.2.weight`, [D - n, m]));
      tensors.set(`${BN.inv(net, 'up')}.bias`, keys.take(`${p}.2.bias`, [D - n]));
    }
  }
  return { kind: 'bottleneck', config, tensors };
}

const ATTN_MATRIX: Record<string, LinearTarget> = { q: 'query', k: 'key', v: 'value' };

/** LoRA and IA³ (LoRAConfig): targets come from the config and are checked against the keys. */
function importLoraLike(c: Record<string, unknown>, keys: Keys, family: Family, base: BaseRef, name: string): Pick<ConvertedModule, 'kind' | 'config' | 'tensors'> {
  const f = AH_CONFIG;
  if (c.use_gating === true) unsupported(f, 'config.use_gating', true, 'gated LoRA is not part of module format 1');
  if (c.vera_d !== undefined && c.vera_d !== null) unsupported(f, 'config.vera_d', c.vera_d, 'VeRA has no modhub kind');
  const mode = c.composition_mode ?? 'add';
  if (mode !== 'add' && mode !== 'scale') unsupported(f, 'config.composition_mode', mode, "only 'add' (LoRA) and 'scale' (IA³) exist");
  const targets: LinearTarget[] = [];
  if (c.selfattn_lora !== false) {
    for (const m of (c.attn_matrices as unknown[]) ?? ['q', 'v']) {
      if (typeof m !== 'string' || !ATTN_MATRIX[m]) unsupported(f, 'config.attn_matrices', c.attn_matrices, 'only q, k, v are attention matrices of an encoder');
      targets.push(ATTN_MATRIX[m as string]);
    }
  }
  if (c.intermediate_lora === true) targets.push('ffn_in');
  if (c.output_lora === true) {
    if (mode === 'scale') unsupported(f, 'config.output_lora', true, "with composition_mode 'scale' it scales output.dense's OUTPUT; modhub's IA³ ffn_out scales its input (as PEFT)");
    targets.push('ffn_out');
  }
  if (targets.length === 0) unsupported(f, 'config.selfattn_lora', c.selfattn_lora, 'the config targets no layer');
  const r = Number(c.r ?? 8);
  const alpha = Number(c.alpha ?? 8);
  const covered = new Set<number>();
  for (const k of keys.map.keys()) {
    const mm = /^(.*)\.loras\.([^.]+)\.lora_[AB]$/.exec(k);
    const lin = mm ? linearOf(family, mm[1]) : null;
    if (!mm) continue;
    if (!lin) throw new StoreError('INVALID_PACKAGE', `${f}: LoRA on '${mm[1]}' has no modhub target (targets: query, key, value, attn_output, ffn_in, ffn_out)`);
    covered.add(lin.layer);
  }
  const leaveOut = leaveOutOf(base.num_layers, covered);
  const tensors = new Map<string, Tensor>();
  const dims = { hidden: base.hidden_size, layers: base.num_layers, vocab: base.vocab_size, ffn: base.intermediate_size };
  for (const l of covered) {
    for (const t of targets) {
      const p = `${linearPath(family, l, t, false)}.loras.${name}`;
      if (mode === 'add') {
        const A = keys.take(`${p}.lora_A`);
        const B = keys.take(`${p}.lora_B`);
        if (A.shape[0] !== r || B.shape[1] !== r) throw new StoreError('INVALID_WEIGHTS', `${keys.file}: '${p}' has rank ${A.shape[0]}, config.r is ${r}`);
        tensors.set(LORA.A(l, t), A);
        tensors.set(LORA.B(l, t), B);
      } else {
        if (!dims.ffn && t === 'ffn_in') dims.ffn = keys.take(`${p}.lora_B`).shape[0];
        const B = keys.take(`${p}.lora_B`, ia3Shape(t as Ia3Target, dims).shape);
        // AdapterHub's IA3 multiplies by lora_B · alpha (its `scaling`); modhub stores the product.
        tensors.set(IA3.l(l, t as Ia3Target), { dtype: 'F32', shape: B.shape, data: (B.data as Float32Array).map((x) => x * alpha) });
      }
    }
  }
  if (mode === 'scale') {
    if (r !== 1) unsupported(f, 'config.r', r, "IA³ (composition_mode 'scale') has r = 1");
    return { kind: 'ia3', config: { target_modules: targets, leave_out: leaveOut }, tensors };
  }
  return { kind: 'lora', config: { r, lora_alpha: alpha, target_modules: targets, leave_out: leaveOut }, tensors };
}

/** AdapterHub's head (classification or tagging) → modhub head config + tensors. */
function importHead(files: FileSet, base: BaseRef): { head: HeadConfig; labels: string[]; tensors: Map<string, Tensor>; task: string } | null {
  if (!files.has(AH_HEAD_CONFIG)) return null;
  const hc = jsonFile(files, AH_HEAD_CONFIG);
  const c = (hc.config ?? {}) as Record<string, unknown>;
  const f = AH_HEAD_CONFIG;
  const { file, tensors: raw } = weightsOf(files, AH_HEAD_WEIGHTS);
  const name = typeof hc.name === 'string' ? hc.name : [...raw.keys()][0]?.split('.')[1];
  const D = base.hidden_size;
  const C = Number(c.num_labels);
  const key = (i: number, wb: string) => `heads.${name}.${i}.${wb}`;
  const out = new Map<string, Tensor>();
  if (c.use_pooler === true) unsupported(f, 'config.use_pooler', true, "modhub's classification head reads the first token, not the pooler");
  if (c.bias === false) unsupported(f, 'config.bias', false, 'modhub heads have a bias');
  const labels = labelsOf(C, c.label2id);
  const take = (k: string, shape: number[]) => floatAt(raw, k, file, shape);
  if (c.head_type === 'classification') {
    const layers = Number(c.layers ?? 2);
    if (layers !== 1 && layers !== 2) unsupported(f, 'config.layers', c.layers, 'modhub classification heads have 1 or 2 layers');
    if (layers === 2 && String(c.activation_function ?? 'tanh').toLowerCase() !== 'tanh') unsupported(f, 'config.activation_function', c.activation_function, "modhub's 2-layer classification head uses tanh");
    if (layers === 2) {
      out.set(`${HEAD.clsDense}.weight`, take(key(1, 'weight'), [D, D]));
      out.set(`${HEAD.clsDense}.bias`, take(key(1, 'bias'), [D]));
    }
    out.set(`${HEAD.outProj}.weight`, take(key(layers === 2 ? 4 : 1, 'weight'), [C, D]));
    out.set(`${HEAD.outProj}.bias`, take(key(layers === 2 ? 4 : 1, 'bias'), [C]));
    if (raw.size !== out.size) throw new StoreError('INVALID_WEIGHTS', `${file} has ${raw.size} tensors; a ${layers}-layer classification head has ${out.size}`);
    return { head: { type: 'classification', num_labels: C, layers: layers as 1 | 2, activation: 'tanh' }, labels, tensors: out, task: 'text-classification' };
  }
  if (c.head_type === 'tagging') {
    if (Number(c.layers ?? 1) !== 1) unsupported(f, 'config.layers', c.layers, 'modhub token-classification heads have 1 layer');
    out.set(`${HEAD.outProj}.weight`, take(key(1, 'weight'), [C, D]));
    out.set(`${HEAD.outProj}.bias`, take(key(1, 'bias'), [C]));
    if (raw.size !== out.size) throw new StoreError('INVALID_WEIGHTS', `${file} has ${raw.size} tensors; a tagging head has 2`);
    return { head: { type: 'token_classification', num_labels: C }, labels, tensors: out, task: 'token-classification' };
  }
  return unsupported(f, 'config.head_type', c.head_type, 'modhub imports classification and tagging heads');
}

/** An AdapterHub adapter folder → a modhub module (kind, config, head, tensors). */
export function importAdapterHub(files: FileSet, base: BaseRef): ConvertedModule {
  const family = familyOf(base);
  const ac = jsonFile(files, AH_CONFIG);
  const c = ac.config;
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new StoreError('INVALID_PACKAGE', `${AH_CONFIG}: 'config' must be an object (an AdapterHub adapter config)`);
  const cfg = c as Record<string, unknown>;
  if (typeof ac.model_type === 'string' && ac.model_type !== family && !(ac.model_type === 'xlm-roberta' && family === 'roberta') && !(ac.model_type === 'roberta' && family === 'xlm-roberta')) {
    unsupported(AH_CONFIG, 'model_type', ac.model_type, `the base is a ${family} model`);
  }
  if (typeof ac.hidden_size === 'number' && ac.hidden_size !== base.hidden_size) unsupported(AH_CONFIG, 'hidden_size', ac.hidden_size, `the base has hidden_size ${base.hidden_size}`);
  const { file, tensors } = weightsOf(files, AH_WEIGHTS);
  const keys = new Keys(family, tensors, file);
  let name = typeof ac.name === 'string' ? ac.name : undefined;
  if (!name) name = /\.(?:adapters|loras)\.([^.]+)\./.exec([...keys.map.keys()][0] ?? '')?.[1] ?? 'adapter';
  const arch = cfg.architecture ?? 'bottleneck';
  let mod: Pick<ConvertedModule, 'kind' | 'config' | 'tensors'>;
  if (arch === 'bottleneck') mod = importBottleneck(cfg, keys, family, base, name);
  else if (arch === 'lora') mod = importLoraLike(cfg, keys, family, base, name);
  else if (arch === 'prefix_tuning') return unsupported(AH_CONFIG, 'config.architecture', arch, 'prefix tuning has no modhub kind');
  else if (arch === 'union') return unsupported(AH_CONFIG, 'config.architecture', arch, 'import the parts of a ConfigUnion as separate modules and stack them');
  else return unsupported(AH_CONFIG, 'config.architecture', arch, 'modhub imports bottleneck, lora and IA³ adapters');
  keys.done();
  const head = importHead(files, base);
  const all = new Map([...mod.tensors, ...(head?.tensors ?? [])]);
  const what = [ac.model_name, ac.model_class].filter((x) => typeof x === 'string').join(', ');
  return {
    ...mod,
    tensors: all,
    head: head?.head ?? null,
    labels: head?.labels ?? [],
    task: head?.task ?? 'adapter',
    description: `AdapterHub adapter '${name}'${what ? ` (${what})` : ''}, imported`,
  };
}

// ---- export -------------------------------------------------------------------------------------------------

/** The AdapterHub name of a module: its name part, as a Python identifier-ish string. */
export function adapterName(id: string): string {
  return id.split('/')[1].replace(/[^A-Za-z0-9_]/g, '_');
}

/**
 * JSON for Python readers. `scaling` must stay a float: AdapterHub's Adapter checks `isinstance(scaling, float)`
 * and rejects an int (JSON.stringify writes 1.0 as 1), so integral values get their `.0` back.
 */
function jsonBytes(v: unknown): Buffer {
  const text = JSON.stringify(v, null, 2).replace(/("(?:scaling|dropout)": )(-?\d+)(,?\n)/g, '$1$2.0$3');
  return Buffer.from(text + '\n', 'utf8');
}

/** The head files AdapterHub reads (null without a head). */
function exportHead(m: Manifest, tensors: Map<string, Tensor>, family: Family, name: string, modelClass: string): [string, Buffer][] {
  const h = m.head;
  if (!h) return [];
  if (h.type === 'masked_lm') throw new StoreError('INVALID_ARGUMENT', `${m.id}: a masked_lm head has no AdapterHub equivalent here (AdapterHub ties its own MLM head)`);
  const label2id = Object.fromEntries(m.labels.map((l, i) => [l, i]));
  const out = new Map<string, Tensor>();
  const put = (i: number, from: string) => {
    out.set(`heads.${name}.${i}.weight`, tensors.get(`${from}.weight`)!);
    out.set(`heads.${name}.${i}.bias`, tensors.get(`${from}.bias`)!);
  };
  let config: Record<string, unknown>;
  if (h.type === 'classification') {
    if (h.layers === 2) put(1, HEAD.clsDense);
    put(h.layers === 2 ? 4 : 1, HEAD.outProj);
    config = { head_type: 'classification', num_labels: h.num_labels, layers: h.layers, activation_function: h.activation, label2id, use_pooler: false, bias: true };
  } else {
    put(1, HEAD.outProj);
    config = { head_type: 'tagging', num_labels: h.num_labels, layers: 1, activation_function: 'tanh', label2id };
  }
  const hc = { config, hidden_size: m.base.hidden_size, model_class: modelClass, model_name: family, model_type: family, name, version: 'adapters.1.0.0' };
  return [
    [AH_HEAD_CONFIG, jsonBytes(hc)],
    ['model_head.safetensors', serializeSafetensors(out, { format: 'pt' })],
  ];
}

/**
 * A modhub module → the files `adapters`' `load_adapter` reads: adapter_config.json + adapter.safetensors (+ head).
 * Kinds without an AdapterHub form (diff, fusion; LoRA / IA³ targets AdapterHub cannot place) are refused.
 */
export function exportAdapterHub(m: Manifest, tensors: Map<string, Tensor>): Map<string, Buffer> {
  const family = familyOf(m.base);
  const name = adapterName(m.id);
  const prefix = familyPrefix(family);
  const modelClass = `${{ bert: 'Bert', roberta: 'Roberta', 'xlm-roberta': 'XLMRoberta', distilbert: 'DistilBert' }[family]}AdapterModel`;
  const w = new Map<string, Tensor>();
  let config: Record<string, unknown>;
  if (m.kind === 'bottleneck') {
    const c = resolveBottleneckConfig(m.config);
    config = { architecture: 'bottleneck', ...c, init_weights: 'bert', use_gating: false, dropout: 0.0, phm_layer: false, cross_adapter: false };
    for (const [k, t] of tensors) {
      const mm = /^layers\.(\d+)\.(attention|output)\.(adapter_down|adapter_up|ln_before|ln_after)\.(weight|bias)$/.exec(k);
      const inv = /^invertible\.(F|G)\.(down|up)\.(weight|bias)$/.exec(k);
      if (mm) {
        const p = prefix + sitePath(family, Number(mm[1]), mm[2] as Site, name, false);
        const part = mm[3] === 'adapter_down' ? `adapter_down.${c.ln_before ? 1 : 0}` : mm[3] === 'adapter_up' ? 'adapter_up' : mm[3] === 'ln_before' ? 'adapter_norm_before' : 'adapter_norm_after';
        w.set(`${p}.${part}.${mm[4]}`, t);
        if (mm[3] === 'ln_before') w.set(`${p}.adapter_down.0.${mm[4]}`, t);
      } else if (inv) {
        w.set(`${prefix}invertible_adapters.${name}.${inv[1]}.${inv[2] === 'down' ? 0 : 2}.${inv[3]}`, t);
      }
    }
  } else if (m.kind === 'lora' || m.kind === 'ia3') {
    const targets = m.config.target_modules;
    const bad = targets.filter((t) => t === 'attn_output' || (m.kind === 'ia3' && t === 'ffn_out'));
    if (bad.length) throw new StoreError('INVALID_ARGUMENT', `${m.id}: ${m.kind} target '${bad[0]}' has no AdapterHub location (AdapterHub places LoRA on q/k/v, intermediate and output; IA³ output_lora scales the output, not the input)`);
    const attn = targets.filter((t) => t === 'query' || t === 'key' || t === 'value').map((t) => t[0]);
    const common = { architecture: 'lora', selfattn_lora: attn.length > 0, intermediate_lora: targets.includes('ffn_in'), output_lora: targets.includes('ffn_out'), attn_matrices: attn, dropout: 0.0, use_gating: false, leave_out: m.config.leave_out ?? [] };
    config = m.kind === 'lora' ? { ...common, r: m.config.r, alpha: m.config.lora_alpha ?? m.config.r, composition_mode: 'add', init_weights: 'lora' } : { ...common, r: 1, alpha: 1, composition_mode: 'scale', init_weights: 'ia3' };
    for (const [k, t] of tensors) {
      const mm = /^layers\.(\d+)\.([a-z_]+)\.(lora_A|lora_B|ia3_l)$/.exec(k);
      if (!mm) continue;
      const p = `${linearPath(family, Number(mm[1]), mm[2] as LinearTarget)}.loras.${name}`;
      w.set(`${p}.${mm[3] === 'ia3_l' ? 'lora_B' : mm[3]}`, t);
    }
  } else {
    throw new StoreError('INVALID_ARGUMENT', `${m.id}: kind '${m.kind}' has no AdapterHub adapter form (bottleneck, lora, ia3 and fusion do)`);
  }
  const ac = { config, hidden_size: m.base.hidden_size, model_class: modelClass, model_name: family, model_type: family, name, version: 'adapters.1.0.0' };
  return new Map<string, Buffer>([
    [AH_CONFIG, jsonBytes(ac)],
    ['adapter.safetensors', serializeSafetensors(w, { format: 'pt' })],
    ...exportHead(m, tensors, family, name, modelClass),
  ]);
}
