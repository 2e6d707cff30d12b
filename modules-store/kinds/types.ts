/**
 * The interface every module kind implements (one descriptor file per kind in this folder, listed once in
 * index.ts), and the small helpers descriptors share: base dims, expected-tensor entries, a checked tensor
 * reader, transposes for the engine's [in, out] layout and seeded initialisers.
 *
 * A descriptor is pure data and arithmetic: it imports nothing from server/, so the store can validate packages
 * and the server can load, initialise and train them from the same rules.
 * Example: `KINDS.lora.expected(cfg, { hidden: 768, layers: 12, vocab: 30522, ffn: 3072 })`.
 */
import type { z } from 'zod';
import { ModuleError, StoreError } from '../errors';
import type { ByteSource, DType, SafetensorsHeader, Tensor } from '../safetensors';
import type { HeadWeights } from './heads';
import type { Manifest } from '../manifest';

/** Float dtypes a module tensor may be stored in (the codec widens F16/BF16 to F32 on read). */
export const FLOAT: readonly DType[] = ['F32', 'F16', 'BF16'];
/** Integer dtypes of sparse-diff indices. */
export const INDEX: readonly DType[] = ['I64', 'I32'];

/** The base dimensions a kind derives its tensor shapes from (`ffn` may be unknown to the store). */
export interface BaseDims {
  hidden: number;
  layers: number;
  vocab: number;
  /** FFN (intermediate) size: the manifest's `base.intermediate_size`, the base's config, or inferred. */
  ffn?: number;
}

/** One tensor a package must hold: shape and accepted dtypes. */
export interface Expected {
  shape: number[];
  dtypes: readonly DType[];
}

/** What every loaded module carries besides its kind's engine layout. */
export interface LoadedCommon {
  /** Cache key: `ns/name@version`. */
  key: string;
  manifest: Manifest;
  head: HeadWeights | null;
  bytes: number;
}

