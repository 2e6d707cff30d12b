/**
 * Module pools: the module tensors a session variant reads as inputs. A pool holds a zero entry (the bare base)
 * and one entry per distinct module, rank- and label-padded, plus per-row indices into it; when every row uses
 * the same module, that module's tensors are fed directly. Mixed batches index the resident spaces
 * (pool-space.ts), where each module is written once; the rest is built per distinct batch of compositions and
 * kept in a byte-bounded LRU (module versions are immutable), whose evicted feeds leave the session worker too.
 * Feeds a builder allocated for the batch alone (a uniform batch's per-layer weights) move to the session worker
 * rather than being copied (HostTensor.moveToWorker); a worker that lost them gets them built again.
 * Adapters and fusion: adapter-pools.ts; heads: head-pools.ts; IA³: ia3-pools.ts; LoRA, the invertible adapter
 * and bias-only diffs here.
 * Example:
 *   const pools = new BatchPools(base, (name, diffs) => diffWeights.effective(name, diffs), 'e0');
 *   const batch = pools.acquire(variant, plans);
 *   Object.assign(feeds, batch.pools); // run, then batch.done()
 */
import { LRUCache } from 'lru-cache';
import type { Base } from '../model/base';
import type { BaseConfig } from '../model/config';
import type { RowPlan } from '../model/composition';
import { ACTIVATIONS, POOL, ROW_BIAS_PARAM, SITES, isLayerNormShift, variantKey, type LoraTarget, type Variant } from '../model/encoder-graph';
import { adapterPools } from './adapter-pools';
import { ia3Pools } from './ia3-pools';
import { diffSetKey, type DiffSet } from './diff-weights';
import { BaseMlmHead, headPools } from './head-pools';
import { PoolSpaces, type Touch } from './pool-space';
import { Session, scatterAdd, type HostTensor } from './session';

/** Feeds by pool input name (POOL in encoder-graph.ts). */
export type Pools = Record<string, HostTensor>;

/** A base parameter in engine layout as a row group's diff set changes it (θ₀+Σδ; θ₀ when `diffs` is empty). */
export type EffectiveParam = (name: string, diffs: DiffSet) => Float32Array;

/** A batch's feeds; `done()` after its run unpins its resident slots. */
export interface BatchFeeds {
  pools: Pools;
  done(): void;
}

export class BatchPools {
  private seq = 0;
  /**
   * Recently built feeds per batch of compositions (bounded by their own bytes; resident arrays are not counted),
   * keyed with `spaces.epoch` so that feeds whose slots moved are never reused (resident arrays that grew are
   * refreshed on a hit); evicted ones leave the worker too.
   */
  private readonly cache = new LRUCache<string, { id: number; pools: Pools; touched: Touch[] }>({
    maxSize: 256 * 2 ** 20,
    sizeCalculation: (p) => Math.max(1, Object.values(p.pools).reduce((a, t) => a + (isResident(t) ? 0 : t.data.byteLength), 0)),
    dispose: (p) => void Session.forgetShared(`${this.shareId}:pool:${p.id}:`),
  });
  /**
   * A uniform slot's folded weights per module, layer and slot (adapter-pools.ts foldedSlotFeeds), so that a new
   * composition sharing a module with one that ran reuses them: a new task adapter under a MAD-X language adapter
   * in use would otherwise fold the language again (28 MB at rank 384, BERT-base). A laned slot's lanes read the
   * same folds, which hold the wide adapters mixed batches use (the resident spaces do not): half the resident
   * budget, so that a batch's lanes do not evict one another's languages (10 at BERT-base: 280 MB). Their share keys
   * outlive the batches that use them (bounded by their own bytes); evicted ones leave the worker.
   */
  private readonly folds: LRUCache<string, { id: number; pools: Pools; bytes: number }>;
  private readonly mlmHead: BaseMlmHead;
  /** Resident per-family pools (pool-space.ts) that mixed batches gather from. */
  readonly spaces: PoolSpaces;
  /** The base's parameters bias-only diffs may change per row (ROW_BIAS_PARAM), in checkpoint order. */
  private readonly rowBiasParams: string[];

