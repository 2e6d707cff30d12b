/**
 * Sparse diffs as weights: the `w.<name>` feeds of the "weights as inputs" session a row group with sparse diffs
 * runs on. Encoder Linear weights (SPARSE) are fed as the base's own arrays plus the set's non-zeros as a sparse
 * overwrite (HostTensor.overwrite: the session worker adds them in place for the run and restores the base after),
 * so a diff set costs 8 bytes per non-zero here (and 12 in the worker, which keeps the values it reads and writes),
 * not a dense θ₀+δ of every matrix it touches (340 MB per LT-SFT set at 1% on BERT-base: a 2 GiB cache held six,
 * and traffic over more sets materialised one per batch). While memory allows, or for a set that keeps coming
 * back, the sparse tensors get a copy after all (PROMOTE_USES: an overwrite costs two passes per run), which the
 * session worker makes between runs. Other touched
 * tensors (LayerNorms, biases, embeddings, the MLM head) are materialised θ₀+Σδ, which pools also read
 * (`effective`). Both are kept per diff set in a byte-bounded LRU. An untouched tensor is fed under the base's share
 * key, so the session worker holds each base array once however many diff sets run (README, Design decisions: sparse diffs).
 * Example:
 *   const diffs = new DiffWeights(params, 2 ** 31, 'e0');
 *   Object.assign(feeds, diffs.feeds(plan.diffs));
 */
import { LRUCache } from 'lru-cache';
import type { RowPlan } from '../model/composition';
import { ModuleError, transpose } from '../model/modules';
import { ENCODER_LINEAR_WEIGHT } from '../model/weights';
import type { BaseParams } from './base-params';
import { Session, overwritten, scatterAdd, type HostTensor, type SparseOverwrite } from './session';

/** The diff modules of a row group (every row of a group has the same set). */
export type DiffSet = RowPlan['diffs'];

/**
 * Touched tensors fed as the base's array plus a sparse overwrite: encoder Linear weights, which nothing on the
 * main thread reads through a diff set (pools read LayerNorms, biases and the MLM head through `effective`).
 */
const SPARSE = ENCODER_LINEAR_WEIGHT;
/**
 * Past this share of a tensor's entries a set's changes are materialised instead (8 bytes and two writes per run
 * per non-zero against 4 bytes per entry once; a dense diff, e.g. full fine-tuning, is cheaper as a copy). A
 * materialised Linear weight moves to the session worker instead of being cloned (held once).
 */
const MAX_SPARSE_DENSITY = 0.25;
/**
 * A set starts as a sparse overwrite. It gets a copy, θ₀+Σδ of its sparse tensors, when the copy fits the budget
 * without evicting anything and leaves room for the non-zeros of every set that ran within the last FREQ_WINDOW
 * diff-group runs: after its first run where the session worker makes it between runs (see the constructor; the set
 * runs on its non-zeros until the copy is made), from its PROMOTE_USES-th run on where this thread would make it
 * before the run. Under pressure it needs to have run PROMOTE_USES times within the window, and REBUILD_RUNS times
 * per set of that window it would leave without room; the copies of sets that ran less than half as often within
 * the window are dropped (those sets go back to overwrites, keeping their non-zeros), then sets without a copy that
 * ran less often are evicted, least recently used first, never below SPARSE_RESERVE of the budget; if that is not
 * enough it stays sparse.
 * Measured at BERT-base (LT-SFT at 1%): a first request +70 ms sparse against +1046 ms materialising
 * (`bench:serve --cold-only`); a run after that ~18 ms more sparse than dense (two write passes over 850k non-zeros,
 * cache misses mostly; 88 against 39 ms while each run read them back, `npm run bench:diff-groups`); making a copy
 * 130–350 ms (CPU profiles of bench:serve, when the main thread made them).
 * The rule this replaced (a copy once a set ran 4 times within 64 runs, room made by LRU eviction) let popular sets
 * evict one another's copies and the long tail's non-zeros: `npm run bench:diff-cache` (bench:serve's traffic
 * through this class) with the budget of `--diff-memory-mb 1000` at BERT-base made 43 copies and 546 set builds per
 * 1000 diff-group runs; this rule 0.2 and 286 (README, Design decisions: sparse diffs).
 */
