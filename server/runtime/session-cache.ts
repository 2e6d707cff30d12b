/**
 * The sessions of one engine, one per graph variant and per way it takes the base weights (BaseWeights: prepacked,
 * or inputs on the right or left), built on first use and bounded by `maxSessions`: a prepacked one holds its own
 * copy of the base weights, so idle sessions are released to make room (`evict`: first one another session covers,
 * then the least recently used), never one a running batch still uses (`inUse` > 0).
 * Mixed batches vary in which features they need (a LoRA row or not, a stack or not, ...), and every such
 * combination used to be a session of its own: with 1000 modules in the traffic, sessions were built (50–66 ms
 * each on the small base, ~0.7 s at BERT-base) and evicted while serving. So a mixed variant is served by any
 * cached session whose graph covers it (variants.ts coversVariant), and a mixed miss builds the join of its
 * variant and the most recently used mixed one: the mixed sessions grow into one envelope of what the traffic
 * needs. A uniform batch (every row one composition) keeps its own faster graph, but until it has missed
 * UNIFORM_BUILD_AFTER times, and its runs there have taken `uniformPayback` times what a build of its kind has taken
 * so far, it runs on a covering session instead of building one (a lone request to a rare kind; a build holds up
 * every run behind it), and it gets one only where that evicts no session in use lately (STALE_AFTER): with more uniform variants in the
 * traffic than `maxSessions` leaves room for, each would otherwise evict another and be rebuilt on its next miss
 * (11 builds of ~0.7 s in the timed phases of one BERT-base bench:serve run with `--max-sessions 4`).
 * With `gates` (EngineOptions.gateMixedSessions) a mixed graph is built gated (encoder-graph.ts gateValues): a batch
 * that runs on it skips the stack slots, LoRA targets and invertible adapter none of its rows uses, so a lone row on
 * the envelope costs little more than on its own session (BERT-base, one 20-token row: +14–18% ungated, +4–8% gated).
 * Example:
 *   const entry = sessions.acquire(variant, 'init');   // build the run's feeds for entry.variant
 *   try { await (await entry.session).run(feeds, outputs); } finally { sessions.done(entry); }
 */
import { performance } from 'perf_hooks';
import type { BaseConfig } from '../model/config';
import { buildEncoderGraph, variantKey, type Variant } from '../model/encoder-graph';
import type { BaseParams, BaseWeights } from './base-params';
import { Session, type Device } from './session';
import { coversVariant, describeVariant, isUniform, joinVariants } from './variants';

export interface SessionEntry {
  session: Promise<Session>;
  /** Its key in the cache: the kind of base weights (prepacked or inputs) and the variant. */
  key: string;
  /** The variant the session's graph was built for: the one asked for, or one that covers it. */
  variant: Variant;
  lastUsed: number;
  inUse: number;
  /** Nodes of its graph, branches included: a run's fixed cost grows with them (Engine's length runs). */
  nodes: number;
}

/** Misses of a uniform variant served by a covering session before its own session is built. */
export const UNIFORM_BUILD_AFTER = 3;
/** A session not acquired within this many acquisitions may make room for a uniform variant's own session. */
export const STALE_AFTER = 256;
/**
 * A uniform variant's own session is built once its runs on covering sessions have taken this many times the mean
 * build of its kind (SessionCacheOptions.uniformPayback). A build holds up every run behind it, and at BERT-base a
 * gated mixed session runs a lone row within a few percent of its own graph (+4–8%, above; bench:serve's worker
 * table: 27.7 ms for a row on its own session, 27.9 on a mixed one) while a build took 0.4–2.3 s: one built while
 * timed made bench:serve's open-loop p99 17.7× N=1's. On the small base builds take 15–70 ms, so its
 * own session comes after 0.15–0.7 s of its runs.
 */
export const UNIFORM_PAYBACK = 10;

export interface SessionCacheOptions {
  device?: Device;
  threads?: number;
  /** Intra-op threads of the 'inputs-left' sessions (small sparse-diff groups); default `threads`. The others run on `threads`. */
  diffThreads?: number;
  /** Run onnxruntime in the shared worker thread (default true). */
  worker?: boolean;
  /** Most sessions kept (default 8). */
  maxSessions?: number;
  /** Build mixed graphs with gates (EngineOptions.gateMixedSessions). */
  gates?: boolean;
  /** Called once each session is built (EngineOptions.onSessionBuilt). */
  onBuilt?: (built: SessionBuilt) => void;
  /** UNIFORM_PAYBACK by default; 0 builds a uniform variant's session after UNIFORM_BUILD_AFTER misses, whatever they took. */
  uniformPayback?: number;
}

/**
 * A session just built: while serving, a build holds up every run behind it (onnxruntime's model load is synchronous in
 * the worker; 0.1–3.9 s at BERT-base on a 2-core VM), so serve logs each one.
 */
