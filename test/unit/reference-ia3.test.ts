/**
 * The oracle's IA³ (test/reference/modules.ts loadIa3/applyIa3) against identities that hold when the
 * semantics are right: ones = the bare base; scaling a Linear's output by l equals the diff W' = diag(l)·W,
 * b' = l⊙b; scaling ffn_out's input equals W' = W·diag(l); two IA³ modules in a stack equal one whose vectors
 * are their products. Each diff is built by hand from the base weights, independently of the IA³ code path.
 */
import type { Tensor } from '../../modules-store/safetensors';
import { layerParamNames, referenceForward, type RefComposition } from '../reference/encoder';
import { makeDiffModule, makeIa3Module, makeRefBase, type RefBase } from '../helpers/modules';

type Family = 'bert' | 'distilbert';
import type { RefModule } from '../reference/modules';

function run(base: RefBase, composition: RefComposition | undefined) {
  const V = base.info.vocab_size;
  const ids = Array.from({ length: 2 }, (_, b) => Array.from({ length: 5 }, (_, t) => 3 + ((b * 11 + t * 7) % (V - 3))));
  return referenceForward({ config: base.config, weights: base.weights, inputIds: ids, attentionMask: ids.map((r) => r.map(() => 1)), composition, outputs: ['hidden'] }).hidden!;
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs((a.data[i] as number) - (b.data[i] as number)));
  return m;
}

/** The base weight / bias tensor (HF name with the model prefix) of `stem`. */
function baseParam(base: RefBase, stem: string, part: 'weight' | 'bias'): { name: string; t: Tensor } {
  for (const [name, t] of base.weights) if (name.endsWith(`${stem}.${part}`)) return { name, t };
  throw new Error(`no base parameter ending in ${stem}.${part}`);
}

/** The dense diff that makes the base compute what `ia3` (targets among key, value, ffn_in, ffn_out) does. */
function equivalentDiff(base: RefBase, family: Family, ia3: RefModule): RefModule {
  const targets = ia3.manifest.config.target_modules as ('key' | 'value' | 'ffn_in' | 'ffn_out')[];
  const dense = new Map<string, Tensor>();
  for (let l = 0; l < base.info.num_layers; l++) {
    const names = layerParamNames(family, l);
    for (const tg of targets) {
      const vec = ia3.tensors.get(`layers.${l}.${tg}.ia3_l`)!.data as Float32Array;
      const w = baseParam(base, names[tg], 'weight');
      const b = baseParam(base, names[tg], 'bias');
      const [O, I] = w.t.shape;
      const dw = new Float32Array(O * I);
      const db = new Float32Array(O);
      for (let o = 0; o < O; o++)
        for (let i = 0; i < I; i++) {
          const W = (w.t.data as Float32Array)[o * I + i];
          dw[o * I + i] = tg === 'ffn_out' ? W * (vec[i] - 1) : W * (vec[o] - 1);
        }
      if (tg !== 'ffn_out') for (let o = 0; o < O; o++) db[o] = (b.t.data as Float32Array)[o] * (vec[o] - 1);
      dense.set(`${w.name}.dense`, { dtype: 'F32', shape: [O, I], data: dw });
      dense.set(`${b.name}.dense`, { dtype: 'F32', shape: [O], data: db });
    }
  }
  const shell = makeDiffModule({ id: 'test/eq', base: base.info, seed: 1, dense: true, targets: [{ name: [...dense.keys()][0].replace(/\.dense$/, ''), shape: dense.values().next().value!.shape }] });
  return { manifest: { ...shell.manifest, config: { method: 'custom' } }, tensors: dense };
}

describe.each(['bert', 'distilbert'] as Family[])('IA³ in the oracle, %s', (family) => {
  const base = makeRefBase({ family, seed: 3, hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 24 });
  const bare = run(base, undefined);

  it('ones leave the base unchanged', () => {
    const m = makeIa3Module({ id: 'test/ones', base: base.info, seed: 1, scale: 0, target_modules: ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'] });
    expect(maxAbsDiff(run(base, m), bare)).toBe(0);
  });

  it.each([[['key', 'value', 'ffn_in']], [['key', 'value', 'ffn_out']]] as const)('%j equals the diff that folds the vectors into the weights', (targets) => {
    const m = makeIa3Module({ id: 'test/ia3', base: base.info, seed: 2, scale: 0.3, target_modules: [...targets] });
    const viaIa3 = run(base, m);
    expect(maxAbsDiff(viaIa3, bare)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(viaIa3, run(base, equivalentDiff(base, family, m)))).toBeLessThan(1e-5);
  });

  it('two IA³ modules in a stack multiply', () => {
    const a = makeIa3Module({ id: 'test/a', base: base.info, seed: 4, scale: 0.3, target_modules: ['value', 'ffn_out'] });
    const b = makeIa3Module({ id: 'test/b', base: base.info, seed: 5, scale: 0.3, target_modules: ['value', 'ffn_out'] });
    const prod: RefModule = { manifest: { ...a.manifest, id: 'test/ab' }, tensors: new Map() };
    for (const [name, t] of a.tensors) {
      const u = b.tensors.get(name)!.data as Float32Array;
      prod.tensors.set(name, { ...t, data: (t.data as Float32Array).map((x, i) => x * u[i]) });
    }
    expect(maxAbsDiff(run(base, { stack: [a, b] }), run(base, prod))).toBeLessThan(1e-5);
  });

  it('refuses IA³ inside sum', () => {
    const a = makeIa3Module({ id: 'test/a', base: base.info, seed: 4 });
    expect(() => run(base, { sum: [a] })).toThrow(/IA³ module 'test\/a' inside 'sum'/);
  });
});
