/**
 * Turns a module package (manifest + tensors, docs/module-format.md) into the engine's layout: matrices
 * transposed to [in, out] for MatMul, adapter/LoRA scaling folded into the up/B projections, diff indices
 * remapped to the engine's canonical (and transposed) parameter layout. Done once per module load; the result
 * is what the module cache holds and what per-batch pools are copied from.
 */
import type { Manifest, HeadConfig } from '../../modules-store/manifest';
import { resolveBottleneckConfig, bottleneckSize, type ResolvedBottleneckConfig } from '../../modules-store/validate';
import { toIndexArray, type Tensor } from '../../modules-store/safetensors';
import type { BaseConfig } from './config';
import { hfToCanonical, isTransposedLinear } from './weights';
import { LORA_TARGETS, SITES, type LoraTarget, type Site } from './encoder-graph';

export class ModuleError extends Error {
  constructor(
    readonly code: 'INCOMPATIBLE_BASE' | 'INVALID_MODULE' | 'INVALID_COMPOSITION' | 'INVALID_HEAD',
    message: string,
  ) {
    super(message);
  }
}

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

export interface HeadWeights {
  config: HeadConfig;
  labels: string[];
  clsDenseT?: Float32Array; // [D, D]
  clsDenseB?: Float32Array;
  outT?: Float32Array; // [D, C]
  outB?: Float32Array; // [C]
  mlm?: { denseT: Float32Array; denseB: Float32Array; lnG: Float32Array; lnB: Float32Array; bias: Float32Array };
}

interface Common {
  /** Cache key: `ns/name@version`. */
  key: string;
  manifest: Manifest;
  head: HeadWeights | null;
  bytes: number;
}

export interface AdapterModule extends Common {
  kind: 'bottleneck';
  config: ResolvedBottleneckConfig;
  /** [layer][site] → weights, absent where the adapter has none (leave_out, disabled site). */
  layers: Partial<Record<Site, AdapterSiteWeights>>[];
  invertible: InvertibleWeights | null;
  /** Factor on the adapter residual (1; AdapterHub's Average gives Σw/n, see composition.ts). */
  residualScale?: number;
}

export interface LoraModule extends Common {
  kind: 'lora';
  r: number;
  /** [layer][target] → A^T [in, r], (scaling·B)^T [r, out]. */
  layers: Partial<Record<LoraTarget, { AT: Float32Array; BT: Float32Array; inDim: number; outDim: number }>>[];
}

export interface DiffModule extends Common {
  kind: 'diff';
  /** Per canonical parameter: flat indices in the ENGINE layout (linear weights transposed) and values. */
  params: Map<string, { indices: Int32Array; values: Float32Array }>;
}

export interface FusionModule extends Common {
  kind: 'fusion';
  adapters: string[];
  temperature: number;
  /** [layer][site] → query/key/value weights, [in, out] layout; value identity when static. */
  layers: Partial<Record<Site, { qT: Float32Array; qB: Float32Array; kT: Float32Array; kB: Float32Array; vT: Float32Array }>>[];
}

export type EngineModule = AdapterModule | LoraModule | DiffModule | FusionModule;

/** Transposes a row-major [rows, cols] matrix (load time only). */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

function scaled(src: Float32Array, s: number): Float32Array {
  if (s === 1) return src;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] * s;
  return out;
}

class TensorReader {
  constructor(
    private readonly id: string,
    private readonly tensors: Map<string, Tensor>,
  ) {}
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  f32(name: string, shape: number[]): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new ModuleError('INVALID_MODULE', `module '${this.id}': weights.safetensors has no tensor '${name}'`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModuleError('INVALID_MODULE', `module '${this.id}': tensor '${name}' has shape [${t.shape}], expected [${shape}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new ModuleError('INVALID_MODULE', `module '${this.id}': tensor '${name}' must be a float tensor`);
    return t.data;
  }
  /** A Linear weight [out, in] transposed to [in, out]. */
  linT(name: string, out: number, inn: number): Float32Array {
    return transpose(this.f32(name, [out, inn]), out, inn);
  }
}

/** Checks the module was made for this base (family, dims and weight fingerprint). */
export function checkBase(manifest: Manifest, cfg: BaseConfig, fingerprint: string): void {
  const b = manifest.base;
  const id = `${manifest.id}@${manifest.version}`;
  if (b.family !== cfg.family) throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}' was trained for a ${b.family} base, but this server runs a ${cfg.family} base`);
  if (b.fingerprint !== fingerprint) {
    throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}' was trained for base ${b.fingerprint}, but this server runs base ${fingerprint}`);
  }
  if (b.hidden_size !== cfg.hiddenSize || b.num_layers !== cfg.numLayers) {
    throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}' expects hidden_size ${b.hidden_size} / ${b.num_layers} layers, the base has ${cfg.hiddenSize} / ${cfg.numLayers}`);
  }
}

