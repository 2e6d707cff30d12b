/**
 * Train → package (writeModulePackage, validated like a hub upload) → read back → load into the inference
 * engine → same predictions as the trainer's own graph at the end of training, per method.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { train, type Method } from '../../server/train/trainer';
import { writeModulePackage, readModulePackage } from '../../modules-store/package';
import { parseSafetensors } from '../../modules-store/safetensors';
import { Engine } from '../../server/runtime/engine';
import { liveTinyBase, clsData } from '../helpers/train-fixtures';

const cases: [Method, Record<string, unknown>][] = [
  ['seq_bn', { reduction_factor: 4 }],
  ['lora', { r: 4, lora_alpha: 8, target_modules: ['query', 'value'] }],
  ['ia3', { target_modules: ['key', 'value', 'ffn_in', 'ffn_out'] }],
  ['bitfit', {}],
  ['lt-sft', {}],
  ['diff-pruning', {}],
];

test.each(cases)('%s module: engine predictions equal the trainer\'s', async (method, config) => {
  const base = await liveTinyBase();
  const dev = clsData(24, 2);
  const res = await train({ base, method, task: 'classification', train: clsData(96, 1), dev, epochs: 2, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, config, nnz: 500, id: `test/${method.replace('_', '-')}` });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-trained-'));
  await writeModulePackage(dir, res.manifest, res.tensors);
  const pkg = await readModulePackage(dir);
  const tensors = parseSafetensors(pkg.files.get('weights.safetensors')!).tensors;
  const engine = await Engine.create({ base, threads: 1 });
  const m = engine.addModule(pkg.manifest, tensors);
  const plans = await engine.plan(m.key);
  const enc = await base.tokenizer.encodeBatch(dev.map((d) => d.text), undefined, { maxLength: 128 });
  const out = await engine.forward(enc, dev.map(() => plans[0]));
  const mine = await res.predict(dev);
  let maxdiff = 0;
  let same = 0;
  out.forEach((o, i) => {
    const a = o.clsLogits!;
    const b = mine[i];
    for (let c = 0; c < a.length; c++) maxdiff = Math.max(maxdiff, Math.abs(a[c] - b[c]));
    const am = (x: Float32Array) => x.indexOf(Math.max(...x));
    if (am(a) === am(b)) same++;
  });
  console.log(`${method}: engine vs trainer logits maxdiff ${maxdiff.toExponential(2)}, same argmax ${same}/${dev.length}`);
  await res.release();
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
  expect(same).toBe(dev.length);
  expect(maxdiff).toBeLessThan(1e-3);
});

test('MAD-X stack: language adapter (MLM, invertible) + task adapter; engine stack gives the same predictions', async () => {
  const base = await liveTinyBase();
  const lang = await train({ base, method: 'seq_bn_inv', task: 'mlm', train: clsData(64, 5).map((e) => ({ text: e.text })), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, id: 'lang/xx' });
  await lang.release();
  const dev = clsData(16, 2);
  const task = await train({ base, method: 'seq_bn', task: 'classification', train: clsData(64, 1), epochs: 1, batchSize: 16, lr: 5e-3, seed: 0, threads: 1, id: 'task/kw', stackOn: [{ manifest: lang.manifest, tensors: lang.tensors }] });
  const engine = await Engine.create({ base, threads: 1 });
  const kl = engine.addModule(lang.manifest, lang.tensors).key;
  const kt = engine.addModule(task.manifest, task.tensors).key;
  const plans = await engine.plan({ stack: [kl, kt] });
  const enc = await base.tokenizer.encodeBatch(dev.map((d) => d.text), undefined, { maxLength: 128 });
  const out = await engine.forward(enc, dev.map(() => plans[0]));
  const mine = await task.predict(dev);
  let maxdiff = 0;
  out.forEach((o, i) => o.clsLogits!.forEach((x, c) => (maxdiff = Math.max(maxdiff, Math.abs(x - mine[i][c])))));
  console.log(`MAD-X stack: engine vs trainer logits maxdiff ${maxdiff.toExponential(2)}`);
  await task.release();
  await engine.close();
  expect(maxdiff).toBeLessThan(1e-3);
});
