/**
 * Pools of the bottleneck adapters at one site (attention or output) and of AdapterFusion there. Mixed sites: each
 * distinct adapter's down/up projections and LayerNorms sit in a resident space of the site per rank class
 * (variants.ts rankClass; pool-space.ts; slot 0 is the zero adapter), padded to the widest rank of that class, so
 * a MAD-X language adapter of reduction 2 neither widens the task adapters' entries nor their rows' products; per
 * (layer, slot, row) the batch feeds an index into its slot's class and the
 * AdapterHub switches that differ between rows. When every row uses the same adapter in each slot, that slot's
 * weights are fed directly; a slot the graph folds with the site's original LayerNorm (foldedSlot in
 * encoder-graph.ts) gets the folded weights, computed from the LayerNorm's effective parameters (a row group's
 * sparse diffs may change them).
 */
import type { RowPlan } from '../model/composition';
import type { BaseConfig } from '../model/config';
import { ACTIVATIONS, ADAPTER_FLAGS, LANES, POOL, foldedSlot, lanedSlot, slotRank, type Site, type SiteVariant } from '../model/encoder-graph';
import type { AdapterModule, AdapterSiteWeights } from '../model/modules';
import { diffSetKey, type DiffSet } from './diff-weights';
import type { EffectiveParam, Pools } from './pools';
import type { PartSpec, PoolSpace, PoolSpaces, SlotWriter } from './pool-space';
import { slotTable } from './variants';

/** Feeds kept under a key, or built (BatchPools keeps folded slots per module, layer and slot). */
export type FoldCache = (key: string, build: () => Pools) => Pools;

/**
 * Adapter (and, with `sv.fuse`, fusion) pools of one site for the rows' plans. A uniform site feeds each slot's
 * entry directly; a mixed one gathers per row from the site's resident space (pool-space.ts), where each
 * adapter is written once.
 */
