/**
 * Objectives beyond sequence classification: token classification (token F1), masked LM (perplexity falls),
 * MAD-X (language adapter with invertible adapter by MLM, then a task adapter stacked on the frozen language
 * adapter), gradient accumulation and seeded reproducibility, resumable checkpoints.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { train } from '../../server/train/trainer';
import { liveTinyBase, clsData, tokData, mlmData, majority } from '../helpers/train-fixtures';

test('token classification (LoRA) reaches a clearly non-trivial token F1', async () => {
  const base = await liveTinyBase();
  const res = await train({ base, method: 'lora', task: 'token_classification', train: tokData(300, 1), dev: tokData(100, 2), epochs: 8, batchSize: 16, lr: 1e-2, seed: 0, threads: 1, config: { r: 8, lora_alpha: 16, target_modules: ['query', 'value', 'ffn_in'] } });
  await res.release();
  console.log('token classification:', res.metrics);
  expect(res.metrics.f1).toBeGreaterThan(0.6);
});

test('MAD-X: language adapter (MLM + invertible) then a task adapter stacked on it', async () => {
  const base = await liveTinyBase();
  const lang = await train({ base, method: 'seq_bn_inv', task: 'mlm', train: mlmData(300, 1), dev: mlmData(60, 2), epochs: 6, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, id: 'lang/xx', language: 'en', evalEvery: 20 });
  await lang.release();
  const ppl = lang.history.filter((h) => h.eval).map((h) => h.eval!.perplexity);
  console.log('MAD-X language adapter perplexity by evaluation:', ppl.map((p) => p.toFixed(2)).join(' '));
  expect(lang.manifest.config).toMatchObject({ preset: 'seq_bn_inv' });
  expect(lang.tensors.has('invertible.F.down.weight')).toBe(true);
  expect(lang.metrics.perplexity).toBeLessThan(ppl[0]);
  const dev = clsData(150, 2);
  const task = await train({ base, method: 'seq_bn', task: 'classification', train: clsData(400, 1), dev, epochs: 10, batchSize: 16, lr: 1e-2, seed: 0, threads: 1, config: { reduction_factor: 2 }, stackOn: [{ manifest: lang.manifest, tensors: lang.tensors }] });
  await task.release();
  console.log('MAD-X task adapter on the language adapter:', task.metrics);
  // the language adapter is not part of the task module
  expect([...task.tensors.keys()].some((k) => k.startsWith('invertible.'))).toBe(false);
  expect(task.metrics.accuracy).toBeGreaterThan(majority(dev.map((d) => d.label)) + 0.15);
});

test('seeded runs are reproducible; gradient accumulation 2x8 matches 1x16 closely', async () => {
  const base = await liveTinyBase();
  const common = { base, method: 'seq_bn' as const, task: 'classification' as const, train: clsData(64, 1), epochs: 1, lr: 1e-2, seed: 3, threads: 1, warmupRatio: 0 };
  const a = await train({ ...common, batchSize: 16 });
  const b = await train({ ...common, batchSize: 16 });
  const c = await train({ ...common, batchSize: 8, gradAccum: 2 });
  for (const r of [a, b, c]) await r.release();
  const w = (r: typeof a) => r.tensors.get('layers.1.output.adapter_down.weight')!.data as Float32Array;
  expect(Array.from(w(a))).toEqual(Array.from(w(b)));
  let d = 0;
  for (let i = 0; i < w(a).length; i++) d = Math.max(d, Math.abs(w(a)[i] - w(c)[i]));
  console.log('accumulation 2x8 vs 1x16: max |Δw|', d.toExponential(2));
  expect(d).toBeLessThan(1e-3);
});

test('resumable checkpoints: stop after 3 steps, resume, same weights as an uninterrupted run', async () => {
  const base = await liveTinyBase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-ck-'));
  const common = { base, method: 'lora' as const, task: 'classification' as const, train: clsData(96, 1), dev: clsData(16, 2), batchSize: 16, lr: 1e-2, seed: 1, threads: 1, evalEvery: 3, epochs: 1 };
  const full = await train({ ...common });
  const part = await train({ ...common, stopAtStep: 3, checkpointDir: dir });
  // the schedule must be the same: resume with the full step count
  const rest = await train({ ...common, checkpointDir: dir });
  for (const r of [full, part, rest]) await r.release();
  expect(rest.steps).toBe(full.steps);
  const k = 'layers.0.query.lora_A';
  const a = full.tensors.get(k)!.data as Float32Array;
  const b = rest.tensors.get(k)!.data as Float32Array;
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  expect(d).toBeLessThan(1e-6);
  fs.rmSync(dir, { recursive: true, force: true });
});
