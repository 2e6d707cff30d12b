/**
 * Sanity tests of the oracle itself (test/reference/encoder.ts): identities that must hold exactly or to
 * rounding when the semantics are wired right, two independent paths that must agree, and a hand-computed
 * 1-layer D=2 example. Each would fail on a plausible wiring mistake.
 */
import type { Tensor } from '../../modules-store/safetensors';
import { RefComposition, RefForwardArgs, RefModule, fromRequestComposition, referenceForward, resolveBnConfig } from '../reference/encoder';
import { erf } from '../reference/ops';
import { compareToReference, expectMatchesReference } from '../reference/compare';
import { SiteNode, adapterSite, invertibleForward, loadBottleneck, loadFusion } from '../reference/modules';
import {
  Family,
  RefBase,
  baseParamShapes,
  cloneModule,
  fillTensors,
  makeAdapterModule,
  makeBitfitModule,
  makeDiffModule,
  makeFusionModule,
  makeLoraModule,
  makeRefBase,
  normalSampler,
} from '../helpers/modules';

const FAMILIES: Family[] = ['bert', 'roberta', 'distilbert'];
const PRESETS = ['seq_bn', 'double_seq_bn', 'par_bn', 'seq_bn_inv', 'double_seq_bn_inv'];

/** 3 rows × 6 tokens of ids that avoid the pad ids (0 and 1). */
function inputs(V: number, B = 3, T = 6): { ids: number[][]; mask: number[][] } {
  const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => 3 + ((b * 11 + t * 7) % (V - 3))));
  return { ids, mask: ids.map((r) => r.map(() => 1)) };
}

function run(base: RefBase, composition: RefComposition | undefined, extra: Partial<RefForwardArgs> = {}) {
  const { ids, mask } = inputs(base.info.vocab_size);
  return referenceForward({ config: base.config, weights: base.weights, inputIds: ids, attentionMask: mask, composition, outputs: ['hidden', 'mlm'], ...extra });
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  expect(a.shape).toEqual(b.shape);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs((a.data[i] as number) - (b.data[i] as number)));
  return m;
}

function expectClose(a: Tensor, b: Tensor, tol: number): void {
  const d = maxAbsDiff(a, b);
  if (!(d <= tol)) throw new Error(`max |diff| = ${d} > ${tol}`);
}

function expectDifferent(a: Tensor, b: Tensor, atLeast = 1e-4): void {
  const d = maxAbsDiff(a, b);
  if (!(d >= atLeast)) throw new Error(`outputs differ by only ${d}: the module had no visible effect`);
}

/** A copy of `m` whose adapter up-projections (and invertible F/G up-projections) are zero. */
function zeroUp(m: RefModule): RefModule {
  const z = cloneModule(m);
  fillTensors(z, /adapter_up\.(weight|bias)$/);
  if ([...z.tensors.keys()].some((k) => k.startsWith('invertible.'))) fillTensors(z, /^invertible\.[FG]\.up\.(weight|bias)$/);
  return z;
}

function renamed(m: RefModule, id: string): RefModule {
  const c = cloneModule(m);
  c.manifest.id = id;
  return c;
}

describe('ops', () => {
  test('erf matches tabulated values to 1e-14', () => {
    const table: [number, number][] = [
      [0, 0],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [-1.5, -0.9661051464753108],
      [2, 0.9953222650189527],
      [3.5, 0.9999992569016276],
      [5, 0.9999999999984626],
    ];
    for (const [x, y] of table) expect(Math.abs(erf(x) - y)).toBeLessThan(1e-14);
  });
});