export function adapterPools(cfg: BaseConfig, effective: EffectiveParam, site: Site, sv: SiteVariant, plans: RowPlan[], spaces: PoolSpaces, fold: FoldCache = (_k, build) => build()): Pools {
  const L = cfg.numLayers;
  const D = cfg.hiddenSize;
  const B = plans.length;
  const table = slotTable(L, plans, site, sv.slots, sv.fuse);
  const S = table.S;
  const wanted = ['down_w', 'down_b', 'up_w', 'up_b', ...(sv.flags.lnBefore !== 'off' ? ['lnb_g', 'lnb_b'] : []), ...(sv.flags.lnAfter !== 'off' ? ['lna_g', 'lna_b'] : [])];
  const pools: Pools = {};
  if (sv.uniform) {
    // Every row shares each slot's entry: feed that entry's own tensors directly (plain GEMMs, no gathers in-graph),
    // each slot at its own adapter's rank (a MAD-X stack's task slot does not take its language adapter's width)
    for (let s = 0; s < S; s++) {
      let R = 1;
      for (let l = 0; l < L; l++) R = Math.max(R, table.entry[l][s][0]?.layers[l][site]?.r ?? 0);
      const parts = adapterParts(D, R);
      const folded = foldedSlot(sv, s);
      for (let l = 0; l < L; l++) {
        const a = table.entry[l][s][0]; // null where the slot has no adapter at this layer
        const w = a?.layers[l][site];
        if (folded) {
          // folded straight from the module's tensors (a cold module's first request builds these: BERT-base, 12
          // layers), kept per module, layer and slot for the next composition that has it there
          const build = () => foldedSlotFeeds(D, effective, site, plans[0].diffs, l, s, folded.biasColumn, w, R);
          Object.assign(pools, a ? fold(foldKey(a.key, site, l, s, folded.biasColumn, plans[0].diffs), build) : build());
        } else {
          const entry = adapterEntry(w, D, R);
          for (const part of wanted) pools[POOL.adapterSlot(site, part, l, s)] = { type: 'float32', dims: parts.find((p) => p.name === part)!.dims, data: entry[part], moveToWorker: true };
        }
      }
    }
  } else {
    // Laned slots (lanedSlot: a MAD-X language adapter's width) feed each lane's rows and its adapter's folded
    // weights, the ones a uniform batch of that adapter uses (kept per module, layer and slot); the other slots
    // gather per row from a resident space per rank class (SiteVariant.ranks), each adapter written once into the
    // class of every slot it fills, padded to the widest rank written there
    const perRow: number[] = [];
    for (let s = 0; s < S; s++) {
      const lane = lanedSlot(sv, s, D);
      if (lane) Object.assign(pools, lanePools(D, effective, site, table.entry, s, lane.biasColumn, plans[0].diffs, fold));
      else perRow.push(s);
    }
    const classOf = (s: number) => slotRank(sv, s) ?? 0;
    const byClass = new Map<number, Map<string, AdapterModule>>();
    for (let l = 0; l < L; l++)
      for (const s of perRow)
        for (const a of table.entry[l][s]) {
          if (!a) continue;
          const c = classOf(s);
          const mods = byClass.get(c) ?? new Map<string, AdapterModule>();
          byClass.set(c, mods);
          mods.set(a.key, a);
        }
    for (const s of perRow) if (!byClass.has(classOf(s))) byClass.set(classOf(s), new Map());
    const slotOf = new Map<number, { space: PoolSpace; slots: Map<string, number> }>();
    for (const [c, mods] of byClass) {
      let R = 1;
      for (const m of mods.values()) for (const ly of m.layers) if (ly[site]) R = Math.max(R, ly[site]!.r);
      const space = spaces.space(c ? `adapter.${site}.r${c}` : `adapter.${site}`, L, adapterParts(D, R));
      const Rp = space.dims('down_w')[1];
      const slots = new Map<string, number>();
      for (const [key, m] of mods)
        slots.set(
          key,
          space.slot(key, (slot) => {
            for (let l = 0; l < L; l++) {
              const w = m.layers[l][site];
              if (w) writeAdapterEntry(slot, l, w, D, Rp);
            }
          }),
        );
      slotOf.set(c, { space, slots });
      for (const part of wanted) pools[POOL.adapter(site, part, c || undefined)] = space.feed(part);
    }
    const idx = new BigInt64Array(L * S * B);
    for (let l = 0; l < L; l++)
      for (const s of perRow) {
        const { space, slots } = slotOf.get(classOf(s))!;
        for (let b = 0; b < B; b++) {
          const a = table.entry[l][s][b];
          idx[(l * S + s) * B + b] = BigInt(space.entry(a ? slots.get(a.key)! : 0, l));
        }
      }
    // read only by per-row slots (a graph whose slots are all laned declares no index)
    if (perRow.length) pools[POOL.adapter(site, 'idx')] = { type: 'int64', dims: [L, S, B], data: idx };
  }
  const flagTensor = (vals: (number | null)[][][], S2: number, fill: number) => {
    const out = new Float32Array(L * S2 * B);
    for (let l = 0; l < L; l++) for (let s = 0; s < S2; s++) for (let b = 0; b < B; b++) out[(l * S2 + s) * B + b] = vals[l][s][b] ?? fill;
    return { type: 'float32' as const, dims: [L, S2, B], data: out };
  };
  for (const f of ADAPTER_FLAGS) if (sv.flags[f] === 'mixed') pools[POOL.adapterFlag(site, f)] = flagTensor(table.flags[f], S, 0);
  if (sv.resScale === 'mixed') pools[POOL.adapterFlag(site, 'resScale')] = flagTensor(table.resScale, S, 1);
  if (sv.finalLn === 'mixed') pools[POOL.adapterFlag(site, 'finalLn')] = flagTensor(table.finalLn.map((r) => [r]), 1, 1);
  if (Array.isArray(sv.act) ? sv.act.includes('mixed') : sv.act === 'mixed') {
    for (const a of ACTIVATIONS) {
      const vals = table.entry.map((ly) => ly.map((row) => row.map((m) => (m ? +(m.config.non_linearity === a) : 0))));
      pools[POOL.adapterFlag(site, `act_${a}`)] = flagTensor(vals, S, 0);
    }
  }
  if (sv.fuse > 0) Object.assign(pools, fusionPools(cfg, site, plans));
  return pools;
}

/** Per-entry shapes of a site's adapter pool parts at padded rank R. */
function adapterParts(D: number, R: number): PartSpec[] {
  return [
    { name: 'down_w', dims: [D, R] },
    { name: 'down_b', dims: [1, R] },
    { name: 'up_w', dims: [R, D] },
    { name: 'up_b', dims: [1, D] },
    { name: 'lnb_g', dims: [1, D] },
    { name: 'lnb_b', dims: [1, D] },
    { name: 'lna_g', dims: [1, D] },
    { name: 'lna_b', dims: [1, D] },
  ];
}

/**
 * One adapter at one layer and site written straight into its pool slot (zeroed), rank-padded to R; LayerNorm
 * parts only where it has them (a part left alone stays zero). No entry arrays in between: a first request's slot
 * writes are new memory enough (README: Performance, cold start).
 */
