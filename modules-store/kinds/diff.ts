/**
 * Kind `diff`: sparse (or dense) parameter differences θ = θ₀ + δ (BitFit, Diff Pruning, LT-SFT, full
 * fine-tuning). Tensor names follow the base checkpoint's HF parameter names: `{param}.index` (I64/I32, sorted
 * flat indices into the HF-layout tensor) + `{param}.values`, or `{param}.dense` (the whole δ). So the check is
 * structural, and loading maps HF names to canonical ones and keeps the indices as stored (the engine feeds the
 * touched weights in the checkpoint's layout).
 * Diffs are made by the trainer from base parameters, never initialised fresh.
 * Example: `layers.0.attention.self.query.bias.index` + `.values` = a BitFit difference on one bias.
 */
import { z } from 'zod';
import { ModuleError, StoreError } from '../errors';
import { forEachTensorChunk, numel, type ByteSource, type SafetensorsHeader, type Tensor } from '../safetensors';
import { isHeadTensor } from './heads';
import { FLOAT, INDEX, type CheckContext, type KindDescriptor, type LoadedCommon } from './types';

const configSchema = z.looseObject({
  method: z.enum(['bitfit', 'diff-pruning', 'lt-sft', 'full', 'custom']),
  density: z.number().gt(0).max(1).optional(),
  nnz: z.number().int().min(0).optional(),
});
export type DiffConfig = z.infer<typeof configSchema>;

const PART_RE = /^(.+)\.(index|values|dense)$/;

/** Tensor names of one parameter's difference (package layout). */
export const DIFF = {
  index: (param: string) => `${param}.index`,
  values: (param: string) => `${param}.values`,
  dense: (param: string) => `${param}.dense`,
  /** The parameter a diff tensor belongs to, or null when the name is not a diff tensor. */
  paramOf: (name: string): string | null => PART_RE.exec(name)?.[1] ?? null,
};

export interface DiffLayout {
  kind: 'diff';
  /**
   * Per canonical parameter: flat indices and values, in the checkpoint's layout ([out, in] for Linear weights):
   * the engine feeds the weights a diff touches in that layout (runtime/diff-weights.ts), so indices are used as
   * the package stores them, with no remapping pass over the non-zeros on a first request.
   */
  params: Map<string, { indices: Int32Array; values: Float32Array }>;
}
export type DiffModule = LoadedCommon & DiffLayout;

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * An index tensor (I64 as safetensors and PyTorch write it, or I32) as Int32Array, each index checked against
 * [0, size) in the same pass: one pass and no temporary, where an LT-SFT diff of BERT-base has ~850k of them.
 */
function checkedIndices(t: Tensor, size: number, what: () => string): Int32Array {
  const n = t.data.length;
  const out = new Int32Array(n);
  if (t.data instanceof Int32Array) {
    const src = t.data;
    for (let i = 0; i < n; i++) {
      const k = src[i];
      if (!(k >= 0 && k < size)) throw new ModuleError('INVALID_MODULE', `${what()} holds ${k}, outside [0, ${size})`);
      out[i] = k;
    }
    return out;
  }
  if (!(t.data instanceof BigInt64Array)) throw new ModuleError('INVALID_MODULE', `${what()} must be an integer tensor, got ${t.dtype}`);
  // the two little-endian 32-bit words of each index: in range means a high word of 0 and a low word below size
  const words = new Int32Array(t.data.buffer, t.data.byteOffset, 2 * n);
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i + 1];
    const lo = words[2 * i];
    if (hi !== 0 || lo < 0 || lo >= size) throw new ModuleError('INVALID_MODULE', `${what()} holds ${hi * 4294967296 + (lo >>> 0)}, outside [0, ${size})`);
    out[i] = lo;
  }
  return out;
}

/** Walks an index tensor piece by piece: sorted, unique, non-negative, below `size` (when known); returns its length. */
function checkIndices(src: ByteSource, h: SafetensorsHeader, name: string, param: string, size: number | null): number {
  const e = h.entries.get(name)!;
  const wide = e.dtype === 'I64';
  let prev = -1;
  let count = 0;
  forEachTensorChunk(src, h, name, (bytes, first) => {
    const n = bytes.length / (wide ? 8 : 4);
    for (let i = 0; i < n; i++) {
      const v = wide ? Number(bytes.readBigInt64LE(i * 8)) : bytes.readInt32LE(i * 4);
      if (v <= prev) throw new StoreError('INVALID_WEIGHTS', `'${name}' must hold sorted, unique, non-negative indices (position ${first + i}: ${v} after ${prev})`);
      if (size !== null && v >= size) {
        throw new StoreError('INVALID_WEIGHTS', `'${name}' holds index ${v} at position ${first + i}, but base parameter '${param}' has only ${size} elements`);
      }
      prev = v;
    }
    count += n;
  });
  return count;
}

/** The base's shape of `param`, or a clear error when the base has no such parameter (null when the base is unknown). */
function baseShape(ctx: CheckContext, param: string): number[] | null {
  if (!ctx.baseParams) return null;
  const shape = ctx.baseParams(param);
  if (!shape) throw new StoreError('INVALID_WEIGHTS', `diff names parameter '${param}', which the base does not have (names follow the base checkpoint, e.g. 'encoder.layer.0.attention.self.query.weight')`);
  return shape;
}

