/**
 * Composition of modules, in AdapterHub's block vocabulary (docs/module-format.md):
 *   "ns/name[@rev]" | {stack: [...]} | {sum: [...]} | {fuse: [...], fusion: "ns/f"} | {parallel: [...]}
 *   | {average: [...], weights?: [...], normalize_weights?: true}
 * `parseComposition` validates the JSON shape; `planComposition` turns a tree whose leaves are loaded modules
 * into one `RowPlan` per output branch (parallel gives several), which is what the engine batches.
 */
import { ModuleError, type AdapterModule, type DiffModule, type EngineModule, type FusionModule, type HeadWeights, type Ia3Module, type LoraModule, type AdapterSiteWeights } from './modules';
import { SITES, type Site } from './encoder-graph';
import type { Composition } from '../../client-sdk/wire';

// The wire type (client-sdk/wire.ts) is the one definition; parseComposition checks raw JSON against it.
export type { Composition };

const MAX_NODES = 64;
/** Largest |weight| of an `average` block, before and after normalising: beyond it float32 module tensors overflow. */
export const MAX_AVERAGE_WEIGHT = 1000;

function bad(path: string, msg: string): ModuleError {
  return new ModuleError('INVALID_COMPOSITION', `composition${path}: ${msg}`);
}

/** Validates the JSON shape of a composition (no module lookups); returns it typed. `null` = bare base. */
export function parseComposition(raw: unknown): Composition | null {
  if (raw === null || raw === undefined) return null;
  let nodes = 0;
  const walk = (c: unknown, path: string, depth: number): Composition => {
    if (++nodes > MAX_NODES) throw bad('', `more than ${MAX_NODES} blocks and modules`);
    if (depth > 8) throw bad(path, 'nested deeper than 8 blocks');
    if (typeof c === 'string') {
      if (!/^[a-z0-9][a-z0-9._-]*\/[a-z0-9][a-z0-9._-]*(@[A-Za-z0-9._+-]+)?$/.test(c)) throw bad(path, `'${c}' is not a module reference (ns/name, ns/name@version or ns/name@tag)`);
      return c;
    }
    if (!c || typeof c !== 'object' || Array.isArray(c)) throw bad(path, 'must be a module reference string or a block object like {"stack": [...]}');
    const o = c as Record<string, unknown>;
    const blocks = ['stack', 'sum', 'fuse', 'parallel', 'average'].filter((k) => k in o);
    if (blocks.length !== 1) throw bad(path, `a block needs exactly one of stack, sum, fuse, parallel, average; got keys ${JSON.stringify(Object.keys(o))}`);
    const kind = blocks[0];
    const allowed = new Set([kind, ...(kind === 'fuse' ? ['fusion'] : kind === 'average' ? ['weights', 'normalize_weights'] : [])]);
    for (const k of Object.keys(o)) if (!allowed.has(k)) throw bad(path, `unknown key '${k}' in a ${kind} block`);
    const children = o[kind];
    if (!Array.isArray(children) || children.length === 0) throw bad(`${path}.${kind}`, 'must be a non-empty array');
    const kids = children.map((ch, i) => walk(ch, `${path}.${kind}[${i}]`, depth + 1));
    switch (kind) {
      case 'stack':
        return { stack: kids };
      case 'sum':
        return { sum: kids };
      case 'parallel':
        if (path !== '') throw bad(path, 'parallel must be the outermost block (one output per branch)');
        return { parallel: kids };
      case 'fuse': {
        if (typeof o.fusion !== 'string') throw bad(path, `a fuse block needs "fusion": "ns/name" naming the AdapterFusion module`);
        walk(o.fusion, `${path}.fusion`, depth + 1);
        return { fuse: kids, fusion: o.fusion };
      }
      default: {
        const w = o.weights;
        if (w !== undefined && (!Array.isArray(w) || w.length !== kids.length || !w.every((x) => typeof x === 'number' && Math.abs(x) <= MAX_AVERAGE_WEIGHT))) {
          throw bad(`${path}.weights`, `must be ${kids.length} numbers between -${MAX_AVERAGE_WEIGHT} and ${MAX_AVERAGE_WEIGHT}, one per averaged module`);
        }
        if (o.normalize_weights !== undefined && typeof o.normalize_weights !== 'boolean') throw bad(`${path}.normalize_weights`, 'must be a boolean');
        return { average: kids, weights: w as number[] | undefined, normalize_weights: o.normalize_weights as boolean | undefined };
      }
    }
  };
  return walk(raw, '', 0);
}