describe('hand-computed 1-layer D=2 BERT', () => {
  // One head, F = 2, relu, layer_norm_eps = 1 (so that D = 2 LayerNorms are not just ±1), identity Q/K/FFN.
  const f = (shape: number[], v: number[]): Tensor => ({ dtype: 'F32', shape, data: Float32Array.from(v) });
  const I2 = [1, 0, 0, 1];
  const Z2 = [0, 0];
  const weights = new Map<string, Tensor>([
    ['bert.embeddings.word_embeddings.weight', f([3, 2], [1, 0, 0, 2, 0, 0])],
    ['bert.embeddings.position_embeddings.weight', f([4, 2], [0, 0, 0, 0, 0, 0, 0, 0])],
    ['bert.embeddings.token_type_embeddings.weight', f([1, 2], Z2)],
    ['bert.embeddings.LayerNorm.weight', f([2], [1, 1])],
    ['bert.embeddings.LayerNorm.bias', f([2], Z2)],
    ['bert.encoder.layer.0.attention.self.query.weight', f([2, 2], I2)],
    ['bert.encoder.layer.0.attention.self.query.bias', f([2], Z2)],
    ['bert.encoder.layer.0.attention.self.key.weight', f([2, 2], I2)],
    ['bert.encoder.layer.0.attention.self.key.bias', f([2], Z2)],
    ['bert.encoder.layer.0.attention.self.value.weight', f([2, 2], [2, 0, 0, 1])],
    ['bert.encoder.layer.0.attention.self.value.bias', f([2], [0, 0.5])],
    ['bert.encoder.layer.0.attention.output.dense.weight', f([2, 2], I2)],
    ['bert.encoder.layer.0.attention.output.dense.bias', f([2], Z2)],
    ['bert.encoder.layer.0.attention.output.LayerNorm.weight', f([2], [1, 1])],
    ['bert.encoder.layer.0.attention.output.LayerNorm.bias', f([2], Z2)],
    ['bert.encoder.layer.0.intermediate.dense.weight', f([2, 2], I2)],
    ['bert.encoder.layer.0.intermediate.dense.bias', f([2], [0.25, -0.5])],
    ['bert.encoder.layer.0.output.dense.weight', f([2, 2], [1, 0, 0, 3])],
    ['bert.encoder.layer.0.output.dense.bias', f([2], Z2)],
    ['bert.encoder.layer.0.output.LayerNorm.weight', f([2], [2, 1])],
    ['bert.encoder.layer.0.output.LayerNorm.bias', f([2], [0, 0.5])],
  ]);
  const config = {
    model_type: 'bert', hidden_size: 2, num_hidden_layers: 1, num_attention_heads: 1, intermediate_size: 2, vocab_size: 3,
    max_position_embeddings: 4, type_vocab_size: 1, hidden_act: 'relu', layer_norm_eps: 1,
  };
  // LayerNorm of [a, b] with eps = 1: ±(a − b)/2 / sqrt(((a − b)/2)² + 1), then weight and bias
  const ln = (v: number[], w = [1, 1], b = [0, 0]) => {
    const d = (v[0] - v[1]) / 2;
    const s = Math.sqrt(d * d + 1);
    return [(d / s) * w[0] + b[0], (-d / s) * w[1] + b[1]];
  };
  const relu = (x: number) => Math.max(0, x);

  function expected(tokens: number[], mask: number[]): number[][] {
    const word = [[1, 0], [0, 2], [0, 0]];
    const e = tokens.map((t) => ln(word[t]));
    const v = e.map((x) => [2 * x[0], x[1] + 0.5]);
    return e.map((qi) => {
      const s = e.map((kj, j) => (mask[j] ? (qi[0] * kj[0] + qi[1] * kj[1]) / Math.SQRT2 : -Infinity));
      const mx = Math.max(...s);
      const ex = s.map((x) => Math.exp(x - mx));
      const z = ex.reduce((a, b) => a + b, 0);
      const ctx = [0, 1].map((d) => ex.reduce((acc, p, j) => acc + (p / z) * v[j][d], 0));
      const a = ln([ctx[0] + qi[0], ctx[1] + qi[1]]);
      const h = [relu(a[0] + 0.25), relu(a[1] - 0.5)];
      const o = [h[0] + a[0], 3 * h[1] + a[1]];
      return ln(o, [2, 1], [0, 0.5]);
    });
  }

  test('matches the scalar derivation, with and without a padded key', () => {
    for (const mask of [[1, 1, 1], [1, 1, 0]]) {
      const out = referenceForward({ config, weights, inputIds: [[0, 1, 2]], attentionMask: [mask], outputs: ['hidden'] });
      const want = expected([0, 1, 2], mask);
      for (let t = 0; t < 3; t++) {
        if (!mask[t]) continue;
        for (let d = 0; d < 2; d++) expect(Math.abs((out.hidden!.data[t * 2 + d] as number) - want[t][d])).toBeLessThan(1e-6);
      }
    }
  });
});

