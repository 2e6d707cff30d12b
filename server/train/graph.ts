/**
 * The training graph: the engine's own encoder emitter (server/model/encoder-graph.ts) + a loss + the backward
 * nodes from autodiff, so one session run returns the loss, the logits and the gradient of every trainable
 * tensor, in module-package layout (PyTorch [out, in]) for module tensors and canonical layout for base tensors.
 *
 * The emitter reads modules from per-row pools; here each pool is assembled IN the graph from the module
 * tensors (transpose to [in, out], fold the scaling, pad the rank, stack per layer), so gradients reach the
 * module tensors directly. Tensor names, AdapterHub switches and which tensors train come from the kind
 * descriptors (modules-store/kinds). Frozen tensors become initializers, trainable ones graph inputs named
 * `m{slot}:{tensor}` (module) or `base:{canonical}` (base).
 *
 * Shape letters: B rows, T tokens, D hidden, L layers, S stack slots, C labels, V vocab, R rank.
 * Example:
 *   const tg = buildTrainGraph({ base, modules: [{ manifest, tensors, trainable: true }], objective: 'cls' });
 *   const session = await Session.create(tg.bytes);
 */
import type { Base } from '../model/base';
import { ACTIVATIONS, ADAPTER_FLAGS, IO, POOL, SITES, buildEncoderGraph, type AdapterFlag, type FlagMode, type ParamProvider, type SiteVariant, type Variant, type Activation, type Ia3Target } from '../model/encoder-graph';
import { GraphBuilder, type Value, type TensorInit } from '../model/graph/builder';
import { gradients } from '../model/graph/autodiff';
import { logSoftmax, gatherElements } from '../model/graph/vjp';
import { transpose } from '../model/modules';
import type { Manifest } from '../../modules-store/manifest';
import type { HostTensor } from '../runtime/session';
import type { Tensor } from '../../modules-store/safetensors';
import {
  BN,
  FUSE,
  HEAD,
  IA3,
  LORA,
  adapterSwitches,
  bottleneckSize,
  fusionSites,
  ia3Shape,
  kindOf,
  loraScaling,
  resolveBottleneckConfig,
  targetDims,
  trainableHead,
  type FusionConfig,
  type Ia3Config,
  type LoraConfig,
} from '../../modules-store/kinds';

export type Objective = 'cls' | 'tok' | 'mlm';

export interface SlotModule {
  manifest: Manifest;
  tensors: Map<string, Tensor>;
  /** Train this module's tensors (all of them, head included). */
  trainable: boolean;
}

export interface TrainGraphSpec {
  base: Base;
  /** Modules in stack order (bottleneck adapters stack; IA³ modules multiply; at most one LoRA module). */
  modules: SlotModule[];
  objective: Objective;
  /** Canonical base tensors to train (full FT, BitFit, LT-SFT); others are initializers. */
  trainableBase?: string[];
  /** Extra base-parameter transform (diff pruning): given the base param input, return the effective value. */
  baseParam?: (g: GraphBuilder, name: string, frozen: Value) => Value | null;
  /** Extra loss terms (regularisers), added to the task loss; may create trainable inputs. */
  extraLoss?: (g: GraphBuilder) => Value | null;
  /** Extra trainable inputs created by `baseParam` / `extraLoss` (differentiated too). */
  extraTrainable?: () => Value[];
  /** MLM with tied embeddings: the decoder reads θ₀'s word embeddings, frozen, even when they train (LT-SFT). */
  untieDecoder?: boolean;
  /** Emit the backward (default true); false gives the evaluation graph (loss + logits). */
  grad?: boolean;
}

export interface TrainGraph {
  bytes: Uint8Array;
  /** Trainable input names, in the order of `gradNames`. */
  params: string[];
  gradNames: string[];
  /** Non-trainable feeds the step needs besides the batch (none today; reserved). */
  logits: string;
  loss: string;
  variant: Variant;
  /** Index feeds per batch size: pool row indices. */
  indexFeeds(B: number): Record<string, HostTensor>;
}