  /**
   * `shareId` prefixes this engine's shared worker feeds; `residentBytes` bounds the resident pools; `hostCopy`
   * keeps them on this thread too (sessions that run here need it; worker sessions do not).
   */
  constructor(
    private readonly base: Base,
    private readonly effective: EffectiveParam,
    private readonly shareId: string,
    residentBytes = 2 ** 30,
    hostCopy = true,
    private readonly stats?: { slotFolds: number },
  ) {
    this.folds = new LRUCache({
      maxSize: Math.max(256 * 2 ** 20, residentBytes / 2),
      sizeCalculation: (f) => Math.max(1, f.bytes),
      dispose: (f) => void Session.forgetShared(`${this.shareId}:fold:${f.id}:`),
    });
    this.mlmHead = new BaseMlmHead(base, effective);
    this.spaces = new PoolSpaces(shareId, residentBytes, hostCopy);
    this.rowBiasParams = [...base.weights.keys()].filter((n) => ROW_BIAS_PARAM.test(n));
  }

  /**
   * Feeds for a batch, reused while the same rows' compositions repeat (module versions are immutable) and the
   * resident slots they point at stay put. The slots stay pinned until `done()`.
   */
  acquire(v: Variant, plans: RowPlan[]): BatchFeeds {
    const seq = this.spaces.begin();
    const done = () => this.spaces.end(seq);
    try {
      const batchKey = `${variantKey(v)}|${plans.map((p) => `${p.key}#${p.head?.key ?? ''}`).join(';')}`;
      const hit = this.cache.get(`${this.spaces.epoch}|${batchKey}`);
      // feeds moved to a worker that no longer holds them (it restarted) are built again; resident ones are
      // refreshed below unless their space lost its arrays
      const lost = hit && Object.values(hit.pools).some((t) => !isResident(t) && t.moveToWorker && t.data.byteLength === 0 && !Session.workerHolds(t.shareKey!));
      if (hit && !lost && ![...new Set(hit.touched.map(([space]) => space))].some((space) => space.lost()) && hit.touched.every(([space, k]) => space.touch(k) !== null)) {
        // the slots still hold; a resident array may have grown since: feed its current generation
        const pools: Pools = {};
        for (const [name, t] of Object.entries(hit.pools)) pools[name] = t.current ? t.current() : t;
        return { pools, done };
      }
      const touched: Touch[] = [];
      this.spaces.record = touched;
      const pools = this.build(v, plans);
      this.spaces.record = null;
      const id = this.seq++;
      // feeds with a key of their own (folded slots) keep it
      for (const [name, t] of Object.entries(pools)) if (!isResident(t) && t.shareKey === undefined) t.shareKey = `${this.shareId}:pool:${id}:${name}`;
      if (lost) this.cache.delete(`${this.spaces.epoch}|${batchKey}`);
      // keyed by the epoch after the build: slots this build took may have moved it, and these feeds are current
      this.cache.set(`${this.spaces.epoch}|${batchKey}`, { id, pools, touched });
      return { pools, done };
    } catch (e) {
      this.spaces.record = null;
      done();
      throw e;
    }
  }

  /** Builds a batch's feeds (uncached; `acquire` caches). Call inside `acquire` (resident slots need a batch in flight). */
  private build(v: Variant, plans: RowPlan[]): Pools {
    const cfg = this.base.config;
    const pools: Pools = {};
    for (const site of SITES) {
      const sv = v.sites[site];
      if (sv) Object.assign(pools, adapterPools(cfg, this.effective, site, sv, plans, this.spaces, this.fold));
    }
    for (const t of v.lora) Object.assign(pools, loraPools(cfg, t, plans, v.loraUniform ?? false, this.spaces, v.loraRanks?.[t]));
    for (const t of v.ia3 ?? []) Object.assign(pools, ia3Pools(cfg, t, plans, v.ia3Uniform ?? false));
    if (v.invertible) Object.assign(pools, invertiblePools(cfg.hiddenSize, v, plans, this.spaces));
    Object.assign(pools, headPools(cfg, v, plans, this.mlmHead, this.spaces));
    if (v.rowBias) Object.assign(pools, rowBiasPools(this.effective, this.rowBiasParams, plans, this.spaces));
    return pools;
  }

