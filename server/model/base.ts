/**
 * Loads a base checkpoint folder in Hugging Face layout (config.json, model.safetensors in F32/F16/BF16,
 * tokenizer.json) into canonical F32 tensors plus its tokenizer and fingerprint; `importBase` turns a HF
 * checkpoint folder (possibly sharded, half precision, with other task heads) into such a folder. The fingerprint
 * (`sha256:<hex>` over the canonical tensors) is what module manifests pin; it is cached in
 * `<dir>/.modhub-fingerprint.json`, keyed by model.safetensors' size and mtime.
 * Example: `const base = await loadBase('./base'); base.weights.get('layers.0.attn.q.weight')`.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { decodeTensor, parseSafetensors, parseSafetensorsHeader, roundToF16, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { readConfig, type BaseConfig } from './config';
import { BaseTokenizer } from './tokenizer';
import { fromHf, hfToCanonical, type F32Tensor } from './weights';

export interface Base {
  config: BaseConfig;
  /** Canonical name → F32 tensor (see weights.ts for the names). */
  weights: Map<string, F32Tensor>;
  /** Canonical name → the HF name in model.safetensors (sparse diffs address tensors by HF names). */
  hfNames: Map<string, string>;
  /** HF tensors present in the checkpoint but not loaded. */
  ignored: string[];
  tokenizer: BaseTokenizer;
  /** `sha256:<64 hex>` */
  fingerprint: string;
  dir: string;
}

export const FINGERPRINT_FILE = '.modhub-fingerprint.json';
const FINGERPRINT_VERSION = 1;

/**
 * sha256 over the tensors in sorted canonical-name order; per tensor: the UTF-8 name, a NUL, the shape as
 * comma-separated decimals, a NUL, then the F32 little-endian bytes. Returns `sha256:<hex>`.
 */
export function fingerprintWeights(weights: Map<string, F32Tensor>): string {
  const h = createHash('sha256');
  for (const name of [...weights.keys()].sort()) {
    const t = weights.get(name)!;
    h.update(`${name}\0${t.shape.join(',')}\0`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return `sha256:${h.digest('hex')}`;
}

interface FingerprintCache {
  version: number;
  size: number;
  mtimeMs: number;
  fingerprint: string;
}

function readCachedFingerprint(dir: string, stat: fs.Stats): string | null {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, FINGERPRINT_FILE), 'utf8')) as FingerprintCache;
    if (c.version === FINGERPRINT_VERSION && c.size === stat.size && c.mtimeMs === stat.mtimeMs && /^sha256:[0-9a-f]{64}$/.test(c.fingerprint)) {
      return c.fingerprint;
    }
  } catch {
    // missing or unreadable cache: recompute
  }
  return null;
}

function writeCachedFingerprint(dir: string, stat: fs.Stats, fingerprint: string): void {
  const c: FingerprintCache = { version: FINGERPRINT_VERSION, size: stat.size, mtimeMs: stat.mtimeMs, fingerprint };
  const file = path.join(dir, FINGERPRINT_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(c) + '\n');
    fs.renameSync(tmp, file);
  } catch {
    // A read-only base folder is fine: the fingerprint is then recomputed on every load.
    fs.rmSync(tmp, { force: true });
  }
}

/** Loads the base in `dir` (config.json, model.safetensors, tokenizer.json). */
export async function loadBase(dir: string): Promise<Base> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError("'dir' must be a folder path");
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new TypeError(`'dir' is not a folder: ${dir}`);
  const config = readConfig(path.join(dir, 'config.json'));
  const stFile = path.join(dir, 'model.safetensors');
  let buf: Buffer;
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(stFile);
    buf = await fs.promises.readFile(stFile);
  } catch (e) {
    throw new TypeError(`${stFile}: cannot read weights (${(e as Error).message})`);
  }
  let tensors;
  try {
    tensors = parseSafetensors(buf).tensors;
  } catch (e) {
    throw new TypeError(`${stFile}: ${(e as Error).message}`);
  }
  const { weights, hfNames, ignored } = fromHf(config, tensors, stFile);
  const tokenizer = BaseTokenizer.fromFile(path.join(dir, 'tokenizer.json'), config);
  let fingerprint = readCachedFingerprint(dir, stat);
  if (fingerprint === null) {
    fingerprint = fingerprintWeights(weights);
    writeCachedFingerprint(dir, stat, fingerprint);
  }
  return { config, weights, hfNames, ignored, tokenizer, fingerprint, dir };
}

