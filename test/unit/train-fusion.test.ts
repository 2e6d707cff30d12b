/**
 * AdapterFusion: two task adapters trained on different halves of the label space are fused; the fusion layer
 * (+ head) learns the full task; the engine, given the fused adapters and the fusion module, predicts the same.
 */
import { train } from '../../server/train/trainer';
import { Engine } from '../../server/runtime/engine';
import { liveTinyBase, clsData, majority } from '../helpers/train-fixtures';

test('fusion over two frozen adapters learns; engine agrees', async () => {
  const base = await liveTinyBase();
  const common = { base, task: 'classification' as const, batchSize: 16, seed: 0, threads: 1, config: { reduction_factor: 2 } };
  const all = clsData(400, 1);
  const a = await train({ ...common, method: 'seq_bn', id: 'ad/a', train: all.map((e) => ({ ...e, label: e.label === 'animal' ? 'yes' : 'no' })), epochs: 6, lr: 1e-2 });
  const b = await train({ ...common, method: 'seq_bn', id: 'ad/b', train: all.map((e) => ({ ...e, label: e.label === 'food' ? 'yes' : 'no' })), epochs: 6, lr: 1e-2 });
  for (const r of [a, b]) await r.release();
  const dev = clsData(150, 2);
  const fused = [a, b].map((r) => ({ manifest: r.manifest, tensors: r.tensors }));
  const f = await train({ base, method: 'fusion', task: 'classification', train: all, dev, fuse: fused, id: 'fusion/ab', epochs: 12, batchSize: 16, lr: 1e-2, seed: 0, threads: 1, warmupRatio: 0.1 });
  console.log('fusion:', f.metrics, 'majority', majority(dev.map((d) => d.label)).toFixed(3));
  expect(f.metrics.accuracy).toBeGreaterThan(majority(dev.map((d) => d.label)) + 0.1);

  const engine = await Engine.create({ base, threads: 1 });
  const ka = engine.addModule(a.manifest, a.tensors).key;
  const kb = engine.addModule(b.manifest, b.tensors).key;
  const kf = engine.addModule(f.manifest, f.tensors).key;
  const plans = await engine.plan({ fuse: [ka, kb], fusion: kf });
  const sample = dev.slice(0, 16);
  const enc = await base.tokenizer.encodeBatch(sample.map((d) => d.text), undefined, { maxLength: 128 });
  const out = await engine.forward(enc, sample.map(() => plans[0]));
  const mine = await f.predict(sample);
  let maxdiff = 0;
  out.forEach((o, i) => o.clsLogits!.forEach((x, c) => (maxdiff = Math.max(maxdiff, Math.abs(x - mine[i][c])))));
  console.log('fusion: engine vs trainer logits maxdiff', maxdiff.toExponential(2));
  await f.release();
  await engine.close();
  expect(maxdiff).toBeLessThan(1e-3);
});