const PROMOTE_USES = 4;
/** The placeholder of a copy the worker holds (Session.deriveShared). */
const EMPTY = new Float32Array(0);
const FREQ_WINDOW = 1024;
const SPARSE_RESERVE = 0.25;
/**
 * What a set's rebuild costs, in runs of the copy's savings: its non-zeros built again here (~7 ms at BERT-base) and
 * its next run's read pass in the worker (~50 ms), against the ~6 ms a run on a copy saves over a warm overwrite
 * (write passes; probe in docs/serving-performance.md). A copy that leaves the sets that ran within the window too
 * little room for their non-zeros makes them rebuilt in turn; it is made only when its set ran at least this many
 * times within the window per set it would push out. At BERT-base with `--diff-memory-mb 1000` a copy is the room of
 * ~33 sets: copies there had taken 2/3 of the budget (made while memory was free, for whichever sets came first) and
 * ~50 sets were rebuilt in a timed phase of bench:serve.
 */
export const REBUILD_RUNS = 10;

export function diffSetKey(diffs: DiffSet): string {
  return diffs.map((d) => d.key).join('+');
}

/** What a diff set changes: tensors materialised when it was built, non-zeros of the sparse ones, maybe their copy. */
interface SetWeights {
  /** θ₀+Σδ of tensors materialised when the set was built (not SPARSE, or too dense to overwrite). */
  dense: Map<string, Float32Array>;
  /** Non-zeros (checkpoint layout) of the SPARSE tensors; kept while a copy exists (the copy may be dropped again). */
  sparse: Map<string, { indices: Int32Array; deltas: Float32Array }>;
  /** θ₀+Σδ of the sparse tensors while the set has a copy (empty placeholders: the worker made and holds it), else null. */
  copy: Map<string, Float32Array> | null;
  /** The worker is still making the copy: runs use the non-zeros until it holds it. */
  copyPending?: boolean;
  /** Diff-group runs of this set since it was built. */
  uses: number;
}

/** Counters the engine reports (/metrics). */
export interface DiffStats {
  /** Sets whose non-zeros were built (first use, or after eviction). */
  diffSetsBuilt: number;
  /** Copies (θ₀+Σδ) made. */
  diffCopies: number;
  /** Copies dropped: for a set that ran more often, or lost by a restarted worker. */
  diffCopiesDropped: number;
}

export class DiffWeights {
  private readonly cache: LRUCache<string, SetWeights>;
  /** The keys of the last FREQ_WINDOW diff-group runs (a ring) and how often each occurs in it. */
  private readonly window: string[] = [];
  private windowAt = 0;
  private readonly counts = new Map<string, number>();
  /** Copies the worker is making. */
  private readonly making = new Set<Promise<void>>();

  /**
   * `maxBytes` bounds the kept tensors, non-zeros and copies; `shareId` prefixes this engine's shared worker feeds;
   * `stats` gets the counters (DiffStats). With `workerCopies` (sessions in the worker) a copy is made by the worker
   * from the base array and the overwrite it already holds (Session.deriveShared), not here and posted: no 340 MB
   * allocation or pass over the weights on this thread, and none inside a run: the set runs on its non-zeros until
   * the worker, between runs, has made it.
   */
  constructor(
    private readonly params: BaseParams,
    maxBytes: number,
    private readonly shareId: string,
    private readonly stats: DiffStats = { diffSetsBuilt: 0, diffCopies: 0, diffCopiesDropped: 0 },
    private readonly workerCopies = false,
  ) {
    this.cache = new LRUCache<string, SetWeights>({
      maxSize: maxBytes,
      sizeCalculation: (w) => this.sizeOf(w),
      // 'set': the same set re-sized (resize below), whose worker arrays stay
      dispose: (_w, key, reason) => {
        if (reason !== 'set') void Session.forgetShared(`${this.shareId}:diff:${key}:`);
      },
    });
  }

  /** Bytes of the kept sets, the byte budget, and how many sets are kept. */
  usage(): { bytes: number; budget: number; sets: number } {
    return { bytes: this.cache.calculatedSize, budget: this.cache.maxSize, sets: this.cache.size };
  }

