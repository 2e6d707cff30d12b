/**
 * `stackOn` with a sparse diff (composable-sft: the task SFT is trained with the language SFT applied to the
 * base): a task module trained on a language SFT differs from one trained without, and the trainer's forward is
 * the engine's forward of the stacked composition (language diff + the trained module); options that cannot
 * apply are errors.
 */
import { Engine } from '../../server/runtime/engine';
import { train, type GivenModule, type TrainResult } from '../../server/train/trainer';
import { applyStackedDiffs } from '../../server/train/stacked-base';
import { clsData, mlmData, pretrainedTinyBase } from '../helpers/train-fixtures';

async function engineLogits(res: TrainResult, stack: GivenModule[], texts: string[]): Promise<Float32Array[]> {
  const base = await pretrainedTinyBase();
  const engine = await Engine.create({ base, threads: 1 });
  const keys = [...stack, res].map((m) => engine.addModule(m.manifest, m.tensors).key);
  const plans = await engine.plan({ stack: keys });
  const enc = await base.tokenizer.encodeBatch(texts, undefined, { maxLength: 128 });
  const out = await engine.forward(enc, texts.map(() => plans[0]));
  await engine.close();
  return out.map((o) => o.clsLogits!);
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let d = 0;
  a.forEach((x, i) => x.forEach((v, c) => (d = Math.max(d, Math.abs(v - b[i][c])))));
  return d;
}

let lang: TrainResult;
beforeAll(async () => {
  const base = await pretrainedTinyBase();
  lang = await train({ base, method: 'lt-sft', task: 'mlm', train: mlmData(200, 1), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, nnz: 3000, id: 'sft/xx' });
  await lang.release();
});

test('a task LT-SFT trained on a language SFT: differs from one trained without; trainer forward = engine stack', async () => {
  const base = await pretrainedTinyBase();
  const dev = clsData(24, 2);
  const common = { base, method: 'lt-sft' as const, task: 'classification' as const, train: clsData(64, 1), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, nnz: 2000, id: 'sft/task' };
  const alone = await train(common);
  const stacked = await train({ ...common, stackOn: [lang] });
  await alone.release();
  const vals = (r: TrainResult) => [...r.tensors].filter(([k]) => k.endsWith('.values')).flatMap(([, t]) => Array.from(t.data as Float32Array));
  const a = vals(alone);
  const s = vals(stacked);
  const differ = a.length !== s.length || a.some((x, i) => x !== s[i]);
  expect(differ).toBe(true);
  // the language SFT is not part of the task SFT
  expect(stacked.manifest.config).toMatchObject({ nnz: 2000 });
  const mine = await stacked.predict(dev);
  const theirs = await engineLogits(stacked, [lang], dev.map((d) => d.text));
  const without = await engineLogits(stacked, [], dev.map((d) => d.text));
  await stacked.release();
  const d = maxDiff(mine, theirs);
  console.log(`task SFT on language SFT: trainer vs engine stack maxdiff ${d.toExponential(2)}; vs engine without the language SFT ${maxDiff(mine, without).toExponential(2)}`);
  expect(d).toBeLessThan(1e-3);
  expect(maxDiff(mine, without)).toBeGreaterThan(1e-3);
});

test('a task adapter (any method) trained on a language SFT starts from the base with the diff applied', async () => {
  const base = await pretrainedTinyBase();
  const dev = clsData(16, 2);
  // lr 1e-12: the trainer's forward at the end is (to float precision) its forward at the start
  const res = await train({ base, method: 'seq_bn', task: 'classification', train: clsData(16, 1), maxSteps: 1, batchSize: 16, lr: 1e-12, seed: 0, threads: 1, stackOn: [lang] });
  const mine = await res.predict(dev);
  await res.release();
  const theirs = await engineLogits(res, [lang], dev.map((d) => d.text));
  expect(maxDiff(mine, theirs)).toBeLessThan(1e-4);
  const stackedBase = applyStackedDiffs(base, [lang]).base;
  let changed = 0;
  // the body changes at most at the K selected entries (the MLM head is stored whole)
  for (const [k, t] of stackedBase.weights) if (!k.startsWith('mlm.')) t.data.forEach((x, i) => (changed += +(x !== base.weights.get(k)!.data[i])));
  expect(changed).toBeGreaterThan(0);
  expect(changed).toBeLessThanOrEqual(3000);
});

test('options that cannot apply are errors, not no-ops', async () => {
  const base = await pretrainedTinyBase();
  const common = { base, task: 'classification' as const, train: clsData(16, 1), maxSteps: 1, threads: 1 };
  await expect(train({ ...common, method: 'seq_bn', nnz: 10 })).rejects.toThrow(/'nnz' does not apply to method 'seq_bn'/);
  await expect(train({ ...common, method: 'lt-sft', density: 0.1, nnz: 10 })).rejects.toThrow(/not both/);
  await expect(train({ ...common, method: 'lora', fuse: [lang] })).rejects.toThrow(/'fuse' does not apply/);
  await expect(train({ ...common, method: 'bitfit', config: { r: 4 } })).rejects.toThrow(/'config' does not apply to method 'bitfit'/);
  await expect(train({ ...common, method: 'lt-sft', l0Lambda: 1 })).rejects.toThrow(/'l0Lambda' does not apply/);
  await expect(train({ ...common, method: 'lora', patience: 2 })).rejects.toThrow(/needs a dev set/);
  await expect(train({ ...common, method: 'lora', dev: clsData(8, 2), evalEvery: 0 })).rejects.toThrow(/'evalEvery' must be an integer >= 1, got 0/);
  await expect(train({ ...common, method: 'lora', gradAccum: 0 })).rejects.toThrow(/'gradAccum' must be an integer >= 1/);
  await expect(train({ ...common, method: 'lora', mlmProbability: 0.2 })).rejects.toThrow(/'mlmProbability' applies to task 'mlm'/);
  await expect(train({ ...common, method: 'lora', warmupRatio: 2 })).rejects.toThrow(/'warmupRatio' must be in \[0, 1\]/);
  const other = { ...lang, manifest: { ...lang.manifest, base: { ...lang.manifest.base, fingerprint: 'sha256:' + '0'.repeat(64) } } } as GivenModule;
  await expect(train({ ...common, method: 'lora', stackOn: [other] })).rejects.toThrow(/trained on another base/);
});
