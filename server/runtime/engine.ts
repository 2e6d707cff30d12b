/**
 * The inference engine: one frozen base, modules as run-time data, batches that mix compositions.
 *
 * A batch of rows (each with its own RowPlan) becomes: a Variant (which features some row uses; picks one of a
 * few cached sessions), per-batch pools (a zero entry + each distinct module's tensors, rank-padded) and per-row
 * indices into them. Rows whose sparse diffs differ run as separate groups on the "weights as inputs" session,
 * fed with materialised θ₀+δ tensors cached per diff set (see README, design: sparse diffs).
 * Example:
 *   const engine = await Engine.create({ base, resolver: registry });
 *   const plans = await engine.plan({ stack: ['lang/de', 'task/topic'] });
 *   const out = await engine.forward(await base.tokenizer.encodeBatch(['Hallo Welt']), [plans[0]]);
 */
import { LRUCache } from 'lru-cache';
import type { Manifest } from '../../modules-store/manifest';
import { parseSafetensors } from '../../modules-store/safetensors';
import type { Base } from '../model/base';
import { canonicalShape } from '../model/weights';
import { planComposition, compositionRefs, parseComposition, EMPTY_PLAN, type Composition, type RowPlan } from '../model/composition';
import {
  ACTIVATIONS,
  ADAPTER_FLAGS,
  IO,
  LORA_TARGETS,
  POOL,
  SITES,
  buildEncoderGraph,
  foldedSlot,
  variantKey,
  type Activation,
  type AdapterFlag,
  type FlagMode,
  type LoraTarget,
  type ParamProvider,
  type Site,
  type SiteVariant,
  type Variant,
} from '../model/encoder-graph';
import type { GraphBuilder, Value } from '../model/graph/builder';
import { loadEngineModule, ModuleError, transpose, type AdapterModule, type AdapterSiteWeights, type EngineModule, type HeadWeights } from '../model/modules';
import type { EncodedBatch } from '../model/tokenizer';
import { Session, type Device, type HostTensor } from './session';

/** Where modules come from (the registry implements it). */
export interface ModuleResolver {
  resolve(ref: string): Promise<{ manifest: Manifest; readFile(name: string): Promise<Buffer> }>;
  /** Moves whenever a resolution may change; while it stands still the engine reuses its ref → module map. */
  readonly generation?: number;
  /**
   * Brings `generation` up to date with changes other processes made (a shared catalog); awaited before the memo
   * is used, so a change committed before a request arrived is seen by that request.
   */
  sync?(): Promise<void>;
}

export interface EngineOptions {
  base: Base;
  resolver?: ModuleResolver;
  device?: Device;
  threads?: number;
  /** Byte budget of loaded modules kept in memory (default 2 GiB). */
  moduleCacheBytes?: number;
  /** Byte budget of materialised θ₀+δ tensors (default 2 GiB). */
  diffCacheBytes?: number;
  /**
   * Run onnxruntime in a worker thread so the event loop stays free during a batch (default true). Repeated large
   * feeds (base weights of diff groups, cached pools) cross to the worker once.
   */
  worker?: boolean;
  /**
   * Most graph-variant sessions kept (default 8). Each holds its own copy of the base weights, so this bounds
   * memory; the least recently used idle session is released first, never one a running batch uses.
   */
  maxSessions?: number;
}

interface SessionEntry {
  session: Promise<Session>;
  lastUsed: number;
  inUse: number;
}

/** Per-row results of one forward pass; arrays are views into the run's outputs. */
export interface RowOutput {
  length: number;
  hidden?: Float32Array; // [T, D]
  clsLogits?: Float32Array; // [C]
  tokLogits?: Float32Array; // [T, C]
  mlmLogits?: Float32Array; // [T, V]
  head: HeadWeights | null;
}

export interface ForwardOptions {
  hidden?: boolean;
  mlm?: boolean;
}

/** Statistics the benchmark and /metrics read. */
export interface EngineStats {
  sessionsBuilt: number;
  sessionsReleased: number;
  runs: number;
  moduleLoads: number;
}

type Pools = Record<string, HostTensor>;

let engineCounter = 0;

const LINEAR_STEMS = (l: number) => [`layers.${l}.attn.q`, `layers.${l}.attn.k`, `layers.${l}.attn.v`, `layers.${l}.attn.o`, `layers.${l}.ffn_in`, `layers.${l}.ffn_out`];

