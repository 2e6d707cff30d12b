/**
 * Sparse methods: Diff Pruning (hard-concrete L0 gates, magnitude projection to exactly K non-zeros, fixed-mask
 * fine-tuning) and LT-SFT (full FT → top-K |change| → reset → masked training): exact support size, only the
 * selected entries change, and both learn the task.
 */
import { train, topKMasks, type Method } from '../../server/train/trainer';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { liveTinyBase, clsData, mlmData, majority } from '../helpers/train-fixtures';

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

/** Stored entries of a sparse diff module (the `.index` tensors' lengths). */
function stored(tensors: Map<string, { data: unknown }>): number {
  let n = 0;
  for (const [k, t] of tensors) if (k.endsWith('.index')) n += (t.data as BigInt64Array).length;
  return n;
}

test('diff-pruning on MLM: the ungated MLM head stays as it is, exactly K entries of the encoder (threw a TypeError before)', async () => {
  const base = await liveTinyBase();
  const K = 500;
  const res = await train({ base, method: 'diff-pruning', task: 'mlm', train: mlmData(64, 1), epochs: 1, batchSize: 16, lr: 2e-3, seed: 0, threads: 1, nnz: K });
  await res.release();
  expect(stored(res.tensors)).toBe(K);
  const head = [...base.weights.keys()].filter((n) => n.startsWith('mlm.')).map((n) => `${base.hfNames.get(n) ?? n}.index`);
  expect(head.length).toBeGreaterThan(0);
  expect(head.filter((k) => res.tensors.has(k))).toEqual([]);
  expect(res.manifest.config).toMatchObject({ method: 'diff-pruning', nnz: K });
  // the default id names the method, as `modhub train --help` says (it was local/full-<task> before)
  expect(res.manifest.id).toBe('local/diff-pruning-mlm');
});

test('lt-sft with a checkpoint folder: each phase checkpoints apart, same module as without; a rerun resumes both phases', async () => {
  const base = await liveTinyBase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-sparse-ck-'));
  const common = { base, method: 'lt-sft' as const, task: 'classification' as const, train: clsData(64, 1), dev: clsData(16, 2), epochs: 2, batchSize: 16, lr: 1e-3, seed: 0, threads: 1, nnz: 800 };
  const plain = await train(common);
  const withCk = await train({ ...common, checkpointDir: dir });
  // before, phase 2 resumed from phase 1's checkpoint: it ran no step and kept phase 1's dense change
  expect(fs.existsSync(path.join(dir, 'phase1', 'state.json')) && fs.existsSync(path.join(dir, 'phase2', 'state.json'))).toBe(true);
  const again = await train({ ...common, checkpointDir: dir });
  for (const r of [plain, withCk, again]) await r.release();
  for (const r of [withCk, again]) {
    expect(r.steps).toBe(plain.steps);
    expect(stored(r.tensors)).toBe(800);
    expect([...r.tensors.keys()]).toEqual([...plain.tensors.keys()]);
    for (const [k, t] of plain.tensors) expect(Array.from(r.tensors.get(k)!.data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