function f32(t: Tensor): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new TypeError(`tensor must be float32`);
  return t.data;
}

/** Decay policy as HF's Trainer: no weight decay for biases and LayerNorm weights. */
export function decays(name: string): boolean {
  return !(name.endsWith('bias') || /(^|[.:_])ln([._]|$)|layer_norm|_ln\./.test(name));
}

export function buildTrainGraph(spec: TrainGraphSpec): TrainGraph {
  const { base, objective } = spec;
  const cfg = base.config;
  const D = cfg.hiddenSize;
  const L = cfg.numLayers;
  const dims = { hidden: D, layers: L, vocab: cfg.vocabSize, ffn: cfg.intermediateSize };
  const trainableBase = new Set(spec.trainableBase ?? []);
  // What each trainable module trains: its descriptor's trainable tensors and its head's (modules-store/kinds).
  const trainableNames = spec.modules.map((m) => (m.trainable ? new Set([...kindOf(m.manifest.kind).trainable(m.manifest.config, dims), ...trainableHead(m.manifest.head, dims)]) : new Set<string>()));

  const adapters = spec.modules.map((m, i) => ({ ...m, slot: i })).filter((m) => m.manifest.kind === 'bottleneck');
  const loras = spec.modules.map((m, i) => ({ ...m, slot: i })).filter((m) => m.manifest.kind === 'lora');
  if (loras.length > 1) throw new RangeError('training supports at most one LoRA module');
  const fusionMod = spec.modules.map((m, i) => ({ ...m, slot: i })).find((m) => m.manifest.kind === 'fusion');
  const fusedN = fusionMod ? adapters.length : 0;
  if (fusionMod && !fusedN) throw new RangeError('an AdapterFusion module needs the fused adapters among the modules');
  // With fusion, slot 0 is the pre-step slot (AdapterHub runs it with the LAST fused adapter's configuration),
  // slots 1..N the fused adapters; without, the slots are the stack.
  const slotAds = fusionMod ? [adapters[adapters.length - 1], ...adapters] : adapters;
  const adCfgs = slotAds.map((a) => resolveBottleneckConfig(a.manifest.config as never));
  const ia3Mods = spec.modules.map((m, i) => ({ ...m, slot: i })).filter((m) => m.manifest.kind === 'ia3');
  const fusionCfg = fusionMod?.manifest.config as FusionConfig | undefined;
  const headMod = [...spec.modules.map((m, i) => ({ ...m, slot: i }))].reverse().find((m) => m.manifest.head);
  const invIdx = adCfgs.findIndex((c) => c.inv_adapter === 'nice');

  // ---- variant --------------------------------------------------------------------------------------
  const sites: Variant['sites'] = {};
  const flagFeeds: ((B: number) => Record<string, HostTensor>)[] = [];
  for (const site of SITES) {
    const present = adCfgs.filter((c) => (site === 'attention' ? c.mh_adapter : c.output_adapter));
    if (!present.length) continue;
    if (fusionMod && !fusionSites(fusionCfg!).includes(site)) continue;
    const c = adCfgs[adCfgs.length - 1];
    // Per-slot values of each AdapterHub switch (the bottleneck descriptor's adapterSwitches, as the engine uses);
    // with fusion, slot 0 only runs the pre-step. Uniform → 'on'/'off', else 'mixed' with a fed [L, S, B] flag.
    const switches = adCfgs.map((x, i) => adapterSwitches(x, !!fusionMod && i === 0, i === adCfgs.length - 1));
    const perSlot: Record<string, (number | null)[]> = {};
    for (const f of ADAPTER_FLAGS) perSlot[f] = switches.map((sw) => sw[f]);
    const acts = [...new Set(adCfgs.map((x) => x.non_linearity))];
    if (acts.length > 1) for (const a of ACTIVATIONS) perSlot[`act_${a}`] = adCfgs.map((x) => +(x.non_linearity === a));
    const mode = (v: (number | null)[]) => {
      const set = new Set(v.filter((x) => x !== null));
      return (set.size === 2 ? 'mixed' : set.has(1) ? 'on' : 'off') as FlagMode;
    };
    const flags = {} as Record<AdapterFlag, FlagMode>;
    for (const f of ADAPTER_FLAGS) flags[f] = mode(perSlot[f]);
    const fedFlags = Object.keys(perSlot).filter((f) => f.startsWith('act_') || flags[f as AdapterFlag] === 'mixed');
    if (fedFlags.length) {
      flagFeeds.push((B) => {
        const out: Record<string, HostTensor> = {};
        for (const f of fedFlags) {
          const S = adCfgs.length;
          const data = new Float32Array(L * S * B);
          for (let l = 0; l < L; l++) for (let s = 0; s < S; s++) data.fill(perSlot[f][s] ?? 0, (l * S + s) * B, (l * S + s + 1) * B);
          out[POOL.adapterFlag(site, f)] = { type: 'float32', dims: [L, S, B], data };
        }
        return out;
      });
    }
    const sv: SiteVariant = {
      slots: fusionMod ? 0 : adapters.length,
      flags,
      finalLn: c.original_ln_after ? 'on' : 'off',
      act: acts.length === 1 ? (acts[0] as Activation) : 'mixed',
      fuse: fusedN,
      resScale: 'off',
    };
    sites[site] = sv;
  }
  const loraCfg = loras[0]?.manifest.config as LoraConfig | undefined;
  const ia3Targets = [...new Set(ia3Mods.flatMap((m) => (m.manifest.config as Ia3Config).target_modules))] as Ia3Target[];
  const headCfg = headMod?.manifest.head ?? null;
  const variant: Variant = {
    sites,
    lora: loraCfg ? [...new Set(loraCfg.target_modules)] : [],
    ...(ia3Targets.length ? { ia3: ia3Targets, ia3Uniform: true } : {}),
    invertible: invIdx >= 0,
    invAct: invIdx >= 0 ? (adCfgs[invIdx].non_linearity as Activation) : 'relu',
    heads: { cls: objective === 'cls', tok: objective === 'tok', mlm: objective === 'mlm' },
    clsDense: headCfg && headCfg.type === 'classification' && headCfg.layers === 2 ? 'on' : 'off',
  };
  if (objective === 'cls' && headCfg?.type !== 'classification') throw new RangeError("objective 'cls' needs a module with a classification head");
  if (objective === 'tok' && headCfg?.type !== 'token_classification') throw new RangeError("objective 'tok' needs a module with a token_classification head");

  // ---- base parameters ----------------------------------------------------------------------------
  const params: Value[] = [];
  const paramInputs = new Map<string, Value>();
  const trainInput = (g: GraphBuilder, name: string, dims: number[]): Value => {
    let v = paramInputs.get(name);
    if (!v) {
      v = g.input(name, 'float32', dims);
      paramInputs.set(name, v);
      params.push(v);
    }
    return v;
  };
  const baseTensor = (name: string) => {
    const t = base.weights.get(name);
    if (!t) throw new RangeError(`base has no tensor '${name}'`);
    return t;
  };
  const provider = (g: GraphBuilder): ParamProvider => {
    const cache = new Map<string, Value>();
    const raw = (name: string): Value => {
      const hit = cache.get(`raw:${name}`);
      if (hit) return hit;
      const t = baseTensor(name);
      let v: Value;
      if (trainableBase.has(name)) v = trainInput(g, `base:${name}`, t.shape);
      else v = g.initializer(`w:${name}`, { type: 'float32', dims: t.shape, data: t.data });
      if (spec.baseParam) v = spec.baseParam(g, name, v) ?? v;
      cache.set(`raw:${name}`, v);
      return v;
    };
    return {
      tensor: (name) => raw(name),
      linearT: (stem) => {
        const key = `T:${stem}`;
        const hit = cache.get(key);
        if (hit) return hit;
        const name = stem === 'mlm.decoder' ? (base.weights.has('mlm.decoder.weight') ? 'mlm.decoder.weight' : 'embeddings.word') : `${stem}.weight`;
        const t = baseTensor(name);
        let v: Value;
        const frozenDecoder = spec.untieDecoder && stem === 'mlm.decoder' && name === 'embeddings.word';
        if (!frozenDecoder && (trainableBase.has(name) || spec.baseParam)) v = g.transpose(raw(name), [1, 0]);
        else v = g.initializer(`wT:${name}`, { type: 'float32', dims: [t.shape[1], t.shape[0]], data: transpose(t.data, t.shape[0], t.shape[1]) });
        cache.set(key, v);
        return v;
      },
    };
  };

  const enc = buildEncoderGraph(cfg, variant, provider, 'modhub-train');
  const g = enc.graph;

  // ---- pools assembled in the graph -----------------------------------------------------------------
  /** A module tensor as a Value: graph input when trainable, else initializer. */
  const modTensor = (slot: number, name: string): { v: Value; dims: number[]; data: Float32Array } | null => {
    const m = spec.modules[slot];
    const t = m.tensors.get(name);
    if (!t) return null;
    const shape = [...t.shape];
    if (trainableNames[slot].has(name)) return { v: trainInput(g, `m${slot}:${name}`, shape), dims: shape, data: f32(t) };
    return { v: g.initializer(`m${slot}c:${name}`, { type: 'float32', dims: shape, data: f32(t) }), dims: shape, data: f32(t) };
  };
  type Entry = { v: Value | null; shape: number[] }; // v null = zeros
  /** Stacks entries [P, ...shape] (all the same shape). */
  const stack = (entries: Entry[], shape: number[]): Value => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (entries.every((e) => e.v === null)) return g.initializer(g.fresh('pool0'), { type: 'float32', dims: [entries.length, ...shape], data: new Float32Array(entries.length * n) }, true);
    const parts = entries.map((e) => (e.v ? g.unsqueeze(e.v, [0]) : g.initializer(g.fresh('zero'), { type: 'float32', dims: [1, ...shape], data: new Float32Array(n) }, true)));
    return parts.length === 1 ? parts[0] : g.concat(parts, 0);
  };
  /** [out,in] weight → [in, R] padded (times scale). */
  const linT = (w: Value, outDim: number, inDim: number, R: number, padAxis: 0 | 1, scale = 1): Value => {
    let t = g.transpose(w, [1, 0]); // [in, out]
    if (scale !== 1) t = g.mul(t, g.constFloat(scale));
    const cur = padAxis === 1 ? outDim : inDim;
    if (cur < R) {
      const zshape = padAxis === 1 ? [inDim, R - cur] : [R - cur, outDim];
      t = g.concat([t, g.initializer(g.fresh('pad'), { type: 'float32', dims: zshape, data: new Float32Array(zshape[0] * zshape[1]) }, true)], padAxis);
    }
    return t;
  };
  const vecPad = (b: Value, n: number, R: number, scale = 1): Value => {
    let t = g.reshape(b, [1, n]);
    if (scale !== 1) t = g.mul(t, g.constFloat(scale));
    if (n < R) t = g.concat([t, g.initializer(g.fresh('pad'), { type: 'float32', dims: [1, R - n], data: new Float32Array(R - n) }, true)], 1);
    return t;
  };
  const pools = new Map<string, Value>();
  const indexFeeds: ((B: number) => Record<string, { type: 'int64'; dims: number[]; data: BigInt64Array }>)[] = [];

  for (const site of SITES) {
    if (!sites[site]) continue;
    const S = slotAds.length;
    const R = Math.max(...slotAds.map((_a, i) => bottleneckSize(adCfgs[i], D, 0)));
    const E = (make: (a: (typeof adapters)[number], i: number, l: number) => Value | null, shape: number[]) => {
      const entries: Entry[] = [];
      for (let i = 0; i < S; i++) for (let l = 0; l < L; l++) entries.push({ v: fusionMod && i === 0 ? null : make(slotAds[i], i, l), shape });
      return stack(entries, shape);
    };
    const sc = (i: number) => adCfgs[i].scaling;
    const rOf = (i: number, l: number) => bottleneckSize(adCfgs[i], D, l);
    pools.set(POOL.adapter(site, 'down_w'), E((a, i, l) => { const t = modTensor(a.slot, `${BN.down(l, site)}.weight`); return t && linT(t.v, rOf(i, l), D, R, 1); }, [D, R]));
    pools.set(POOL.adapter(site, 'down_b'), E((a, i, l) => { const t = modTensor(a.slot, `${BN.down(l, site)}.bias`); return t && vecPad(t.v, rOf(i, l), R); }, [1, R]));
    pools.set(POOL.adapter(site, 'up_w'), E((a, i, l) => { const t = modTensor(a.slot, `${BN.up(l, site)}.weight`); return t && linT(t.v, D, rOf(i, l), R, 0, sc(i)); }, [R, D]));
    pools.set(POOL.adapter(site, 'up_b'), E((a, i, l) => { const t = modTensor(a.slot, `${BN.up(l, site)}.bias`); return t && vecPad(t.v, D, D, sc(i)); }, [1, D]));
    for (const [part, ln, which, def] of [['lnb_g', BN.lnBefore, 'weight', 1], ['lnb_b', BN.lnBefore, 'bias', 0], ['lna_g', BN.lnAfter, 'weight', 1], ['lna_b', BN.lnAfter, 'bias', 0]] as const) {
      pools.set(POOL.adapter(site, part), E((a, _i, l) => {
        const t = modTensor(a.slot, `${ln(l, site)}.${which}`);
        if (t) return g.reshape(t.v, [1, D]);
        return def === 1 ? g.constFloat(new Array(D).fill(1), [1, D]) : null;
      }, [1, D]));
    }
    indexFeeds.push((B) => {
      const data = new BigInt64Array(L * S * B);
      for (let l = 0; l < L; l++) for (let s = 0; s < S; s++) for (let b = 0; b < B; b++) data[(l * S + s) * B + b] = BigInt(s * L + l);
      return { [POOL.adapter(site, 'idx')]: { type: 'int64', dims: [L, S, B], data } };
    });
  }
  if (fusionMod) {
    const fs = fusionMod.slot;
    const T = fusionCfg?.temperature ?? 1;
    for (const site of SITES) {
      if (!sites[site]) continue;
      const E = (part: string, shape: number[], bias: boolean) =>
        stack(
          Array.from({ length: L }, (_, l) => {
            const [lin, which] = part.split('.') as ['query' | 'key' | 'value', string];
            const t = modTensor(fs, `${FUSE[lin](l, site)}.${which}`);
            return { v: t && (bias ? g.reshape(t.v, [1, D]) : g.transpose(t.v, [1, 0])), shape };
          }),
          shape,
        );
      pools.set(POOL.fuse(site, 'q_w'), E('query.weight', [D, D], false));
      pools.set(POOL.fuse(site, 'q_b'), E('query.bias', [1, D], true));
      pools.set(POOL.fuse(site, 'k_w'), E('key.weight', [D, D], false));
      pools.set(POOL.fuse(site, 'k_b'), E('key.bias', [1, D], true));
      if (fusionCfg?.dynamic === false) {
        const eye = new Float32Array(L * D * D);
        for (let l = 0; l < L; l++) for (let i = 0; i < D; i++) eye[l * D * D + i * D + i] = 1;
        pools.set(POOL.fuse(site, 'v_w'), g.initializer(g.fresh('eye'), { type: 'float32', dims: [L, D, D], data: eye }, true));
      } else pools.set(POOL.fuse(site, 'v_w'), E('value.weight', [D, D], false));
      pools.set(POOL.fuse(site, 'temp'), g.initializer(g.fresh('temp'), { type: 'float32', dims: [L, 1, 1], data: new Float32Array(L).fill(1 / T) }, true));
      pools.set(POOL.fuse(site, 'present'), g.initializer(g.fresh('present'), { type: 'float32', dims: [L, 1, 1], data: new Float32Array(L).fill(1) }, true));
      indexFeeds.push((B) => {
        const data = new BigInt64Array(L * B);
        for (let l = 0; l < L; l++) for (let b = 0; b < B; b++) data[l * B + b] = BigInt(l);
        return { [POOL.fuse(site, 'idx')]: { type: 'int64', dims: [L, B], data } };
      });
    }
  }
  if (loras.length) {
    const lm = loras[0];
    const c = loraCfg!;
    const R = c.r;
    const scaling = loraScaling(c);
    for (const target of variant.lora) {
      const { inDim, outDim } = targetDims(target, dims);
      const A: Entry[] = [];
      const Bm: Entry[] = [];
      for (let l = 0; l < L; l++) {
        const a = modTensor(lm.slot, LORA.A(l, target));
        const b = modTensor(lm.slot, LORA.B(l, target));
        A.push({ v: a && linT(a.v, R, inDim, R, 1), shape: [inDim, R] });
        Bm.push({ v: b && linT(b.v, outDim, R, R, 0, scaling), shape: [R, outDim] });
      }
      pools.set(POOL.lora(target, 'A'), stack(A, [inDim, R]));
      pools.set(POOL.lora(target, 'B'), stack(Bm, [R, outDim]));
      indexFeeds.push((B) => {
        const data = new BigInt64Array(L * B);
        for (let l = 0; l < L; l++) for (let b = 0; b < B; b++) data[l * B + b] = BigInt(l);
        return { [POOL.lora(target, 'idx')]: { type: 'int64', dims: [L, B], data } };
      });
    }
  }
  // IA³: per layer the product of every IA³ module's vector (ones where none scales), fed as the uniform input.
  for (const target of ia3Targets) {
    const { n } = ia3Shape(target, dims);
    for (let l = 0; l < L; l++) {
      let v: Value | null = null;
      for (const m of ia3Mods) {
        const t = modTensor(m.slot, IA3.l(l, target));
        if (!t) continue;
        const flat = g.reshape(t.v, [n]);
        v = v ? g.mul(v, flat) : flat;
      }
      pools.set(POOL.ia3Layer(target, l), v ?? g.constFloat(new Array(n).fill(1), [n]));
    }
  }
  if (invIdx >= 0) {
    const slot = adapters[invIdx].slot;
    const n = Math.floor(D / 2);
    for (const w of ['F', 'G'] as const) {
      const dw = modTensor(slot, `${BN.inv(w, 'down')}.weight`)!;
      const m = dw.dims[0];
      pools.set(POOL.inv(`${w}.down_w`), stack([{ v: g.transpose(dw.v, [1, 0]), shape: [n, m] }], [n, m]));
      pools.set(POOL.inv(`${w}.down_b`), stack([{ v: g.reshape(modTensor(slot, `${BN.inv(w, 'down')}.bias`)!.v, [1, m]), shape: [1, m] }], [1, m]));
      pools.set(POOL.inv(`${w}.up_w`), stack([{ v: g.transpose(modTensor(slot, `${BN.inv(w, 'up')}.weight`)!.v, [1, 0]), shape: [m, D - n] }], [m, D - n]));
      pools.set(POOL.inv(`${w}.up_b`), stack([{ v: g.reshape(modTensor(slot, `${BN.inv(w, 'up')}.bias`)!.v, [1, D - n]), shape: [1, D - n] }], [1, D - n]));
    }
    indexFeeds.push((B) => ({ [POOL.inv('idx')]: { type: 'int64', dims: [B], data: new BigInt64Array(B) } }));
  }
  // heads (P = 1)
  const one = (v: Value, shape: number[]) => stack([{ v, shape }], shape);
  if (objective === 'cls' || objective === 'tok') {
    const hs = headMod!.slot;
    const C = headMod!.manifest.labels.length;
    const outW = modTensor(hs, `${HEAD.outProj}.weight`)!;
    const outB = modTensor(hs, `${HEAD.outProj}.bias`)!;
    const pre = objective === 'cls' ? 'cls' : 'tok';
    pools.set(POOL.head(`${pre}_out_w`), one(g.transpose(outW.v, [1, 0]), [D, C]));
    pools.set(POOL.head(`${pre}_out_b`), one(g.reshape(outB.v, [1, C]), [1, C]));
    if (objective === 'cls' && variant.clsDense === 'on') {
      pools.set(POOL.head('cls_dense_w'), one(g.transpose(modTensor(hs, `${HEAD.clsDense}.weight`)!.v, [1, 0]), [D, D]));
      pools.set(POOL.head('cls_dense_b'), one(g.reshape(modTensor(hs, `${HEAD.clsDense}.bias`)!.v, [1, D]), [1, D]));
    }
  } else {
    // masked LM: a module head when the trained/stacked module has one, else the base's own head
    const mod = headMod && headMod.manifest.head?.type === 'masked_lm' ? headMod.slot : -1;
    const get = (modName: string, baseName: string): Value => {
      if (mod >= 0) return modTensor(mod, modName)!.v;
      const t = baseTensor(baseName);
      if (trainableBase.has(baseName)) return trainInput(g, `base:${baseName}`, t.shape);
      return g.initializer(`w:${baseName}`, { type: 'float32', dims: t.shape, data: t.data });
    };
    pools.set(POOL.head('mlm_dense_w'), one(g.transpose(get(`${HEAD.mlmDense}.weight`, 'mlm.dense.weight'), [1, 0]), [D, D]));
    pools.set(POOL.head('mlm_dense_b'), one(g.reshape(get(`${HEAD.mlmDense}.bias`, 'mlm.dense.bias'), [1, D]), [1, D]));
    pools.set(POOL.head('mlm_ln_g'), one(g.reshape(get(`${HEAD.mlmLn}.weight`, 'mlm.ln.weight'), [1, D]), [1, D]));
    pools.set(POOL.head('mlm_ln_b'), one(g.reshape(get(`${HEAD.mlmLn}.bias`, 'mlm.ln.bias'), [1, D]), [1, D]));
    pools.set(POOL.head('mlm_bias'), one(g.reshape(get(HEAD.mlmBias, 'mlm.decoder.bias'), [1, cfg.vocabSize]), [1, cfg.vocabSize]));
  }
  indexFeeds.push((B) => ({ [POOL.head('idx')]: { type: 'int64', dims: [B], data: new BigInt64Array(B) } }));

  // Rewire: the emitter declared each pool as a graph input; replace it by the assembled value. The assembly
  // nodes were appended after the encoder's, so they move to the front (they only read inputs/initializers).
  const firstAsm = g.nodes.findIndex((n) => n.outputs.some((o) => [...pools.values()].some((p) => p.name === o.name)));
  void firstAsm;
  rewire(g, pools);

  // ---- loss -----------------------------------------------------------------------------------------
  const outName = objective === 'cls' ? IO.clsLogits : objective === 'tok' ? IO.tokLogits : IO.mlmLogits;
  const logits = g.outputs.find((o) => o.name === outName)!;
  const labels = g.input('labels', 'int64', objective === 'cls' ? ['B', 1] : ['B', 'T', 1]);
  const weights = g.input('label_weights', 'float32', objective === 'cls' ? ['B', 1] : ['B', 'T', 1]);
  const logp = logSoftmax(g, logits, -1);
  const picked = gatherElements(g, logp, labels, -1);
  let loss = g.unary('Neg', g.reduce('ReduceSum', g.mul(picked, weights), objective === 'cls' ? [0, 1] : [0, 1, 2], false));
  g.output(loss, 'task_loss');
  let extra = spec.extraLoss?.(g) ?? null;
  if (fusionMod && fusionMod.trainable && fusionCfg?.dynamic !== false) {
    const eye = g.constFloat(Array.from({ length: D * D }, (_, k) => (k % (D + 1) === 0 ? 1 : 0)), [D, D]);
    for (const site of SITES) {
      if (!sites[site]) continue;
      for (let l = 0; l < L; l++) {
        const v = paramInputs.get(`m${fusionMod.slot}:${FUSE.value(l, site)}.weight`);
        if (!v) continue;
        const d = g.sub(eye, v);
        const r = g.mul(g.reduce('ReduceSum', g.mul(d, d), [0, 1], false), g.constFloat(0.01));
        extra = extra ? g.add(extra, r) : r;
      }
    }
  }
  if (extra) loss = g.add(loss, extra);
  for (const v of spec.extraTrainable?.() ?? []) if (!params.includes(v)) params.push(v);
  g.output(loss, 'loss');
  const gradNames = params.map((p) => `grad:${p.name}`);
  if (spec.grad !== false) gradients(g, loss, params).forEach((d, i) => g.output(d, gradNames[i]));
  // drop the emitter's unused outputs other than the logits (hidden stays available for evaluation)
  return {
    bytes: g.toBytes(),
    params: params.map((p) => p.name),
    gradNames,
    logits: outName,
    loss: 'loss',
    variant,
    indexFeeds: (B) => Object.assign({}, ...indexFeeds.map((f) => f(B)), ...flagFeeds.map((f) => f(B))),
  };
}

