/**
 * Variant choice: which graph a group of rows needs (sites, stack depth, per-row switches uniform or mixed,
 * LoRA targets, invertible adapter, heads), derived from the rows' plans alone; and the slot table both the
 * choice and the adapter pools read (which adapter and which AdapterHub switches sit in each layer, slot and row).
 * A variant names a session (session-cache.ts); the pools (pools.ts) fill its inputs.
 * Example:
 *   const v = chooseVariant(base.config.numLayers, plans, false);
 */
import type { RowPlan } from '../model/composition';
import { ADAPTER_FLAGS, IA3_TARGETS, LANES, LORA_TARGETS, MIN_RANK_CLASS, SITES, wideClass, type Activation, type AdapterFlag, type FlagMode, type LoraTarget, type Site, type SiteVariant, type Variant, variantKey } from '../model/encoder-graph';
import { adapterSwitches } from '../../modules-store/kinds/bottleneck';
import type { AdapterModule } from '../model/modules';

/** The graph variant a group of rows needs; `mlm` asks for masked-LM logits. */
export function chooseVariant(numLayers: number, plans: RowPlan[], mlm: boolean): Variant {
  const sites: Variant['sites'] = {};
  for (const site of SITES) {
    const slots = Math.max(0, ...plans.map((p) => p.adapters.length));
    const fuse = Math.max(0, ...plans.map((p) => (p.fuse && p.fuse.fusion.layers.some((ly) => ly[site]) ? p.fuse.adapters.length : 0)));
    const used = plans.some((p) => p.adapters.some((a) => a.layers.some((ly) => ly[site]))) || fuse > 0;
    if (!used) continue;
    const table = slotTable(numLayers, plans, site, slots, fuse);
    const flags = {} as Record<AdapterFlag, FlagMode>;
    for (const f of ADAPTER_FLAGS) flags[f] = modeOf(table.flags[f]);
    // Activation per slot: uniform across rows and layers unless the rows' adapters in that slot differ.
    const act = table.entry[0].map((_, s) => {
      const set = new Set<Activation>();
      for (const ly of table.entry) for (const a of ly[s]) if (a) set.add(a.config.non_linearity);
      return set.size <= 1 ? ([...set][0] ?? 'relu') : ('mixed' as const);
    });
    const finalLn = modeOf(table.finalLn);
    const resScale = table.resScale.flat(2).every((x) => x === 1) ? 'off' : 'mixed';
    const uniform = table.entry.every((ly) => ly.every((row) => row.every((a) => (a?.key ?? null) === (row[0]?.key ?? null))));
    const ranks = Array.from({ length: table.S }, (_, s) => {
      let c = 0;
      table.entry.forEach((ly, l) => ly[s].forEach((a) => a && (c = Math.max(c, rankClass(a.layers[l][site]!.r)))));
      return c;
    });
    sites[site] = { slots, flags, finalLn, act, fuse, resScale, uniform, ranks };
  }
  const lora = LORA_TARGETS.filter((t) => plans.some((p) => p.loras.some((m) => m.layers.some((ly) => ly[t]))));
  const loraRanks: Partial<Record<LoraTarget, number>> = {};
  for (const t of lora) loraRanks[t] = Math.max(...plans.map((p) => loraClass(p, t)));
  const invs = plans.map((p) => p.invertible?.config.non_linearity ?? null);
  const invSet = new Set(invs.filter((x): x is Activation => x !== null));
  const heads = plans.map((p) => p.head?.weights.config.type ?? null);
  const clsDense = plans.map((p) => (p.head?.weights.config.type === 'classification' ? (p.head.weights.clsDenseT ? 1 : 0) : null));
  const loraKeys = new Set(plans.map((p) => p.loras.map((m) => m.key).join('+')));
  const ia3 = IA3_TARGETS.filter((t) => plans.some((p) => p.ia3s.some((m) => m.layers.some((ly) => ly[t]))));
  const ia3Keys = new Set(plans.map((p) => p.ia3s.map((m) => m.key).join('*')));
  return {
    sites,
    lora,
    loraUniform: loraKeys.size === 1,
    ...(lora.length ? { loraRanks } : {}),
    // absent unless some row scales with IA³, so the variants (and sessions) of other batches are unchanged
    ...(ia3.length ? { ia3, ia3Uniform: ia3Keys.size === 1 } : {}),
    invertible: invSet.size > 0,
    invUniform: invSet.size > 0 && new Set(plans.map((p) => p.invertible?.key ?? null)).size === 1,
    invAct: invSet.size <= 1 ? ([...invSet][0] ?? 'relu') : 'mixed',
    heads: { cls: heads.includes('classification'), tok: heads.includes('token_classification'), mlm },
    clsDense: heads.includes('classification') ? modeOf([clsDense]) : 'off',
    // absent unless some row has bias-only diffs, so other batches keep their variants (and sessions)
    ...(plans.some((p) => p.rowBias?.length) ? { rowBias: true } : {}),
  };
}