export class Engine {
  readonly stats: EngineStats = { sessionsBuilt: 0, sessionsReleased: 0, runs: 0, moduleLoads: 0 };
  private readonly sessions = new Map<string, SessionEntry>();
  private useClock = 0;
  private readonly modules: LRUCache<string, EngineModule>;
  private readonly diffWeights: LRUCache<string, Map<string, Float32Array>>;
  /** Encoder Linear weights (stored transposed in `params`). */
  private readonly linearNames = new Set<string>();
  /** Base parameters in engine layout: Linear weights transposed to [in, out]. */
  private readonly params = new Map<string, { dims: number[]; data: Float32Array }>();
  private readonly inflight = new Map<string, Promise<EngineModule>>();
  /** Prefix of this engine's shared worker feeds (engines in one process share the worker). */
  private readonly shareId = `e${engineCounter++}`;
  private poolSeq = 0;
  /** Recently used per-batch pools (bounded by bytes); evicted ones leave the worker too. */
  private readonly poolCache = new LRUCache<string, { id: number; pools: Pools }>({
    maxSize: 256 * 2 ** 20,
    sizeCalculation: (p) => Math.max(1, Object.values(p.pools).reduce((a, t) => a + t.data.byteLength, 0)),
    dispose: (p) => void Session.forgetShared(`${this.shareId}:pool:${p.id}:`),
  });

  private constructor(
    readonly base: Base,
    private options: EngineOptions,
  ) {
    this.modules = new LRUCache<string, EngineModule>({ maxSize: options.moduleCacheBytes ?? 2 ** 31, sizeCalculation: (m) => Math.max(1, m.bytes) });
    this.diffWeights = new LRUCache<string, Map<string, Float32Array>>({
      maxSize: options.diffCacheBytes ?? 2 ** 31,
      sizeCalculation: (m) => Math.max(1, [...m.values()].reduce((a, x) => a + x.byteLength, 0)),
      dispose: (_m, key) => void Session.forgetShared(`${this.shareId}:diff:${key}:`),
    });
    const cfg = base.config;
    const linear = this.linearNames;
    for (let l = 0; l < cfg.numLayers; l++) for (const s of LINEAR_STEMS(l)) linear.add(`${s}.weight`);
    for (const [name, t] of base.weights) {
      if (linear.has(name)) this.params.set(name, { dims: [t.shape[1], t.shape[0]], data: transpose(t.data, t.shape[0], t.shape[1]) });
      else this.params.set(name, { dims: t.shape, data: t.data });
    }
  }

  /** Creates an engine over a loaded base; sessions are built lazily per variant (the bare one eagerly). */
  static async create(options: EngineOptions): Promise<Engine> {
    const e = new Engine(options.base, options);
    const entry = e.session(e.variantFor([EMPTY_PLAN], {}), false);
    entry.inUse--;
    await entry.session;
    return e;
  }

  /** Sets where module references resolve (the hub registry, once it is open). */
  setResolver(resolver: ModuleResolver): void {
    this.options.resolver = resolver;
  }

  get device(): Device {
    return this.options.device ?? 'cpu';
  }