describe.each(FAMILIES)('%s base', (family) => {
  const base = makeRefBase({ family, seed: 11 });
  const info = base.info;
  const bare = run(base, undefined);

  test('names with and without the model prefix give the same outputs', () => {
    const unprefixed = makeRefBase({ family, seed: 11, prefixed: false });
    const out = run(unprefixed, undefined);
    expect(out.hidden!.data).toEqual(bare.hidden!.data);
    expect(out.mlm!.data).toEqual(bare.mlm!.data);
  });

  test('padding a row does not change its unpadded outputs (bare and with adapters)', () => {
    const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'double_seq_bn', config: { reduction_factor: 4 }, seed: 3 });
    const pad = Number(base.config.pad_token_id);
    for (const comp of [undefined, a] as (RefComposition | undefined)[]) {
      const row = [5, 9, 17, 4];
      const alone = referenceForward({ config: base.config, weights: base.weights, inputIds: [row], attentionMask: [[1, 1, 1, 1]], composition: comp, outputs: ['hidden', 'mlm'] });
      const padded = referenceForward({
        config: base.config, weights: base.weights,
        inputIds: [[7, 8, 9, 10, 11, 12], [...row, pad, pad]],
        attentionMask: [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]],
        composition: comp, outputs: ['hidden', 'mlm'],
      });
      const D = info.hidden_size;
      const V = info.vocab_size;
      for (let t = 0; t < 4; t++) {
        for (let d = 0; d < D; d++) expect(Math.abs((padded.hidden!.data[(6 + t) * D + d] as number) - (alone.hidden!.data[t * D + d] as number))).toBeLessThan(1e-5);
        for (let v = 0; v < V; v++) expect(Math.abs((padded.mlm!.data[(6 + t) * V + v] as number) - (alone.mlm!.data[t * V + v] as number))).toBeLessThan(1e-5);
      }
    }
  });

  test('a fully padded row gives finite outputs', () => {
    const out = referenceForward({ config: base.config, weights: base.weights, inputIds: [[5, 6, 7]], attentionMask: [[0, 0, 0]], outputs: ['hidden'] });
    expect(Array.from(out.hidden!.data as Float32Array).every(Number.isFinite)).toBe(true);
  });

  test.each(PRESETS)('a zero-up %s adapter reduces exactly to the bare base', (preset) => {
    const a = makeAdapterModule({ id: 'task/a', base: info, preset, config: { reduction_factor: 4 }, seed: 5 });
    const out = run(base, zeroUp(a));
    expect(out.hidden!.data).toEqual(bare.hidden!.data);
    expect(out.mlm!.data).toEqual(bare.mlm!.data);
    // and the random one does something
    expectDifferent(run(base, a).hidden!, bare.hidden!);
  });

  test('the invertible adapter inverse inverts it', () => {
    const a = makeAdapterModule({ id: 'lang/x', base: info, preset: 'seq_bn_inv', config: { non_linearity: 'gelu' }, seed: 6, scale: 0.5 });
    const ad = loadBottleneck(a, info.hidden_size, info.num_layers);
    const N = 5;
    const rnd = normalSampler(9);
    const x = Float64Array.from({ length: N * info.hidden_size }, () => rnd());
    const y = invertibleForward(ad, x, N);
    let moved = 0;
    for (let i = 0; i < x.length; i++) moved = Math.max(moved, Math.abs(y[i] - x[i]));
    expect(moved).toBeGreaterThan(1e-2);
    const back = invertibleForward(ad, y, N, true);
    for (let i = 0; i < x.length; i++) expect(Math.abs(back[i] - x[i])).toBeLessThan(1e-12);
  });

  test('LoRA with B = 0 and all-zero diffs equal the bare base exactly', () => {
    const lora = fillTensors(makeLoraModule({ id: 'task/l', base: info, r: 4, lora_alpha: 8, target_modules: ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'], seed: 7 }), /lora_B$/);
    const targets = baseParamShapes(info, { maxPositions: Number((base.config.max_position_embeddings as number) ?? 64) });
    const sparse = fillTensors(makeDiffModule({ id: 'sft/z', base: info, targets: targets.slice(0, 12), density: 0.3, seed: 8 }), /\.values$/);
    const dense = fillTensors(makeDiffModule({ id: 'sft/d', base: info, targets: targets.slice(4, 20), dense: true, seed: 9 }), /\.dense$/);
    const out = run(base, { stack: [{ sum: [sparse, dense] }, lora] });
    expect(out.hidden!.data).toEqual(bare.hidden!.data);
    expect(out.mlm!.data).toEqual(bare.mlm!.data);
  });

  test('a LoRA equals the dense diff δW = (alpha/r)·B·A on each adapted weight', () => {
    const targets = ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'] as const;
    const r = 3;
    const alpha = 6;
    const lora = makeLoraModule({ id: 'task/l', base: info, r, lora_alpha: alpha, target_modules: [...targets], leave_out: [1], seed: 10, scale: 0.2 });
    const names = (l: number): Record<(typeof targets)[number], string> =>
      family === 'distilbert'
        ? { query: `distilbert.transformer.layer.${l}.attention.q_lin`, key: `distilbert.transformer.layer.${l}.attention.k_lin`, value: `distilbert.transformer.layer.${l}.attention.v_lin`, attn_output: `distilbert.transformer.layer.${l}.attention.out_lin`, ffn_in: `distilbert.transformer.layer.${l}.ffn.lin1`, ffn_out: `distilbert.transformer.layer.${l}.ffn.lin2` }
        : { query: `${family}.encoder.layer.${l}.attention.self.query`, key: `${family}.encoder.layer.${l}.attention.self.key`, value: `${family}.encoder.layer.${l}.attention.self.value`, attn_output: `${family}.encoder.layer.${l}.attention.output.dense`, ffn_in: `${family}.encoder.layer.${l}.intermediate.dense`, ffn_out: `${family}.encoder.layer.${l}.output.dense` };
    const tensors = new Map<string, Tensor>();
    for (const tg of targets) {
      const A = lora.tensors.get(`layers.0.${tg}.lora_A`)!;
      const B = lora.tensors.get(`layers.0.${tg}.lora_B`)!;
      const [O] = B.shape;
      const I = A.shape[1];
      const d = new Float32Array(O * I);
      for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += (B.data[o * r + k] as number) * (A.data[k * I + i] as number);
        d[o * I + i] = (alpha / r) * s;
      }
      tensors.set(`${names(0)[tg]}.weight.dense`, { dtype: 'F32', shape: [O, I], data: d });
    }
    const diff: RefModule = { manifest: { ...cloneModule(lora).manifest, id: 'sft/merged', kind: 'diff', config: { method: 'custom' } }, tensors };
    const viaLora = run(base, lora);
    const viaDiff = run(base, diff);
    expectDifferent(viaLora.hidden!, bare.hidden!);
    expectClose(viaLora.hidden!, viaDiff.hidden!, 2e-5);
    expectClose(viaLora.mlm!, viaDiff.mlm!, 2e-5);
  });

  test('sparse and dense forms of the same diff agree exactly; sum adds diffs', () => {
    const targets = baseParamShapes(info, { maxPositions: Number(base.config.max_position_embeddings) }).filter((p) => !p.name.includes('word_embeddings'));
    const d1 = makeDiffModule({ id: 'sft/lang', base: info, targets, density: 0.2, seed: 12 });
    const toDense = (m: RefModule, id: string): RefModule => {
      const t = new Map<string, Tensor>();
      for (const p of targets) {
        const idx = m.tensors.get(`${p.name}.index`);
        if (!idx) continue;
        const vals = m.tensors.get(`${p.name}.values`)!;
        const d = new Float32Array(p.shape.reduce((a, b) => a * b, 1));
        (idx.data as BigInt64Array).forEach((i, j) => (d[Number(i)] = vals.data[j] as number));
        t.set(`${p.name}.dense`, { dtype: 'F32', shape: p.shape, data: d });
      }
      return { manifest: { ...m.manifest, id }, tensors: t };
    };
    const sparseOut = run(base, d1);
    expectDifferent(sparseOut.hidden!, bare.hidden!);
    const denseOut = run(base, toDense(d1, 'sft/lang-dense'));
    expect(denseOut.hidden!.data).toEqual(sparseOut.hidden!.data);

    const d2 = makeDiffModule({ id: 'sft/task', base: info, targets, density: 0.2, seed: 13, indexDtype: 'I32' });
    const summed = run(base, { sum: [d1, d2] });
    const t = new Map<string, Tensor>();
    for (const p of targets) {
      const d = new Float32Array(p.shape.reduce((a, b) => a * b, 1));
      for (const m of [d1, d2]) {
        const idx = m.tensors.get(`${p.name}.index`);
        if (!idx) continue;
        const vals = m.tensors.get(`${p.name}.values`)!;
        Array.from(idx.data as ArrayLike<number | bigint>).forEach((i, j) => (d[Number(i)] += vals.data[j] as number));
      }
      t.set(`${p.name}.dense`, { dtype: 'F32', shape: p.shape, data: d });
    }
    const oneDiff = run(base, { manifest: { ...d1.manifest, id: 'sft/both' }, tensors: t });
    expectClose(summed.hidden!, oneDiff.hidden!, 1e-5);
  });

  test('a diff of word-embedding rows not in the input changes only those MLM logits (tied decoder)', () => {
    const V = info.vocab_size;
    const D = info.hidden_size;
    const { ids } = inputs(V);
    const used = new Set(ids.flat());
    const unused = Array.from({ length: V }, (_, i) => i).filter((i) => !used.has(i) && i > 2).slice(0, 3);
    expect(unused.length).toBeGreaterThan(0);
    const prefix = family === 'bert' ? 'bert.' : family === 'distilbert' ? 'distilbert.' : 'roberta.';
    const rnd = normalSampler(14);
    const idx: number[] = [];
    for (const v of unused) for (let d = 0; d < D; d++) idx.push(v * D + d);
    const diff: RefModule = {
      manifest: { ...makeBitfitModule({ id: 'sft/emb', base: info, seed: 1 }).manifest, config: { method: 'custom' } },
      tensors: new Map<string, Tensor>([
        [`${prefix}embeddings.word_embeddings.weight.index`, { dtype: 'I64', shape: [idx.length], data: BigInt64Array.from(idx.map(BigInt)) }],
        [`${prefix}embeddings.word_embeddings.weight.values`, { dtype: 'F32', shape: [idx.length], data: Float32Array.from(idx, () => rnd()) }],
      ]),
    };
    const out = run(base, diff);
    expect(out.hidden!.data).toEqual(bare.hidden!.data);
    for (let n = 0; n < out.mlm!.data.length / V; n++) {
      for (let v = 0; v < V; v++) {
        const changed = out.mlm!.data[n * V + v] !== bare.mlm!.data[n * V + v];
        expect(changed).toBe(unused.includes(v));
      }
    }
  });

  test('BitFit changes the outputs; a module masked_lm head holding the base head weights equals the base MLM head', () => {
    expectDifferent(run(base, makeBitfitModule({ id: 'task/bitfit', base: info, seed: 15 })).hidden!, bare.hidden!);
    const names = ({
      bert: ['cls.predictions.transform.dense', 'cls.predictions.transform.LayerNorm', 'cls.predictions.bias'],
      roberta: ['lm_head.dense', 'lm_head.layer_norm', 'lm_head.bias'],
      distilbert: ['vocab_transform', 'vocab_layer_norm', 'vocab_projector.bias'],
    } as Record<string, string[]>)[family];
    const a = zeroUp(makeAdapterModule({ id: 'lang/mlm', base: info, preset: 'seq_bn', head: { type: 'masked_lm' }, seed: 16 }));
    const w = (n: string) => base.weights.get(n)!;
    a.tensors.set('head.transform.dense.weight', w(names[0] + '.weight'));
    a.tensors.set('head.transform.dense.bias', w(names[0] + '.bias'));
    a.tensors.set('head.transform.layer_norm.weight', w(names[1] + '.weight'));
    a.tensors.set('head.transform.layer_norm.bias', w(names[1] + '.bias'));
    a.tensors.set('head.decoder.bias', w(names[2]));
    const out = run(base, a, { outputs: ['head', 'mlm'] });
    expect(out.headType).toBe('masked_lm');
    expect(out.head!.data).toEqual(bare.mlm!.data);
    expect(out.mlm!.data).toEqual(bare.mlm!.data);
  });
});

