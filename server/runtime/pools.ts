/**
 * Per-batch pools: the module tensors a session variant reads as inputs. Each pool holds a zero entry (the bare
 * base) and one entry per distinct module of the batch, rank- and label-padded, plus per-row indices into it,
 * or, when every row uses the same module, that module's tensors fed directly. Built once per distinct batch of
 * compositions and kept in a byte-bounded LRU (module versions are immutable); an evicted batch's shared feeds
 * leave the session worker too. Adapters and fusion: adapter-pools.ts; heads: head-pools.ts; IA³: ia3-pools.ts;
 * LoRA and the invertible adapter here.
 * Example:
 *   const pools = new BatchPools(base, (name, diffs) => diffWeights.effective(name, diffs), 'e0');
 *   Object.assign(feeds, pools.get(variant, plans));
 */
import { LRUCache } from 'lru-cache';
import type { Base } from '../model/base';
import type { BaseConfig } from '../model/config';
import type { RowPlan } from '../model/composition';
import { ACTIVATIONS, POOL, SITES, variantKey, type LoraTarget, type Variant } from '../model/encoder-graph';
import { adapterPools } from './adapter-pools';
import { ia3Pools } from './ia3-pools';
import type { DiffSet } from './diff-weights';
import { BaseMlmHead, headPools } from './head-pools';
import { Session, type HostTensor } from './session';

/** Feeds by pool input name (POOL in encoder-graph.ts). */
export type Pools = Record<string, HostTensor>;

/** A base parameter in engine layout as a row group's diff set changes it (θ₀+Σδ; θ₀ when `diffs` is empty). */
export type EffectiveParam = (name: string, diffs: DiffSet) => Float32Array;

export class BatchPools {
  private seq = 0;
  /** Recently used per-batch pools (bounded by bytes); evicted ones leave the worker too. */
  private readonly cache = new LRUCache<string, { id: number; pools: Pools }>({
    maxSize: 256 * 2 ** 20,
    sizeCalculation: (p) => Math.max(1, Object.values(p.pools).reduce((a, t) => a + t.data.byteLength, 0)),
    dispose: (p) => void Session.forgetShared(`${this.shareId}:pool:${p.id}:`),
  });
  private readonly mlmHead: BaseMlmHead;

  /** `shareId` prefixes this engine's shared worker feeds. */
  constructor(
    private readonly base: Base,
    private readonly effective: EffectiveParam,
    private readonly shareId: string,
  ) {
    this.mlmHead = new BaseMlmHead(base, effective);
  }

  /** Pools for a batch, reused while the same rows' compositions repeat (module versions are immutable). */
  get(v: Variant, plans: RowPlan[]): Pools {
    const key = `${variantKey(v)}|${plans.map((p) => `${p.key}#${p.head?.key ?? ''}`).join(';')}`;
    const hit = this.cache.get(key);
    if (hit) return hit.pools;
    const id = this.seq++;
    const pools = this.build(v, plans);
    for (const [name, t] of Object.entries(pools)) t.shareKey = `${this.shareId}:pool:${id}:${name}`;
    this.cache.set(key, { id, pools });
    return pools;
  }

  /** Builds a batch's pools (uncached; `get` caches). */
  build(v: Variant, plans: RowPlan[]): Pools {
    const cfg = this.base.config;
    const pools: Pools = {};
    for (const site of SITES) {
      const sv = v.sites[site];
      if (sv) Object.assign(pools, adapterPools(cfg, this.effective, site, sv, plans));
    }
    for (const t of v.lora) Object.assign(pools, loraPools(cfg, t, plans, v.loraUniform ?? false));
    for (const t of v.ia3 ?? []) Object.assign(pools, ia3Pools(cfg, t, plans, v.ia3Uniform ?? false));
    if (v.invertible) Object.assign(pools, invertiblePools(cfg.hiddenSize, v, plans));
    Object.assign(pools, headPools(cfg, v, plans, this.mlmHead));
    return pools;
  }
}