/** Every module reference in a composition (leaves and fusion modules), in order of appearance. */
export function compositionRefs(c: Composition | null): string[] {
  if (c === null) return [];
  if (typeof c === 'string') return [c];
  const out: string[] = [];
  if ('stack' in c) c.stack.forEach((x) => out.push(...compositionRefs(x)));
  else if ('sum' in c) c.sum.forEach((x) => out.push(...compositionRefs(x)));
  else if ('parallel' in c) c.parallel.forEach((x) => out.push(...compositionRefs(x)));
  else if ('average' in c) c.average.forEach((x) => out.push(...compositionRefs(x)));
  else {
    c.fuse.forEach((x) => out.push(...compositionRefs(x)));
    out.push(c.fusion);
  }
  return out;
}

/** What one output branch runs: the engine turns a batch of these into pool indices. */
export interface RowPlan {
  /** Stable identity of the plan (module keys and structure). */
  key: string;
  diffs: DiffModule[];
  adapters: AdapterModule[];
  fuse: { adapters: AdapterModule[]; fusion: FusionModule } | null;
  loras: LoraModule[];
  /** IA³ modules in stack order; several multiply their scaling vectors. */
  ia3s: Ia3Module[];
  invertible: AdapterModule | null;
  /** The composition's head: its prediction head (classification, token classification), else its masked-LM head. */
  head: PlanHead | null;
  /** The masked-LM head fill-mask output uses; null: the base checkpoint's own. */
  mlmHead: PlanHead | null;
  /**
   * Sparse diffs that change only biases (BitFit), set by the engine in place of `diffs`: their sums are per-row
   * bias vectors of the batch's own run instead of a "weights as inputs" group (engine.ts, rowBiasDiffs).
   */
  rowBias?: DiffModule[];
}

/** A head and the module (`id@version`) that brings it. */
export interface PlanHead {
  key: string;
  weights: HeadWeights;
}

export const EMPTY_PLAN: RowPlan = { key: '', diffs: [], adapters: [], fuse: null, loras: [], ia3s: [], invertible: null, head: null, mlmHead: null };

/** Options of planComposition. */
export interface PlanOptions {
  /**
   * The module whose head to use (`ns/name`, `ns/name@version` or a ref as written in the composition), like
   * AdapterHub's active_head: other heads of the same kind (prediction or masked-LM) are then ignored.
   */
  head?: string;
}

/** Head errors: a 422 that names the heads and how to choose. */
function headError(msg: string): ModuleError {
  return new ModuleError('INVALID_HEAD', msg);
}

function describe(m: EngineModule): string {
  return `'${m.key}' (${m.kind})`;
}

/**
 * Builds the row plans (one per parallel branch) of a composition whose refs resolve through `lookup`.
 * Heads: a prediction head (classification, token classification) and a masked-LM head serve different outputs
 * and may come together (a MAD-X language adapter with its MLM head under a task adapter); two heads of one kind
 * compete for one output and are refused (HEAD_CONFLICT) unless `opts.head` names the module whose head to use.
 */