  /** Feeds `w.<name>` for a diff group: θ₀ plus the set's sparse overwrite, or the set's copy θ₀+Σδ. */
  feeds(diffs: DiffSet): Record<string, HostTensor> {
    const key = diffSetKey(diffs);
    let set = this.weights(diffs);
    // A worker that lost the arrays moved to it (it restarted): a copy is dropped, other tensors are built again.
    if ([...set.dense].some(([name, w]) => w.byteLength === 0 && !Session.workerHolds(`${this.shareId}:diff:${key}:${name}`))) {
      this.cache.delete(key);
      set = this.weights(diffs);
    }
    if (set.copy && !set.copyPending && [...set.copy].some(([name, w]) => w.byteLength === 0 && !Session.workerHolds(this.copyKey(key, name)))) set = this.dropCopy(key, set);
    this.ran(key);
    if (++set.uses >= PROMOTE_USES && !this.workerCopies && !set.copy && set.sparse.size) set = this.maybeCopy(key, set);
    const feeds: Record<string, HostTensor> = {};
    for (const [name, p] of this.params.entries()) {
      const copy = set.copyPending ? undefined : set.copy?.get(name);
      const dense = set.dense.get(name);
      const sparse = copy ? undefined : set.sparse.get(name);
      const own = this.params.isTransposed(name) ? this.params.checkpoint(name) : null; // [out, in], see BaseParams.provider
      const overwrite: SparseOverwrite | undefined = sparse && { key: this.sparseKey(key, name), ...sparse };
      feeds[`w.${name}`] = {
        type: 'float32',
        dims: own ? own.shape : p.dims,
        data: copy ?? dense ?? (own ? own.data : p.data),
        shareKey: copy ? this.copyKey(key, name) : dense ? `${this.shareId}:diff:${key}:${name}` : this.baseKey(name),
        ...(overwrite ? { overwrite } : {}),
        ...(copy || (dense && SPARSE.test(name)) ? { moveToWorker: true } : {}),
      };
    }
    return feeds;
  }

  /**
   * Whether a run of this set would carry a sparse overwrite now (two write passes over its non-zeros in the worker,
   * each run): true until it is built, and while it has non-zeros but no copy the worker holds. A set that runs
   * without one may be split into several runs (length ranges) at no more than their fixed cost.
   */
  overwrites(diffs: DiffSet): boolean {
    const set = this.cache.peek(diffSetKey(diffs));
    return !set || (set.sparse.size > 0 && (!set.copy || !!set.copyPending));
  }

  /**
   * Call once a run on `feeds(diffs)` is posted to the worker, which then holds the set's non-zeros: with
   * `workerCopies`, the worker is asked to make the set's copy when the policy above allows it.
   */
  posted(diffs: DiffSet): void {
    if (!this.workerCopies) return;
    const key = diffSetKey(diffs);
    const set = this.cache.peek(key);
    if (set && !set.copy && set.sparse.size) this.maybeCopy(key, set);
  }

  /**
   * A base parameter in engine layout as a diff set changes it. A transposed weight's non-zeros and build-time
   * tensors are in checkpoint layout (for the feeds), so it is transposed here; a sparse one is applied to a copy.
   * Callers are pool builders, whose results are cached per composition.
   */
  effective(name: string, diffs: DiffSet): Float32Array {
    const p = this.params.get(name)!;
    if (!diffs.length) return p.data;
    const set = this.weights(diffs);
    const sparse = set.sparse.get(name);
    const touched = sparse ? overwritten(this.params.isTransposed(name) ? this.params.checkpoint(name).data : p.data, sparse) : set.dense.get(name);
    if (!touched) return p.data;
    return this.params.isTransposed(name) ? transpose(touched, p.dims[1], p.dims[0]) : touched;
  }

  private copyKey(key: string, name: string): string {
    return `${this.shareId}:diff:${key}:copy:${name}`;
  }

  private sparseKey(key: string, name: string): string {
    return `${this.shareId}:diff:${key}:sparse:${name}`;
  }

  private baseKey(name: string): string {
    return `${this.shareId}:base:${name}`;
  }

