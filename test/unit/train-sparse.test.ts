/**
 * Sparse methods: Diff Pruning (hard-concrete L0 gates, magnitude projection to exactly K non-zeros, fixed-mask
 * fine-tuning) and LT-SFT (full FT → top-K |change| → reset → masked training): exact support size, only the
 * selected entries change, and both learn the task.
 */
import { train, topKMasks, type Method } from '../../server/train/trainer';
import { liveTinyBase, clsData, majority } from '../helpers/train-fixtures';

const trainSet = clsData(400, 1);
const dev = clsData(150, 2);

test('topKMasks keeps exactly K entries, ties included', () => {
  const m = topKMasks(new Map([['a', Float32Array.from([1, -3, 2, 2])], ['b', Float32Array.from([2, 0])]]), 3);
  expect([...m.get('a')!, ...m.get('b')!].reduce((x, y) => x + y, 0)).toBe(3);
  expect(m.get('a')![1]).toBe(1);
});

test.each([['diff-pruning', 2e-3], ['lt-sft', 1e-3]] as [Method, number][])('%s: exactly K non-zeros, learns', async (method, lr) => {
  const base = await liveTinyBase();
  const K = 3000;
  const res = await train({ base, method, task: 'classification', train: trainSet, dev, epochs: 8, batchSize: 16, lr, seed: 0, threads: 1, nnz: K, warmupRatio: 0.1 });
  await res.release();
  let nnz = 0;
  let nonzero = 0;
  let outsideTouched = 0;
  for (const [k, t] of res.tensors) {
    if (k.endsWith('.index')) {
      const idx = t.data as BigInt64Array;
      for (let i = 1; i < idx.length; i++) expect(idx[i] > idx[i - 1]).toBe(true); // sorted, unique
      nnz += idx.length;
    }
    if (k.endsWith('.values')) nonzero += (t.data as Float32Array).reduce((a, x) => a + (x !== 0 ? 1 : 0), 0);
    if (k.endsWith('.dense')) outsideTouched++;
  }
  console.log(`${method}: K=${K}, stored ${nnz}, non-zero ${nonzero}, dev accuracy ${res.metrics.accuracy.toFixed(3)} (majority ${majority(dev.map((d) => d.label)).toFixed(3)})`);
  expect(nnz).toBe(K);
  expect(nonzero).toBe(K);
  expect(outsideTouched).toBe(0);
  expect(res.manifest.config).toMatchObject({ method, nnz: K });
  expect(res.metrics.accuracy).toBeGreaterThan(majority(dev.map((d) => d.label)) + 0.2);
});
