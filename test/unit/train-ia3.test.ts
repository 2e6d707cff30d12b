/**
 * IA³ in the training graph: gradients of the scaling vectors (output-scaled key / value / ffn_in and
 * input-scaled ffn_out, two IA³ modules stacked so their vectors multiply, with LoRA and a bottleneck adapter
 * in the same graph) against central finite differences on a tiny base; prints maxdiff per tensor.
 */
import { buildTrainGraph, type SlotModule } from '../../server/train/graph';
import { initModule } from '../../server/model/module-init';
import { Session, type HostTensor } from '../../server/runtime/session';
import { liveTinyBase } from '../helpers/train-fixtures';

/** Non-identity values, so that the products and the head see every vector (init is ones / zeros). */
function perturb(tensors: Map<string, { data: unknown }>, re: RegExp, around: number): void {
  for (const [k, t] of tensors) if (re.test(k)) (t.data as Float32Array).forEach((_, i, a) => (a[i] = around + Math.sin(i * 1.3 + k.length) * 0.2));
}

const setups: [string, boolean][] = [
  ['one IA³ (key, value, ffn_in, ffn_out) + head', false],
  ['IA³ × IA³ stacked with a bottleneck adapter and LoRA', true],
];

test.each(setups)('training graph gradients match finite differences: %s', async (_label, stacked) => {
  const base = await liveTinyBase();
  const a = initModule(base, { kind: 'ia3', id: 'a/ia3', config: { target_modules: ['key', 'value', 'ffn_in', 'ffn_out'] }, head: { type: 'classification', labels: ['x', 'y', 'z'] }, seed: 1 });
  perturb(a.tensors, /ia3_l$/, 1);
  perturb(a.tensors, /^head\..*bias$/, 0);
  const modules: SlotModule[] = [{ manifest: a.manifest, tensors: a.tensors, trainable: true }];
  if (stacked) {
    const b = initModule(base, { kind: 'ia3', id: 'a/ia3b', config: { target_modules: ['value', 'ffn_out', 'attn_output'], leave_out: [0] }, seed: 2 });
    perturb(b.tensors, /ia3_l$/, 1);
    const ad = initModule(base, { kind: 'bottleneck', id: 'a/ad', config: { preset: 'seq_bn', reduction_factor: 4 }, seed: 3 });
    const lo = initModule(base, { kind: 'lora', id: 'a/lo', config: { r: 2, target_modules: ['value', 'ffn_out'] }, seed: 4 });
    perturb(lo.tensors, /lora_B$/, 0);
    modules.unshift({ manifest: ad.manifest, tensors: ad.tensors, trainable: false }, { manifest: lo.manifest, tensors: lo.tensors, trainable: false }, { manifest: b.manifest, tensors: b.tensors, trainable: true });
  }
  const tg = buildTrainGraph({ base, modules, objective: 'cls' });
  expect(tg.variant.ia3?.length).toBeGreaterThan(0);
  const ia3Params = tg.params.filter((p) => p.endsWith('.ia3_l'));
  expect(ia3Params.length).toBe(stacked ? 4 * 2 + 3 : 4 * 2);
  const s = await Session.create(tg.bytes, { threads: 1 });
  const enc = await base.tokenizer.encodeBatch(['the cat and dog', 'red river']);
  const T = enc.length;
  const i64 = (x: ArrayLike<number>, dims: number[]): HostTensor => ({ type: 'int64', dims, data: BigInt64Array.from(Array.from(x, (v) => BigInt(v))) });
  const feeds: Record<string, HostTensor> = {
    input_ids: i64(enc.inputIds, [2, T]), position_ids: i64(enc.positionIds, [2, T]), token_type_ids: i64(enc.tokenTypeIds, [2, T]),
    attention_mask: { type: 'float32', dims: [2, T], data: Float32Array.from(enc.attentionMask) },
    labels: i64([1, 2], [2, 1]), label_weights: { type: 'float32', dims: [2, 1], data: Float32Array.from([0.5, 0.5]) }, ...tg.indexFeeds(2),
  };
  for (const p of tg.params) {
    const m = /^m(\d+):(.*)$/.exec(p)!;
    const t = modules[Number(m[1])].tensors.get(m[2])!;
    feeds[p] = { type: 'float32', dims: t.shape, data: t.data as Float32Array };
  }
  const r = await s.run(feeds, ['loss', ...tg.gradNames]);
  let worst = 0;
  let seen = 0;
  for (let k = 0; k < tg.params.length; k++) {
    if (!tg.params[k].endsWith('.ia3_l')) continue;
    const x = feeds[tg.params[k]].data as Float32Array;
    const ga = r[tg.gradNames[k]].data as Float32Array;
    let maxd = 0;
    let maxg = 0;
    for (let i = 0; i < Math.min(x.length, 4); i++) {
      const j = (i * 7919 + 13) % x.length;
      const x0 = x[j];
      x[j] = x0 + 1e-2;
      const lp = ((await s.run(feeds, ['loss'])).loss.data as Float32Array)[0];
      x[j] = x0 - 1e-2;
      const lm = ((await s.run(feeds, ['loss'])).loss.data as Float32Array)[0];
      x[j] = x0;
      const num = (lp - lm) / 2e-2;
      maxd = Math.max(maxd, Math.abs(num - ga[j]) / Math.max(1, Math.abs(num)));
      maxg = Math.max(maxg, Math.abs(num));
    }
    seen += maxg > 1e-6 ? 1 : 0;
    worst = Math.max(worst, maxd);
    console.log(`${tg.params[k]}: maxdiff ${maxd.toExponential(2)} (max |grad| ${maxg.toExponential(2)})`);
  }
  await s.release();
  expect(worst).toBeLessThan(5e-3);
  // every vector reaches the loss (a vector wired nowhere would have zero gradient)
  expect(seen).toBe(ia3Params.length);
});