function checkWeights(c: DiffConfig, src: ByteSource, h: SafetensorsHeader, ctx: CheckContext): void {
  const params = new Map<string, { index?: string; values?: string; dense?: string }>();
  for (const name of h.entries.keys()) {
    if (isHeadTensor(name)) continue;
    const mm = PART_RE.exec(name);
    if (!mm) throw new StoreError('INVALID_WEIGHTS', `diff tensor '${name}' must end in .index, .values or .dense`);
    const slot = params.get(mm[1]) ?? {};
    slot[mm[2] as 'index' | 'values' | 'dense'] = name;
    params.set(mm[1], slot);
  }
  if (params.size === 0) throw new StoreError('INVALID_WEIGHTS', 'a diff module must touch at least one base parameter');
  let nnz = 0;
  for (const [p, s] of params) {
    if (s.dense && (s.index || s.values)) throw new StoreError('INVALID_WEIGHTS', `parameter '${p}' has both a dense diff and a sparse diff`);
    const shape = baseShape(ctx, p);
    if (s.dense) {
      const e = h.entries.get(s.dense)!;
      if (!FLOAT.includes(e.dtype)) throw new StoreError('INVALID_WEIGHTS', `'${s.dense}' must be F32/F16/BF16, got ${e.dtype}`);
      if (shape && (shape.length !== e.shape.length || shape.some((d, i) => d !== e.shape[i]))) {
        throw new StoreError('INVALID_WEIGHTS', `'${s.dense}' has shape ${fmt(e.shape)}, but base parameter '${p}' has shape ${fmt(shape)}`);
      }
      nnz += numel(e.shape);
      continue;
    }
    if (!s.index || !s.values) throw new StoreError('INVALID_WEIGHTS', `parameter '${p}' needs both '${p}.index' and '${p}.values'`);
    const ie = h.entries.get(s.index)!;
    const ve = h.entries.get(s.values)!;
    if (!INDEX.includes(ie.dtype)) throw new StoreError('INVALID_WEIGHTS', `'${s.index}' must be I64 or I32, got ${ie.dtype}`);
    if (!FLOAT.includes(ve.dtype)) throw new StoreError('INVALID_WEIGHTS', `'${s.values}' must be F32/F16/BF16, got ${ve.dtype}`);
    if (ie.shape.length !== 1 || ie.shape.length !== ve.shape.length || ie.shape[0] !== ve.shape[0]) {
      throw new StoreError('INVALID_WEIGHTS', `'${s.index}' ${fmt(ie.shape)} and '${s.values}' ${fmt(ve.shape)} must be 1-D of the same length`);
    }
    nnz += checkIndices(src, h, s.index, p, shape ? numel(shape) : null);
  }
  if (c.nnz !== undefined && c.nnz !== nnz) {
    throw new StoreError('INVALID_WEIGHTS', `config.nnz is ${c.nnz}, but the tensors hold ${nnz} differences`);
  }
}

export const diff: KindDescriptor<'diff', typeof configSchema, DiffLayout> = {
  kind: 'diff',
  summary: 'sparse or dense parameter differences (BitFit, Diff Pruning, LT-SFT, full fine-tuning)',
  cardTags: [],
  config: configSchema,
  initConfig: (config) => config,
  expected: () => null,
  checkWeights,
  init() {
    throw new RangeError("a diff module is made by training base parameters: use 'modhub train --method bitfit|diff-pruning|lt-sft|full'");
  },
  load(_c, ctx) {
    const { id, reader: t } = ctx;
    const params = new Map<string, { indices: Int32Array; values: Float32Array }>();
    const names = new Set<string>();
    for (const name of t.tensors.keys()) {
      if (isHeadTensor(name)) continue;
      const p = DIFF.paramOf(name);
      if (!p) throw new ModuleError('INVALID_MODULE', `module '${id}': diff tensor '${name}' must end in .index, .values or .dense`);
      names.add(p);
    }
    for (const hfName of names) {
      const canonical = ctx.canonical(hfName);
      if (!canonical) throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}': diff names '${hfName}', which is not a parameter of this ${ctx.family} base`);
      const shape = ctx.shapeOf(canonical);
      const size = numel(shape);
      let indices: Int32Array;
      let values: Float32Array;
      if (t.has(DIFF.dense(hfName))) {
        values = t.f32(DIFF.dense(hfName), shape);
        indices = new Int32Array(size);
        for (let i = 0; i < size; i++) indices[i] = i;
      } else {
        const idxT = t.tensors.get(DIFF.index(hfName));
        if (!idxT || !t.has(DIFF.values(hfName))) throw new ModuleError('INVALID_MODULE', `module '${id}': '${hfName}' needs both .index and .values (or .dense)`);
        values = t.f32(DIFF.values(hfName), [idxT.data.length]);
        indices = checkedIndices(idxT, size, () => `module '${id}': '${hfName}.index'`);
      }
      params.set(canonical, { indices, values });
    }
    return { kind: 'diff', params };
  },
  // The trainer trains base parameters for diffs (see server/train), not module tensors.
  trainable: () => [],
};