export interface SessionBuilt {
  /** How it takes the base weights (BaseWeights). */
  weights: BaseWeights;
  /** One composition's own graph (true), or a mixed one that serves many. */
  uniform: boolean;
  /** What the graph holds, briefly (describeVariant). */
  variant: string;
  /** From the request to build until it could run. */
  ms: number;
  /** Sessions held when it finished building. */
  sessions: number;
}

export class SessionCache {
  private readonly sessions = new Map<string, SessionEntry>();
  private useClock = 0;
  /** Uniform variants served by a covering session so far (bounded): how many times, and the ms their runs took there. */
  private readonly uniformMisses = new Map<string, number>();
  private readonly uniformMissMs = new Map<string, number>();
  /** Builds so far per kind of base weights: how many, and their ms summed (what `uniformPayback` weighs misses against). */
  private readonly builds = new Map<string, { n: number; ms: number }>();
  /** Mixed variant key → the key of the session that covers it (cleared whenever the sessions change). */
  private readonly covered = new Map<string, string>();

  constructor(
    private readonly config: BaseConfig,
    private readonly params: BaseParams,
    private readonly options: SessionCacheOptions,
    private readonly stats: { sessionsBuilt: number; sessionsReleased: number },
  ) {}

  /**
   * A session that serves `variant`, marked in use: call `done(entry)` when the run is over, and build the
   * run's feeds for `entry.variant` (it may cover more than was asked for).
   */
  acquire(variant: Variant, kind: BaseWeights): SessionEntry {
    const key = `${kind}:${variantKey(variant)}`;
    let entry = this.cached(key);
    if (!entry) {
      const cover = this.cover(kind, variant);
      const uniform = isUniform(variant);
      if (cover && (!uniform || this.missUniform(key) < UNIFORM_BUILD_AFTER || !this.paidFor(key, kind) || !this.roomFor())) {
        entry = cover;
        if (!uniform) this.covered.set(key, cover.key);
      } else {
        // grow the most recent mixed session this batch can join (rows of another rank class cannot: variants.ts)
        const mixed = uniform ? undefined : this.latest((k, e) => k.startsWith(`${kind}:`) && !isUniform(e.variant) && joinVariants(e.variant, variant) !== null);
        let grown = (mixed && joinVariants(mixed.variant, variant)) || variant;
        if (!uniform && this.options.gates) grown = this.withFlexibleFeatures(kind, grown);
        entry = this.build(`${kind}:${variantKey(grown)}`, grown, kind);
      }
    }
    entry.lastUsed = ++this.useClock;
    entry.inUse++;
    return entry;
  }

  /**
   * A mixed variant about to be built, joined with what rows without adapters bring to the other mixed sessions of
   * its kind (LoRA targets, per-row biases, heads): such rows join whichever rank class's run a batch has
   * (variants.ts rankGroups), so without them a MAD-X stacks' session grows again the first time a LoRA row or a
   * BitFit row lands in its run (1.1 and 2.5 s in one BERT-base bench:serve run, every run behind them waiting). Gated graphs
   * only (the parts a batch does not use are skipped; ungated, every stack row would pay for them).
   */
  private withFlexibleFeatures(kind: BaseWeights, v: Variant): Variant {
    let grown = v;
    for (const [k, e] of this.sessions) {
      if (!k.startsWith(`${kind}:`) || isUniform(e.variant)) continue;
      const o = e.variant;
      const flexible: Variant = { sites: {}, lora: o.lora, loraUniform: !o.lora.length, ...(o.loraRanks ? { loraRanks: o.loraRanks } : {}), invertible: false, invAct: 'relu', heads: o.heads, clsDense: o.clsDense, ...(o.rowBias ? { rowBias: true } : {}) };
      grown = joinVariants(grown, flexible) ?? grown; // LoRA of another rank class, or other outputs: left out
    }
    return grown;
  }

  /** The session `acquire` would give `variant` now if one is cached (its own or a cover), without using it. */
  peek(variant: Variant, kind: BaseWeights): SessionEntry | undefined {
    return this.cached(`${kind}:${variantKey(variant)}`) ?? this.cover(kind, variant);
  }

  /** The session of this key, or the one already found to cover it. */
  private cached(key: string): SessionEntry | undefined {
    return this.sessions.get(key) ?? this.sessions.get(this.covered.get(key) ?? '');
  }

  private build(key: string, variant: Variant, kind: BaseWeights): SessionEntry {
    const have = this.sessions.get(key);
    if (have) return have;
    const t0 = performance.now();
    this.evict(kind, variant);
    // a mixed graph serves many batches, each of which needs a part of it: gated, they skip the rest (gateValues)
    const { graph } = buildEncoderGraph(this.config, variant, (g) => this.params.provider(g, kind), undefined, { gates: !!this.options.gates && !isUniform(variant) });
    const threads = kind === 'inputs-left' ? (this.options.diffThreads ?? this.options.threads) : this.options.threads;
    const session = Session.create(graph.toBytes(), { device: this.options.device, threads, worker: this.options.worker ?? true });
    session.then(
      () => {
        this.stats.sessionsBuilt++;
        const ms = performance.now() - t0;
        const b = this.builds.get(kind) ?? { n: 0, ms: 0 };
        this.builds.set(kind, { n: b.n + 1, ms: b.ms + ms });
        this.options.onBuilt?.({ weights: kind, uniform: isUniform(variant), variant: describeVariant(variant), ms: Math.round(ms), sessions: this.sessions.size });
      },
      () => this.forget(key),
    );
    const entry: SessionEntry = { session, key, variant, lastUsed: 0, inUse: 0, nodes: graph.nodeCount() };
    this.sessions.set(key, entry);
    this.covered.clear(); // a later miss may find a closer cover
    return entry;
  }