/** Reads a package's tensors with shape and dtype checks that name the module and tensor. */
export class TensorReader {
  constructor(
    readonly id: string,
    readonly tensors: Map<string, Tensor>,
  ) {}
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  /** A float tensor as the package holds it (a view into the file's bytes when parsed with views). */
  private checked(name: string, shape: readonly number[]): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new ModuleError('INVALID_MODULE', `module '${this.id}': weights.safetensors has no tensor '${name}'`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModuleError('INVALID_MODULE', `module '${this.id}': tensor '${name}' has shape [${t.shape}], expected [${shape}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new ModuleError('INVALID_MODULE', `module '${this.id}': tensor '${name}' must be a float tensor`);
    return t.data;
  }
  /** A float tensor the module keeps: a view into a whole file's bytes is copied, so a module holds only what it uses. */
  f32(name: string, shape: readonly number[]): Float32Array {
    const data = this.checked(name, shape);
    return data.byteLength === data.buffer.byteLength ? data : data.slice();
  }
  /** A Linear weight [out, in] transposed to [in, out] (read straight from a view: no copy before the transpose). */
  linT(name: string, out: number, inn: number): Float32Array {
    return transpose(this.checked(name, [out, inn]), out, inn);
  }
}

/**
 * The parameters of the base a module is validated against: HF parameter name (with or without the encoder
 * prefix) → its shape in HF layout, or null when the base has no such parameter. Supplied by whoever knows the
 * base's full config (the server for the base it runs; see RegistryOptions.baseParams).
 */
export type BaseParams = (hfName: string) => number[] | null;

/** What `checkWeights` gets besides the config and the bytes. */
export interface CheckContext {
  /** The base's parameters, when known for the manifest's base fingerprint. */
  baseParams?: BaseParams;
}

/** What a descriptor's `load` gets besides the config. */
export interface LoadContext {
  /** `ns/name@version`, for error messages. */
  id: string;
  dims: Required<BaseDims>;
  reader: TensorReader;
  /** Base checkpoint family (diff names follow it). */
  family: string;
  /** HF parameter name → the engine's canonical name, null when the base has no such parameter. */
  canonical(hfName: string): string | null;
  /** Shape of a canonical base parameter in HF layout. */
  shapeOf(canonical: string): number[];
}

/** Seeded initialisers a descriptor's `init` draws from (the server supplies the generator). */
export interface InitContext {
  dims: Required<BaseDims>;
  /** N(0, std²) (AdapterHub's "bert" init uses std 0.02). */
  normal(shape: number[], std?: number): Tensor;
  /** U(−bound, bound). */
  uniform(shape: number[], bound: number): Tensor;
  fill(shape: number[], value: number): Tensor;
}

/**
 * One module kind. `S` is its config schema (AdapterHub / PEFT field names), `E` its engine layout.
 * Adding a kind = one file exporting one of these + a line in index.ts (docs/adding-a-module-kind.md).
 */
export interface KindDescriptor<K extends string = string, S extends z.ZodType = z.ZodType, E extends { kind: K } = { kind: K }> {
  readonly kind: K;
  /** One line for `--help` and docs. */
  readonly summary: string;
  /** Extra HF model-card tags of this kind's packages (beside `modhub`, `modhub-<kind>` and the task). */
  readonly cardTags: readonly string[];
  /** The `config` object of module.json. */
  readonly config: S;
  /** Fills the defaults `modhub module init` writes into a fresh module's config (before validation). */
  initConfig(config: Record<string, unknown>): Record<string, unknown>;
  /**
   * The exact non-head tensors a package must hold, or null for kinds whose names follow the base checkpoint
   * and are checked by `checkWeights` instead (diff).
   */
  expected(config: z.output<S>, dims: BaseDims): Map<string, Expected> | null;
  /** FFN size implied by the tensors present, when a kind needs it and the manifest does not say. */
  ffnFromTensors?(config: z.output<S>, header: SafetensorsHeader): number | undefined;
  /**
   * Structural checks beyond names and shapes (diff: index dtypes, sortedness, range, nnz, base parameter
   * names and shapes). Reads tensor bytes from `src` piece by piece (bounded memory).
   */
  checkWeights?(config: z.output<S>, src: ByteSource, header: SafetensorsHeader, ctx: CheckContext): void;
  /** Fresh tensors, initialised as the reference library does. */
  init(config: z.output<S>, ctx: InitContext): Map<string, Tensor>;
  /** Package tensors → the engine's layout (transposed, scaling folded); pure data. */
  load(config: z.output<S>, ctx: LoadContext): E;
  /** Module tensors the trainer differentiates (head tensors come from heads.ts). */
  trainable(config: z.output<S>, dims: Required<BaseDims>): string[];
}

/** Transposes a row-major [rows, cols] matrix (load time only). */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  // Eight source rows at a time: eight sequential reads, and each column's eight values land side by side in
  // `out`. Median of 9: a 768×768 head weight took 2.7 ms element by element, 2.3 ms in 32×32 tiles and 1.8 ms so;
  // 3072×768 28, 13 and 7 ms (a first request's module load, and BERT-base start-up).
  let r = 0;
  for (; r + 8 <= rows; r += 8) {
    const i0 = r * cols;
    for (let c = 0, i = i0, o = r; c < cols; c++, i++, o += rows) {
      out[o] = src[i];
      out[o + 1] = src[i + cols];
      out[o + 2] = src[i + 2 * cols];
      out[o + 3] = src[i + 3 * cols];
      out[o + 4] = src[i + 4 * cols];
      out[o + 5] = src[i + 5 * cols];
      out[o + 6] = src[i + 6 * cols];
      out[o + 7] = src[i + 7 * cols];
    }
  }
  for (; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** `src · s` (the same array when s = 1). */
export function scaled(src: Float32Array, s: number): Float32Array {
  if (s === 1) return src;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] * s;
  return out;
}

/** The layers a module covers: all but `leave_out`, which must name existing layers. */
export function layersOf(numLayers: number, leaveOut: readonly number[] | undefined, field = 'config.leave_out'): number[] {
  for (const l of leaveOut ?? []) {
    if (l >= numLayers) throw new StoreError('INVALID_MANIFEST', `${field} names layer ${l}, but the base has ${numLayers} layers`);
  }
  const skip = new Set(leaveOut ?? []);
  const out: number[] = [];
  for (let l = 0; l < numLayers; l++) if (!skip.has(l)) out.push(l);
  return out;
}

/** Adds a Linear's `weight` [out, in] (and `bias` [out]) to an expected-tensor map. */
export function expectLinear(exp: Map<string, Expected>, prefix: string, out: number, inp: number, bias = true): void {
  exp.set(`${prefix}.weight`, { shape: [out, inp], dtypes: FLOAT });
  if (bias) exp.set(`${prefix}.bias`, { shape: [out], dtypes: FLOAT });
}

/** Adds a LayerNorm's `weight` and `bias` [d]. */
export function expectLayerNorm(exp: Map<string, Expected>, prefix: string, d: number): void {
  exp.set(`${prefix}.weight`, { shape: [d], dtypes: FLOAT });
  exp.set(`${prefix}.bias`, { shape: [d], dtypes: FLOAT });
}

/** The FFN size, or a clear error naming what needs it. */
export function needFfn(dims: BaseDims, what: string): number {
  if (dims.ffn === undefined) throw new StoreError('INVALID_WEIGHTS', `cannot determine the FFN size for ${what}: set base.intermediate_size in module.json`);
  return dims.ffn;
}