/** LoRA: one pool entry per distinct LoRA set of a row, ranks concatenated (Σ of deltas = concat of ranks). */
function loraPools(cfg: BaseConfig, target: LoraTarget, plans: RowPlan[], uniform: boolean): Pools {
  const L = cfg.numLayers;
  const B = plans.length;
  const inDim = target === 'ffn_out' ? cfg.intermediateSize : cfg.hiddenSize;
  const outDim = target === 'ffn_in' ? cfg.intermediateSize : cfg.hiddenSize;
  const sets = new Map<string, RowPlan['loras']>();
  const rowKey = plans.map((p) => {
    const k = p.loras.map((m) => m.key).join('+');
    if (k && !sets.has(k)) sets.set(k, p.loras);
    return k;
  });
  const keys = [...sets.keys()];
  const P = keys.length + 1;
  let R = 1;
  for (const set of sets.values()) for (let l = 0; l < L; l++) R = Math.max(R, set.reduce((a, m) => a + (m.layers[l][target] ? m.r : 0), 0));
  const A = new Float32Array(L * P * inDim * R);
  const Bm = new Float32Array(L * P * R * outDim);
  for (let l = 0; l < L; l++)
    keys.forEach((k, i) => {
      const e = l * P + i + 1;
      let off = 0;
      for (const m of sets.get(k)!) {
        const w = m.layers[l][target];
        if (!w) continue;
        for (let d = 0; d < inDim; d++) A.set(w.AT.subarray(d * m.r, (d + 1) * m.r), (e * inDim + d) * R + off);
        Bm.set(w.BT, (e * R + off) * outDim);
        off += m.r;
      }
    });
  if (uniform) {
    const pools: Pools = {};
    const p = rowKey[0] ? keys.indexOf(rowKey[0]) + 1 : 0;
    for (let l = 0; l < L; l++) {
      const e = l * P + p;
      pools[POOL.loraLayer(target, 'A', l)] = { type: 'float32', dims: [inDim, R], data: A.subarray(e * inDim * R, (e + 1) * inDim * R) };
      pools[POOL.loraLayer(target, 'B', l)] = { type: 'float32', dims: [R, outDim], data: Bm.subarray(e * R * outDim, (e + 1) * R * outDim) };
    }
    return pools;
  }
  const idx = new BigInt64Array(L * B);
  for (let l = 0; l < L; l++) rowKey.forEach((k, b) => (idx[l * B + b] = BigInt(l * P + (k ? keys.indexOf(k) + 1 : 0))));
  return {
    [POOL.lora(target, 'A')]: { type: 'float32', dims: [L * P, inDim, R], data: A },
    [POOL.lora(target, 'B')]: { type: 'float32', dims: [L * P, R, outDim], data: Bm },
    [POOL.lora(target, 'idx')]: { type: 'int64', dims: [L, B], data: idx },
  };
}

/** The invertible (NICE) adapter's F and G networks: per-row entries, or one shared adapter padded to full width. */
function invertiblePools(D: number, v: Variant, plans: RowPlan[]): Pools {
  const n = Math.floor(D / 2);
  const mods = [...new Map(plans.filter((p) => p.invertible).map((p) => [p.invertible!.key, p.invertible!])).values()];
  const P = mods.length + 1;
  const M = Math.max(1, ...mods.map((m) => m.invertible!.m));
  const pools: Pools = {};
  for (const which of ['F', 'G'] as const) {
    if (v.invUniform) {
      // every row shares one adapter (entry 1): weights padded to the full width (sharedInvertible in encoder-graph.ts)
      const w = mods[0].invertible![which];
      const mm = mods[0].invertible!.m;
      const [inOff, outOff] = which === 'F' ? [n, 0] : [0, n]; // F reads x2, writes the first half; G the reverse
      const inW = which === 'F' ? D - n : n;
      const outW = which === 'F' ? n : D - n;
      const dwp = new Float32Array(D * mm);
      dwp.set(w.downT.subarray(0, inW * mm), inOff * mm);
      const uwp = new Float32Array((mm + 1) * D);
      for (let r = 0; r < mm; r++) uwp.set(w.upT.subarray(r * outW, (r + 1) * outW), r * D + outOff);
      uwp.set(w.upB, mm * D + outOff);
      pools[POOL.inv(`${which}.down_wp@shared`)] = { type: 'float32', dims: [D, mm], data: dwp };
      pools[POOL.inv(`${which}.down_b@shared`)] = { type: 'float32', dims: [1, mm], data: Float32Array.from(w.downB) };
      pools[POOL.inv(`${which}.up_wbp@shared`)] = { type: 'float32', dims: [mm + 1, D], data: uwp };
      continue;
    }
    const dw = new Float32Array(P * n * M);
    const db = new Float32Array(P * M);
    const uw = new Float32Array(P * M * (D - n));
    const ub = new Float32Array(P * (D - n));
    mods.forEach((m, i) => {
      const w = m.invertible![which];
      const mm = m.invertible!.m;
      const e = i + 1;
      for (let d = 0; d < n; d++) dw.set(w.downT.subarray(d * mm, (d + 1) * mm), (e * n + d) * M);
      db.set(w.downB, e * M);
      uw.set(w.upT, e * M * (D - n));
      ub.set(w.upB, e * (D - n));
    });
    pools[POOL.inv(`${which}.down_w`)] = { type: 'float32', dims: [P, n, M], data: dw };
    pools[POOL.inv(`${which}.down_b`)] = { type: 'float32', dims: [P, 1, M], data: db };
    pools[POOL.inv(`${which}.up_w`)] = { type: 'float32', dims: [P, M, D - n], data: uw };
    pools[POOL.inv(`${which}.up_b`)] = { type: 'float32', dims: [P, 1, D - n], data: ub };
  }
  if (v.invUniform) return pools;
  const idx = BigInt64Array.from(plans.map((p) => BigInt(p.invertible ? mods.findIndex((m) => m.key === p.invertible!.key) + 1 : 0)));
  pools[POOL.inv('idx')] = { type: 'int64', dims: [plans.length], data: idx };
  if (v.invAct === 'mixed') {
    for (const a of ACTIVATIONS) {
      pools[POOL.inv(`act_${a}`)] = { type: 'float32', dims: [plans.length], data: Float32Array.from(plans.map((p) => +(p.invertible?.config.non_linearity === a))) };
    }
  }
  return pools;
}