/** Total number of parameters (elements) of the loaded tensors. */
export function parameterCount(weights: Map<string, F32Tensor>): number {
  let n = 0;
  for (const t of weights.values()) n += t.data.length;
  return n;
}

// ---- import ------------------------------------------------------------------------------------------------

/** Small files of a HF checkpoint copied next to the weights when present (tokenizer.json is required). */
const KEPT_FILES = [
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.txt',
  'vocab.json',
  'merges.txt',
  'sentencepiece.bpe.model',
  'spiece.model',
  'README.md',
  'LICENSE',
] as const;
const INDEX_FILE = 'model.safetensors.index.json';
const SHARD_RE = /^model-\d+-of-\d+\.safetensors$/;

export interface ImportBaseOptions {
  /** Write into a non-empty `out` folder, replacing the files the import writes (default false). */
  force?: boolean;
  /** Called as each weight file is read (for a progress bar). */
  onProgress?: (e: { file: string; done: number; total: number }) => void;
  /** Precision of the written model.safetensors (default F32). F16 halves the folder; the weights are rounded
   * once, here, and the fingerprint is that of the rounded weights, so modules trained on the F16 folder match it. */
  dtype?: 'F32' | 'F16';
}

export interface ImportBaseResult {
  dir: string;
  config: BaseConfig;
  parameters: number;
  fingerprint: string;
  /** Weight files read: ['model.safetensors'] or the shards named by the index, in order. */
  sources: string[];
  /** Tensors read per source dtype, e.g. { F16: 198, I64: 1 }. */
  dtypes: Record<string, number>;
  /** Tensors kept (written as F32). */
  tensors: number;
  /** HF tensors dropped: buffers, task heads of other architectures, tied decoder copies, tensors not in the index. */
  dropped: string[];
  /** Human-readable remarks (what was converted, merged or dropped, and why). */
  notes: string[];
  /** Bytes of the written model.safetensors. */
  bytes: number;
}

function exists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Why `src` has no usable weights: pickles, TF/Flax files or nothing at all. */
function noWeightsError(src: string): Error {
  const files = fs.readdirSync(src);
  const pickles = files.filter((f) => /^pytorch_model(-\d+-of-\d+)?\.bin$/.test(f) || f === 'pytorch_model.bin.index.json');
  const other = files.filter((f) => /^(tf_model\.h5|flax_model\.msgpack|model\.ckpt.*|.*\.onnx)$/.test(f));
  const how =
    `convert it to safetensors first, e.g. with Python: ` +
    `python -c "import sys, transformers as t; m = t.AutoModelForMaskedLM.from_pretrained(sys.argv[1]); m.save_pretrained(sys.argv[2], safe_serialization=True); ` +
    `t.AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])" ${src} ${src}-safetensors ` +
    `(or download the repository's model.safetensors, which most HF Hub checkpoints have)`;
  if (pickles.length) {
    return new TypeError(`${src} has PyTorch pickle weights (${pickles.join(', ')}) and no model.safetensors: modhub reads only safetensors (pickles can run code when loaded); ${how}`);
  }
  if (other.length) return new TypeError(`${src} has weights in a format modhub does not read (${other.join(', ')}) and no model.safetensors; ${how}`);
  const shards = files.filter((f) => SHARD_RE.test(f));
  if (shards.length) return new TypeError(`${src} has shard files (${shards.slice(0, 3).join(', ')}${shards.length > 3 ? ', ...' : ''}) but no ${INDEX_FILE} naming which tensor lives in which shard`);
  return new TypeError(`${src} has no weights: expected model.safetensors, or ${INDEX_FILE} with its model-0000x-of-0000y.safetensors shards`);
}