describe('BERT families agree where HF says they must', () => {
  test('RoBERTa positions are padding_idx + 1 + t: equals BERT with the position table shifted by 2', () => {
    const rob = makeRefBase({ family: 'roberta', seed: 21 });
    const weights = new Map<string, Tensor>();
    for (const [k, t] of rob.weights) {
      if (!k.startsWith('roberta.')) continue;
      weights.set(k.replace(/^roberta\./, 'bert.'), t);
    }
    const pos = rob.weights.get('roberta.embeddings.position_embeddings.weight')!;
    const D = rob.info.hidden_size;
    weights.set('bert.embeddings.position_embeddings.weight', { dtype: 'F32', shape: [pos.shape[0] - 2, D], data: (pos.data as Float32Array).slice(2 * D) });
    const config = { ...rob.config, model_type: 'bert', max_position_embeddings: pos.shape[0] - 2 };
    const { ids, mask } = inputs(rob.info.vocab_size);
    const a = referenceForward({ config: rob.config, weights: rob.weights, inputIds: ids, attentionMask: mask, outputs: ['hidden'] });
    const b = referenceForward({ config, weights, inputIds: ids, attentionMask: mask, outputs: ['hidden'] });
    expect(a.hidden!.data).toEqual(b.hidden!.data);
  });

  test('DistilBERT equals BERT with the same weights under DistilBERT names and a zero token-type row', () => {
    const bert = makeRefBase({ family: 'bert', seed: 22 });
    const D = bert.info.hidden_size;
    const weights = new Map(bert.weights);
    weights.set('bert.embeddings.token_type_embeddings.weight', { dtype: 'F32', shape: [2, D], data: new Float32Array(2 * D) });
    const map: [RegExp, string][] = [
      [/^bert\.embeddings\./, 'distilbert.embeddings.'],
      [/^bert\.encoder\.layer\.(\d+)\.attention\.self\.query\./, 'distilbert.transformer.layer.$1.attention.q_lin.'],
      [/^bert\.encoder\.layer\.(\d+)\.attention\.self\.key\./, 'distilbert.transformer.layer.$1.attention.k_lin.'],
      [/^bert\.encoder\.layer\.(\d+)\.attention\.self\.value\./, 'distilbert.transformer.layer.$1.attention.v_lin.'],
      [/^bert\.encoder\.layer\.(\d+)\.attention\.output\.dense\./, 'distilbert.transformer.layer.$1.attention.out_lin.'],
      [/^bert\.encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\./, 'distilbert.transformer.layer.$1.sa_layer_norm.'],
      [/^bert\.encoder\.layer\.(\d+)\.intermediate\.dense\./, 'distilbert.transformer.layer.$1.ffn.lin1.'],
      [/^bert\.encoder\.layer\.(\d+)\.output\.dense\./, 'distilbert.transformer.layer.$1.ffn.lin2.'],
      [/^bert\.encoder\.layer\.(\d+)\.output\.LayerNorm\./, 'distilbert.transformer.layer.$1.output_layer_norm.'],
      [/^cls\.predictions\.transform\.dense\./, 'vocab_transform.'],
      [/^cls\.predictions\.transform\.LayerNorm\./, 'vocab_layer_norm.'],
      [/^cls\.predictions\.bias$/, 'vocab_projector.bias'],
    ];
    const dweights = new Map<string, Tensor>();
    for (const [k, t] of weights) {
      const m = map.find(([re]) => re.test(k));
      if (m) dweights.set(k.replace(m[0], m[1]), t);
    }
    dweights.delete('distilbert.embeddings.token_type_embeddings.weight');
    const c = bert.config as Record<string, number | string>;
    const dconfig = { model_type: 'distilbert', dim: D, n_layers: c.num_hidden_layers, n_heads: c.num_attention_heads, hidden_dim: c.intermediate_size, vocab_size: c.vocab_size, max_position_embeddings: c.max_position_embeddings, activation: 'gelu' };
    const { ids } = inputs(bert.info.vocab_size);
    const mask = ids.map((r) => r.map((_, t) => (t < 4 ? 1 : 0)));
    const a = referenceForward({ config: bert.config, weights, inputIds: ids, attentionMask: mask, outputs: ['hidden', 'mlm'] });
    const b = referenceForward({ config: dconfig, weights: dweights, inputIds: ids, attentionMask: mask, outputs: ['hidden', 'mlm'] });
    expectClose(a.hidden!, b.hidden!, 1e-6);
    expectClose(a.mlm!, b.mlm!, 1e-5);
  });
});