  /** Counts a diff-group run of `key` in the window. */
  private ran(key: string): void {
    if (this.window.length < FREQ_WINDOW) this.window.push(key);
    else {
      const old = this.window[this.windowAt];
      const n = this.counts.get(old)! - 1;
      if (n) this.counts.set(old, n);
      else this.counts.delete(old);
      this.window[this.windowAt] = key;
      this.windowAt = (this.windowAt + 1) % FREQ_WINDOW;
    }
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** The set with a copy of its sparse tensors when the policy above allows it (else the set unchanged). */
  private maybeCopy(key: string, set: SetWeights): SetWeights {
    const need = this.copyBytes(set);
    if (need > this.cache.maxSize / 2) return set; // it would not stay (or would take everything): keep it sparse
    // the worker derives the copy from what it holds; after a restart it holds nothing until the next sparse run
    if (this.workerCopies && [...set.sparse.keys()].some((name) => !Session.workerHolds(this.baseKey(name)) || !Session.workerHolds(this.sparseKey(key, name)))) return set;
    const mine = this.counts.get(key) ?? 0;
    const count = (k: string) => this.counts.get(k) ?? 0;
    let free = this.cache.maxSize - this.cache.calculatedSize;
    const { mean, working, copies: kept } = this.footprint();
    let copies = kept;
    const pushedOut = () => this.pushedOut(copies + need, mean, working);
    const worth = () => pushedOut() === 0 || (mine >= PROMOTE_USES && pushedOut() * REBUILD_RUNS <= mine);
    const drop: string[] = [];
    const evict: string[] = [];
    if (free < need || pushedOut() > 0) {
      if (mine < PROMOTE_USES) return set; // not popular now: under pressure it takes nothing from others
      // copies of sets that ran less than half as often, least used first
      const held = [...this.cache.entries()].filter(([k, w]) => w.copy && 2 * count(k) < mine).sort((x, y) => count(x[0]) - count(y[0]));
      for (const [k, w] of held) {
        if (free >= need && worth()) break;
        drop.push(k);
        free += this.copyBytes(w);
        copies -= this.copyBytes(w);
      }
      if (!worth()) return set;
      // then sets without a copy that ran less often, least recently used first, down to the reserve
      let sparseBytes = 0;
      for (const w of this.cache.values()) if (!w.copy) sparseBytes += this.sizeOf(w);
      for (const [k, w] of this.cache.rentries() as Generator<[string, SetWeights]>) {
        if (free >= need) break;
        if (w.copy || k === key || count(k) >= mine) continue;
        const b = this.sizeOf(w);
        if (sparseBytes - b < SPARSE_RESERVE * this.cache.maxSize) break;
        evict.push(k);
        sparseBytes -= b;
        free += b;
      }
      if (free < need) return set;
    }
    for (const k of drop) this.dropCopy(k, this.cache.peek(k)!);
    for (const k of evict) this.cache.delete(k);
    const copy = new Map<string, Float32Array>();
    for (const [name, sp] of set.sparse) copy.set(name, this.workerCopies ? EMPTY : overwritten(this.params.checkpoint(name).data, sp));
    if (!this.workerCopies) {
      this.stats.diffCopies++;
      return this.resize(key, { ...set, copy });
    }
    this.make(key, copy);
    return this.resize(key, { ...set, copy, copyPending: true });
  }

  /**
   * Bytes of the kept copies; the mean bytes of a set's non-zeros (over the kept sets that ran within the window:
   * not the bias-only sets pools read through `effective`, which never run as a group); and the bytes the non-zeros
   * of every set that ran within the window need at that mean, whether kept or not.
   */
  private footprint(): { copies: number; mean: number; working: number } {
    let copies = 0;
    let nonZeros = 0;
    let ran = 0;
    for (const [k, w] of this.cache.entries()) {
      const c = w.copy ? this.copyBytes(w) : 0;
      copies += c;
      if (!this.counts.has(k)) continue;
      nonZeros += this.sizeOf(w) - c;
      ran++;
    }
    const mean = ran ? nonZeros / ran : 0;
    return { copies, mean, working: this.counts.size * mean };
  }

  /** How many sets that ran lately find no room for their non-zeros beside `copies` bytes of copies (each is rebuilt when it comes back). */
  private pushedOut(copies: number, mean: number, working: number): number {
    return mean > 0 ? Math.ceil(Math.max(0, copies + working - this.cache.maxSize) / mean) : 0;
  }

  /**
   * Drops copies, of the least used sets first, while they leave sets that ran lately without room and their own set
   * did not run REBUILD_RUNS times within the window per set pushed out: called when a set is built (before the
   * cache makes room for it, least recently used first), as the traffic reaches more sets than a copy made while
   * memory was free left room for.
   */
  private shedCopies(building: string): void {
    const { mean, working: ran, copies: kept } = this.footprint();
    const working = ran + (this.counts.has(building) ? 0 : mean); // the set being built takes room too
    let copies = kept;
    const count = (k: string) => this.counts.get(k) ?? 0;
    const held = [...this.cache.entries()].filter(([, w]) => w.copy).sort((x, y) => count(x[0]) - count(y[0]));
    for (const [k, w] of held) {
      const out = this.pushedOut(copies, mean, working);
      if (out === 0 || count(k) >= REBUILD_RUNS * out) break;
      copies -= this.copyBytes(w);
      this.dropCopy(k, w);
    }
  }

  /** Has the worker make a set's copy between runs; the set's runs switch to it once the worker holds it. */
  private make(key: string, copy: Map<string, Float32Array>): void {
    const feeds = [...copy.keys()].map((name) => ({ key: this.copyKey(key, name), from: this.baseKey(name), overwrite: this.sparseKey(key, name), dims: this.params.checkpoint(name).shape }));
    const mine = () => {
      const set = this.cache.peek(key);
      return set?.copy === copy ? set : undefined; // not dropped or evicted meanwhile
    };
    const made = Session.deriveShared(feeds).then(
      () => {
        const set = mine();
        if (!set) return;
        set.copyPending = false;
        this.stats.diffCopies++;
      },
      () => {
        // the worker lost a source (it restarted) or the copy was dropped: the set stays on its non-zeros
        const set = mine();
        if (set) this.resize(key, { ...set, copy: null, copyPending: false });
      },
    );
    this.making.add(made);
    void made.finally(() => this.making.delete(made));
  }

  /** Resolves once the copies being made now are made (or given up). */
  async copiesMade(): Promise<void> {
    while (this.making.size) await Promise.all([...this.making]);
  }

  /** The set without its copy (the worker forgets it); the set's non-zeros serve its runs again. */
  private dropCopy(key: string, set: SetWeights): SetWeights {
    void Session.forgetShared(`${this.shareId}:diff:${key}:copy:`);
    if (!set.copyPending) this.stats.diffCopiesDropped++;
    return this.resize(key, { ...set, copy: null, copyPending: false });
  }

  /** Puts a changed set back under its key (a new object: the LRU takes its size again; see `dispose`). */
  private resize(key: string, set: SetWeights): SetWeights {
    this.cache.set(key, set);
    return set;
  }

  /** Bytes of a set's copy: one base tensor per sparse tensor. */
  private copyBytes(set: SetWeights): number {
    let bytes = 0;
    for (const name of set.sparse.keys()) bytes += this.params.checkpoint(name).data.byteLength;
    return bytes;
  }

  /**
   * Bytes a set holds (from the base's shapes: tensors moved to the worker are detached here). Non-zeros count as
   * the worker holds them once they ran, 12 bytes each (indices, the values a run writes, those it restores); here
   * a one-module set's are the module's own arrays (a sum's concatenation, 8 bytes more, is not counted).
   */
  private sizeOf(w: SetWeights): number {
    let b = w.copy ? this.copyBytes(w) : 0;
    for (const name of w.dense.keys()) b += this.params.get(name)!.data.byteLength;
    for (const x of w.sparse.values()) b += 3 * x.indices.byteLength;
    return Math.max(1, b);
  }

  /** What a diff set changes, built once per set and cached. */
  private weights(diffs: DiffSet): SetWeights {
    const key = diffSetKey(diffs);
    let set = this.cache.get(key);
    if (set) return set;
    this.shedCopies(key);
    set = { dense: new Map(), sparse: new Map(), copy: null, uses: 0 };
    this.stats.diffSetsBuilt++;
    const nnz = new Map<string, number>();
    for (const d of diffs) for (const [name, { indices }] of d.params) nnz.set(name, (nnz.get(name) ?? 0) + indices.length);
    // Sparse tensors: each diff's non-zeros in order (the worker adds them in order, as `+=` here would).
    const parts = new Map<string, { indices: Int32Array; deltas: Float32Array }[]>();
    for (const d of diffs) {
      for (const [name, { indices, values }] of d.params) {
        const p = this.params.get(name);
        if (!p) throw new ModuleError('INCOMPATIBLE_BASE', `module '${d.key}' changes '${name}', which this base does not have`);
        const linear = this.params.isTransposed(name);
        // Diff indices are in the checkpoint's layout, the one these tensors are fed in ([out, in] for Linear weights).
        if (SPARSE.test(name) && nnz.get(name)! <= MAX_SPARSE_DENSITY * p.data.length) {
          let list = parts.get(name);
          if (!list) parts.set(name, (list = []));
          list.push({ indices, deltas: values });
          continue;
        }
        // Cold path (once per diff set, then cached): scatter-add over the diff's non-zeros.
        let w = set.dense.get(name);
        if (!w) {
          w = (linear ? this.params.checkpoint(name).data : p.data).slice();
          set.dense.set(name, w);
        }
        scatterAdd(w, indices, values);
      }
    }
    for (const [name, list] of parts) set.sparse.set(name, list.length === 1 ? list[0] : concat(list));
    this.cache.set(key, set);
    return set;
  }
}

function concat(list: { indices: Int32Array; deltas: Float32Array }[]): { indices: Int32Array; deltas: Float32Array } {
  const n = list.reduce((a, x) => a + x.indices.length, 0);
  const indices = new Int32Array(n);
  const deltas = new Float32Array(n);
  let o = 0;
  for (const x of list) {
    indices.set(x.indices, o);
    deltas.set(x.deltas, o);
    o += x.indices.length;
  }
  return { indices, deltas };
}