function writeAdapterEntry(slot: SlotWriter, l: number, w: AdapterSiteWeights, D: number, R: number): void {
  const down = slot.part('down_w');
  for (let d = 0; d < D; d++) down.set(w.downT.subarray(d * w.r, (d + 1) * w.r), (l * D + d) * R);
  slot.part('down_b').set(w.downB, l * R);
  slot.part('up_w').set(w.upT, l * R * D); // rows r..R stay zero
  slot.part('up_b').set(w.upB, l * D);
  if (w.lnBefore) {
    slot.part('lnb_g').set(w.lnBefore.g, l * D);
    slot.part('lnb_b').set(w.lnBefore.b, l * D);
  }
  if (w.lnAfter) {
    slot.part('lna_g').set(w.lnAfter.g, l * D);
    slot.part('lna_b').set(w.lnAfter.b, l * D);
  }
}

/** One adapter at one layer and site as pool entries, rank-padded to R (all zeros where it has none). */
function adapterEntry(w: AdapterSiteWeights | undefined, D: number, R: number): Record<string, Float32Array> {
  const e: Record<string, Float32Array> = {
    down_w: new Float32Array(D * R),
    down_b: new Float32Array(R),
    up_w: new Float32Array(R * D),
    up_b: new Float32Array(D),
    lnb_g: new Float32Array(D),
    lnb_b: new Float32Array(D),
    lna_g: new Float32Array(D),
    lna_b: new Float32Array(D),
  };
  if (w) writeAdapterEntry({ slot: 0, part: (name) => e[name] }, 0, w, D, R);
  return e;
}

/** The fold cache's key of one module's folded slot: a uniform batch and a lane of that module share it. */
function foldKey(module: string, site: Site, l: number, s: number, biasColumn: boolean, diffs: DiffSet): string {
  return `${module}|${site}|${l}|${s}|${+biasColumn}|${diffSetKey(diffs)}`;
}

/**
 * The feeds of laned slot s (lanedSlot in encoder-graph.ts): its distinct adapters in order of their first row, one
 * lane each, with the lane's rows and per layer its adapter's folded weights (foldedSlotFeeds; a layer the adapter
 * leaves out, and an empty lane, get zero weights); rows without an adapter there are in no lane.
 */
function lanePools(D: number, effective: EffectiveParam, site: Site, entry: (AdapterModule | null)[][][], s: number, biasColumn: boolean, diffs: DiffSet, fold: FoldCache): Pools {
  const L = entry.length;
  const B = entry[0][s].length;
  const mods: AdapterModule[] = [];
  const laneOf = new Array<number>(B).fill(-1);
  for (let b = 0; b < B; b++) {
    const a = entry.map((ly) => ly[s][b]).find((x) => x);
    if (!a) continue;
    let k = mods.findIndex((m) => m.key === a.key);
    if (k < 0) k = mods.push(a) - 1;
    laneOf[b] = k;
  }
  if (mods.length > LANES) throw new RangeError(`slot ${s} at the ${site} site holds ${mods.length} adapters in one run; its graph has ${LANES} lanes (variants.ts laneGroups splits runs)`);
  const pools: Pools = {};
  for (let k = 0; k < LANES; k++) {
    const rows: bigint[] = [];
    laneOf.forEach((x, b) => x === k && rows.push(BigInt(b)));
    pools[POOL.laneRows(site, s, k)] = { type: 'int64', dims: [rows.length], data: BigInt64Array.from(rows) };
    const a = mods[k];
    let R = 1;
    for (let l = 0; l < L; l++) R = Math.max(R, a?.layers[l][site]?.r ?? 0);
    for (let l = 0; l < L; l++) {
      // the uniform path's folds (same weights); an empty lane's zeros are its own (a feed appears once a run)
      const folded = fold(foldKey(a ? a.key : `lane${k}:none`, site, l, s, biasColumn, diffs), () => foldedSlotFeeds(D, effective, site, diffs, l, s, biasColumn, a?.layers[l][site], R));
      for (const part of ['down_wf', 'down_bf', 'up_wb']) pools[POOL.laneSlot(site, part, l, s, k)] = folded[POOL.adapterSlot(site, part, l, s)];
    }
  }
  return pools;
}

/**
 * One uniform carried slot's weights folded with the site's original LayerNorm (see foldedSlot in
 * encoder-graph.ts): down_wf = γ⊙Wd minus its column means (the centring of LN), down_bf = β·Wd + bd,
 * up_wb = [Wu; bu]; with `biasColumn` the down projection gets a column of weight 0 and bias 1 (relu(1) = 1 is
 * the ones column that carries bu).
 */
