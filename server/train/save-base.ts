/**
 * Writes the result of full fine-tuning / MLM pretraining (a dense diff over every base tensor) as a new base
 * folder: config.json and tokenizer files copied, model.safetensors = θ₀ + δ in the family's HF names.
 * Example: `await saveTrainedBase(base, result.tensors, './my-base')` after `train({ method: 'full', task: 'mlm' })`.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Base } from '../model/base';
import { toHf } from '../model/weights';
import type { Tensor } from '../../modules-store/safetensors';
import { serializeSafetensors } from '../../modules-store/safetensors';

const COPIED = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt'];

/** Saves θ₀ + δ (δ from `P.dense` tensors keyed by HF name) as a loadable base in `out`. */
export function saveTrainedBase(base: Base, tensors: Map<string, Tensor>, out: string): void {
  const byHf = new Map([...base.hfNames].map(([c, h]) => [h, c]));
  const weights = new Map<string, Tensor>();
  for (const [name, t] of base.weights) weights.set(name, t);
  let applied = 0;
  for (const [k, t] of tensors) {
    if (!k.endsWith('.dense')) continue;
    const canonical = byHf.get(k.slice(0, -6)) ?? k.slice(0, -6);
    const old = base.weights.get(canonical);
    if (!old) throw new RangeError(`diff tensor '${k}' names no tensor of the base`);
    const d = t.data as Float32Array;
    const data = new Float32Array(old.data.length);
    // θ = θ₀ + δ once, at save time
    for (let i = 0; i < data.length; i++) data[i] = old.data[i] + d[i];
    weights.set(canonical, { dtype: 'F32', shape: old.shape, data });
    applied++;
  }
  if (!applied) throw new RangeError("'tensors' holds no dense diffs (train with method 'full')");
  fs.mkdirSync(out, { recursive: true });
  for (const f of COPIED) if (fs.existsSync(path.join(base.dir, f))) fs.copyFileSync(path.join(base.dir, f), path.join(out, f));
  fs.writeFileSync(path.join(out, 'model.safetensors'), serializeSafetensors(toHf(base.config, weights), { format: 'pt' }));
  fs.rmSync(path.join(out, '.modhub-fingerprint.json'), { force: true });
}