/**
 * The rank class of an adapter of rank r: the smallest power of 4 (at least MIN_RANK_CLASS) that holds it. A mixed
 * slot pads its rows' adapters to the widest rank written to its class's pool, so within a class ranks differ by at
 * most a factor 4. At BERT-base a task adapter of reduction 16 (rank 48) is class 64, a MAD-X language adapter of
 * reduction 2 (rank 384) class 1024: rows of the two run apart (`rankGroups`), each class in a pool of its own.
 */
export function rankClass(r: number): number {
  let c = MIN_RANK_CLASS;
  while (c < r) c *= 4;
  return c;
}

/**
 * A row's rank classes: per site and stack slot (0: no adapter there), and per LoRA target (`lora.<target>`). Fused
 * adapters are left out: fusion batches run on graphs of their own (joinVariants), whose slots take the widest
 * class of their rows (chooseVariant).
 */
function rowRanks(plan: RowPlan, numLayers: number): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const site of SITES) {
    const ranks = plan.adapters.map((a) => classOver(a, numLayers, site));
    if (ranks.some((c) => c > 0)) out[site] = ranks;
  }
  for (const t of LORA_TARGETS) {
    const c = loraClass(plan, t);
    if (c) out[`lora.${t}`] = [c];
  }
  return out;
}

/** The rank class of a row's LoRA set at a target: of its summed ranks (the set's factors are concatenated), 0 without. */
function loraClass(plan: RowPlan, target: LoraTarget): number {
  const layers = plan.loras[0]?.layers.length ?? 0;
  let r = 0;
  for (let l = 0; l < layers; l++) r = Math.max(r, plan.loras.reduce((a, m) => a + (m.layers[l][target] ? m.r : 0), 0));
  return r ? rankClass(r) : 0;
}

function classOver(a: AdapterModule, numLayers: number, site: Site): number {
  let c = 0;
  for (let l = 0; l < numLayers; l++) {
    const w = a.layers[l]?.[site];
    if (w) c = Math.max(c, rankClass(w.r));
  }
  return c;
}

/**
 * The run of `rankGroups` a row joins, as the queue sees it (QueueJob `run`): its adapters' rank classes per stack
 * slot, the widest over the sites, e.g. '1024,64' for a MAD-X stack at BERT-base and '64' for a task adapter; undefined
 * for a row without adapters (LoRA alone, IA³, bias-only diffs, nothing), which joins whatever run the batch has.
 * Rows of one name share a run unless their ranks differ per site or LoRA target (rare), so a batch formed by name
 * makes few runs.
 */
export function runClass(plan: RowPlan, numLayers: number): string | undefined {
  const ranks = rowRanks(plan, numLayers);
  const slots = plan.adapters.map((_, s) => Math.max(0, ...SITES.map((site) => ranks[site]?.[s] ?? 0)));
  return slots.some((c) => c > 0) ? slots.join(',') : undefined;
}

/**
 * Splits rows (indices into `plans`) so that no stack slot of a run holds more than LANES distinct adapters of a rank
 * class wider than the hidden size: such a slot runs in that many lanes (encoder-graph.ts lanedSlot). Each row joins
 * the first group it fits, in order; a batch's MAD-X stacks split only when they bring more than LANES languages.
 */
