/**
 * Modules in engine layout: resolved through the registry, loaded once per `id@version` (concurrent loads of one
 * version share one promise) and kept in a byte-bounded LRU. Module versions are immutable; what a ref such as
 * `task/x` or `task/x@latest` resolves to is memoised while the registry's generation stands still.
 * Example:
 *   const cache = new ModuleCache(base, registry, 2 ** 31, stats);
 *   const plans = await cache.plan({ stack: ['lang/de', 'task/topic'] });
 */
import { LRUCache } from 'lru-cache';
import type { Manifest } from '../../modules-store/manifest';
import { parseSafetensors, type Tensor } from '../../modules-store/safetensors';
import type { Base } from '../model/base';
import { compositionRefs, parseComposition, planComposition, type Composition, type PlanOptions, type RowPlan } from '../model/composition';
import { loadEngineModule, ModuleError, type EngineModule } from '../model/modules';
import { canonicalShape } from '../model/weights';

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

export class ModuleCache {
  private readonly modules: LRUCache<string, EngineModule>;
  private readonly inflight = new Map<string, Promise<EngineModule>>();
  /** ref → `id@version` it resolved to, while the registry's generation stands (the module itself stays in the LRU). */
  private refs = new Map<string, string>();
  private refsGeneration: number | undefined = undefined;
  /**
   * Composition (as sent) → its row plans, while the registry's generation stands and no module left the LRU: a
   * hot composition costs one map lookup per request instead of parse + resolve + plan. Bounded; plans hold their
   * modules, so the memo is dropped whenever the LRU evicts one (memory stays within the byte budget).
   */
  private plans = new Map<string, RowPlan[]>();
  private plansGeneration: number | undefined = undefined;

  /** `maxBytes` bounds the loaded modules kept; `stats.moduleLoads` counts loads. */
  constructor(
    private readonly base: Base,
    public resolver: ModuleResolver | undefined,
    maxBytes: number,
    private readonly stats: { moduleLoads: number },
  ) {
    this.modules = new LRUCache<string, EngineModule>({ maxSize: maxBytes, sizeCalculation: (m) => Math.max(1, m.bytes), dispose: () => this.plans.clear() });
  }

  /** Bytes of the loaded modules, their byte budget and how many there are. */
  usage(): { bytes: number; budget: number; count: number } {
    return { bytes: this.modules.calculatedSize, budget: this.modules.maxSize, count: this.modules.size };
  }

  /** Resolves and loads one module (cached by `id@version`). */
  async module(ref: string): Promise<EngineModule> {
    const resolver = this.resolver;
    if (!resolver) throw new ModuleError('INVALID_COMPOSITION', `module '${ref}' is not loaded and this engine has no module registry to fetch it from`);
    const pkg = await resolver.resolve(ref);
    const key = `${pkg.manifest.id}@${pkg.manifest.version}`;
    const hit = this.modules.get(key);
    if (hit) return hit;
    let p = this.inflight.get(key);
    if (!p) {
      p = (async () => {
        // views into the file's bytes: loading transposes or copies what the module keeps (TensorReader)
        const tensors = parseSafetensors(await pkg.readFile('weights.safetensors'), { views: true }).tensors;
        const m = this.load(pkg.manifest, tensors);
        this.stats.moduleLoads++;
        this.modules.set(key, m);
        return m;
      })().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Adds an already-loaded module package (tests, trainer) without a registry. */
  add(manifest: Manifest, tensors: Map<string, Tensor>): EngineModule {
    const m = this.load(manifest, tensors);
    this.modules.set(m.key, m);
    this.plans.clear(); // a ref may now resolve to this module
    return m;
  }

  /** Parses a composition (JSON) and resolves its modules into one RowPlan per output branch. */
  async plan(raw: unknown, opts: PlanOptions = {}): Promise<RowPlan[]> {
    const gen = this.resolver ? this.resolver.generation : -1;
    const memoKey = gen === undefined ? null : `${JSON.stringify(raw ?? null)}\u0000${opts.head ?? ''}`;
    if (memoKey !== null) {
      if (gen !== this.plansGeneration) {
        this.plans.clear();
        this.plansGeneration = gen;
      }
      const hit = this.plans.get(memoKey);
      if (hit) return hit;
    }
    const plans = await this.planUncached(raw, opts);
    if (memoKey !== null && this.plansGeneration === gen && (this.resolver ? this.resolver.generation : -1) === gen) {
      if (this.plans.size >= 4096) this.plans.delete(this.plans.keys().next().value as string);
      this.plans.set(memoKey, plans);
    }
    return plans;
  }

  private async planUncached(raw: unknown, opts: PlanOptions): Promise<RowPlan[]> {
    const comp: Composition | null = parseComposition(raw);
    const refs = [...new Set(compositionRefs(comp))];
    if (refs.length && this.resolver?.sync) await this.resolver.sync();
    const loaded = new Map<string, EngineModule>();
    await Promise.all(
      refs.map(async (r) => {
        // With a registry every ref resolves through it, memoised until the registry's generation moves, so moved
        // tags and deleted versions take effect on the next request without a catalog round trip per request.
        const local = this.resolver ? undefined : this.modules.get(r);
        loaded.set(r, local ?? (await this.resolveRef(r)));
      }),
    );
    return planComposition(comp, (r) => loaded.get(r)!, opts);
  }

  private load(manifest: Manifest, tensors: Map<string, Tensor>): EngineModule {
    const cfg = this.base.config;
    return loadEngineModule(manifest, tensors, cfg, this.base.fingerprint, (c) => canonicalShape(cfg, c));
  }

  private async resolveRef(ref: string): Promise<EngineModule> {
    const gen = this.resolver?.generation;
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
}
