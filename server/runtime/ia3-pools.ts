/**
 * IA³ pools: per target Linear, one entry per distinct IA³ set of a row holding, per layer, the product of the
 * set's scaling vectors (several IA³ modules in a stack multiply; docs/module-format.md), entry 0 ones so a row
 * without IA³ runs the bare base exactly (x·1). Every row the same set: that set's vector per layer, fed directly.
 * Example: `Object.assign(pools, ia3Pools(base.config, 'value', plans, false))`.
 */
import type { BaseConfig } from '../model/config';
import type { RowPlan } from '../model/composition';
import { POOL, type Ia3Target } from '../model/encoder-graph';
import { ia3Shape } from '../../modules-store/kinds/ia3';
import type { Pools } from './pools';

/** Pools of one IA³ target for a batch: `ia3.{t}.s` [L·P, 1, n] + `ia3.{t}.idx` [L, B], or `ia3.{t}.s@{l}` [n] when uniform. */
export function ia3Pools(cfg: BaseConfig, target: Ia3Target, plans: RowPlan[], uniform: boolean): Pools {
  const L = cfg.numLayers;
  const B = plans.length;
  const { n } = ia3Shape(target, { hidden: cfg.hiddenSize, layers: L, vocab: cfg.vocabSize, ffn: cfg.intermediateSize });
  const sets = new Map<string, RowPlan['ia3s']>();
  const rowKey = plans.map((p) => {
    const k = p.ia3s.map((m) => m.key).join('*');
    if (k && !sets.has(k)) sets.set(k, p.ia3s);
    return k;
  });
  const keys = [...sets.keys()];
  const P = keys.length + 1;
  const S = new Float32Array(L * P * n).fill(1);
  for (let l = 0; l < L; l++)
    keys.forEach((k, i) => {
      const e = l * P + i + 1;
      const dst = S.subarray(e * n, (e + 1) * n);
      for (const m of sets.get(k)!) {
        const v = m.layers[l][target];
        if (v) for (let j = 0; j < n; j++) dst[j] *= v[j];
      }
    });
  if (uniform) {
    const pools: Pools = {};
    const p = rowKey[0] ? keys.indexOf(rowKey[0]) + 1 : 0;
    for (let l = 0; l < L; l++) pools[POOL.ia3Layer(target, l)] = { type: 'float32', dims: [n], data: S.subarray((l * P + p) * n, (l * P + p + 1) * n) };
    return pools;
  }
  const idx = new BigInt64Array(L * B);
  for (let l = 0; l < L; l++) rowKey.forEach((k, b) => (idx[l * B + b] = BigInt(l * P + (k ? keys.indexOf(k) + 1 : 0))));
  return {
    [POOL.ia3(target, 's')]: { type: 'float32', dims: [L * P, 1, n], data: S },
    [POOL.ia3(target, 'idx')]: { type: 'int64', dims: [L, B], data: idx },
  };
}