export function laneGroups(rows: number[], plans: RowPlan[], numLayers: number, hidden: number): number[][] {
  const groups: { rows: number[]; lanes: Map<string, Set<string>> }[] = [];
  for (const r of rows) {
    const ranks = rowRanks(plans[r], numLayers);
    const wide: [string, string][] = [];
    for (const site of SITES) plans[r].adapters.forEach((a, s) => wideClass(ranks[site]?.[s] ?? 0, hidden) && wide.push([`${site}.${s}`, a.key]));
    const fits = (g: (typeof groups)[number]) => wide.every(([slot, key]) => !g.lanes.get(slot) || g.lanes.get(slot)!.has(key) || g.lanes.get(slot)!.size < LANES);
    let g = groups.find(fits);
    if (!g) groups.push((g = { rows: [], lanes: new Map() }));
    g.rows.push(r);
    for (const [slot, key] of wide) g.lanes.set(slot, (g.lanes.get(slot) ?? new Set()).add(key));
  }
  return groups.map((g) => g.rows);
}

/**
 * Splits rows (indices into `plans`) so that no stack slot or LoRA target of a run holds modules of two rank
 * classes: a row of a reduction-16 adapter in a run with a MAD-X language adapter of reduction 2 would pay for a
 * rank-384 slot at BERT-base (+8% of the base's multiply-adds per slot, and per-row gathers 8× as large). Rows that
 * fit more than one run (LoRA alone, or neither adapters nor LoRA) join the narrowest: in a MAD-X stack's run they
 * would go through its wide language slot and invertible adapter on zero weights (a batch of 6 stacks, 6 adapters
 * and 4 LoRA rows, small base: 2.5% faster with the LoRA rows beside the adapters). Order within each run follows
 * `rows`.
 */
export function rankGroups(rows: number[], plans: RowPlan[], numLayers: number): number[][] {
  const groups: RankGroup[] = [];
  const flexible: { row: number; ranks: Record<string, number[]> }[] = [];
  for (const r of rows) {
    const mine = rowRanks(plans[r], numLayers);
    // rows without adapters (LoRA alone, or nothing) fit most runs: placed once the adapter rows have formed them
    if (!SITES.some((site) => mine[site])) {
      flexible.push({ row: r, ranks: mine });
      continue;
    }
    join(groups, mine, r);
  }
  for (const { row, ranks } of flexible) {
    const fits = groups.filter((x) => fitsRanks(x.ranks, ranks));
    if (!fits.length) {
      join(groups, ranks, row);
      continue;
    }
    addRow(fits.reduce((a, b) => (width(b.ranks) < width(a.ranks) || (width(b.ranks) === width(a.ranks) && b.rows.length > a.rows.length) ? b : a)), ranks, row);
  }
  if (groups.length <= 1) return [rows];
  const runOf = new Map<number, number>();
  groups.forEach((g, i) => g.rows.forEach((r) => runOf.set(r, i)));
  return groups.map((_, i) => rows.filter((r) => runOf.get(r) === i));
}

interface RankGroup {
  ranks: Record<string, number[]>;
  rows: number[];
}

/** Adds row r to the first group its ranks fit, or a new one. */
function join(groups: RankGroup[], mine: Record<string, number[]>, r: number): void {
  const g = groups.find((x) => fitsRanks(x.ranks, mine));
  if (g) addRow(g, mine, r);
  else groups.push({ ranks: mine, rows: [r] });
}

/** Row r joins group g, whose classes take the row's where it had none. */
function addRow(g: RankGroup, mine: Record<string, number[]>, r: number): void {
  for (const k of Object.keys(mine)) g.ranks[k] = mergeRanks(g.ranks[k], mine[k]);
  g.rows.push(r);
}

function fitsRanks(group: Record<string, number[]>, mine: Record<string, number[]>): boolean {
  return Object.keys(mine).every((k) => compatible(group[k], mine[k]));
}

/** What one more row costs in a run of these classes, roughly: the summed widths of its slots and LoRA targets. */
function width(ranks: Record<string, number[]>): number {
  let w = 0;
  for (const list of Object.values(ranks)) for (const c of list) w += c;
  return w;
}