  /** Folded slot feeds under `key`, built by `build` unless kept (and still held by the worker once moved there). */
  private readonly fold = (key: string, build: () => Pools): Pools => {
    const hit = this.folds.get(key);
    if (hit && !Object.values(hit.pools).some((t) => t.data.byteLength === 0 && !Session.workerHolds(t.shareKey!))) return hit.pools;
    const pools = build();
    if (this.stats) this.stats.slotFolds++;
    const id = this.seq++;
    let bytes = 0;
    for (const [name, t] of Object.entries(pools)) {
      t.shareKey = `${this.shareId}:fold:${id}:${name}`;
      bytes += t.data.byteLength;
    }
    this.folds.set(key, { id, pools, bytes });
    return pools;
  };

  async close(): Promise<void> {
    this.folds.clear();
    this.cache.clear();
    await this.spaces.close();
  }
}

/** A feed that is a whole resident array (sent once per space generation, then patched, never per batch). */
function isResident(t: HostTensor): boolean {
  return t.updates !== undefined;
}

/**
 * Bias-only diffs (RowPlan.rowBias) as per-row vectors, one resident slot per diff set ('' = rows without):
 * for each Linear bias b + Σδ, for each LayerNorm shift Σδ (added after the LayerNorm; see ROW_BIAS_PARAM).
 */
function rowBiasPools(effective: EffectiveParam, names: string[], plans: RowPlan[], spaces: PoolSpaces): Pools {
  const sets = new Map<string, DiffSet>([['', []]]);
  const rowKey = plans.map((p) => {
    const k = diffSetKey(p.rowBias ?? []);
    if (!sets.has(k)) sets.set(k, p.rowBias!);
    return k;
  });
  const space = spaces.space('bias', 1, names.map((n) => ({ name: n, dims: [1, effective(n, []).length] })));
  const slotOf = new Map<string, number>();
  for (const [k, set] of sets)
    slotOf.set(
      k,
      space.slot(k, (slot) => {
        for (const name of names) {
          const dst = slot.part(name);
          if (!isLayerNormShift(name)) dst.set(effective(name, []));
          for (const d of set) {
            const delta = d.params.get(name);
            if (delta) scatterAdd(dst, delta.indices, delta.values);
          }
        }
      }),
    );
  const pools: Pools = {};
  for (const name of names) pools[POOL.rowBias(name)] = space.feed(name);
  pools[POOL.rowBias('idx')] = { type: 'int64', dims: [plans.length], data: BigInt64Array.from(rowKey.map((k) => BigInt(slotOf.get(k)!))) };
  return pools;
}

/**
 * LoRA: one entry per distinct LoRA set of a row, ranks concatenated (Σ of deltas = concat of ranks). Every row the
 * same set: its [in, R] / [R, out] per layer fed directly; else the sets' slots in the target's resident space of
 * the variant's rank class (`rank`, Variant.loraRanks), padded to the widest set written there.
 */
function loraPools(cfg: BaseConfig, target: LoraTarget, plans: RowPlan[], uniform: boolean, spaces: PoolSpaces, rank?: number): Pools {
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
  let R = 1;
  for (const set of sets.values()) for (let l = 0; l < L; l++) R = Math.max(R, set.reduce((a, m) => a + (m.layers[l][target] ? m.r : 0), 0));
  /** Writes a set's layer-l factors into A [in, Rp] and B [Rp, out] (zeros beyond its ranks). */
  const write = (set: RowPlan['loras'], l: number, A: Float32Array, Bm: Float32Array, Rp: number) => {
    let off = 0;
    for (const m of set) {
      const w = m.layers[l][target];
      if (!w) continue;
      for (let d = 0; d < inDim; d++) A.set(w.AT.subarray(d * m.r, (d + 1) * m.r), d * Rp + off);
      Bm.set(w.BT, off * outDim);
      off += m.r;
    }
  };
  if (uniform) {
    const pools: Pools = {};
    const set = rowKey[0] ? sets.get(rowKey[0])! : [];
    for (let l = 0; l < L; l++) {
      const A = new Float32Array(inDim * R);
      const Bm = new Float32Array(R * outDim);
      write(set, l, A, Bm, R);
      pools[POOL.loraLayer(target, 'A', l)] = { type: 'float32', dims: [inDim, R], data: A, moveToWorker: true };
      pools[POOL.loraLayer(target, 'B', l)] = { type: 'float32', dims: [R, outDim], data: Bm, moveToWorker: true };
    }
    return pools;
  }
  const space = spaces.space(rank ? `lora.${target}.r${rank}` : `lora.${target}`, L, [
    { name: 'A', dims: [inDim, R] },
    { name: 'B', dims: [R, outDim] },
  ]);
  const Rp = space.dims('A')[1];
  const slotOf = new Map<string, number>();
  for (const [k, set] of sets)
    slotOf.set(
      k,
      space.slot(k, (slot) => {
        const A = slot.part('A');
        const Bm = slot.part('B');
        for (let l = 0; l < L; l++) write(set, l, A.subarray(l * inDim * Rp, (l + 1) * inDim * Rp), Bm.subarray(l * Rp * outDim, (l + 1) * Rp * outDim), Rp);
      }),
    );
  const idx = new BigInt64Array(L * B);
  for (let l = 0; l < L; l++) rowKey.forEach((k, b) => (idx[l * B + b] = BigInt(space.entry(k ? slotOf.get(k)! : 0, l))));
  return {
    [POOL.lora(target, 'A', rank)]: space.feed('A'),
    [POOL.lora(target, 'B', rank)]: space.feed('B'),
    [POOL.lora(target, 'idx')]: { type: 'int64', dims: [L, B], data: idx },
  };
}