describe('bottleneck semantics (AdapterHub)', () => {
  const base = makeRefBase({ family: 'bert', seed: 31 });
  const info = base.info;

  test('presets resolve to the AdapterHub adapter_config.py defaults; explicit fields override', () => {
    expect(resolveBnConfig({ preset: 'seq_bn' })).toMatchObject({ original_ln_before: true, original_ln_after: true, residual_before_ln: true, mh_adapter: false, output_adapter: true, non_linearity: 'relu', reduction_factor: 16, scaling: 1, is_parallel: false, inv_adapter: null });
    expect(resolveBnConfig({ preset: 'double_seq_bn' })).toMatchObject({ original_ln_before: false, original_ln_after: true, mh_adapter: true, output_adapter: true, non_linearity: 'swish', reduction_factor: 16 });
    expect(resolveBnConfig({ preset: 'par_bn' })).toMatchObject({ is_parallel: true, reduction_factor: 2, scaling: 4, original_ln_before: false, original_ln_after: true, non_linearity: 'relu', mh_adapter: false, output_adapter: true });
    expect(resolveBnConfig({ preset: 'seq_bn_inv', non_linearity: 'gelu', reduction_factor: 2 })).toMatchObject({ inv_adapter: 'nice', inv_adapter_reduction_factor: 2, non_linearity: 'gelu', reduction_factor: 2, original_ln_before: true });
    expect(() => resolveBnConfig({ mh_adapter: true })).toThrow(/output_adapter/);
  });

  test('seq_bn at one site is LN(up(relu(down(LN(h + x)))) + h + x): checked through the parallel/sequential identity', () => {
    // A sequential adapter with original_ln_before=false and residual_before_ln=true computes
    // LN(h + up(act(down(h))) + x); a parallel one computes LN(h + s·up(act(down(x))) + x). They differ only in
    // the adapter input, so the same weights must give different outputs, and scaling must matter for par_bn.
    const seq = makeAdapterModule({ id: 'task/s', base: info, preset: 'double_seq_bn', config: { mh_adapter: false, non_linearity: 'relu', reduction_factor: 2 }, seed: 32 });
    const par = cloneModule(seq);
    par.manifest.config = { preset: 'par_bn', scaling: 1.0 };
    const par4 = cloneModule(seq);
    par4.manifest.config = { preset: 'par_bn' };
    const a = run(base, seq).hidden!;
    const b = run(base, par).hidden!;
    const c = run(base, par4).hidden!;
    expectDifferent(a, b);
    expectDifferent(b, c);
  });

  test('stacking: stack(a) = a; a zero-up seq_bn on top of a is a no-op; stack order matters', () => {
    const a = makeAdapterModule({ id: 'lang/a', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, seed: 33 });
    const b = makeAdapterModule({ id: 'task/b', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, seed: 34 });
    const alone = run(base, a);
    expect(run(base, { stack: [a] }).hidden!.data).toEqual(alone.hidden!.data);
    expect(run(base, { stack: [a, zeroUp(b)] }).hidden!.data).toEqual(alone.hidden!.data);
    expectDifferent(run(base, { stack: [a, b] }).hidden!, run(base, { stack: [b, a] }).hidden!);
  });

  test('MAD-X: the invertible adapter of the first module that has one runs at the embeddings and inverts before the MLM decoder', () => {
    const lang = makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2, non_linearity: 'gelu' }, seed: 35 });
    const task = makeAdapterModule({ id: 'task/t', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 3 }, seed: 36 });
    const noInv = cloneModule(lang);
    fillTensors(noInv, /^invertible\.[FG]\.up\./);
    const withInv = run(base, { stack: [lang, task] }, { outputs: ['hidden', 'head', 'mlm'] });
    const without = run(base, { stack: [noInv, task] }, { outputs: ['hidden', 'head', 'mlm'] });
    expectDifferent(withInv.hidden!, without.hidden!);
    expect(withInv.headType).toBe('classification');
    expect(withInv.head!.shape).toEqual([3, 3]);
    // only the lang adapter with zeroed sites: hidden = base encoder on inv(embeddings); MLM = inverse before decoder
    const onlyInv = zeroUp(lang);
    for (const [k, t] of lang.tensors) if (k.startsWith('invertible.')) onlyInv.tensors.set(k, t);
    expectDifferent(run(base, onlyInv).mlm!, run(base, undefined).mlm!);
  });

  test('classification head = out_proj(tanh(dense(hidden[:, 0]))) of the last module with a head', () => {
    const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 2 }, seed: 37 });
    const b = makeAdapterModule({ id: 'task/b', base: info, preset: 'seq_bn', head: { type: 'token_classification', num_labels: 4 }, seed: 38 });
    const out = run(base, { stack: [a, b] }, { outputs: ['hidden', 'head'] });
    expect(out.headType).toBe('token_classification');
    expect(out.head!.shape).toEqual([3, 6, 4]);
    const out2 = run(base, a, { outputs: ['hidden', 'head'] });
    const D = info.hidden_size;
    const W = (n: string) => a.tensors.get(n)!.data as Float32Array;
    for (let r = 0; r < 3; r++) {
      const h = Array.from({ length: D }, (_, d) => out2.hidden!.data[r * 6 * D + d] as number);
      const z = Array.from({ length: D }, (_, o) => Math.tanh(W('head.dense.bias')[o] + h.reduce((s, x, i) => s + x * W('head.dense.weight')[o * D + i], 0)));
      for (let c = 0; c < 2; c++) {
        const want = W('head.out_proj.bias')[c] + z.reduce((s, x, i) => s + x * W('head.out_proj.weight')[c * D + i], 0);
        expect(Math.abs((out2.head!.data[r * 2 + c] as number) - want)).toBeLessThan(1e-5);
      }
    }
  });

  test('fuse over copies of one adapter with an identity value matrix equals that adapter; fusion weights matter otherwise', () => {
    for (const preset of ['seq_bn', 'double_seq_bn', 'par_bn']) {
      const a = makeAdapterModule({ id: 'task/a', base: info, preset, config: { reduction_factor: 4 }, seed: 39 });
      const a2 = renamed(a, 'task/a2');
      const sites = preset === 'double_seq_bn' ? (['attention', 'output'] as const) : (['output'] as const);
      const fusion = makeFusionModule({ id: 'fusion/f', base: info, adapters: ['task/a', 'task/a2'], sites: [...sites], seed: 40 });
      fillTensors(fusion, /value\.weight$/);
      for (const [k, t] of fusion.tensors) if (k.endsWith('value.weight')) for (let i = 0; i < info.hidden_size; i++) (t.data as Float32Array)[i * info.hidden_size + i] = 1;
      const fused = run(base, { fuse: [a, a2], fusion });
      const stat = makeFusionModule({ id: 'fusion/s', base: info, adapters: ['task/a', 'task/a2'], sites: [...sites], dynamic: false, seed: 41 });
      const statOut = run(base, { fuse: [a, a2], fusion: stat });
      if (preset === 'par_bn') {
        // AdapterHub quirk, followed literally: for parallel adapters the fusion residual is the sub-layer input x
        // and ParallelAdapter.post_forward adds h and x again, so Fuse(a, a) gives LN(up + h + 2x) ≠ a alone.
        expectDifferent(fused.hidden!, run(base, a).hidden!);
        expectClose(statOut.hidden!, fused.hidden!, 1e-6);
      } else {
        expectClose(fused.hidden!, run(base, a).hidden!, 1e-6);
        expectClose(statOut.hidden!, run(base, a).hidden!, 1e-6);
      }
      const b = makeAdapterModule({ id: 'task/b', base: info, preset, config: { reduction_factor: 4 }, seed: 42 });
      const f1 = makeFusionModule({ id: 'fusion/f1', base: info, adapters: ['task/a', 'task/b'], sites: [...sites], seed: 43 });
      const f2 = makeFusionModule({ id: 'fusion/f2', base: info, adapters: ['task/a', 'task/b'], sites: [...sites], seed: 44 });
      expectDifferent(run(base, { fuse: [a, b], fusion: f1 }).hidden!, run(base, { fuse: [a, b], fusion: f2 }).hidden!);
    }
  });

  test('a fusion module without the tensors of a site its adapters have is refused, naming the tensor', () => {
    const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'double_seq_bn', seed: 45 });
    const b = makeAdapterModule({ id: 'task/b', base: info, preset: 'double_seq_bn', seed: 46 });
    const fusion = makeFusionModule({ id: 'fusion/f', base: info, adapters: ['task/a', 'task/b'], sites: ['output'], seed: 47 });
    expect(() => run(base, { fuse: [a, b], fusion })).toThrow(/layers\.0\.attention\.query\.weight/);
  });

  test('parallel gives one output per branch, each equal to that branch alone', () => {
    const lang = makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', seed: 48 });
    const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 2 }, seed: 49 });
    const b = makeAdapterModule({ id: 'task/b', base: info, preset: 'double_seq_bn', head: { type: 'token_classification', num_labels: 3 }, seed: 50 });
    const out = run(base, { stack: [lang, { parallel: [a, b] }] }, { outputs: ['hidden', 'head'] });
    expect(out.hidden).toBeUndefined();
    expect(out.branches).toHaveLength(2);
    const one = run(base, { stack: [lang, a] }, { outputs: ['hidden', 'head'] });
    const two = run(base, { stack: [lang, b] }, { outputs: ['hidden', 'head'] });
    expect(out.branches![0].head!.data).toEqual(one.head!.data);
    expect(out.branches![1].head!.data).toEqual(two.head!.data);
    expect(out.branches![1].headType).toBe('token_classification');
  });

  test("average: AdapterHub's torch.mean(stack · w) = Σ w_i h_i / n; 'weighted_sum' of copies equals the adapter", () => {
    const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'seq_bn', seed: 51 });
    const a2 = renamed(a, 'task/a2');
    expect(run(base, { average: [a], weights: [1] }).hidden!.data).toEqual(run(base, a).hidden!.data);
    const ws = run(base, { average: [a, a2], weights: [3, 3] }, { options: { average: 'weighted_sum' } }).hidden!;
    expectClose(ws, run(base, a).hidden!, 1e-6);
    const hub = run(base, { average: [a, a2], weights: [3, 3] }).hidden!;
    expectDifferent(hub, ws);
    const halfByHand = run(base, { average: [a, a2], weights: [0.25, 0.25], normalize_weights: false }, { options: { average: 'weighted_sum' } }).hidden!;
    expectClose(hub, halfByHand, 1e-6);
  });

  test('LoRA, diffs and adapters compose in one stack', () => {
    const d = makeBitfitModule({ id: 'sft/b', base: info, seed: 52 });
    const l = makeLoraModule({ id: 'task/l', base: info, seed: 53 });
    const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'seq_bn', seed: 54 });
    const all = run(base, { stack: [d, l, a] }).hidden!;
    for (const c of [{ stack: [l, a] }, { stack: [d, a] }, { stack: [d, l] }] as RefComposition[]) expectDifferent(all, run(base, c).hidden!);
    expect(() => run(base, { sum: [d, a] })).toThrow(/sum/);
  });

  // Speed is not asserted here (tests never time things on shared machines); this runs the oracle's largest case.
  test('2 layers, D=32, 8 rows × 16 tokens with a MAD-X stack and all outputs run', () => {
    const lang = makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', seed: 55 });
    const task = makeAdapterModule({ id: 'task/t', base: info, preset: 'double_seq_bn', head: { type: 'classification', num_labels: 3 }, seed: 56 });
    const ids = Array.from({ length: 8 }, (_, b) => Array.from({ length: 16 }, (_, t) => 3 + ((b * 5 + t) % 40)));
    const args: RefForwardArgs = { config: base.config, weights: base.weights, inputIds: ids, attentionMask: ids.map((r) => r.map(() => 1)), composition: { stack: [lang, task] }, outputs: ['hidden', 'head', 'mlm'] };
    const out = referenceForward(args);
    expect(out.hidden!.shape).toEqual([8, 16, 32]);
    expect(out.head!.shape).toEqual([8, 3]);
    expect(out.mlm!.shape[0]).toBe(8);
  });
});