  /** Whether a session can be added without evicting one acquired within the last STALE_AFTER acquisitions. */
  private roomFor(): boolean {
    if (this.sessions.size < Math.max(1, this.options.maxSessions ?? 8)) return true;
    for (const e of this.sessions.values()) if (e.inUse === 0 && e.lastUsed < this.useClock - STALE_AFTER) return true;
    return false;
  }

  /** The most recently used mixed session of this kind whose graph covers `variant`. */
  private cover(kind: BaseWeights, variant: Variant): SessionEntry | undefined {
    return this.latest((k, e) => k.startsWith(`${kind}:`) && !isUniform(e.variant) && coversVariant(e.variant, variant));
  }

  private latest(pred: (key: string, e: SessionEntry) => boolean): SessionEntry | undefined {
    let best: SessionEntry | undefined;
    for (const [k, e] of this.sessions) if (pred(k, e) && (!best || e.lastUsed > best.lastUsed)) best = e;
    return best;
  }

  private forget(key: string): void {
    this.sessions.delete(key);
    this.covered.clear();
  }

  /** Whether another session of its kind, held or `incoming`, serves every batch session `key` serves. */
  private coveredElsewhere(key: string, e: SessionEntry, kind: BaseWeights, incoming: Variant): boolean {
    const mine = key.slice(0, key.indexOf(':'));
    if (mine === kind && !isUniform(incoming) && coversVariant(incoming, e.variant)) return true;
    for (const [k, o] of this.sessions) if (o !== e && k.startsWith(`${mine}:`) && !isUniform(o.variant) && coversVariant(o.variant, e.variant)) return true;
    return false;
  }

  /** Counts a uniform variant's miss; returns the misses before this one. */
  private missUniform(key: string): number {
    const n = this.uniformMisses.get(key) ?? 0;
    if (this.uniformMisses.size >= 1024) this.uniformMisses.clear();
    this.uniformMisses.set(key, n + 1);
    return n;
  }

  /**
   * Whether a uniform variant's runs on covering sessions have taken `uniformPayback` times the mean build of its
   * kind so far (none yet: nothing to weigh against).
   */
  private paidFor(key: string, kind: BaseWeights): boolean {
    const b = this.builds.get(kind);
    const need = (this.options.uniformPayback ?? UNIFORM_PAYBACK) * (b ? b.ms / b.n : 0);
    return (this.uniformMissMs.get(key) ?? 0) >= need;
  }

  /**
   * Marks one use of `entry` (from `acquire`) as over; `run`: the variant the batch asked for and the ms its run took
   * (RunTiming), which counts towards a uniform variant's own session when a cover ran it.
   */
  done(entry: SessionEntry, run?: { variant: Variant; ms: number }): void {
    entry.inUse--;
    if (!run || !isUniform(run.variant)) return;
    const key = `${entry.key.slice(0, entry.key.indexOf(':'))}:${variantKey(run.variant)}`;
    if (key === entry.key) return;
    if (this.uniformMissMs.size >= 1024 && !this.uniformMissMs.has(key)) this.uniformMissMs.clear();
    this.uniformMissMs.set(key, (this.uniformMissMs.get(key) ?? 0) + run.ms);
  }

  /** Releases every session. */
  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.covered.clear();
    for (const e of all) await (await e.session.catch(() => null))?.release().catch(() => undefined);
  }

  /**
   * Releases idle sessions until the one about to be built (`incoming`, of `kind`) fits under `maxSessions`: first
   * those another session's graph covers (a mixed session the incoming one grows past, or a uniform one a mixed
   * session serves), so that no batch loses its graph, then the least recently used. LRU alone released the larger
   * of two mixed sessions when the smaller one ran last: at BERT-base with `--max-sessions 4` bench:serve rebuilt
   * MAD-X stacks' mixed session twice in a timed phase, 1.1 and 2.5 s each with every run behind it waiting.
   */
  private evict(kind: BaseWeights, incoming: Variant): void {
    const max = Math.max(1, this.options.maxSessions ?? 8);
    while (this.sessions.size >= max) {
      const idle = [...this.sessions.entries()].filter(([, e]) => e.inUse === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
      if (!idle.length) return; // all busy: go over the limit rather than free memory a batch still uses
      const [key, e] = idle.find(([k, x]) => this.coveredElsewhere(k, x, kind, incoming)) ?? idle[0];
      this.forget(key);
      this.stats.sessionsReleased++;
      void e.session.then((s) => s.release()).catch(() => undefined);
    }
  }
}