/** Whether two per-slot rank lists agree wherever both have an adapter (0 or a missing slot fits anything). */
function compatible(a: number[] | undefined, b: number[] | undefined): boolean {
  if (!a || !b) return true;
  for (let s = 0; s < Math.min(a.length, b.length); s++) if (a[s] && b[s] && a[s] !== b[s]) return false;
  return true;
}

/** Per slot the class either side has (they agree where both have one, or they differ and the larger stays). */
function mergeRanks(a: number[] | undefined, b: number[] | undefined): number[] {
  const x = a ?? [];
  const y = b ?? [];
  return Array.from({ length: Math.max(x.length, y.length) }, (_, s) => Math.max(x[s] ?? 0, y[s] ?? 0));
}

/** Per (layer, slot, row): the adapter entry and its switches at one site (see slotTable). */
export interface SlotTable {
  /** Slots in all: the stack, then (with fusion) the pre-step and the fused adapters. */
  S: number;
  entry: (AdapterModule | null)[][][]; // [L][S][B]
  flags: Record<AdapterFlag, (number | null)[][][]>; // [L][S][B]
  finalLn: number[][]; // [L][B]
  resScale: number[][][]; // [L][S][B]
}

/**
 * Per (layer, slot, row) the adapter entry and its switches at one site. Slots [0, S) are the stack, slot S
 * the fusion pre-step, slots S+1.. the fused adapters. `null` marks an identity slot ("don't care" switch).
 */
export function slotTable(numLayers: number, plans: RowPlan[], site: Site, slots: number, fuse: number): SlotTable {
  const L = numLayers;
  const S = slots + (fuse > 0 ? 1 + fuse : 0);
  const B = plans.length;
  const entry: (AdapterModule | null)[][][] = []; // [L][S][B]
  const flags = {} as Record<AdapterFlag, (number | null)[][][]>;
  for (const f of ADAPTER_FLAGS) flags[f] = [];
  const resScale: number[][][] = []; // [L][S][B]
  const finalLn: number[][] = []; // [L][B]
  for (let l = 0; l < L; l++) {
    const e: (AdapterModule | null)[][] = [];
    const fl = {} as Record<AdapterFlag, (number | null)[][]>;
    for (const f of ADAPTER_FLAGS) fl[f] = [];
    const fin: number[] = [];
    const rs: number[][] = [];
    for (let s = 0; s < S; s++) {
      const rsRow: number[] = [];
      const row: (AdapterModule | null)[] = [];
      const fr = {} as Record<AdapterFlag, (number | null)[]>;
      for (const f of ADAPTER_FLAGS) fr[f] = [];
      for (let b = 0; b < B; b++) {
        const p = plans[b];
        let a: AdapterModule | null = null;
        let preOnly = false;
        if (s < slots) a = p.adapters[s] ?? null;
        else if (p.fuse && p.fuse.fusion.layers[l][site]) {
          if (s === slots) {
            // AdapterHub's compose_fuse runs the pre-step with the LAST fused adapter's configuration.
            a = p.fuse.adapters[p.fuse.adapters.length - 1];
            preOnly = true;
          } else a = p.fuse.adapters[s - slots - 1] ?? null;
        }
        const present = a && (preOnly || a.layers[l][site]) ? a : null;
        row.push(present && !preOnly ? present : null);
        // AdapterHub's switches of this slot, as the bottleneck descriptor derives them (the trainer uses the same);
        // parLast: a parallel adapter that is the row's last adapter here (post_forward adds the sub-layer output)
        const sw = adapterSwitches(present?.config ?? null, preOnly, s < slots && isLastAdapter(p, l, site, s));
        for (const f of ADAPTER_FLAGS) fr[f].push(sw[f]);
        rsRow.push(present && !preOnly ? (present.residualScale ?? 1) : 1);
      }
      rs.push(rsRow);
      e.push(row);
      for (const f of ADAPTER_FLAGS) fl[f].push(fr[f]);
    }
    for (let b = 0; b < B; b++) {
      const p = plans[b];
      // original_ln_after of the last adapter present at this layer and site; the bare site otherwise.
      let last: AdapterModule | null = null;
      for (const a of p.adapters) if (a.layers[l][site]) last = a;
      if (p.fuse && p.fuse.fusion.layers[l][site]) last = p.fuse.adapters[p.fuse.adapters.length - 1];
      fin.push(last ? +last.config.original_ln_after : 1);
    }
    entry.push(e);
    resScale.push(rs);
    for (const f of ADAPTER_FLAGS) flags[f].push(fl[f]);
    finalLn.push(fin);
  }
  return { S, entry, flags, finalLn, resScale };
}