function loadHead(manifest: Manifest, t: TensorReader, cfg: BaseConfig): HeadWeights | null {
  const h = manifest.head;
  if (!h) return null;
  const D = cfg.hiddenSize;
  const labels = manifest.labels;
  if (h.type === 'classification') {
    const C = h.num_labels;
    return {
      config: h,
      labels,
      clsDenseT: h.layers === 2 ? t.linT('head.dense.weight', D, D) : undefined,
      clsDenseB: h.layers === 2 ? t.f32('head.dense.bias', [D]) : undefined,
      outT: t.linT('head.out_proj.weight', C, D),
      outB: t.f32('head.out_proj.bias', [C]),
    };
  }
  if (h.type === 'token_classification') {
    const C = h.num_labels;
    return { config: h, labels, outT: t.linT('head.out_proj.weight', C, D), outB: t.f32('head.out_proj.bias', [C]) };
  }
  return {
    config: h,
    labels,
    mlm: {
      denseT: t.linT('head.transform.dense.weight', D, D),
      denseB: t.f32('head.transform.dense.bias', [D]),
      lnG: t.f32('head.transform.layer_norm.weight', [D]),
      lnB: t.f32('head.transform.layer_norm.bias', [D]),
      bias: t.f32('head.decoder.bias', [cfg.vocabSize]),
    },
  };
}

function ffnDims(cfg: BaseConfig, target: LoraTarget): { inDim: number; outDim: number } {
  const D = cfg.hiddenSize;
  const F = cfg.intermediateSize;
  if (target === 'ffn_in') return { inDim: D, outDim: F };
  if (target === 'ffn_out') return { inDim: F, outDim: D };
  return { inDim: D, outDim: D };
}

/** Shape of a canonical parameter in HF layout (for index remapping). */
export type ShapeOf = (canonical: string) => number[];

