/**
 * composable-sft (Ansell et al. 2022, cambridgeltl/composable-sft src/sft/sft.py) folders in: `pytorch_diff.bin`,
 * a torch.save of `{"diffs": {param: {"size", "index_steps", "values"}}, "abs": {param: tensor}}`.
 * Its flat indices are COLUMN-major (multipliers cumprod([1] + size[:-1]), so the first dimension varies fastest)
 * and delta-encoded (index_steps[0] is the first index, then differences); modhub's diff kind stores sorted
 * ROW-major indices, so each index is decoded to coordinates and re-flattened. `abs` (fully tuned tensors) may
 * only hold the token classifier (`classifier.weight` / `.bias`), which becomes the module's head; other `abs`
 * tensors are refused (modhub stores differences, and a hub has no base weights to subtract).
 * Example: `importSft(files, base)` → a `diff` module with `method: "lt-sft"`.
 */
import { hfToCanonical } from '../hf-names';
import { StoreError } from '../errors';
import { DIFF } from '../kinds/diff';
import { HEAD } from '../kinds/heads';
import type { BaseRef } from '../manifest';
import type { Tensor } from '../safetensors';
import { familyOf, floatAt, labelsOf, unsupported } from './names';
import { readTorchBin } from './pickle';
import type { ConvertedModule, FileSet } from './types';

export const SFT_FILE = 'pytorch_diff.bin';

/** Column-major flat index (composable-sft) → row-major flat index (modhub) for a tensor of `size`. */
export function columnToRowMajor(index: number, size: number[]): number {
  let rest = index;
  const coords = size.map((s) => {
    const c = rest % s;
    rest = Math.floor(rest / s);
    return c;
  });
  let out = 0;
  for (let d = 0; d < size.length; d++) out = out * size[d] + coords[d];
  return out;
}

/** A composable-sft folder → a modhub `diff` module (plus a token-classification head from `abs`). */
export function importSft(files: FileSet, base: BaseRef): ConvertedModule {
  const family = familyOf(base);
  const bytes = files.get(SFT_FILE);
  if (!bytes) throw new StoreError('INVALID_PACKAGE', `the folder has no ${SFT_FILE}`);
  const { value } = readTorchBin(bytes, SFT_FILE);
  if (!(value instanceof Map)) throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE}: expected a dict with 'diffs' and 'abs'`);
  const diffs = (value.get('diffs') ?? new Map()) as Map<string, unknown>;
  const abs = (value.get('abs') ?? new Map()) as Map<string, unknown>;
  if (!(diffs instanceof Map) || !(abs instanceof Map)) throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE}: 'diffs' and 'abs' must be dicts`);
  const tensors = new Map<string, Tensor>();
  let nnz = 0;
  for (const [param, enc] of diffs) {
    if (typeof param !== 'string' || !(enc instanceof Map)) throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE}: diff '${String(param)}' is not {size, index_steps, values}`);
    if (hfToCanonical(family, param) === null) unsupported(SFT_FILE, `diffs['${param}']`, 'sparse difference', `'${param}' is not a parameter of the ${family} encoder or its MLM head`);
    const size = enc.get('size');
    const steps = enc.get('index_steps');
    const values = floatAt(new Map([['v', enc.get('values') as Tensor]]), 'v', `${SFT_FILE} diffs['${param}'].values`);
    if (!Array.isArray(size) || !size.every((d) => Number.isInteger(d)) || !Array.isArray(steps) || steps.length !== values.data.length) {
      throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE}: diffs['${param}'] needs size, index_steps and values of the same length as index_steps`);
    }
    const total = size.reduce((a: number, b: number) => a * b, 1);
    // Typed arrays and a sorted permutation: LT-SFTs hold millions of entries per model.
    const rows = new Float64Array(steps.length);
    let idx = 0;
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i];
      if (typeof s !== 'number' || !Number.isInteger(s) || (i > 0 && s <= 0) || s < 0) throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE}: diffs['${param}'].index_steps[${i}] = ${String(s)} is not a positive step`);
      idx += s;
      if (idx >= total) throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE}: diffs['${param}'] index ${idx} is outside size [${size}]`);
      rows[i] = columnToRowMajor(idx, size as number[]);
    }
    const perm = Uint32Array.from({ length: rows.length }, (_, i) => i).sort((a, b) => rows[a] - rows[b]);
    const vals = values.data as Float32Array;
    tensors.set(DIFF.index(param), { dtype: 'I64', shape: [perm.length], data: BigInt64Array.from(perm, (i) => BigInt(rows[i])) });
    tensors.set(DIFF.values(param), { dtype: 'F32', shape: [perm.length], data: Float32Array.from(perm, (i) => vals[i]) });
    nnz += perm.length;
  }
  let head: ConvertedModule['head'] = null;
  let labels: string[] = [];
  if (abs.size) {
    const names = [...abs.keys()].sort();
    if (names.join(',') !== 'classifier.bias,classifier.weight') {
      unsupported(SFT_FILE, 'abs', names, "only a token classifier ('classifier.weight', 'classifier.bias') can be taken as absolute values; apply the SFT without its other abs tensors (with_abs=False)");
    }
    const w = floatAt(abs as Map<string, Tensor>, 'classifier.weight', SFT_FILE);
    const C = w.shape[0];
    tensors.set(`${HEAD.outProj}.weight`, floatAt(abs as Map<string, Tensor>, 'classifier.weight', SFT_FILE, [C, base.hidden_size]));
    tensors.set(`${HEAD.outProj}.bias`, floatAt(abs as Map<string, Tensor>, 'classifier.bias', SFT_FILE, [C]));
    head = { type: 'token_classification', num_labels: C };
    labels = labelsOf(C);
  }
  if (diffs.size === 0) throw new StoreError('INVALID_WEIGHTS', `${SFT_FILE} has no sparse differences`);
  return {
    kind: 'diff',
    config: { method: 'lt-sft', nnz },
    head,
    labels,
    task: head ? 'token-classification' : 'mlm',
    description: 'composable-sft sparse fine-tuning, imported',
    tensors,
  };
}
