/**
 * IA³ learns: the keyword task of train-methods.test.ts on the ×8-scaled tiny base, AdapterHub's and PEFT's
 * placements, each above the majority class on held-out data; the scaling vectors move away from their ones
 * init (so the learning is not the head's alone). Prints dev accuracy.
 */
import { train } from '../../server/train/trainer';
import { liveTinyBase, clsData, majority } from '../helpers/train-fixtures';

const trainSet = clsData(400, 1);
const dev = clsData(150, 2);
const maj = majority(dev.map((d) => d.label));

test.each([
  ['AdapterHub placement (key, value, ffn_in)', ['key', 'value', 'ffn_in']],
  ['PEFT placement (key, value, ffn_out)', ['key', 'value', 'ffn_out']],
])('IA³ %s beats the majority class', async (_label, targets) => {
  const base = await liveTinyBase();
  const res = await train({ base, method: 'ia3', task: 'classification', train: trainSet, dev, epochs: 12, batchSize: 16, lr: 3e-2, seed: 0, threads: 1, config: { target_modules: targets }, warmupRatio: 0.1 });
  await res.release();
  let moved = 0;
  for (const [name, t] of res.tensors) if (name.endsWith('.ia3_l')) for (const x of t.data as Float32Array) moved = Math.max(moved, Math.abs(x - 1));
  console.log(`ia3 ${JSON.stringify(targets)}: dev accuracy ${res.metrics.accuracy.toFixed(3)} macro-F1 ${res.metrics.macro_f1.toFixed(3)} (majority ${maj.toFixed(3)}); max |l − 1| ${moved.toFixed(3)}`);
  expect(moved).toBeGreaterThan(0.05);
  expect(res.metrics.accuracy).toBeGreaterThan(maj + 0.25);
});