export function planComposition(c: Composition | null, lookup: (ref: string) => EngineModule, opts: PlanOptions = {}): RowPlan[] {
  const chosen = opts.head === undefined ? null : chosenHead(opts.head, c, lookup);
  if (c === null) {
    if (chosen) throw headError(`"head": '${opts.head}' names a module, but the request has no composition`);
    return [EMPTY_PLAN];
  }
  const parts = typeof c !== 'string' && 'parallel' in c ? c.parallel.map((b, i) => ({ p: build(b, lookup, '.parallel'), path: `.parallel[${i}]` })) : [{ p: build(c, lookup, ''), path: '' }];
  return parts.map(({ p, path }) => finish(p, chosen, path));
}

/** The module key `opts.head` names; it must be in the composition and bring a head. */
function chosenHead(ref: string, c: Composition | null, lookup: (ref: string) => EngineModule): string {
  const refs = compositionRefs(c);
  const mods = refs.map((r) => ({ r, m: lookup(r) }));
  const hit = mods.find(({ r, m }) => r === ref || m.key === ref || m.manifest.id === ref);
  if (!hit) throw headError(`"head": '${ref}' is not a module of the composition (its modules: ${mods.map(({ m }) => `'${m.manifest.id}'`).join(', ') || 'none'})`);
  if (!hit.m.head) {
    const withHeads = mods.filter(({ m }) => m.head).map(({ m }) => `'${m.manifest.id}'`);
    throw headError(`"head": '${ref}' brings no head; modules of the composition with a head: ${withHeads.join(', ') || 'none'}`);
  }
  return hit.m.key;
}

interface PlanParts {
  diffs: DiffModule[];
  adapters: AdapterModule[];
  fuse: { adapters: AdapterModule[]; fusion: FusionModule } | null;
  loras: LoraModule[];
  ia3s: Ia3Module[];
  heads: PlanHead[];
  keys: string[];
}

function empty(): PlanParts {
  return { diffs: [], adapters: [], fuse: null, loras: [], ia3s: [], heads: [], keys: [] };
}

function build(c: Composition, lookup: (ref: string) => EngineModule, path: string): PlanParts {
  const p = empty();
  if (typeof c === 'string') {
    const m = lookup(c);
    p.keys.push(m.key);
    if (m.head) p.heads.push({ key: m.key, weights: m.head });
    switch (m.kind) {
      case 'bottleneck':
        p.adapters.push(m);
        break;
      case 'lora':
        p.loras.push(m);
        break;
      case 'diff':
        p.diffs.push(m);
        break;
      case 'ia3':
        p.ia3s.push(m);
        break;
      case 'fusion':
        throw bad(path, `${describe(m)} is an AdapterFusion module: use {"fuse": [adapters...], "fusion": "${m.manifest.id}"}`);
    }
    return p;
  }
  if ('stack' in c || 'sum' in c) {
    const kids = 'stack' in c ? c.stack : c.sum;
    const kind = 'stack' in c ? 'stack' : 'sum';
    kids.forEach((k, i) => {
      const sub = build(k, lookup, `${path}.${kind}[${i}]`);
      if (kind === 'sum' && sub.adapters.length) throw bad(`${path}.sum[${i}]`, `sum adds parameter differences (diff, lora); ${describe(sub.adapters[0])} is a bottleneck adapter: use stack or average`);
      if (kind === 'sum' && sub.ia3s.length) throw bad(`${path}.sum[${i}]`, `sum adds parameter differences (diff, lora); ${describe(sub.ia3s[0])} is an IA³ module, which scales activations: put it in a stack (several IA³ modules in a stack multiply)`);
      if (p.fuse && (sub.adapters.length || sub.fuse)) throw bad(`${path}.${kind}[${i}]`, 'a fuse block must come last in a stack');
      p.diffs.push(...sub.diffs);
      p.adapters.push(...sub.adapters);
      p.loras.push(...sub.loras);
      p.ia3s.push(...sub.ia3s);
      p.heads.push(...sub.heads);
      p.keys.push(`${kind}:${sub.keys.join(',')}`);
      if (sub.fuse) p.fuse = sub.fuse;
    });
    return p;
  }
  if ('fuse' in c) {
    const fusion = lookup(c.fusion);
    if (fusion.kind !== 'fusion') throw bad(`${path}.fusion`, `${describe(fusion)} is not an AdapterFusion module`);
    const adapters = c.fuse.map((k, i) => {
      if (typeof k !== 'string') throw bad(`${path}.fuse[${i}]`, 'fuse takes module references of bottleneck adapters');
      const m = lookup(k);
      if (m.kind !== 'bottleneck') throw bad(`${path}.fuse[${i}]`, `${describe(m)} is not a bottleneck adapter`);
      return m;
    });
    const ids = adapters.map((a) => a.manifest.id);
    if (ids.length !== fusion.adapters.length || ids.some((id, i) => id !== fusion.adapters[i].split('@')[0])) {
      throw bad(`${path}`, `fusion module '${fusion.key}' was trained over [${fusion.adapters.join(', ')}], the block fuses [${ids.join(', ')}] (same modules, same order)`);
    }
    const fm = fusion.manifest.config as { value_before_softmax?: boolean; residual_before?: boolean; query_before_ln?: boolean };
    if (fm.value_before_softmax === false || fm.residual_before === true || fm.query_before_ln === true) {
      throw bad(path, `fusion module '${fusion.key}': value_before_softmax=false, residual_before=true and query_before_ln=true are not supported by this engine`);
    }
    const p2 = empty();
    p2.fuse = { adapters, fusion };
    p2.keys.push(`fuse:${fusion.key}:${adapters.map((a) => a.key).join(',')}`);
    // The fused output is what the fusion module's head was trained on: with one, the fused adapters' own heads
    // (their single tasks' heads) are not candidates for this output; without one, theirs compete as usual.
    if (fusion.head) p2.heads.push({ key: fusion.key, weights: fusion.head });
    else for (const a of adapters) if (a.head) p2.heads.push({ key: a.key, weights: a.head });
    return p2;
  }
  if ('average' in c) return average(c, lookup, path);
  throw bad(path, 'parallel must be the outermost block');
}