/** The weight files to read and, for sharded checkpoints, the tensor → shard map of the index. */
function weightSources(src: string, notes: string[]): { files: string[]; weightMap: Map<string, string> | null } {
  const single = path.join(src, 'model.safetensors');
  const index = path.join(src, INDEX_FILE);
  if (exists(single)) {
    if (exists(index)) notes.push(`both model.safetensors and ${INDEX_FILE} are present: read model.safetensors (as transformers does) and ignored the shards`);
    return { files: ['model.safetensors'], weightMap: null };
  }
  if (!exists(index)) throw noWeightsError(src);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(index, 'utf8'));
  } catch (e) {
    throw new TypeError(`${index}: not valid JSON (${(e as Error).message})`);
  }
  const wm = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw new TypeError(`${index}: 'weight_map' (tensor name → shard file) is missing or not an object`);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || file !== path.basename(file) || file === '.' || file === '..') {
      throw new TypeError(`${index}: weight_map['${name}'] must be a file name in the same folder, got ${JSON.stringify(file)}`);
    }
    weightMap.set(name, file);
  }
  if (weightMap.size === 0) throw new TypeError(`${index}: 'weight_map' is empty`);
  const files = [...new Set(weightMap.values())].sort();
  const missing = files.filter((f) => !exists(path.join(src, f)));
  if (missing.length) throw new TypeError(`${src}: missing shard file(s) ${missing.join(', ')} (listed in ${INDEX_FILE})`);
  return { files, weightMap };
}

/**
 * Imports a Hugging Face checkpoint folder (config.json, model.safetensors or an index + shards, tokenizer.json)
 * into a clean base folder `out`: one model.safetensors in F32 (F16/BF16/F64 widened) holding only the tensors
 * the encoder and its MLM head / pooler use, under their original HF names; config.json (torch_dtype set to
 * float32), tokenizer.json and the small tokenizer files; and the fingerprint cache. The result is validated by
 * loading it back with {@link loadBase}. Refuses pickle (pytorch_model.bin) checkpoints.
 */