/** Replaces graph inputs by computed values (see above). */
function rewire(g: GraphBuilder, pools: Map<string, Value>): void {
  const byName = new Map<string, Value>();
  const declared = new Set(g.inputs.map((i) => i.name));
  for (const [name, v] of pools) {
    if (declared.has(name)) byName.set(name, v);
    else if (g.initializers.has(v.name)) g.initializers.delete(v.name); // a pool this variant never reads
  }
  // nodes that produce the assembled pools (and their helpers) were emitted after the encoder nodes
  const poolValueNames = new Set([...pools.values()].map((v) => v.name));
  const consumers = g.nodes.filter((n) => n.inputs.some((v) => v && byName.has(v.name)));
  if (!consumers.length) return;
  const firstConsumer = g.nodes.indexOf(consumers[0]);
  // assembly nodes = those after the last encoder node that reads nothing computed by the encoder;
  // simplest safe order: move every node created after the emitter finished to the front, in order.
  const encoderEnd = g.nodes.findIndex((n) => n.outputs.some((o) => o.name === IO.hidden || o.name === IO.clsLogits || o.name === IO.tokLogits || o.name === IO.mlmLogits));
  let lastEncoder = encoderEnd;
  for (let i = encoderEnd; i < g.nodes.length; i++) if (g.nodes[i].outputs.some((o) => o.name === IO.hidden || o.name === IO.clsLogits || o.name === IO.tokLogits || o.name === IO.mlmLogits)) lastEncoder = i;
  const asm = g.nodes.splice(lastEncoder + 1);
  void poolValueNames;
  void firstConsumer;
  for (const n of g.nodes) n.inputs = n.inputs.map((v) => (v && byName.has(v.name) ? byName.get(v.name)! : v));
  g.nodes.unshift(...asm);
  for (let i = g.inputs.length - 1; i >= 0; i--) if (byName.has(g.inputs[i].name)) g.inputs.splice(i, 1);
}

export type { TensorInit };