/** Whether stack slot s is the row's last adapter at this layer and site (no later slot present, no fusion after). */
function isLastAdapter(p: RowPlan, l: number, site: Site, s: number): boolean {
  if (p.fuse && p.fuse.fusion.layers[l][site]) return false;
  for (let t = s + 1; t < p.adapters.length; t++) if (p.adapters[t].layers[l][site]) return false;
  return true;
}

/** Mode of a switch over all its (layer, slot, row) values; null entries don't care. */
function modeOf(vals: (number | null)[][][] | (number | null)[][] | (number | null)[]): FlagMode {
  const flat = (vals as unknown[]).flat(3) as (number | null)[];
  const set = new Set(flat.filter((x) => x !== null));
  if (set.size === 0) return 'off';
  if (set.size === 2) return 'mixed';
  return set.has(1) ? 'on' : 'off';
}

/**
 * The smallest variant whose graph serves the rows of both `a` and `b` (null when none is kept: fusion widths or
 * masked-LM outputs differ, AdapterFusion or IA³ is involved). Every per-row choice becomes a per-row feed ('mixed', gathers
 * instead of uniform weights), features are united (stack depth, sites, LoRA targets, the invertible adapter,
 * heads, per-row biases). Exact for any rows either side's plans allow: a row without a feature gets its zero
 * slot (identity: zero LoRA factors, an empty adapter slot, zero invertible weights, its own biases).
 */
export function joinVariants(a: Variant, b: Variant): Variant | null {
  // a field this function does not know (a new module kind's) cannot be joined safely: no join, a session of its own
  if ([a, b].some((v) => Object.keys(v).some((k) => !JOINABLE.has(k)) || Object.values(v.sites).some((sv) => Object.keys(sv).some((k) => !JOINABLE_SITE.has(k))))) return null;
  if (a.heads.mlm !== b.heads.mlm || a.ia3?.length || b.ia3?.length) return null;
  if ([a, b].some((v) => Object.values(v.sites).some((sv) => sv.fuse > 0))) return null;
  const sites: Variant['sites'] = {};
  for (const site of SITES) {
    const x = a.sites[site];
    const y = b.sites[site];
    if (!x && !y) continue;
    if (!x || !y) {
      const only = (x ?? y)!;
      if (!only.ranks) return null; // a graph with one pool per site (built without ranks) joins nothing
      // rows of the other side have no adapter here: their switches don't care, but their site-final LN is on
      sites[site] = { ...only, flags: { ...only.flags }, finalLn: only.finalLn === 'on' ? 'on' : 'mixed', act: actArray(only), uniform: false };
      continue;
    }
    // one pool per slot: slots whose adapters fall in different rank classes are two graphs (rankGroups splits them)
    if (!x.ranks || !y.ranks || !compatible(x.ranks, y.ranks)) return null;
    const flags = {} as Record<AdapterFlag, FlagMode>;
    for (const f of ADAPTER_FLAGS) flags[f] = joinMode(x.flags[f], y.flags[f]);
    // parLast only matters to parallel adapters: a side without any reads 'off' there but does not care
    if (x.flags.parallel === 'off') flags.parLast = y.flags.parLast;
    else if (y.flags.parallel === 'off') flags.parLast = x.flags.parLast;
    const slots = Math.max(x.slots, y.slots);
    const ax = actArray(x);
    const ay = actArray(y);
    const act = Array.from({ length: slots }, (_, s) => (ax[s] === undefined ? ay[s] : ay[s] === undefined || ax[s] === ay[s] ? ax[s] : 'mixed'));
    sites[site] = { slots, flags, finalLn: joinMode(x.finalLn, y.finalLn), act, fuse: 0, resScale: x.resScale === 'off' && y.resScale === 'off' ? 'off' : 'mixed', uniform: false, ranks: mergeRanks(x.ranks, y.ranks) };
  }
  const lora = LORA_TARGETS.filter((t) => a.lora.includes(t) || b.lora.includes(t));
  // one pool per LoRA target too: sets of different rank classes are two graphs
  if ((a.lora.length && !a.loraRanks) || (b.lora.length && !b.loraRanks)) return null;
  const loraRanks: Partial<Record<LoraTarget, number>> = {};
  for (const t of lora) {
    const [x, y] = [a.loraRanks?.[t], b.loraRanks?.[t]];
    if (x && y && x !== y) return null;
    loraRanks[t] = x ?? y;
  }
  const invertible = a.invertible || b.invertible;
  const invAct = !a.invertible ? b.invAct : !b.invertible || a.invAct === b.invAct ? a.invAct : 'mixed';
  const clsDense = !a.heads.cls ? b.clsDense : !b.heads.cls ? a.clsDense : joinMode(a.clsDense, b.clsDense);
  return {
    sites,
    lora,
    loraUniform: lora.length === 0,
    ...(lora.length ? { loraRanks } : {}),
    invertible,
    invUniform: false,
    invAct: invertible ? invAct : 'relu',
    heads: { cls: a.heads.cls || b.heads.cls, tok: a.heads.tok || b.heads.tok, mlm: a.heads.mlm },
    clsDense: a.heads.cls || b.heads.cls ? clsDense : 'off',
    ...(a.rowBias || b.rowBias ? { rowBias: true } : {}),
  };
}

