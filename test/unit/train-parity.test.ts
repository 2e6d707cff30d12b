/**
 * Adapters and LoRA reach within a few points of full fine-tuning on the same task and budget, on a tiny base that
 * was MLM-pretrained (test/helpers/train-fixtures.ts, pretrainedTinyBase): the same data, epochs, batch size and
 * seed for every method, each at its own learning rate (new weights from scratch: ~10× the full-FT rate). The
 * reference is the full-FT accuracy measured here, not a constant, and the check does fail where the frozen base
 * is a poor feature extractor: with this budget on the ×8-scaled random base (liveTinyBase) seq_bn and
 * double_seq_bn stay at the majority class (0.373) while full FT reaches 0.893. On the pretrained base the keyword
 * task is easy (every method reaches 1.000, at any lr from 1e-4 to 1e-2, mostly from the first epoch), so this catches a
 * frozen-base method that fails to learn, not a gap of one or two points. Prints the accuracies.
 */
import { train, type Method } from '../../server/train/trainer';
import { pretrainedTinyBase, pretrainReport, clsData, majority } from '../helpers/train-fixtures';

const trainSet = clsData(400, 1);
const dev = clsData(150, 2);
const maj = majority(dev.map((d) => d.label));
const budget = { epochs: 4, batchSize: 16, seed: 0, warmupRatio: 0.1 };

const runs: [Method, number, Record<string, unknown>][] = [
  ['full', 1e-3, {}],
  ['seq_bn', 1e-2, { reduction_factor: 2 }],
  ['double_seq_bn', 1e-2, { reduction_factor: 2 }],
  ['lora', 1e-2, { r: 8, lora_alpha: 16, target_modules: ['query', 'value', 'ffn_in'] }],
];

test('seq_bn, double_seq_bn and LoRA within 5 points of full fine-tuning (MLM-pretrained tiny base)', async () => {
  const t0 = Date.now();
  const base = await pretrainedTinyBase();
  const pre = pretrainReport
    ? `pretrained here in ${pretrainReport.seconds.toFixed(1)} s, dev perplexity ${pretrainReport.perplexity[0].toFixed(1)} → ${pretrainReport.perplexity.at(-1)!.toFixed(1)}`
    : 'pretrained base from the disk cache';
  const acc: Record<string, number> = {};
  for (const [method, lr, config] of runs) {
    const res = await train({ base, method, task: 'classification', train: trainSet, dev, ...budget, lr, threads: 1, config });
    await res.release();
    acc[method] = res.metrics.accuracy;
  }
  console.log(
    `${pre}; dev accuracy (majority ${maj.toFixed(3)}, ${((Date.now() - t0) / 1000).toFixed(1)} s):\n` +
      runs.map(([m, lr]) => `  ${m.padEnd(14)} lr ${lr.toExponential(0)}  ${acc[m].toFixed(3)}  (${((acc[m] - acc.full) * 100).toFixed(1)} points vs full)`).join('\n'),
  );
  expect(acc.full).toBeGreaterThan(maj + 0.4);
  for (const [m] of runs.slice(1)) {
    expect({ method: m, beatsMajority: acc[m] > maj + 0.3 }).toEqual({ method: m, beatsMajority: true });
    expect({ method: m, withinFivePoints: acc[m] >= acc.full - 0.05 }).toEqual({ method: m, withinFivePoints: true });
  }
});