export async function importBase(src: string, out: string, opts: ImportBaseOptions = {}): Promise<ImportBaseResult> {
  if (typeof src !== 'string' || src === '') throw new TypeError("'src' must be a folder path");
  if (typeof out !== 'string' || out === '') throw new TypeError("'out' must be a folder path");
  if (!exists(src) || !fs.statSync(src).isDirectory()) throw new TypeError(`'src' is not a folder: ${src}`);
  if (path.resolve(src) === path.resolve(out)) throw new RangeError(`'out' must differ from 'src' (${src})`);
  if (exists(out)) {
    if (!fs.statSync(out).isDirectory()) throw new TypeError(`'out' exists and is not a folder: ${out}`);
    if (!opts.force && fs.readdirSync(out).length > 0) throw new RangeError(`'out' folder ${out} is not empty; choose a new folder or pass force (--force) to overwrite the base files in it`);
  }
  const notes: string[] = [];
  const configFile = path.join(src, 'config.json');
  if (!exists(configFile)) throw new TypeError(`${src}: missing config.json (the model's HF config)`);
  const config = readConfig(configFile);
  const tokFile = path.join(src, 'tokenizer.json');
  if (!exists(tokFile)) {
    const slow = ['vocab.txt', 'vocab.json', 'sentencepiece.bpe.model', 'spiece.model'].filter((f) => exists(path.join(src, f)));
    throw new TypeError(
      `${src}: missing tokenizer.json (the HF fast-tokenizer file)` +
        (slow.length ? `; found only slow-tokenizer files (${slow.join(', ')}): create it with python -c "import sys, transformers as t; t.AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])" ${src}` : ''),
    );
  }
  // Fail on the tokenizer before reading gigabytes of weights.
  BaseTokenizer.fromFile(tokFile, config);

  const { files, weightMap } = weightSources(src, notes);
  const tensors = new Map<string, Tensor>();
  const dtypes: Record<string, number> = {};
  const notInIndex: string[] = [];
  for (const [i, file] of files.entries()) {
    opts.onProgress?.({ file, done: i, total: files.length });
    const full = path.join(src, file);
    let buf: Buffer;
    try {
      buf = await fs.promises.readFile(full);
    } catch (e) {
      throw new TypeError(`${full}: cannot read weights (${(e as Error).message})`);
    }
    let header;
    try {
      header = parseSafetensorsHeader(buf);
    } catch (e) {
      throw new TypeError(`${full}: ${(e as Error).message}`);
    }
    for (const [name, entry] of header.entries) {
      if (weightMap && weightMap.get(name) !== file) {
        notInIndex.push(name);
        continue;
      }
      if (tensors.has(name)) throw new RangeError(`${full}: tensor '${name}' appears in more than one weight file`);
      dtypes[entry.dtype] = (dtypes[entry.dtype] ?? 0) + 1;
      tensors.set(name, decodeTensor(buf, header, name));
    }
  }
  opts.onProgress?.({ file: '', done: files.length, total: files.length });
  if (weightMap) {
    const absent = [...weightMap].filter(([name]) => !tensors.has(name));
    if (absent.length) {
      const shown = absent.slice(0, 5).map(([n, f]) => `'${n}' (${f})`);
      throw new RangeError(`${path.join(src, INDEX_FILE)}: ${absent.length} tensor(s) listed in the index are not in their shard: ${shown.join(', ')}${absent.length > 5 ? ', ...' : ''}`);
    }
    if (files.length > 1) notes.push(`merged ${files.length} shards into one model.safetensors`);
  }
  const source = weightMap ? path.join(src, INDEX_FILE) : path.join(src, 'model.safetensors');
  const { weights, hfNames, ignored } = fromHf(config, tensors, source);
  const converted = Object.entries(dtypes).filter(([d]) => d === 'F16' || d === 'BF16' || d === 'F64');
  if (converted.length) notes.push(`converted ${converted.map(([d, n]) => `${n} ${d}`).join(', ')} tensor(s) to F32`);
  const dropped = [...ignored, ...notInIndex];
  if (ignored.length) {
    const heads = ignored.filter((n) => !/position_ids$/.test(n) && !(hfToCanonical(config.family, n) !== null));
    const buffers = ignored.filter((n) => /position_ids$/.test(n));
    const dup = ignored.filter((n) => hfToCanonical(config.family, n) !== null);
    if (heads.length) notes.push(`dropped ${heads.length} tensor(s) outside the ${config.family} encoder, pooler and MLM head (task heads of other architectures): ${heads.slice(0, 6).join(', ')}${heads.length > 6 ? ', ...' : ''}`);
    if (buffers.length) notes.push(`dropped ${buffers.length} buffer(s): ${buffers.join(', ')}`);
    if (dup.length) notes.push(`dropped ${dup.length} duplicate(s) of kept tensors (tied decoder / alias): ${dup.join(', ')}`);
  }
  if (notInIndex.length) notes.push(`ignored ${notInIndex.length} tensor(s) present in a shard but not named there by the index: ${notInIndex.slice(0, 5).join(', ')}${notInIndex.length > 5 ? ', ...' : ''}`);
  if (!weights.has('mlm.dense.weight')) notes.push('the checkpoint has no MLM head: fill_mask requests and MLM-head modules need one');

  // Write: each file to a temp name in `out`, then renamed, so a failed import leaves no half-written base file.
  fs.mkdirSync(out, { recursive: true });
  const writeAtomic = (name: string, data: Buffer | string) => {
    const file = path.join(out, name);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  };
  const dtype = opts.dtype ?? 'F32';
  if (dtype !== 'F32' && dtype !== 'F16') throw new RangeError(`'dtype' must be F32 or F16, got '${String(dtype)}'`);
  if (dtype === 'F16') {
    for (const [canonical, t] of weights) weights.set(canonical, { ...t, data: roundToF16(t.data as Float32Array, `'${hfNames.get(canonical)}'`) });
    notes.push('rounded every weight to F16');
  }
  const kept = new Map<string, Tensor>();
  for (const [canonical, t] of weights) kept.set(hfNames.get(canonical)!, t);
  const st = serializeSafetensors(kept, { format: 'pt' }, { floats: dtype });
  // A fingerprint cache or index left by an earlier base in `out` must not survive.
  for (const stale of [FINGERPRINT_FILE, INDEX_FILE]) fs.rmSync(path.join(out, stale), { force: true });
  writeAtomic('model.safetensors', st);
  const rawConfig = { ...config.raw, torch_dtype: dtype === 'F16' ? 'float16' : 'float32' };
  writeAtomic('config.json', JSON.stringify(rawConfig, null, 2) + '\n');
  writeAtomic('tokenizer.json', fs.readFileSync(tokFile));
  for (const f of KEPT_FILES) {
    const p = path.join(src, f);
    if (exists(p) && fs.statSync(p).isFile()) writeAtomic(f, fs.readFileSync(p));
  }
  const expected = fingerprintWeights(weights);
  const loaded = await loadBase(out);
  if (loaded.fingerprint !== expected) {
    throw new Error(`${out}: the written base loads with fingerprint ${loaded.fingerprint}, but the imported tensors give ${expected}`);
  }
  return {
    dir: out,
    config: loaded.config,
    parameters: parameterCount(loaded.weights),
    fingerprint: loaded.fingerprint,
    sources: files,
    dtypes,
    tensors: kept.size,
    dropped,
    notes,
    bytes: st.length,
  };
}
