/**
 * Sparse diffs as weights: the `w.<name>` feeds of the "weights as inputs" session a row group with sparse diffs
 * runs on. Encoder Linear weights (SPARSE) are fed as the base's own arrays plus the set's non-zeros as a sparse
 * overwrite (HostTensor.overwrite: the session worker adds them in place for the run and restores the base after),
 * so a diff set costs 8 bytes per non-zero, not a dense θ₀+δ of every matrix it touches (340 MB per LT-SFT set at
 * 1% on BERT-base: a 2 GiB cache held six, and traffic over more sets materialised one per batch). A set that comes
 * back is materialised after all (PROMOTE_USES: an overwrite costs two passes per run). Other touched
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
import { Session, overwritten, type HostTensor, type SparseOverwrite } from './session';

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
 * A set starts as a sparse overwrite and is materialised (θ₀+Σδ, moved to the worker) once its overwrite ran
 * PROMOTE_USES times: within the last PROMOTE_WINDOW diff-group runs, or at any pace while the cache has room for
 * the dense copy without evicting anything. Measured at BERT-base (LT-SFT at 1%, `bench:serve --cold-only`): a
 * first request +70 ms sparse against +1046 ms materialising; a run after that 88 ms sparse against 39 ms dense
 * (two passes over 850k non-zeros, cache misses mostly). So a set seen once costs little, free memory goes to sets
 * that come back, and under pressure only popular sets go dense while the long tail stays sparse instead of
 * evicting one another's copies.
 */
const PROMOTE_USES = 4;
const PROMOTE_WINDOW = 64;

export function diffSetKey(diffs: DiffSet): string {
  return diffs.map((d) => d.key).join('+');
}

/** What a diff set changes: dense θ₀+Σδ per materialised tensor, non-zeros (checkpoint layout) per sparse one. */
interface SetWeights {
  dense: Map<string, Float32Array>;
  sparse: Map<string, { indices: Int32Array; deltas: Float32Array }>;
  /** Diff-group run counts (this engine's clock) of the set's last PROMOTE_USES runs while sparse. */
  recent: number[];
  /** Runs while sparse. */
  uses: number;
}

export class DiffWeights {
  private readonly cache: LRUCache<string, SetWeights>;
  /** Diff-group runs fed so far. */
  private clock = 0;

  /** `maxBytes` bounds the kept tensors and non-zeros; `shareId` prefixes this engine's shared worker feeds. */
  constructor(
    private readonly params: BaseParams,
    maxBytes: number,
    private readonly shareId: string,
  ) {
    this.cache = new LRUCache<string, SetWeights>({
      maxSize: maxBytes,
      sizeCalculation: sizeOf,
      dispose: (_w, key) => void Session.forgetShared(`${this.shareId}:diff:${key}:`),
    });
  }

  /** Bytes of the kept sets (as they entered the cache) and the byte budget. */
  usage(): { bytes: number; budget: number } {
    return { bytes: this.cache.calculatedSize, budget: this.cache.maxSize };
  }

  /** Feeds `w.<name>` for a diff group: θ₀ (+ the set's sparse overwrite) or the materialised θ₀+Σδ. */
  feeds(diffs: DiffSet): Record<string, HostTensor> {
    const key = diffSetKey(diffs);
    let set = this.weights(diffs);
    // A worker that lost the materialised tensors moved to it (it restarted): materialise again.
    if ([...set.dense].some(([name, w]) => w.byteLength === 0 && !Session.workerHolds(`${this.shareId}:diff:${key}:${name}`))) {
      this.cache.delete(key);
      set = this.weights(diffs);
    }
    const now = ++this.clock;
    if (set.sparse.size) {
      set.recent.push(now);
      if (set.recent.length > PROMOTE_USES) set.recent.shift();
      const popular = set.recent.length === PROMOTE_USES && now - set.recent[0] < PROMOTE_WINDOW;
      const room = () => this.cache.calculatedSize + this.denseBytes(set) - sizeOf(set) <= this.cache.maxSize;
      if (++set.uses >= PROMOTE_USES && (popular || room())) set = this.promote(key, set);
    }
    const feeds: Record<string, HostTensor> = {};
    for (const [name, p] of this.params.entries()) {
      const dense = set.dense.get(name);
      const sparse = set.sparse.get(name);
      const own = this.params.isTransposed(name) ? this.params.checkpoint(name) : null; // [out, in], see BaseParams.provider
      const overwrite: SparseOverwrite | undefined = sparse && { key: `${this.shareId}:diff:${key}:sparse:${name}`, ...sparse };
      feeds[`w.${name}`] = {
        type: 'float32',
        dims: own ? own.shape : p.dims,
        data: dense ?? (own ? own.data : p.data),
        shareKey: `${this.shareId}:${dense ? `diff:${key}` : 'base'}:${name}`,
        ...(overwrite ? { overwrite } : {}),
        ...(dense && SPARSE.test(name) ? { moveToWorker: true } : {}),
      };
    }
    return feeds;
  }