/** Loads one module package into engine layout. */
export function loadEngineModule(manifest: Manifest, tensors: Map<string, Tensor>, cfg: BaseConfig, fingerprint: string, shapeOf: ShapeOf): EngineModule {
  checkBase(manifest, cfg, fingerprint);
  const id = `${manifest.id}@${manifest.version}`;
  const t = new TensorReader(id, tensors);
  const D = cfg.hiddenSize;
  const L = cfg.numLayers;
  let bytes = 0;
  for (const x of tensors.values()) bytes += x.data.byteLength;
  const head = loadHead(manifest, t, cfg);
  const common = { key: id, manifest, head, bytes };

  switch (manifest.kind) {
    case 'bottleneck': {
      const c = resolveBottleneckConfig(manifest.config);
      const layers: AdapterModule['layers'] = [];
      for (let l = 0; l < L; l++) {
        const entry: Partial<Record<Site, AdapterSiteWeights>> = {};
        if (!c.leave_out.includes(l)) {
          for (const site of SITES) {
            if ((site === 'attention' && !c.mh_adapter) || (site === 'output' && !c.output_adapter)) continue;
            const r = bottleneckSize(c, D, l);
            const p = `layers.${l}.${site}`;
            entry[site] = {
              r,
              downT: t.linT(`${p}.adapter_down.weight`, r, D),
              downB: t.f32(`${p}.adapter_down.bias`, [r]),
              upT: scaled(t.linT(`${p}.adapter_up.weight`, D, r), c.scaling),
              upB: scaled(t.f32(`${p}.adapter_up.bias`, [D]), c.scaling),
              lnBefore: c.ln_before ? { g: t.f32(`${p}.ln_before.weight`, [D]), b: t.f32(`${p}.ln_before.bias`, [D]) } : undefined,
              lnAfter: c.ln_after ? { g: t.f32(`${p}.ln_after.weight`, [D]), b: t.f32(`${p}.ln_after.bias`, [D]) } : undefined,
            };
          }
        }
        layers.push(entry);
      }
      let invertible: InvertibleWeights | null = null;
      if (c.inv_adapter === 'nice') {
        const n = Math.floor(D / 2);
        const m = Math.floor(n / c.inv_adapter_reduction_factor);
        const net = (w: 'F' | 'G') => ({
          downT: t.linT(`invertible.${w}.down.weight`, m, n),
          downB: t.f32(`invertible.${w}.down.bias`, [m]),
          upT: t.linT(`invertible.${w}.up.weight`, D - n, m),
          upB: t.f32(`invertible.${w}.up.bias`, [D - n]),
        });
        invertible = { m, F: net('F'), G: net('G') };
      }
      return { ...common, kind: 'bottleneck', config: c, layers, invertible };
    }
    case 'lora': {
      const c = manifest.config;
      const r = c.r;
      const scaling = (c.lora_alpha ?? r) / r;
      const leave = c.leave_out ?? [];
      const layers: LoraModule['layers'] = [];
      for (let l = 0; l < L; l++) {
        const entry: LoraModule['layers'][number] = {};
        if (!leave.includes(l)) {
          for (const target of c.target_modules) {
            const { inDim, outDim } = ffnDims(cfg, target);
            const p = `layers.${l}.${target}`;
            entry[target] = { inDim, outDim, AT: t.linT(`${p}.lora_A`, r, inDim), BT: scaled(t.linT(`${p}.lora_B`, outDim, r), scaling) };
          }
        }
        layers.push(entry);
      }
      return { ...common, kind: 'lora', r, layers };
    }
    case 'diff': {
      const params = new Map<string, { indices: Int32Array; values: Float32Array }>();
      const names = new Set<string>();
      for (const name of tensors.keys()) {
        if (name.startsWith('head.')) continue;
        const m = /^(.*)\.(index|values|dense)$/.exec(name);
        if (!m) throw new ModuleError('INVALID_MODULE', `module '${id}': diff tensor '${name}' must end in .index, .values or .dense`);
        names.add(m[1]);
      }
      for (const hfName of names) {
        const canonical = hfToCanonical(cfg.family, hfName);
        if (!canonical) throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}': diff names '${hfName}', which is not a parameter of this ${cfg.family} base`);
        const shape = shapeOf(canonical);
        const size = shape.reduce((a, b) => a * b, 1);
        let indices: Int32Array;
        let values: Float32Array;
        if (t.has(`${hfName}.dense`)) {
          values = t.f32(`${hfName}.dense`, shape);
          indices = new Int32Array(size);
          for (let i = 0; i < size; i++) indices[i] = i;
        } else {
          const idxT = tensors.get(`${hfName}.index`);
          const valT = tensors.get(`${hfName}.values`);
          if (!idxT || !valT) throw new ModuleError('INVALID_MODULE', `module '${id}': '${hfName}' needs both .index and .values (or .dense)`);
          const raw = toIndexArray(idxT);
          values = t.f32(`${hfName}.values`, [raw.length]);
          indices = new Int32Array(raw.length);
          for (let i = 0; i < raw.length; i++) {
            const k = raw[i];
            if (!(k >= 0 && k < size)) throw new ModuleError('INVALID_MODULE', `module '${id}': '${hfName}.index' holds ${k}, outside [0, ${size})`);
            indices[i] = k;
          }
        }
        if (isTransposedLinear(canonical)) {
          // HF [out, in] flat index o*in + i → engine [in, out] flat index i*out + o.
          const [out, inn] = shape;
          for (let i = 0; i < indices.length; i++) {
            const k = indices[i];
            indices[i] = (k % inn) * out + Math.floor(k / inn);
          }
        }
        params.set(canonical, { indices, values });
      }
      return { ...common, kind: 'diff', params };
    }
    case 'fusion': {
      const c = manifest.config;
      const dynamic = c.dynamic ?? true;
      const sites = c.sites ?? ['output'];
      const leave = c.leave_out ?? [];
      const identity = new Float32Array(D * D);
      for (let i = 0; i < D; i++) identity[i * D + i] = 1;
      const layers: FusionModule['layers'] = [];
      for (let l = 0; l < L; l++) {
        const entry: FusionModule['layers'][number] = {};
        if (!leave.includes(l)) {
          for (const site of sites) {
            const p = `layers.${l}.${site}`;
            entry[site] = {
              qT: t.linT(`${p}.query.weight`, D, D),
              qB: t.f32(`${p}.query.bias`, [D]),
              kT: t.linT(`${p}.key.weight`, D, D),
              kB: t.f32(`${p}.key.bias`, [D]),
              vT: dynamic ? t.linT(`${p}.value.weight`, D, D) : identity,
            };
          }
        }
        layers.push(entry);
      }
      return { ...common, kind: 'fusion', adapters: c.adapters, temperature: c.temperature ?? 1, layers };
    }
  }
}

export { LORA_TARGETS };
