/**
 * Package validation per module kind: the exact tensor names, shapes and dtypes that docs/module-format.md
 * prescribes, derived from the manifest's config and its base dims (hidden_size, num_layers, vocab_size).
 * Reads only the safetensors header (plus the index tensors of sparse diffs, to check they are sorted).
 * Example: `validateWeights(manifest, weightsBuffer)` throws StoreError('INVALID_WEIGHTS', ...) naming the tensor.
 */
import { decodeTensor, numel, parseSafetensorsHeader, type DType, type SafetensorsHeader } from './safetensors';
import { StoreError } from './errors';
import { parseRef, type BottleneckConfigInput, type Manifest } from './manifest';

const FLOAT: readonly DType[] = ['F32', 'F16', 'BF16'];
const INDEX: readonly DType[] = ['I64', 'I32'];

/** A bottleneck config with every field resolved from its preset (AdapterHub defaults). */
export interface ResolvedBottleneckConfig {
  mh_adapter: boolean;
  output_adapter: boolean;
  reduction_factor: number | Record<string, number>;
  non_linearity: 'relu' | 'gelu' | 'swish' | 'tanh';
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

const PRESETS: Record<NonNullable<BottleneckConfigInput['preset']>, ResolvedBottleneckConfig> = {
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

interface Expected {
  shape: number[];
  dtypes: readonly DType[];
}

function layersOf(numLayers: number, leaveOut: readonly number[] | undefined, field = 'config.leave_out'): number[] {
  for (const l of leaveOut ?? []) {
    if (l >= numLayers) throw new StoreError('INVALID_MANIFEST', `${field} names layer ${l}, but the base has ${numLayers} layers`);
  }
  const skip = new Set(leaveOut ?? []);
  const out: number[] = [];
  for (let l = 0; l < numLayers; l++) if (!skip.has(l)) out.push(l);
  return out;
}

function linear(exp: Map<string, Expected>, prefix: string, out: number, inp: number, bias = true): void {
  exp.set(`${prefix}.weight`, { shape: [out, inp], dtypes: FLOAT });
  if (bias) exp.set(`${prefix}.bias`, { shape: [out], dtypes: FLOAT });
}

function layerNorm(exp: Map<string, Expected>, prefix: string, d: number): void {
  exp.set(`${prefix}.weight`, { shape: [d], dtypes: FLOAT });
  exp.set(`${prefix}.bias`, { shape: [d], dtypes: FLOAT });
}

function headTensors(m: Manifest, exp: Map<string, Expected>): void {
  const D = m.base.hidden_size;
  const h = m.head;
  if (!h) return;
  if (h.type === 'classification') {
    if (h.layers === 2) linear(exp, 'head.dense', D, D);
    linear(exp, 'head.out_proj', h.num_labels, D);
  } else if (h.type === 'token_classification') {
    linear(exp, 'head.out_proj', h.num_labels, D);
  } else {
    linear(exp, 'head.transform.dense', D, D);
    layerNorm(exp, 'head.transform.layer_norm', D);
    exp.set('head.decoder.bias', { shape: [m.base.vocab_size], dtypes: FLOAT });
  }
}

/**
 * The exact tensors a package of this manifest must hold (names → shape and accepted dtypes), for every kind
 * except `diff`, whose tensor names follow the base checkpoint and are checked structurally instead.
 * LoRA `ffn_in`/`ffn_out` need the FFN size: `base.intermediate_size` when given, else `ffnSize`.
 */
export function expectedTensors(m: Manifest, ffnSize?: number): Map<string, Expected> {
  const exp = new Map<string, Expected>();
  const D = m.base.hidden_size;
  const L = m.base.num_layers;
  switch (m.kind) {
    case 'bottleneck': {
      const cfg = resolveBottleneckConfig(m.config);
      const sites = [...(cfg.mh_adapter ? ['attention'] : []), ...(cfg.output_adapter ? ['output'] : [])];
      if (sites.length === 0 && !cfg.inv_adapter) {
        throw new StoreError('INVALID_MANIFEST', 'config enables no adapter: set mh_adapter or output_adapter (or inv_adapter)');
      }
      for (const l of layersOf(L, cfg.leave_out)) {
        const r = bottleneckSize(cfg, D, l);
        for (const site of sites) {
          const p = `layers.${l}.${site}`;
          linear(exp, `${p}.adapter_down`, r, D);
          linear(exp, `${p}.adapter_up`, D, r);
          if (cfg.ln_before) layerNorm(exp, `${p}.ln_before`, D);
          if (cfg.ln_after) layerNorm(exp, `${p}.ln_after`, D);
        }
      }
      if (cfg.inv_adapter === 'nice') {
        if (D % 2 !== 0) throw new StoreError('INVALID_MANIFEST', `inv_adapter "nice" needs an even hidden_size, got ${D}`);
        const n = D / 2;
        const mm = Math.floor(n / cfg.inv_adapter_reduction_factor);
        if (mm < 1) throw new StoreError('INVALID_MANIFEST', `inv_adapter_reduction_factor ${cfg.inv_adapter_reduction_factor} is too large for hidden_size ${D}`);
        for (const f of ['F', 'G']) {
          linear(exp, `invertible.${f}.down`, mm, n);
          linear(exp, `invertible.${f}.up`, n, mm);
        }
      }
      break;
    }
    case 'lora': {
      const r = m.config.r;
      const F = m.base.intermediate_size ?? ffnSize;
      for (const l of layersOf(L, m.config.leave_out)) {
        for (const t of new Set(m.config.target_modules)) {
          let inp = D;
          let out = D;
          if (t === 'ffn_in' || t === 'ffn_out') {
            if (F === undefined) throw new StoreError('INVALID_WEIGHTS', `cannot determine the FFN size for LoRA target '${t}'`);
            if (t === 'ffn_in') out = F;
            else inp = F;
          }
          exp.set(`layers.${l}.${t}.lora_A`, { shape: [r, inp], dtypes: FLOAT });
          exp.set(`layers.${l}.${t}.lora_B`, { shape: [out, r], dtypes: FLOAT });
        }
      }
      break;
    }
    case 'fusion': {
      for (const a of m.config.adapters) parseRef(a);
      const dynamic = m.config.dynamic ?? true;
      const sites = [...new Set(m.config.sites ?? ['output'])];
      for (const l of layersOf(L, m.config.leave_out)) {
        for (const site of sites) {
          const p = `layers.${l}.${site}`;
          linear(exp, `${p}.query`, D, D);
          linear(exp, `${p}.key`, D, D);
          if (dynamic) linear(exp, `${p}.value`, D, D, false);
        }
      }
      break;
    }
    case 'diff':
      break;
  }
  headTensors(m, exp);
  return exp;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function listSome(names: string[]): string {
  const shown = names.slice(0, 8).map((n) => `'${n}'`).join(', ');
  return names.length > 8 ? `${shown} and ${names.length - 8} more` : shown;
}

/** Infers the LoRA FFN size from the first ffn_in/ffn_out tensor present (all others are then checked against it). */
function inferFfnSize(m: Manifest, h: SafetensorsHeader): number | undefined {
  if (m.kind !== 'lora') return undefined;
  for (const [name, e] of h.entries) {
    if (/^layers\.\d+\.ffn_in\.lora_B$/.test(name) && e.shape.length === 2) return e.shape[0];
    if (/^layers\.\d+\.ffn_out\.lora_A$/.test(name) && e.shape.length === 2) return e.shape[1];
  }
  return undefined;
}

function checkDiff(m: Manifest & { kind: 'diff' }, buf: Buffer, h: SafetensorsHeader): void {
  const params = new Map<string, { index?: string; values?: string; dense?: string }>();
  for (const name of h.entries.keys()) {
    if (name.startsWith('head.')) continue;
    const mm = /^(.+)\.(index|values|dense)$/.exec(name);
    if (!mm) throw new StoreError('INVALID_WEIGHTS', `diff tensor '${name}' must end in .index, .values or .dense`);
    const slot = params.get(mm[1]) ?? {};
    slot[mm[2] as 'index' | 'values' | 'dense'] = name;
    params.set(mm[1], slot);
  }
  if (params.size === 0) throw new StoreError('INVALID_WEIGHTS', 'a diff module must touch at least one base parameter');
  let nnz = 0;
  for (const [p, s] of params) {
    if (s.dense && (s.index || s.values)) throw new StoreError('INVALID_WEIGHTS', `parameter '${p}' has both a dense diff and a sparse diff`);
    if (s.dense) {
      const e = h.entries.get(s.dense)!;
      if (!FLOAT.includes(e.dtype)) throw new StoreError('INVALID_WEIGHTS', `'${s.dense}' must be F32/F16/BF16, got ${e.dtype}`);
      nnz += numel(e.shape);
      continue;
    }
    if (!s.index || !s.values) throw new StoreError('INVALID_WEIGHTS', `parameter '${p}' needs both '${p}.index' and '${p}.values'`);
    const ie = h.entries.get(s.index)!;
    const ve = h.entries.get(s.values)!;
    if (!INDEX.includes(ie.dtype)) throw new StoreError('INVALID_WEIGHTS', `'${s.index}' must be I64 or I32, got ${ie.dtype}`);
    if (!FLOAT.includes(ve.dtype)) throw new StoreError('INVALID_WEIGHTS', `'${s.values}' must be F32/F16/BF16, got ${ve.dtype}`);
    if (ie.shape.length !== 1 || !sameShape(ie.shape, ve.shape)) {
      throw new StoreError('INVALID_WEIGHTS', `'${s.index}' ${fmt(ie.shape)} and '${s.values}' ${fmt(ve.shape)} must be 1-D of the same length`);
    }
    const idx = decodeTensor(buf, h, s.index).data as Int32Array | BigInt64Array;
    let prev = -1;
    for (let i = 0; i < idx.length; i++) {
      const v = Number(idx[i]);
      if (v <= prev) throw new StoreError('INVALID_WEIGHTS', `'${s.index}' must hold sorted, unique, non-negative indices (position ${i}: ${v} after ${prev})`);
      prev = v;
    }
    nnz += idx.length;
  }
  if (m.config.nnz !== undefined && m.config.nnz !== nnz) {
    throw new StoreError('INVALID_WEIGHTS', `config.nnz is ${m.config.nnz}, but the tensors hold ${nnz} differences`);
  }
}

/**
 * Validates `weights.safetensors` against the manifest: header well-formed, exactly the expected tensor names
 * (missing and unexpected ones are both named), shapes and dtypes per docs/module-format.md.
 */
export function validateWeights(m: Manifest, buf: Buffer): void {
  let h: SafetensorsHeader;
  try {
    h = parseSafetensorsHeader(buf);
  } catch (e) {
    throw new StoreError('INVALID_WEIGHTS', `weights.safetensors: ${(e as Error).message}`);
  }
  if (m.head?.type === 'classification' || m.head?.type === 'token_classification') {
    if (m.labels.length > 0 && m.labels.length !== m.head.num_labels) {
      throw new StoreError('INVALID_MANIFEST', `labels has ${m.labels.length} entries, but head.num_labels is ${m.head.num_labels}`);
    }
  }
  const exp = expectedTensors(m, inferFfnSize(m, h));
  if (m.kind === 'diff') {
    for (const [name, want] of exp) {
      const e = h.entries.get(name);
      if (!e) throw new StoreError('INVALID_WEIGHTS', `weights.safetensors lacks head tensor '${name}' ${fmt(want.shape)}`);
      if (!sameShape(e.shape, want.shape)) throw new StoreError('INVALID_WEIGHTS', `tensor '${name}' has shape ${fmt(e.shape)}, expected ${fmt(want.shape)}`);
    }
    for (const name of h.entries.keys()) {
      if (name.startsWith('head.') && !exp.has(name)) throw new StoreError('INVALID_WEIGHTS', `unexpected head tensor '${name}' for head ${JSON.stringify(m.head)}`);
    }
    checkDiff(m, buf, h);
    return;
  }
  const missing = [...exp.keys()].filter((n) => !h.entries.has(n));
  if (missing.length) throw new StoreError('INVALID_WEIGHTS', `weights.safetensors lacks ${missing.length} tensor(s) the ${m.kind} config requires: ${listSome(missing)}`);
  const extra = [...h.entries.keys()].filter((n) => !exp.has(n));
  if (extra.length) throw new StoreError('INVALID_WEIGHTS', `weights.safetensors holds ${extra.length} tensor(s) the ${m.kind} config does not define: ${listSome(extra)}`);
  for (const [name, want] of exp) {
    const e = h.entries.get(name)!;
    if (!sameShape(e.shape, want.shape)) throw new StoreError('INVALID_WEIGHTS', `tensor '${name}' has shape ${fmt(e.shape)}, expected ${fmt(want.shape)}`);
    if (!want.dtypes.includes(e.dtype)) throw new StoreError('INVALID_WEIGHTS', `tensor '${name}' has dtype ${e.dtype}, expected one of ${want.dtypes.join('/')}`);
  }
}
