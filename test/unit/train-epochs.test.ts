/**
 * The end of training: fractional epochs round up to whole steps and the last step always evaluates; which
 * weights the result holds (best dev evaluation or last step) is stated in the result and the manifest's
 * `training` record, with the trainable-parameter count.
 */
import { train, type TrainResult } from '../../server/train/trainer';
import { clsData, tinyBase } from '../helpers/train-fixtures';

const size = (r: TrainResult) => [...r.tensors.values()].reduce((a, t) => a + t.data.length, 0);

test('fractional epochs: 0.7 of 4 steps = 3 steps, the last one evaluated; best / last stated and kept', async () => {
  const base = await tinyBase();
  const common = { base, method: 'lora' as const, task: 'classification' as const, train: clsData(64, 1), dev: clsData(32, 2), epochs: 0.7, evalEvery: 2, batchSize: 16, lr: 3e-2, seed: 0, threads: 1, config: { r: 4, lora_alpha: 4 } };
  const best = await train(common);
  await best.release();
  expect(best.steps).toBe(3);
  expect(best.history.map((h) => !!h.eval)).toEqual([false, true, true]);
  const evals = best.history.filter((h) => h.eval);
  const top = evals.reduce((a, h) => (h.eval!.accuracy > a.eval!.accuracy ? h : a));
  expect(best.saved).toEqual({ which: 'best', step: top.step, of: 3 });
  expect(best.metrics).toEqual(top.eval);
  const record = (best.manifest as unknown as { training: Record<string, unknown> }).training;
  expect(record).toMatchObject({ steps: 3, saved: 'best', saved_step: top.step, trainable_params: size(best) });
  expect(best.manifest.description).toMatch(/saved: best dev evaluation, step \d of 3/);

  const last = await train({ ...common, keep: 'last' });
  await last.release();
  expect(last.saved).toEqual({ which: 'last', step: 3, of: 3 });
  expect(last.metrics).toEqual(last.history[2].eval);
  expect((last.manifest as unknown as { training: Record<string, unknown> }).training).toMatchObject({ saved: 'last', saved_step: 3 });
  await expect(train({ ...common, dev: undefined, evalEvery: undefined, keep: 'best' })).rejects.toThrow(/needs a dev set/);
  await expect(train({ ...common, epochs: 0 })).rejects.toThrow(/'epochs' must be > 0/);
});

test('the trainable-parameter count: every module tensor for LoRA; K + head for LT-SFT', async () => {
  const base = await tinyBase();
  const lora = await train({ base, method: 'lora', task: 'classification', train: clsData(16, 1), maxSteps: 1, threads: 1, config: { r: 2 } });
  await lora.release();
  expect(lora.trainableParams).toBe(size(lora));
  const sft = await train({ base, method: 'lt-sft', task: 'classification', train: clsData(16, 1), maxSteps: 1, threads: 1, nnz: 300 });
  await sft.release();
  const head = [...sft.tensors].filter(([k]) => k.startsWith('head.')).reduce((a, [, t]) => a + t.data.length, 0);
  expect(sft.trainableParams).toBe(300 + head);
  expect((sft.manifest as unknown as { training: Record<string, unknown> }).training).toMatchObject({ trainable_params: 300 + head, steps: 2, phase_steps: [1, 1] });
});