function foldedSlotFeeds(D: number, effective: EffectiveParam, site: Site, diffs: DiffSet, l: number, s: number, biasColumn: boolean, w: AdapterSiteWeights | undefined, R: number): Pools {
  const ln = `layers.${l}.${site === 'attention' ? 'attn_ln' : 'ffn_ln'}`;
  const gamma = effective(`${ln}.weight`, diffs);
  const beta = effective(`${ln}.bias`, diffs);
  const R1 = biasColumn ? R + 1 : R;
  const wf = new Float32Array(D * R1);
  const bf = new Float32Array(R1);
  const wb = new Float32Array((R + 1) * D);
  if (w) {
    // the module's own rank r ≤ R: columns r..R of wf, rows r..R of wb stay zero (padding)
    const r0 = w.r;
    const downT = w.downT;
    const colMean = new Float64Array(r0);
    for (let d = 0; d < D; d++) {
      const g = gamma[d];
      const b = beta[d];
      for (let r = 0; r < r0; r++) {
        const x = downT[d * r0 + r];
        colMean[r] += (g * x) / D;
        bf[r] += b * x;
      }
    }
    for (let d = 0; d < D; d++) for (let r = 0; r < r0; r++) wf[d * R1 + r] = gamma[d] * downT[d * r0 + r] - colMean[r];
    for (let r = 0; r < r0; r++) bf[r] += w.downB[r];
    wb.set(w.upT);
    wb.set(w.upB, R * D);
  }
  if (biasColumn) bf[R] = 1;
  return {
    [POOL.adapterSlot(site, 'down_wf', l, s)]: { type: 'float32', dims: [D, R1], data: wf, moveToWorker: true },
    [POOL.adapterSlot(site, 'down_bf', l, s)]: { type: 'float32', dims: [1, R1], data: bf, moveToWorker: true },
    [POOL.adapterSlot(site, 'up_wb', l, s)]: { type: 'float32', dims: [R + 1, D], data: wb, moveToWorker: true },
  };
}

/** AdapterFusion at one site: per layer a zero entry plus each distinct fusion's query/key/value and temperature. */
function fusionPools(cfg: BaseConfig, site: Site, plans: RowPlan[]): Pools {
  const L = cfg.numLayers;
  const D = cfg.hiddenSize;
  const B = plans.length;
  const mods = [...new Map(plans.filter((p) => p.fuse).map((p) => [p.fuse!.fusion.key, p.fuse!.fusion])).values()];
  const P = mods.length + 1;
  const qW = new Float32Array(L * P * D * D);
  const qB = new Float32Array(L * P * D);
  const kW = new Float32Array(L * P * D * D);
  const kB = new Float32Array(L * P * D);
  const vW = new Float32Array(L * P * D * D);
  const temp = new Float32Array(L * P).fill(1);
  const present = new Float32Array(L * P);
  for (let l = 0; l < L; l++)
    mods.forEach((m, i) => {
      const w = m.layers[l][site];
      if (!w) return;
      const e = l * P + i + 1;
      qW.set(w.qT, e * D * D);
      qB.set(w.qB, e * D);
      kW.set(w.kT, e * D * D);
      kB.set(w.kB, e * D);
      vW.set(w.vT, e * D * D);
      temp[e] = 1 / m.temperature;
      present[e] = 1;
    });
  const idx = new BigInt64Array(L * B);
  for (let l = 0; l < L; l++)
    plans.forEach((p, b) => {
      const i = p.fuse ? mods.findIndex((m) => m.key === p.fuse!.fusion.key) + 1 : 0;
      idx[l * B + b] = BigInt(l * P + i);
    });
  return {
    [POOL.fuse(site, 'q_w')]: { type: 'float32', dims: [L * P, D, D], data: qW },
    [POOL.fuse(site, 'q_b')]: { type: 'float32', dims: [L * P, 1, D], data: qB },
    [POOL.fuse(site, 'k_w')]: { type: 'float32', dims: [L * P, D, D], data: kW },
    [POOL.fuse(site, 'k_b')]: { type: 'float32', dims: [L * P, 1, D], data: kB },
    [POOL.fuse(site, 'v_w')]: { type: 'float32', dims: [L * P, D, D], data: vW },
    [POOL.fuse(site, 'temp')]: { type: 'float32', dims: [L * P, 1, 1], data: temp },
    [POOL.fuse(site, 'present')]: { type: 'float32', dims: [L * P, 1, 1], data: present },
    [POOL.fuse(site, 'idx')]: { type: 'int64', dims: [L, B], data: idx },
  };
}
