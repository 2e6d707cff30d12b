/**
 * LT-SFT selection controls as composable-sft has them: the number (ft_params_num = nnz) or proportion
 * (ft_params_proportion = density, of the eligible parameters, rounded down) selected, and which tensor groups
 * may be selected (freeze: embeddings, layer_norm, decoder, head) with composable-sft's defaults for language
 * (mlm) and task SFTs. Counts and groups are checked exactly on the packaged diffs.
 */
import { train, type TrainResult } from '../../server/train/trainer';
import { sftGroups } from '../../server/train/methods/sft-groups';
import { clsData, mlmData, pretrainedTinyBase } from '../helpers/train-fixtures';
import type { Base } from '../../server/model/base';

const LN = /LayerNorm/;
const EMB = /embeddings\.(word|position|token_type)_embeddings/;

/** Stored entries per HF tensor: sparse (index) and dense. */
function stored(res: TrainResult): { sparse: Map<string, number>; dense: Map<string, number> } {
  const sparse = new Map<string, number>();
  const dense = new Map<string, number>();
  for (const [k, t] of res.tensors) {
    if (k.endsWith('.index')) sparse.set(k.slice(0, -6), t.data.length);
    if (k.endsWith('.dense')) dense.set(k.slice(0, -6), t.data.length);
  }
  return { sparse, dense };
}

function eligibleCount(base: Base, names: string[]): number {
  return names.reduce((a, n) => a + base.weights.get(n)!.data.length, 0);
}

test('defaults: a language SFT selects no LayerNorm, leaves the decoder frozen and trains the MLM head densely', async () => {
  const base = await pretrainedTinyBase();
  const sel = sftGroups(base, 'mlm', undefined);
  expect(sel.freeze).toEqual(['layer_norm', 'decoder']);
  expect(sel.untieDecoder).toBe(true);
  expect(sel.dense.sort()).toEqual(['mlm.decoder.bias', 'mlm.dense.bias', 'mlm.dense.weight']);
  const res = await train({ base, method: 'lt-sft', task: 'mlm', train: mlmData(64, 1), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, nnz: 1500 });
  await res.release();
  const { sparse, dense } = stored(res);
  const total = [...sparse.values()].reduce((a, b) => a + b, 0);
  expect(total).toBe(1500);
  expect([...sparse.keys()].filter((k) => LN.test(k) || k.startsWith('cls.'))).toEqual([]);
  expect([...dense.keys()].sort()).toEqual(['cls.predictions.bias', 'cls.predictions.transform.dense.bias', 'cls.predictions.transform.dense.weight']);
  expect(res.manifest.config).toMatchObject({ method: 'lt-sft', selected: 1500, eligible: eligibleCount(base, sel.maskable), frozen: ['layer_norm', 'decoder'] });
  // embeddings are eligible by default (composable-sft's freeze_embeddings is off)
  expect([...sparse.keys()].some((k) => EMB.test(k))).toBe(true);
});

test('freeze embeddings + layer_norm + head (mlm): only encoder matrices and biases selected, nothing dense', async () => {
  const base = await pretrainedTinyBase();
  const sel = sftGroups(base, 'mlm', ['embeddings', 'layer_norm', 'head']);
  expect(sel.dense).toEqual([]);
  expect(sel.maskable.every((n) => n.startsWith('layers.') && !/_ln\./.test(n))).toBe(true);
  // proportion: ⌊0.02 × eligible⌋ exactly
  const res = await train({ base, method: 'lt-sft', task: 'mlm', train: mlmData(64, 1), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, density: 0.02, freeze: ['embeddings', 'layer_norm', 'head'] });
  await res.release();
  const { sparse, dense } = stored(res);
  const K = Math.floor(0.02 * eligibleCount(base, sel.maskable));
  expect([...sparse.values()].reduce((a, b) => a + b, 0)).toBe(K);
  expect(dense.size).toBe(0);
  expect([...sparse.keys()].filter((k) => !/^bert\.encoder\.layer\.\d+\./.test(k) || LN.test(k))).toEqual([]);
});

test('task SFT: LayerNorms frozen by default; freeze none makes them eligible; mlm-only groups are refused', async () => {
  const base = await pretrainedTinyBase();
  expect(sftGroups(base, 'classification', undefined).freeze).toEqual(['layer_norm']);
  expect(sftGroups(base, 'classification', []).maskable.some((n) => /ln\./.test(n))).toBe(true);
  expect(sftGroups(base, 'classification', undefined).maskable.some((n) => /ln\./.test(n) || n.startsWith('mlm.'))).toBe(false);
  expect(() => sftGroups(base, 'classification', ['decoder'])).toThrow(/applies to the masked-LM head/);
  expect(() => sftGroups(base, 'classification', ['bias'])).toThrow(/'freeze' groups are/);
  const res = await train({ base, method: 'lt-sft', task: 'classification', train: clsData(64, 1), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, nnz: 800, freeze: [] });
  await res.release();
  const { sparse, dense } = stored(res);
  expect([...sparse.values()].reduce((a, b) => a + b, 0)).toBe(800);
  expect(dense.size).toBe(0);
  // the classifier head is stored whole beside the diff
  expect(res.tensors.has('head.out_proj.weight')).toBe(true);
  await expect(train({ base, method: 'bitfit', task: 'classification', train: clsData(16, 1), maxSteps: 1, threads: 1, freeze: ['embeddings'] })).rejects.toThrow(/'freeze' does not apply to method 'bitfit'/);
});

test('a frozen decoder is untied: word-embedding gradients reach only the rows of input tokens', async () => {
  const { buildTrainGraph } = await import('../../server/train/graph');
  const { batchMaker } = await import('../../server/train/batches');
  const { Session } = await import('../../server/runtime/session');
  const { Rng } = await import('../../server/model/random');
  const base = await pretrainedTinyBase();
  // a diff module without a head (what LT-SFT trains for mlm): the MLM head is the base's
  const sft = await train({ base, method: 'lt-sft', task: 'mlm', train: mlmData(16, 1), maxSteps: 1, threads: 1, nnz: 10 });
  await sft.release();
  const mod = { manifest: sft.manifest, tensors: new Map(), trainable: true };
  const b = await batchMaker({ base, objective: 'mlm', labelIndex: new Map(), maxLength: 32, mlmProbability: 0.15 })(mlmData(4, 3), new Rng(1));
  const inputs = new Set(Array.from(b.feeds.input_ids.data as BigInt64Array, Number));
  const D = base.config.hiddenSize;
  const rowsTouched = async (untieDecoder: boolean) => {
    const tg = buildTrainGraph({ base, modules: [mod], objective: 'mlm', trainableBase: ['embeddings.word'], untieDecoder });
    const sess = await Session.create(tg.bytes, { threads: 1 });
    const w = base.weights.get('embeddings.word')!;
    const r = await sess.run({ ...b.feeds, ...tg.indexFeeds(b.B), 'base:embeddings.word': { type: 'float32', dims: [...w.shape], data: w.data as Float32Array } }, ['grad:base:embeddings.word']);
    await sess.release();
    const g = r['grad:base:embeddings.word'].data as Float32Array;
    const rows = new Set<number>();
    for (let i = 0; i < g.length; i++) if (g[i] !== 0) rows.add(Math.floor(i / D));
    return rows;
  };
  const untied = await rowsTouched(true);
  expect([...untied].every((r) => inputs.has(r))).toBe(true);
  const tied = await rowsTouched(false);
  // tied, the decoder's softmax reaches every row of the vocabulary
  expect(tied.size).toBeGreaterThan(base.config.vocabSize / 2);
});