  // ---- modules -------------------------------------------------------------------------------------------
  /** Resolves and loads one module (cached by `id@version`). */
  async module(ref: string): Promise<EngineModule> {
    const resolver = this.options.resolver;
    if (!resolver) throw new ModuleError('INVALID_COMPOSITION', `module '${ref}' is not loaded and this engine has no module registry to fetch it from`);
    const pkg = await resolver.resolve(ref);
    const key = `${pkg.manifest.id}@${pkg.manifest.version}`;
    const hit = this.modules.get(key);
    if (hit) return hit;
    let p = this.inflight.get(key);
    if (!p) {
      p = (async () => {
        const tensors = parseSafetensors(await pkg.readFile('weights.safetensors')).tensors;
        const m = loadEngineModule(pkg.manifest, tensors, this.base.config, this.base.fingerprint, (c) => canonicalShape(this.base.config, c));
        this.stats.moduleLoads++;
        this.modules.set(key, m);
        return m;
      })().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Adds an already-loaded module package (tests, trainer) without a registry. */
  addModule(manifest: Manifest, tensors: Map<string, import('../../modules-store/safetensors').Tensor>): EngineModule {
    const m = loadEngineModule(manifest, tensors, this.base.config, this.base.fingerprint, (c) => canonicalShape(this.base.config, c));
    this.modules.set(m.key, m);
    return m;
  }

  /** Parses a composition (JSON) and resolves its modules into one RowPlan per output branch. */
  async plan(raw: unknown): Promise<RowPlan[]> {
    const comp: Composition | null = parseComposition(raw);
    const refs = [...new Set(compositionRefs(comp))];
    if (refs.length && this.options.resolver?.sync) await this.options.resolver.sync();
    const loaded = new Map<string, EngineModule>();
    await Promise.all(
      refs.map(async (r) => {
        // With a registry every ref resolves through it, memoised until the registry's generation moves, so moved
        // tags and deleted versions take effect on the next request without a catalog round trip per request.
        const local = this.options.resolver ? undefined : this.modules.get(r);
        loaded.set(r, local ?? (await this.resolveRef(r)));
      }),
    );
    return planComposition(comp, (r) => loaded.get(r)!);
  }

  /** ref → `id@version` it resolved to, while the registry's generation stands (the module itself stays in the LRU). */
  private refs = new Map<string, string>();
  private refsGeneration: number | undefined = undefined;

  private async resolveRef(ref: string): Promise<EngineModule> {
    const gen = this.options.resolver?.generation;
    if (gen === undefined) return this.module(ref);
    if (gen !== this.refsGeneration) {
      this.refs.clear();
      this.refsGeneration = gen;
    }
    const key = this.refs.get(ref);
    const hit = key === undefined ? undefined : this.modules.get(key);
    if (hit) return hit;
    const m = await this.module(ref);
    // Only successful lookups are remembered; bounded (refs are client-chosen strings).
    if (this.refsGeneration === gen) {
      this.refs.set(ref, m.key);
      if (this.refs.size > 10_000) this.refs.delete(this.refs.keys().next().value as string);
    }
    return m;
  }

  // ---- forward -------------------------------------------------------------------------------------------
  /** Runs a tokenised batch; `plans[i]` is row i's composition. Rows with different diff sets run as groups. */
  async forward(batch: EncodedBatch, plans: RowPlan[], opts: ForwardOptions = {}): Promise<RowOutput[]> {
    if (plans.length !== batch.batch) throw new RangeError(`'plans' has ${plans.length} entries for a batch of ${batch.batch} rows`);
    const groups = new Map<string, number[]>();
    plans.forEach((p, i) => {
      const key = p.diffs.map((d) => d.key).join('+');
      const g = groups.get(key);
      if (g) g.push(i);
      else groups.set(key, [i]);
    });
    const out: RowOutput[] = new Array(plans.length);
    for (const rows of groups.values()) {
      const res = await this.runGroup(batch, rows, rows.map((i) => plans[i]), opts);
      rows.forEach((r, j) => (out[r] = res[j]));
    }
    return out;
  }

  private async runGroup(batch: EncodedBatch, rows: number[], plans: RowPlan[], opts: ForwardOptions): Promise<RowOutput[]> {
    const variant = this.variantFor(plans, opts);
    const diffs = plans[0].diffs;
    const entry = this.session(variant, diffs.length > 0);
    try {
      return await this.runOn(await entry.session, batch, rows, plans, variant, opts);
    } finally {
      entry.inUse--;
    }
  }

  private async runOn(session: Session, batch: EncodedBatch, rows: number[], plans: RowPlan[], variant: Variant, opts: ForwardOptions): Promise<RowOutput[]> {
    const cfg = this.base.config;
    const B = rows.length;
    const T = batch.length;
    const D = cfg.hiddenSize;
    const diffs = plans[0].diffs;
    const feeds: Record<string, HostTensor> = {};
    const pick = (src: Int32Array) => {
      const o = new BigInt64Array(B * T);
      rows.forEach((r, j) => {
        for (let t = 0; t < T; t++) o[j * T + t] = BigInt(src[r * T + t]);
      });
      return o;
    };
    feeds[IO.inputIds] = { type: 'int64', dims: [B, T], data: pick(batch.inputIds) };
    feeds[IO.positionIds] = { type: 'int64', dims: [B, T], data: pick(batch.positionIds) };
    if (cfg.typeVocabSize > 0) feeds[IO.tokenTypeIds] = { type: 'int64', dims: [B, T], data: pick(batch.tokenTypeIds) };
    const mask = new Float32Array(B * T);
    rows.forEach((r, j) => {
      for (let t = 0; t < T; t++) mask[j * T + t] = batch.attentionMask[r * T + t];
    });
    feeds[IO.attentionMask] = { type: 'float32', dims: [B, T], data: mask };
    Object.assign(feeds, this.pools(variant, plans));
    if (diffs.length) Object.assign(feeds, this.weightFeeds(diffs));

    const wanted: string[] = [];
    if (opts.hidden) wanted.push(IO.hidden);
    if (variant.heads.cls) wanted.push(IO.clsLogits);
    if (variant.heads.tok) wanted.push(IO.tokLogits);
    if (variant.heads.mlm) wanted.push(IO.mlmLogits);
    if (!wanted.length) wanted.push(IO.hidden);
    const res = await session.run(feeds, wanted);
    this.stats.runs++;
    return plans.map((plan, j) => {
      const o: RowOutput = { length: batch.lengths[rows[j]], head: plan.head?.weights ?? null };
      if (res[IO.hidden]) o.hidden = (res[IO.hidden].data as Float32Array).subarray(j * T * D, (j + 1) * T * D);
      const h = plan.head?.weights.config;
      if (res[IO.clsLogits] && h?.type === 'classification') {
        const C = res[IO.clsLogits].dims[1];
        o.clsLogits = (res[IO.clsLogits].data as Float32Array).subarray(j * C, j * C + h.num_labels);
      }
      if (res[IO.tokLogits] && h?.type === 'token_classification') {
        const C = res[IO.tokLogits].dims[2];
        const all = (res[IO.tokLogits].data as Float32Array).subarray(j * T * C, (j + 1) * T * C);
        o.tokLogits = C === h.num_labels ? all : compact(all, T, C, h.num_labels);
      }
      if (res[IO.mlmLogits]) {
        const V = res[IO.mlmLogits].dims[2];
        o.mlmLogits = (res[IO.mlmLogits].data as Float32Array).subarray(j * T * V, (j + 1) * T * V);
      }
      return o;
    });
  }

  // ---- variants and sessions -----------------------------------------------------------------------------
  /** The graph variant a group of rows needs. */
  variantFor(plans: RowPlan[], opts: ForwardOptions): Variant {
    const sites: Variant['sites'] = {};
    for (const site of SITES) {
      const slots = Math.max(0, ...plans.map((p) => p.adapters.length));
      const fuse = Math.max(0, ...plans.map((p) => (p.fuse && p.fuse.fusion.layers.some((ly) => ly[site]) ? p.fuse.adapters.length : 0)));
      const used = plans.some((p) => p.adapters.some((a) => a.layers.some((ly) => ly[site]))) || fuse > 0;
      if (!used) continue;
      const table = this.slotTable(plans, site, slots, fuse);
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
      sites[site] = { slots, flags, finalLn, act, fuse, resScale, uniform };
    }
    const lora = LORA_TARGETS.filter((t) => plans.some((p) => p.loras.some((m) => m.layers.some((ly) => ly[t]))));
    const invs = plans.map((p) => p.invertible?.config.non_linearity ?? null);
    const invSet = new Set(invs.filter((x): x is Activation => x !== null));
    const heads = plans.map((p) => p.head?.weights.config.type ?? null);
    const clsDense = plans.map((p) => (p.head?.weights.config.type === 'classification' ? (p.head.weights.clsDenseT ? 1 : 0) : null));
    const loraKeys = new Set(plans.map((p) => p.loras.map((m) => m.key).join('+')));
    return {
      sites,
      lora,
      loraUniform: loraKeys.size === 1,
      invertible: invSet.size > 0,
      invUniform: invSet.size > 0 && new Set(plans.map((p) => p.invertible?.key ?? null)).size === 1,
      invAct: invSet.size <= 1 ? ([...invSet][0] ?? 'relu') : 'mixed',
      heads: { cls: heads.includes('classification'), tok: heads.includes('token_classification'), mlm: !!opts.mlm },
      clsDense: heads.includes('classification') ? modeOf([clsDense]) : 'off',
    };
  }

  /** The session of a variant, marked in use (the caller decrements `inUse` when its run is over). */
  private session(variant: Variant, weightsAsInputs: boolean): SessionEntry {
    const key = `${weightsAsInputs ? 'inputs' : 'init'}:${variantKey(variant)}`;
    let entry = this.sessions.get(key);
    if (!entry) {
      this.evictSessions();
      const { graph } = buildEncoderGraph(this.base.config, variant, (g) => this.provider(g, weightsAsInputs));
      const session = Session.create(graph.toBytes(), { device: this.options.device, threads: this.options.threads, worker: this.options.worker ?? true });
      session.then(() => this.stats.sessionsBuilt++).catch(() => this.sessions.delete(key));
      entry = { session, lastUsed: 0, inUse: 0 };
      this.sessions.set(key, entry);
    }
    entry.lastUsed = ++this.useClock;
    entry.inUse++;
    return entry;
  }

  /** Releases least recently used idle sessions until a new one fits under `maxSessions`. */
  private evictSessions(): void {
    const max = Math.max(1, this.options.maxSessions ?? 8);
    while (this.sessions.size >= max) {
      const idle = [...this.sessions.entries()].filter(([, e]) => e.inUse === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
      if (!idle.length) return; // all busy: go over the limit rather than free memory a batch still uses
      const [key, e] = idle[0];
      this.sessions.delete(key);
      this.stats.sessionsReleased++;
      void e.session.then((s) => s.release()).catch(() => undefined);
    }
  }

  /** Base parameters as initializers (prepacked once) or as graph inputs `w.<name>` (diff groups). */
  private provider(g: GraphBuilder, asInputs: boolean): ParamProvider {
    const made = new Map<string, Value>();
    const get = (name: string): Value => {
      const hit = made.get(name);
      if (hit) return hit;
      const p = this.params.get(name);
      if (!p) throw new RangeError(`base has no parameter '${name}'`);
      let v: Value;
      if (!asInputs) v = g.initializer(name, { type: 'float32', dims: p.dims, data: p.data });
      // Linear weights fed as inputs keep the checkpoint's [out, in] layout: onnxruntime fuses the Transpose into
      // the MatMul (transB), whose per-call packing of an input weight costs half the [in, out] one's (measured
      // 128x768x3072: +9% vs +19% over a prepacked initializer).
      else if (this.linearNames.has(name)) v = g.transpose(g.input(`w.${name}`, 'float32', [p.dims[1], p.dims[0]]), [1, 0]);
      else v = g.input(`w.${name}`, 'float32', p.dims);
      made.set(name, v);
      return v;
    };
    return {
      linearT: (stem) => {
        if (stem === 'mlm.decoder') {
          const untied = this.params.has('mlm.decoder.weight');
          const key = untied ? 'mlm.decoder.weight' : 'embeddings.word';
          const t = made.get(`T:${key}`) ?? g.transpose(get(key), [1, 0]);
          made.set(`T:${key}`, t);
          return t;
        }
        return get(`${stem}.weight`);
      },
      tensor: get,
    };
  }

  /** Feeds `w.<name>` for a diff group: θ₀+Σδ for touched tensors, the base's own arrays for the rest. */
  private weightFeeds(diffs: RowPlan['diffs']): Record<string, HostTensor> {
    const key = diffs.map((d) => d.key).join('+');
    const touched = this.materialised(diffs);
    const feeds: Record<string, HostTensor> = {};
    for (const [name, p] of this.params) {
      const mine = touched.get(name);
      const own = this.linearNames.has(name) ? this.base.weights.get(name)! : null; // [out, in], see provider()
      feeds[`w.${name}`] = { type: 'float32', dims: own ? own.shape : p.dims, data: mine ?? (own ? own.data : p.data), shareKey: `${this.shareId}:${mine ? `diff:${key}` : 'base'}:${name}` };
    }
    return feeds;
  }

  /** A base parameter (engine layout) as a diff set changes it. */
  private effectiveParam(name: string, diffs: RowPlan['diffs']): Float32Array {
    return (diffs.length ? this.materialised(diffs).get(name) : undefined) ?? this.params.get(name)!.data;
  }

  /** θ₀+Σδ for the tensors a diff set touches (Linear weights in [out, in]), materialised once per set and cached. */
  private materialised(diffs: RowPlan['diffs']): Map<string, Float32Array> {
    const key = diffs.map((d) => d.key).join('+');
    let touched = this.diffWeights.get(key);
    if (!touched) {
      touched = new Map();
      for (const d of diffs) {
        for (const [name, { indices, values }] of d.params) {
          let w = touched.get(name);
          const p = this.params.get(name);
          if (!p) throw new ModuleError('INCOMPATIBLE_BASE', `module '${d.key}' changes '${name}', which this base does not have`);
          const linear = this.linearNames.has(name);
          if (!w) {
            w = (linear ? this.base.weights.get(name)!.data : p.data).slice();
            touched.set(name, w);
          }
          // Cold path (once per diff set, then cached): scatter-add over the diff's non-zeros. Diff indices are in
          // the engine layout ([in, out] for Linear weights): e = c·out + r is element (r, c) of the [out, in] tensor.
          if (linear) {
            const [inn, out] = p.dims;
            for (let i = 0; i < indices.length; i++) {
              const e = indices[i];
              w[(e % out) * inn + Math.floor(e / out)] += values[i];
            }
          } else for (let i = 0; i < indices.length; i++) w[indices[i]] += values[i];
        }
      }
      this.diffWeights.set(key, touched);
    }
    return touched;
  }

  // ---- pools ---------------------------------------------------------------------------------------------
  /**
   * Per (layer, slot, row) the adapter entry and its switches at one site. Slots [0, S) are the stack, slot S
   * the fusion pre-step, slots S+1.. the fused adapters. `null` marks an identity slot ("don't care" switch).
   */
  private slotTable(plans: RowPlan[], site: Site, slots: number, fuse: number) {
    const L = this.base.config.numLayers;
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
          const c = present?.config;
          fr.obf.push(c ? +c.original_ln_before : null);
          fr.resPost.push(c ? +(c.residual_before_ln === false) : 0);
          fr.resPostAdd.push(c ? +(c.residual_before_ln === 'post_add') : 0);
          fr.lnBefore.push(c && !preOnly ? +c.ln_before : null);
          fr.lnAfter.push(c && !preOnly ? +c.ln_after : null);
          fr.adResBeforeLn.push(c && !preOnly ? +c.adapter_residual_before_ln : 0);
          fr.parallel.push(c && !preOnly ? +c.is_parallel : null);
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

  /** Pools for a batch, reused while the same rows' compositions repeat (module versions are immutable). */
  private pools(v: Variant, plans: RowPlan[]): Pools {
    const key = `${variantKey(v)}|${plans.map((p) => `${p.key}#${p.head?.key ?? ''}`).join(';')}`;
    const hit = this.poolCache.get(key);
    if (hit) return hit.pools;
    const id = this.poolSeq++;
    const pools = this.buildPools(v, plans);
    for (const [name, t] of Object.entries(pools)) t.shareKey = `${this.shareId}:pool:${id}:${name}`;
    this.poolCache.set(key, { id, pools });
    return pools;
  }

  private buildPools(v: Variant, plans: RowPlan[]): Pools {
    const pools: Pools = {};
    for (const site of SITES) {
      const sv = v.sites[site];
      if (sv) Object.assign(pools, this.adapterPools(site, sv, plans));
    }
    for (const t of v.lora) Object.assign(pools, this.loraPools(t, plans, v.loraUniform ?? false));
    if (v.invertible) Object.assign(pools, this.invertiblePools(v, plans));
    Object.assign(pools, this.headPools(v, plans));
    return pools;
  }

  private adapterPools(site: Site, sv: SiteVariant, plans: RowPlan[]): Pools {
    const cfg = this.base.config;
    const L = cfg.numLayers;
    const D = cfg.hiddenSize;
    const B = plans.length;
    const table = this.slotTable(plans, site, sv.slots, sv.fuse);
    const S = table.S;
    // Distinct adapters at this site; entry 0 is the zero adapter.
    const mods: AdapterModule[] = [];
    const index = new Map<string, number>();
    for (const l of table.entry) for (const s of l) for (const a of s) if (a && !index.has(a.key)) index.set(a.key, mods.push(a));
    const P = mods.length + 1;
    let R = 1;
    for (const m of mods) for (const ly of m.layers) if (ly[site]) R = Math.max(R, ly[site]!.r);
    const downW = new Float32Array(L * P * D * R);
    const downB = new Float32Array(L * P * R);
    const upW = new Float32Array(L * P * R * D);
    const upB = new Float32Array(L * P * D);
    const wantLnb = sv.flags.lnBefore !== 'off';
    const wantLna = sv.flags.lnAfter !== 'off';
    const lnbG = wantLnb ? new Float32Array(L * P * D) : null;
    const lnbB = wantLnb ? new Float32Array(L * P * D) : null;
    const lnaG = wantLna ? new Float32Array(L * P * D) : null;
    const lnaB = wantLna ? new Float32Array(L * P * D) : null;
    for (let l = 0; l < L; l++) {
      mods.forEach((m, i) => {
        const w: AdapterSiteWeights | undefined = m.layers[l][site];
        if (!w) return;
        const e = l * P + i + 1;
        for (let d = 0; d < D; d++) downW.set(w.downT.subarray(d * w.r, (d + 1) * w.r), (e * D + d) * R);
        downB.set(w.downB, e * R);
        upW.set(w.upT, e * R * D); // rows r..R stay zero
        upB.set(w.upB, e * D);
        if (lnbG && w.lnBefore) {
          lnbG.set(w.lnBefore.g, e * D);
          lnbB!.set(w.lnBefore.b, e * D);
        }
        if (lnaG && w.lnAfter) {
          lnaG.set(w.lnAfter.g, e * D);
          lnaB!.set(w.lnAfter.b, e * D);
        }
      });
    }
    const idx = new BigInt64Array(L * S * B);
    for (let l = 0; l < L; l++)
      for (let s = 0; s < S; s++)
        for (let b = 0; b < B; b++) {
          const a = table.entry[l][s][b];
          idx[(l * S + s) * B + b] = BigInt(l * P + (a ? index.get(a.key)! : 0));
        }
    const parts: [string, Float32Array, number[]][] = [
      ['down_w', downW, [D, R]],
      ['down_b', downB, [1, R]],
      ['up_w', upW, [R, D]],
      ['up_b', upB, [1, D]],
    ];
    if (lnbG) parts.push(['lnb_g', lnbG, [1, D]], ['lnb_b', lnbB!, [1, D]]);
    if (lnaG) parts.push(['lna_g', lnaG, [1, D]], ['lna_b', lnaB!, [1, D]]);
    const pools: Pools = {};
    if (sv.uniform) {
      // Every row shares each slot's entry: feed that entry's views directly (no copies, no gathers in-graph).
      for (let l = 0; l < L; l++)
        for (let s = 0; s < S; s++) {
          const a = table.entry[l][s][0];
          const e = l * P + (a ? index.get(a.key)! : 0);
          const folded = foldedSlot(sv, s);
          if (folded) Object.assign(pools, this.foldedSlotFeeds(site, plans[0].diffs, l, s, folded.biasColumn, downW.subarray(e * D * R, (e + 1) * D * R), downB.subarray(e * R, (e + 1) * R), upW.subarray(e * R * D, (e + 1) * R * D), upB.subarray(e * D, (e + 1) * D), R));
          else
            for (const [part, arr, dims] of parts) {
              const n = dims[0] * dims[1];
              pools[POOL.adapterSlot(site, part, l, s)] = { type: 'float32', dims, data: arr.subarray(e * n, (e + 1) * n) };
            }
        }
    } else {
      for (const [part, arr, dims] of parts) pools[POOL.adapter(site, part)] = { type: 'float32', dims: [L * P, ...dims], data: arr };
      pools[POOL.adapter(site, 'idx')] = { type: 'int64', dims: [L, S, B], data: idx };
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
    if (sv.fuse > 0) Object.assign(pools, this.fusionPools(site, plans));
    return pools;
  }

  /**
   * One uniform carried slot's weights folded with the site's original LayerNorm (see foldedSlot in
   * encoder-graph.ts): down_wf = γ⊙Wd minus its column means (the centring of LN), down_bf = β·Wd + bd,
   * up_wb = [Wu; bu]; with `biasColumn` the down projection gets a column of weight 0 and bias 1 (relu(1) = 1 is
   * the ones column that carries bu).
   */
  private foldedSlotFeeds(site: Site, diffs: RowPlan['diffs'], l: number, s: number, biasColumn: boolean, downT: Float32Array, downB: Float32Array, upT: Float32Array, upB: Float32Array, R: number): Pools {
    const D = this.base.config.hiddenSize;
    const ln = `layers.${l}.${site === 'attention' ? 'attn_ln' : 'ffn_ln'}`;
    const gamma = this.effectiveParam(`${ln}.weight`, diffs);
    const beta = this.effectiveParam(`${ln}.bias`, diffs);
    const R1 = biasColumn ? R + 1 : R;
    const wf = new Float32Array(D * R1);
    const bf = new Float32Array(R1);
    const colMean = new Float64Array(R);
    for (let d = 0; d < D; d++)
      for (let r = 0; r < R; r++) {
        const w = downT[d * R + r];
        colMean[r] += (gamma[d] * w) / D;
        bf[r] += beta[d] * w;
      }
    for (let d = 0; d < D; d++) for (let r = 0; r < R; r++) wf[d * R1 + r] = gamma[d] * downT[d * R + r] - colMean[r];
    for (let r = 0; r < R; r++) bf[r] += downB[r];
    if (biasColumn) bf[R] = 1;
    const wb = new Float32Array((R + 1) * D);
    wb.set(upT);
    wb.set(upB, R * D);
    return {
      [POOL.adapterSlot(site, 'down_wf', l, s)]: { type: 'float32', dims: [D, R1], data: wf },
      [POOL.adapterSlot(site, 'down_bf', l, s)]: { type: 'float32', dims: [1, R1], data: bf },
      [POOL.adapterSlot(site, 'up_wb', l, s)]: { type: 'float32', dims: [R + 1, D], data: wb },
    };
  }

  private fusionPools(site: Site, plans: RowPlan[]): Pools {
    const cfg = this.base.config;
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

  /** LoRA: one pool entry per distinct LoRA set of a row, ranks concatenated (Σ of deltas = concat of ranks). */
  private loraPools(target: LoraTarget, plans: RowPlan[], uniform: boolean): Pools {
    const cfg = this.base.config;
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

  private invertiblePools(v: Variant, plans: RowPlan[]): Pools {
    const D = this.base.config.hiddenSize;
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

  private headPools(v: Variant, plans: RowPlan[]): Pools {
    const cfg = this.base.config;
    const D = cfg.hiddenSize;
    const V = cfg.vocabSize;
    const pools: Pools = {};
    // Entry 0 is the zero head (or the base's own MLM head); then each distinct module head.
    const heads = [...new Map(plans.filter((p) => p.head).map((p) => [p.head!.key, p.head!.weights])).entries()];
    const P = heads.length + 1;
    const entryOf = plans.map((p) => (p.head ? heads.findIndex(([k]) => k === p.head!.key) + 1 : 0));
    pools[POOL.head('idx')] = { type: 'int64', dims: [plans.length], data: BigInt64Array.from(entryOf.map(BigInt)) };
    if (v.heads.cls) {
      const C = Math.max(1, ...heads.map(([, h]) => (h.config.type === 'classification' ? h.config.num_labels : 0)));
      const dW = new Float32Array(P * D * D);
      const dB = new Float32Array(P * D);
      const oW = new Float32Array(P * D * C);
      const oB = new Float32Array(P * C);
      heads.forEach(([, h], i) => {
        if (h.config.type !== 'classification') return;
        const e = i + 1;
        const c = h.config.num_labels;
        if (h.clsDenseT) {
          dW.set(h.clsDenseT, e * D * D);
          dB.set(h.clsDenseB!, e * D);
        }
        for (let d = 0; d < D; d++) oW.set(h.outT!.subarray(d * c, (d + 1) * c), (e * D + d) * C);
        oB.set(h.outB!, e * C);
      });
      pools[POOL.head('cls_dense_w')] = { type: 'float32', dims: [P, D, D], data: dW };
      pools[POOL.head('cls_dense_b')] = { type: 'float32', dims: [P, 1, D], data: dB };
      pools[POOL.head('cls_out_w')] = { type: 'float32', dims: [P, D, C], data: oW };
      pools[POOL.head('cls_out_b')] = { type: 'float32', dims: [P, 1, C], data: oB };
      if (v.clsDense === 'mixed') pools[POOL.head('cls_dense')] = { type: 'float32', dims: [plans.length], data: Float32Array.from(plans.map((p) => +!!p.head?.weights.clsDenseT)) };
    }
    if (v.heads.tok) {
      const C = Math.max(1, ...heads.map(([, h]) => (h.config.type === 'token_classification' ? h.config.num_labels : 0)));
      const oW = new Float32Array(P * D * C);
      const oB = new Float32Array(P * C);
      heads.forEach(([, h], i) => {
        if (h.config.type !== 'token_classification') return;
        const e = i + 1;
        const c = h.config.num_labels;
        for (let d = 0; d < D; d++) oW.set(h.outT!.subarray(d * c, (d + 1) * c), (e * D + d) * C);
        oB.set(h.outB!, e * C);
      });
      pools[POOL.head('tok_out_w')] = { type: 'float32', dims: [P, D, C], data: oW };
      pools[POOL.head('tok_out_b')] = { type: 'float32', dims: [P, 1, C], data: oB };
    }
    if (v.heads.mlm) {
      const dW = new Float32Array(P * D * D);
      const dB = new Float32Array(P * D);
      const lg = new Float32Array(P * D);
      const lb = new Float32Array(P * D);
      const bias = new Float32Array(P * V);
      const baseHead = this.baseMlmHead();
      for (let e = 0; e < P; e++) {
        const h = e === 0 ? null : heads[e - 1][1].mlm;
        const src = h ?? baseHead;
        dW.set(src.denseT, e * D * D);
        dB.set(src.denseB, e * D);
        lg.set(src.lnG, e * D);
        lb.set(src.lnB, e * D);
        bias.set(src.bias, e * V);
      }
      pools[POOL.head('mlm_dense_w')] = { type: 'float32', dims: [P, D, D], data: dW };
      pools[POOL.head('mlm_dense_b')] = { type: 'float32', dims: [P, 1, D], data: dB };
      pools[POOL.head('mlm_ln_g')] = { type: 'float32', dims: [P, 1, D], data: lg };
      pools[POOL.head('mlm_ln_b')] = { type: 'float32', dims: [P, 1, D], data: lb };
      pools[POOL.head('mlm_bias')] = { type: 'float32', dims: [P, 1, V], data: bias };
    }
    return pools;
  }

  private mlmHeadCache: NonNullable<HeadWeights['mlm']> | null = null;
  private baseMlmHead(): NonNullable<HeadWeights['mlm']> {
    if (this.mlmHeadCache) return this.mlmHeadCache;
    const w = this.base.weights;
    const need = (n: string) => {
      const t = w.get(n);
      if (!t) throw new ModuleError('INVALID_COMPOSITION', `masked-LM output needs an MLM head: the base checkpoint has no '${n}' and the composition's modules bring none`);
      return t;
    };
    const D = this.base.config.hiddenSize;
    this.mlmHeadCache = {
      denseT: transpose(need('mlm.dense.weight').data, D, D),
      denseB: need('mlm.dense.bias').data,
      lnG: need('mlm.ln.weight').data,
      lnB: need('mlm.ln.bias').data,
      bias: need('mlm.decoder.bias').data,
    };
    return this.mlmHeadCache;
  }

  /** Frees all sessions. */
  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const e of all) await (await e.session.catch(() => null))?.release().catch(() => undefined);
    await Session.forgetShared(`${this.shareId}:`);
  }
}

/** Mode of a switch over all its (layer, slot, row) values; null entries don't care. */
function modeOf(vals: (number | null)[][][] | (number | null)[][] | (number | null)[]): FlagMode {
  const flat = (vals as unknown[]).flat(3) as (number | null)[];
  const set = new Set(flat.filter((x) => x !== null));
  if (set.size === 0) return 'off';
  if (set.size === 2) return 'mixed';
  return set.has(1) ? 'on' : 'off';
}

function compact(all: Float32Array, T: number, C: number, c: number): Float32Array {
  const out = new Float32Array(T * c);
  for (let t = 0; t < T; t++) out.set(all.subarray(t * C, t * C + c), t * c);
  return out;
}