function finish(p: PlanParts, chosen: string | null, path: string): RowPlan {
  const invertible = p.adapters.find((a) => a.invertible) ?? null;
  const distinct = [...new Map(p.heads.map((h) => [h.key, h])).values()];
  const isMlm = (h: PlanHead) => h.weights.config.type === 'masked_lm';
  const pick = (kind: PlanHead[], what: string): PlanHead | null => {
    const named = kind.find((h) => h.key === chosen);
    if (named) return named;
    if (kind.length <= 1) return kind[0] ?? null;
    const list = kind.map((h) => `'${h.key}' (${h.weights.config.type})`).join(', ');
    const ids = kind.map((h) => `"head": "${h.key.split('@')[0]}"`).join(' or ');
    throw headError(
      `composition${path}: ${kind.length} modules bring a ${what} head for one output: ${list}. AdapterHub would use the last one ('${kind[kind.length - 1].key}') and ignore the others; say which to use with ${ids} in the request`,
    );
  };
  const mlmHead = pick(distinct.filter(isMlm), 'masked-LM');
  const prediction = pick(distinct.filter((h) => !isMlm(h)), 'prediction');
  const head = prediction ?? mlmHead;
  const key = p.keys.join('|') + (chosen && distinct.length > 1 ? `|head:${chosen}` : '');
  return { key, diffs: p.diffs, adapters: p.adapters, fuse: p.fuse, loras: p.loras, ia3s: p.ia3s, invertible, head, mlmHead };
}

/**
 * Average of bottleneck adapters with the same configuration. AdapterHub computes
 * mean_i(wᵢ·(upᵢ(act(downᵢ(h))) + residual)) = Σ (wᵢ/n)·upᵢ(...) + (Σwᵢ/n)·residual; that equals one adapter
 * whose bottleneck concatenates theirs with wᵢ/n folded into each up projection and a residual scale of Σwᵢ/n,
 * so it runs as one slot.
 */