/** The invertible (NICE) adapter's F and G networks: per-row slots of the resident space, or one shared adapter padded to full width. */
function invertiblePools(D: number, v: Variant, plans: RowPlan[], spaces: PoolSpaces): Pools {
  const n = Math.floor(D / 2);
  const mods = [...new Map(plans.filter((p) => p.invertible).map((p) => [p.invertible!.key, p.invertible!])).values()];
  const M = Math.max(1, ...mods.map((m) => m.invertible!.m));
  const pools: Pools = {};
  if (v.invUniform) {
    for (const which of ['F', 'G'] as const) {
      // every row shares one adapter: its weights padded to the full width (sharedInvertible in encoder-graph.ts)
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
      pools[POOL.inv(`${which}.down_wp@shared`)] = { type: 'float32', dims: [D, mm], data: dwp, moveToWorker: true };
      pools[POOL.inv(`${which}.down_b@shared`)] = { type: 'float32', dims: [1, mm], data: Float32Array.from(w.downB), moveToWorker: true };
      pools[POOL.inv(`${which}.up_wbp@shared`)] = { type: 'float32', dims: [mm + 1, D], data: uwp, moveToWorker: true };
    }
    return pools;
  }
  // the graph's per-row shapes (invertible in encoder-graph.ts): down [n, M], up [M, D - n]
  const parts = (['F', 'G'] as const).flatMap((which) => [
    { name: `${which}.down_w`, dims: [n, M] },
    { name: `${which}.down_b`, dims: [1, M] },
    { name: `${which}.up_w`, dims: [M, D - n] },
    { name: `${which}.up_b`, dims: [1, D - n] },
  ]);
  const space = spaces.space('inv', 1, parts);
  const Mp = space.dims('F.down_b')[1];
  const slotOf = new Map<string, number>();
  for (const m of mods)
    slotOf.set(
      m.key,
      space.slot(m.key, (slot) => {
        const mm = m.invertible!.m;
        for (const which of ['F', 'G'] as const) {
          const w = m.invertible![which];
          const downW = slot.part(`${which}.down_w`);
          for (let d = 0; d < n; d++) downW.set(w.downT.subarray(d * mm, (d + 1) * mm), d * Mp);
          slot.part(`${which}.down_b`).set(w.downB);
          // [mm, D - n] rows; rows mm..Mp stay zero
          slot.part(`${which}.up_w`).set(w.upT);
          slot.part(`${which}.up_b`).set(w.upB);
        }
      }),
    );
  for (const p of parts) pools[POOL.inv(p.name)] = space.feed(p.name);
  const idx = BigInt64Array.from(plans.map((p) => BigInt(p.invertible ? slotOf.get(p.invertible.key)! : 0)));
  pools[POOL.inv('idx')] = { type: 'int64', dims: [plans.length], data: idx };
  if (v.invAct === 'mixed') {
    for (const a of ACTIVATIONS) {
      pools[POOL.inv(`act_${a}`)] = { type: 'float32', dims: [plans.length], data: Float32Array.from(plans.map((p) => +(p.invertible?.config.non_linearity === a))) };
    }
  }
  return pools;
}