  /**
   * A base parameter in engine layout as a diff set changes it. A materialised transposed weight is kept in its
   * checkpoint layout (for the feeds), so it is transposed here; a sparse one is applied to a copy. Callers are pool
   * builders, whose results are cached per composition.
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

  /** A popular set materialised: its sparse tensors become dense θ₀+Σδ (replacing the entry re-sizes it in the LRU). */
  private promote(key: string, set: SetWeights): SetWeights {
    if (this.denseBytes(set) > this.cache.maxSize / 2) return set; // it would not stay (or would evict everything): keep it sparse
    const dense = new Map(set.dense);
    for (const [name, sp] of set.sparse) dense.set(name, overwritten(this.params.checkpoint(name).data, sp));
    const promoted: SetWeights = { dense, sparse: new Map(), recent: [], uses: 0 };
    this.cache.set(key, promoted);
    return promoted;
  }

  /** Bytes of a set once materialised. */
  private denseBytes(set: SetWeights): number {
    let bytes = 0;
    for (const name of set.sparse.keys()) bytes += this.params.checkpoint(name).data.byteLength;
    for (const w of set.dense.values()) bytes += w.byteLength;
    return bytes;
  }

  /** What a diff set changes, built once per set and cached. */
  private weights(diffs: DiffSet): SetWeights {
    const key = diffSetKey(diffs);
    let set = this.cache.get(key);
    if (set) return set;
    set = { dense: new Map(), sparse: new Map(), recent: [], uses: 0 };
    const nnz = new Map<string, number>();
    for (const d of diffs) for (const [name, { indices }] of d.params) nnz.set(name, (nnz.get(name) ?? 0) + indices.length);
    // Sparse tensors: each diff's non-zeros in order (the worker adds them in order, as `+=` here would).
    const parts = new Map<string, { indices: Int32Array; deltas: Float32Array }[]>();
    for (const d of diffs) {
      for (const [name, { indices, values }] of d.params) {
        const p = this.params.get(name);
        if (!p) throw new ModuleError('INCOMPATIBLE_BASE', `module '${d.key}' changes '${name}', which this base does not have`);
        const linear = this.params.isTransposed(name);
        if (SPARSE.test(name) && nnz.get(name)! <= MAX_SPARSE_DENSITY * p.data.length) {
          // Diff indices are in the engine layout ([in, out]): e = c·out + r is element (r, c) of the fed [out, in] tensor.
          const [inn, out] = p.dims;
          const idx = new Int32Array(indices.length);
          for (let i = 0; i < indices.length; i++) idx[i] = (indices[i] % out) * inn + Math.floor(indices[i] / out);
          let list = parts.get(name);
          if (!list) parts.set(name, (list = []));
          list.push({ indices: idx, deltas: values });
          continue;
        }
        // Cold path (once per diff set, then cached): scatter-add over the diff's non-zeros.
        let w = set.dense.get(name);
        if (!w) {
          w = (linear ? this.params.checkpoint(name).data : p.data).slice();
          set.dense.set(name, w);
        }
        if (linear) {
          const [inn, out] = p.dims;
          for (let i = 0; i < indices.length; i++) {
            const e = indices[i];
            w[(e % out) * inn + Math.floor(e / out)] += values[i];
          }
        } else for (let i = 0; i < indices.length; i++) w[indices[i]] += values[i];
      }
    }
    for (const [name, list] of parts) set.sparse.set(name, list.length === 1 ? list[0] : concat(list));
    this.cache.set(key, set);
    return set;
  }
}

/** Bytes a set holds as it is (its LRU size, taken when it enters the cache, before tensors move to the worker). */
function sizeOf(w: SetWeights): number {
  let b = 0;
  for (const x of w.dense.values()) b += 4 * x.length;
  for (const x of w.sparse.values()) b += x.indices.byteLength + x.deltas.byteLength;
  return Math.max(1, b);
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