function average(c: { average: Composition[]; weights?: number[]; normalize_weights?: boolean }, lookup: (ref: string) => EngineModule, path: string): PlanParts {
  const mods = c.average.map((k, i) => {
    if (typeof k !== 'string') throw bad(`${path}.average[${i}]`, 'average takes module references of bottleneck adapters');
    const m = lookup(k);
    if (m.kind !== 'bottleneck') throw bad(`${path}.average[${i}]`, `${describe(m)} is not a bottleneck adapter`);
    return m;
  });
  const cfg0 = mods[0].config;
  const same = (a: AdapterModule) => {
    const { reduction_factor: _r, leave_out: _l, scaling: _s, inv_adapter: _i, inv_adapter_reduction_factor: _ir, ...rest } = a.config;
    const { reduction_factor: _r0, leave_out: _l0, scaling: _s0, inv_adapter: _i0, inv_adapter_reduction_factor: _ir0, ...rest0 } = cfg0;
    return JSON.stringify(rest) === JSON.stringify(rest0);
  };
  mods.forEach((m, i) => {
    if (!same(m)) throw bad(`${path}.average[${i}]`, `${describe(m)} has a different adapter configuration than '${mods[0].key}'; average needs the same configuration`);
    if (m.config.ln_before || m.config.ln_after) throw bad(`${path}.average[${i}]`, `${describe(m)} uses ln_before/ln_after, which cannot be averaged as one bottleneck`);
  });
  let w = c.weights ?? mods.map(() => 1 / mods.length);
  if (c.normalize_weights ?? true) {
    const s = w.reduce((a, b) => a + b, 0);
    if (s === 0) throw bad(`${path}.weights`, 'weights sum to 0 and cannot be normalised');
    w = w.map((x) => x / s);
    const big = w.find((x) => Math.abs(x) > MAX_AVERAGE_WEIGHT);
    if (big !== undefined) throw bad(`${path}.weights`, `weights sum to ${s}, so normalising makes one ${big}; their sum must not be that close to 0`);
  }
  const residualScale = w.reduce((a, b) => a + b, 0) / mods.length;
  w = w.map((x) => x / mods.length);
  const L = mods[0].layers.length;
  const layers: AdapterModule['layers'] = [];
  for (let l = 0; l < L; l++) {
    const entry: Partial<Record<Site, AdapterSiteWeights>> = {};
    for (const site of SITES) {
      const parts = mods.map((m, i) => ({ s: m.layers[l][site], w: w[i] })).filter((x) => x.s) as { s: AdapterSiteWeights; w: number }[];
      if (!parts.length) continue;
      const D = parts[0].s.upB.length;
      const R = parts.reduce((a, x) => a + x.s.r, 0);
      const downT = new Float32Array(D * R);
      const downB = new Float32Array(R);
      const upT = new Float32Array(R * D);
      const upB = new Float32Array(D);
      let off = 0;
      for (const { s, w: wi } of parts) {
        for (let d = 0; d < D; d++) downT.set(s.downT.subarray(d * s.r, (d + 1) * s.r), d * R + off);
        downB.set(s.downB, off);
        for (let j = 0; j < s.r; j++) for (let d = 0; d < D; d++) upT[(off + j) * D + d] = wi * s.upT[j * D + d];
        for (let d = 0; d < D; d++) upB[d] += wi * s.upB[d];
        off += s.r;
      }
      entry[site] = { r: R, downT, downB, upT, upB };
    }
    layers.push(entry);
  }
  const key = `avg(${mods.map((m, i) => `${m.key}*${w[i]}`).join(',')})`;
  const merged: AdapterModule = {
    ...mods[0],
    key,
    layers,
    invertible: null,
    head: null,
    bytes: mods.reduce((a, m) => a + m.bytes, 0),
    config: { ...cfg0, leave_out: [] },
    residualScale,
  };
  const p = empty();
  p.adapters.push(merged);
  p.keys.push(key);
  for (const m of mods) if (m.head) p.heads.push({ key: m.key, weights: m.head });
  return p;
}