describe('one adapter site against the ANCHORS formulas (independent row-wise arithmetic)', () => {
  const D = 8;
  const N = 3;
  const info = { family: 'bert', fingerprint: 'sha256:' + '0'.repeat(64), hidden_size: D, num_layers: 1, vocab_size: 10 };
  const rnd = normalSampler(61);
  const rows = (): number[][] => Array.from({ length: N }, () => Array.from({ length: D }, () => rnd()));
  const h = rows();
  const x = rows();
  const lnW = Array.from({ length: D }, () => 1 + 0.1 * rnd());
  const lnB = Array.from({ length: D }, () => 0.1 * rnd());
  const eps = 1e-12;
  // independent helpers on plain arrays
  const lnRow = (v: number[], w = lnW, b = lnB, e = eps) => {
    const m = v.reduce((a, c) => a + c, 0) / v.length;
    const s = v.reduce((a, c) => a + (c - m) ** 2, 0) / v.length;
    return v.map((c, i) => ((c - m) / Math.sqrt(s + e)) * w[i] + b[i]);
  };
  const plus = (...vs: number[][]) => vs[0].map((_, i) => vs.reduce((a, v) => a + v[i], 0));
  const lin = (v: number[], W: Tensor, b?: Tensor) => {
    const [O, I] = W.shape;
    return Array.from({ length: O }, (_, o) => (b ? (b.data[o] as number) : 0) + v.reduce((a, c, i) => a + c * (W.data[o * I + i] as number), 0));
  };
  const acts: Record<string, (z: number) => number> = { relu: (z) => Math.max(0, z), swish: (z) => z / (1 + Math.exp(-z)), tanh: Math.tanh };
  const bottleneck = (m: RefModule, v: number[], act: string, s = 1) => {
    const p = 'layers.0.output.';
    const t = (n: string) => m.tensors.get(p + n)!;
    const down = lin(v, t('adapter_down.weight'), t('adapter_down.bias')).map(acts[act]);
    return lin(down, t('adapter_up.weight'), t('adapter_up.bias')).map((z) => z * s);
  };
  const toMat = (r: number[][]) => Float64Array.from(r.flat());
  const ctx = { N, D, layer: 0, site: 'output' as const, ln: (m: Float64Array) => toMat(Array.from({ length: N }, (_, n) => lnRow(Array.from(m.slice(n * D, (n + 1) * D))))), average: 'adapterhub' as const };
  const site = (root: SiteNode) => adapterSite(root, toMat(h), toMat(x), ctx);
  const leaf = (m: RefModule): SiteNode => ({ kind: 'adapter', adapter: loadBottleneck(m, D, 1) });
  const check = (got: Float64Array, want: number[][]) => {
    for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) expect(Math.abs(got[n * D + d] - want[n][d])).toBeLessThan(1e-10);
  };
  const mk = (config: Record<string, unknown>, seed: number, preset = 'seq_bn') => makeAdapterModule({ id: `t/a${seed}`, base: info, preset, config: { reduction_factor: 2, ...config }, seed, scale: 0.5 });

  test('seq_bn: LN(up(relu(down(LN(h + x)))) + h + x)', () => {
    const a = mk({}, 1);
    check(site(leaf(a)), h.map((hn, n) => lnRow(plus(bottleneck(a, lnRow(plus(hn, x[n])), 'relu'), hn, x[n]))));
  });
  test('double_seq_bn (output site): LN(up(swish(down(h))) + h + x)', () => {
    const a = mk({ mh_adapter: false }, 2, 'double_seq_bn');
    check(site(leaf(a)), h.map((hn, n) => lnRow(plus(bottleneck(a, hn, 'swish'), hn, x[n]))));
  });
  test('par_bn: LN(h + 4·up(relu(down(x))) + x)', () => {
    const a = mk({}, 3, 'par_bn');
    check(site(leaf(a)), h.map((hn, n) => lnRow(plus(hn, bottleneck(a, x[n], 'relu', 4), x[n]))));
  });
  test('residual_before_ln=false: the residual is LN(h + x)', () => {
    const a = mk({ residual_before_ln: false }, 4);
    check(site(leaf(a)), h.map((hn, n) => { const y = lnRow(plus(hn, x[n])); return lnRow(plus(bottleneck(a, y, 'relu'), y, x[n])); }));
  });
  test("residual_before_ln='post_add': the residual is h + x", () => {
    const a = mk({ residual_before_ln: 'post_add' }, 5);
    check(site(leaf(a)), h.map((hn, n) => lnRow(plus(bottleneck(a, lnRow(plus(hn, x[n])), 'relu'), hn, x[n], x[n]))));
  });
  test('ln_after (eps 1e-5) then the residual; original_ln_after=false returns the adapter output', () => {
    const a = mk({ ln_after: true, original_ln_after: false, non_linearity: 'tanh' }, 6);
    const w = Array.from(a.tensors.get('layers.0.output.ln_after.weight')!.data as Float32Array);
    const b = Array.from(a.tensors.get('layers.0.output.ln_after.bias')!.data as Float32Array);
    check(site(leaf(a)), h.map((hn, n) => plus(lnRow(bottleneck(a, lnRow(plus(hn, x[n])), 'tanh'), w, b, 1e-5), hn)));
  });
  test('stack(a, b): b re-runs the original LN on a’s output, residual = a’s output, one final LN', () => {
    const a = mk({}, 7);
    const b = mk({}, 8);
    check(site({ kind: 'stack', children: [leaf(a), leaf(b)] }), h.map((hn, n) => {
      const outA = plus(bottleneck(a, lnRow(plus(hn, x[n])), 'relu'), hn);
      return lnRow(plus(bottleneck(b, lnRow(plus(outA, x[n])), 'relu'), outA, x[n]));
    }));
  });
  test('fuse(a, b): softmax over (W_q q)·(W_k up_i), context Σ p_i W_v up_i + residual, then LN(· + x)', () => {
    const a = mk({}, 9);
    const b = mk({}, 10);
    const fm = makeFusionModule({ id: 'f/f', base: info, adapters: ['t/a9', 't/a10'], seed: 11, scale: 0.3, temperature: 2 });
    const fusion = loadFusion(fm, D, 1);
    const ft = (n: string) => fm.tensors.get('layers.0.output.' + n)!;
    check(site({ kind: 'fuse', children: [leaf(a), leaf(b)], fusion }), h.map((hn, n) => {
      const q = lnRow(plus(hn, x[n]));
      const ups = [bottleneck(a, q, 'relu'), bottleneck(b, q, 'relu')];
      const qq = lin(q, ft('query.weight'), ft('query.bias'));
      const sc = ups.map((u) => lin(u, ft('key.weight'), ft('key.bias')).reduce((acc, k, i) => acc + k * qq[i], 0) / 2);
      const z = Math.exp(sc[0]) + Math.exp(sc[1]);
      const vs = ups.map((u) => lin(u, ft('value.weight')));
      const c = vs[0].map((_, i) => (Math.exp(sc[0]) / z) * vs[0][i] + (Math.exp(sc[1]) / z) * vs[1][i]);
      return lnRow(plus(c, hn, x[n]));
    }));
  });
  test('average(a, b; w): pre-step of a once, Σ w_i (up_i + h) / 2, then LN(· + x)', () => {
    const a = mk({}, 12);
    const b = mk({}, 13);
    check(site({ kind: 'average', children: [leaf(a), leaf(b)], weights: [0.25, 0.75] }), h.map((hn, n) => {
      const y = lnRow(plus(hn, x[n]));
      const oa = plus(bottleneck(a, y, 'relu'), hn);
      const ob = plus(bottleneck(b, y, 'relu'), hn);
      return lnRow(plus(oa.map((v, i) => (0.25 * v + 0.75 * ob[i]) / 2), x[n]));
    }));
  });
});