const JOINABLE = new Set(['sites', 'lora', 'loraUniform', 'loraRanks', 'ia3', 'ia3Uniform', 'invertible', 'invUniform', 'invAct', 'heads', 'clsDense', 'rowBias']);
const JOINABLE_SITE = new Set(['slots', 'flags', 'finalLn', 'act', 'fuse', 'resScale', 'uniform', 'ranks']);

/** Whether the graph of `e` serves every batch `v` describes (joining `v` into `e` changes nothing). */
export function coversVariant(e: Variant, v: Variant): boolean {
  const j = joinVariants(e, v);
  return j !== null && variantKey(j) === variantKey(e);
}

/** A per-row switch over two batches: the same mode stays, differing modes become 'mixed'. */
function joinMode(x: FlagMode, y: FlagMode): FlagMode {
  return x === y ? x : 'mixed';
}

function actArray(sv: SiteVariant): (Activation | 'mixed')[] {
  return Array.isArray(sv.act) ? [...sv.act] : Array.from({ length: sv.slots }, () => sv.act as Activation | 'mixed');
}

/**
 * A variant in a few words, for logs: per site its stack slots' rank classes ('u' where one adapter serves every
 * row), LoRA targets with their classes, IA³, the invertible adapter, per-row biases and the heads, e.g.
 * 'attn_out[1024,64] ffn_out[1024,64] lora query:16,value:16 inv rowBias heads cls'.
 */
export function describeVariant(v: Variant): string {
  const parts: string[] = [];
  for (const site of SITES) {
    const sv = v.sites[site];
    if (sv) parts.push(`${site}[${sv.uniform ? 'u' : (sv.ranks ?? []).join(',')}]${sv.fuse ? `+fuse${sv.fuse}` : ''}`);
  }
  if (v.lora.length) parts.push(`lora ${v.lora.map((t) => (v.loraUniform ? `${t}:u` : `${t}:${v.loraRanks?.[t] ?? '?'}`)).join(',')}`);
  if (v.ia3?.length) parts.push(`ia3 ${v.ia3.join(',')}`);
  if (v.invertible) parts.push(v.invUniform ? 'inv:u' : 'inv');
  if (v.rowBias) parts.push('rowBias');
  const heads = (['cls', 'tok', 'mlm'] as const).filter((h) => v.heads[h]);
  parts.push(heads.length ? `heads ${heads.join(',')}` : 'no heads');
  return parts.join(' ');
}

/** Whether a variant's graph is one composition's own (uniform weights everywhere): it serves no other batch. */
export function isUniform(v: Variant): boolean {
  return Object.values(v.sites).every((sv) => sv.uniform) && (!v.lora.length || !!v.loraUniform) && (!v.invertible || !!v.invUniform) && (!v.ia3?.length || !!v.ia3Uniform);
}
