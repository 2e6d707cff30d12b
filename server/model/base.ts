/**
 * Loads a base checkpoint folder in Hugging Face layout (config.json, model.safetensors in F32/F16/BF16,
 * tokenizer.json) into canonical F32 tensors plus its tokenizer and fingerprint. The fingerprint
 * (`sha256:<hex>` over the canonical tensors) is what module manifests pin; it is cached in
 * `<dir>/.modhub-fingerprint.json`, keyed by model.safetensors' size and mtime.
 * Example: `const base = await loadBase('./base'); base.weights.get('layers.0.attn.q.weight')`.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { parseSafetensors } from '../../modules-store/safetensors';
import { readConfig, type BaseConfig } from './config';
import { BaseTokenizer } from './tokenizer';
import { fromHf, type F32Tensor } from './weights';

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