describe('compareToReference', () => {
  test('passes within rtol/atol, fails outside, naming the element', () => {
    expect(compareToReference([1, 100, 0], [1.00005, 100.009, 0.000005]).ok).toBe(true);
    expect(compareToReference([1, 100], [1, 100.02]).ok).toBe(false);
    expect(() => expectMatchesReference([0, 2], [0, 2.1], 'logits')).toThrow(/logits: element 1 is 2/);
    expect(() => compareToReference({ dtype: 'F32', shape: [2], data: new Float32Array(2) }, { dtype: 'F32', shape: [1, 2], data: new Float32Array(2) })).toThrow(/shape/);
  });
});

describe('fromRequestComposition', () => {
  test('resolves refs and blocks; an unknown ref is named', () => {
    const base = makeRefBase({ family: 'bert', seed: 71 });
    const a = makeAdapterModule({ id: 'lang/de', base: base.info, preset: 'seq_bn', seed: 72 });
    const b = makeAdapterModule({ id: 'task/t', base: base.info, preset: 'seq_bn', seed: 73 });
    const f = makeFusionModule({ id: 'fusion/f', base: base.info, adapters: ['lang/de', 'task/t'], seed: 74 });
    const mods = new Map([['lang/de', a], ['task/t@1.0.0', b], ['fusion/f', f]]);
    const c = fromRequestComposition({ stack: ['lang/de', { fuse: ['lang/de', 'task/t@1.0.0'], fusion: 'fusion/f' }] }, (r) => mods.get(r));
    expect(c).toEqual({ stack: [a, { fuse: [a, b], fusion: f }] });
    expect(run(base, c).hidden!.shape).toEqual([3, 6, 32]);
    expect(() => fromRequestComposition({ stack: ['x/y'] }, (r) => mods.get(r))).toThrow(/'x\/y'/);
  });
});
