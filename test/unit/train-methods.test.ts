/**
 * Each method learns a synthetic keyword task on a tiny base and beats the majority class on held-out data;
 * adapters / LoRA land near full fine-tuning. Prints dev accuracy per method.
 */
import { train, type Method } from '../../server/train/trainer';
import { liveTinyBase, clsData, majority } from '../helpers/train-fixtures';

const trainSet = clsData(400, 1);
const dev = clsData(150, 2);
const maj = majority(dev.map((d) => d.label));
const acc: Record<string, number> = {};

const runs: [Method, number, Record<string, unknown>, number][] = [
  // method, lr, config, required margin over majority
  ['full', 1e-3, {}, 0.4],
  ['seq_bn', 1e-2, { reduction_factor: 2 }, 0.25],
  ['double_seq_bn', 3e-3, { reduction_factor: 2 }, 0.15],
  ['bapna', 1e-2, { reduction_factor: 2 }, 0.25],
  ['par_bn', 1e-2, {}, 0.25],
  ['lora', 1e-2, { r: 8, lora_alpha: 16, target_modules: ['query', 'value', 'ffn_in'] }, 0.4],
  ['bitfit', 1e-2, {}, 0.1],
];

describe('methods learn (tiny base, keyword task)', () => {
  test.each(runs)('%s', async (method, lr, config, margin) => {
    const base = await liveTinyBase();
    const res = await train({ base, method, task: 'classification', train: trainSet, dev, epochs: 12, batchSize: 16, lr, seed: 0, threads: 1, config, warmupRatio: 0.1 });
    await res.release();
    acc[method] = res.metrics.accuracy;
    console.log(`${method}: dev accuracy ${res.metrics.accuracy.toFixed(3)} macro-F1 ${res.metrics.macro_f1.toFixed(3)} (majority ${maj.toFixed(3)})`);
    expect(res.metrics.accuracy).toBeGreaterThan(maj + margin);
  });

  test('LoRA within a few points of full fine-tuning', () => {
    expect(acc.lora).toBeGreaterThan(acc.full - 0.05);
  });
});
