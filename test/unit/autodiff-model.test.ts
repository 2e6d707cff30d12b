/**
 * Whole-model gradient check: the training graph (engine encoder emitter + bottleneck adapter + LoRA stacked
 * + classification head + cross-entropy) against central finite differences on a tiny base, sampled elements
 * of every trainable tensor; prints maxdiff per tensor.
 */
import { buildTrainGraph, type SlotModule } from '../../server/train/graph';
import { initModule } from '../../server/model/module-init';
import { Session, type HostTensor } from '../../server/runtime/session';
import { liveTinyBase } from '../helpers/train-fixtures';

const adapterConfigs: [string, Record<string, unknown>][] = [
  ['seq_bn + ln_after', { preset: 'seq_bn', reduction_factor: 4, ln_after: true }],
  ['double_seq_bn (Houlsby)', { preset: 'double_seq_bn', reduction_factor: 4 }],
  ['Bapna (ln_before, residual after LN)', { preset: 'seq_bn', reduction_factor: 4, ln_before: true, residual_before_ln: false }],
  ['par_bn', { preset: 'par_bn', reduction_factor: 4 }],
];

test.each(adapterConfigs)('training graph gradients match finite differences (%s + LoRA + head + CE)', async (_label, adConfig) => {
  const base = await liveTinyBase();
  const ad = initModule(base, { kind: 'bottleneck', id: 'a/ad', config: adConfig, seed: 1 });
  const lo = initModule(base, { kind: 'lora', id: 'a/lo', config: { r: 2, lora_alpha: 4, target_modules: ['query', 'ffn_out'] }, head: { type: 'classification', labels: ['x', 'y', 'z'] }, seed: 2 });
  for (const m of [ad, lo]) for (const [k, t] of m.tensors) if (/adapter_up|bias|lora_B|ln_(before|after)/.test(k)) (t.data as Float32Array).forEach((_, i, a) => (a[i] = Math.sin(i * 1.3 + k.length) * 0.1));
  const modules: SlotModule[] = [{ manifest: ad.manifest, tensors: ad.tensors, trainable: true }, { manifest: lo.manifest, tensors: lo.tensors, trainable: true }];
  const tg = buildTrainGraph({ base, modules, objective: 'cls', trainableBase: ['layers.1.ffn_in.bias', 'embeddings.ln.weight', 'layers.0.attn.q.weight', 'layers.1.ffn_out.weight', 'embeddings.word'] });
  const s = await Session.create(tg.bytes, { threads: 1 });
  const enc = await base.tokenizer.encodeBatch(['the cat and dog', 'red river']);
  const T = enc.length;
  const i64 = (a: ArrayLike<number>, dims: number[]): HostTensor => ({ type: 'int64', dims, data: BigInt64Array.from(Array.from(a, (x) => BigInt(x))) });
  const feeds: Record<string, HostTensor> = {
    input_ids: i64(enc.inputIds, [2, T]), position_ids: i64(enc.positionIds, [2, T]), token_type_ids: i64(enc.tokenTypeIds, [2, T]),
    attention_mask: { type: 'float32', dims: [2, T], data: Float32Array.from(enc.attentionMask) },
    labels: i64([1, 2], [2, 1]), label_weights: { type: 'float32', dims: [2, 1], data: Float32Array.from([0.5, 0.5]) }, ...tg.indexFeeds(2),
  };
  for (const p of tg.params) {
    const m = /^m(\d+):(.*)$/.exec(p);
    const t = m ? modules[Number(m[1])].tensors.get(m[2])! : { shape: base.weights.get(p.slice(5))!.shape, data: base.weights.get(p.slice(5))!.data.slice() };
    feeds[p] = { type: 'float32', dims: t.shape, data: t.data as Float32Array };
  }
  const r = await s.run(feeds, ['loss', ...tg.gradNames]);
  let worst = 0;
  for (let k = 0; k < tg.params.length; k++) {
    const x = feeds[tg.params[k]].data as Float32Array;
    const ga = r[tg.gradNames[k]].data as Float32Array;
    let maxd = 0;
    let maxg = 0;
    for (let i = 0; i < Math.min(x.length, 5); i++) {
      const j = (i * 7919 + 13) % x.length;
      const x0 = x[j];
      x[j] = x0 + 1e-2;
      const lp = ((await s.run(feeds, ['loss'])).loss.data as Float32Array)[0];
      x[j] = x0 - 1e-2;
      const lm = ((await s.run(feeds, ['loss'])).loss.data as Float32Array)[0];
      x[j] = x0;
      const num = (lp - lm) / 2e-2;
      const d = Math.abs(num - ga[j]) / Math.max(1, Math.abs(num));
      maxd = Math.max(maxd, d);
      maxg = Math.max(maxg, Math.abs(num));
    }
    worst = Math.max(worst, maxd);
    console.log(`${tg.params[k]}: maxdiff ${maxd.toExponential(2)} (max |grad| ${maxg.toExponential(2)})`);
  }
  await s.release();
  expect(worst).toBeLessThan(5e-3);
});
