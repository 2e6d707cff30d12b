/**
 * Sparse diffs as weights: θ₀+Σδ for the tensors a row group's diff set touches, materialised once per diff set
 * and kept in a byte-bounded LRU, and the `w.<name>` feeds of the "weights as inputs" session built from them.
 * A touched tensor is fed under a share key of its diff set, an untouched one under the base's key, so the
 * session worker holds each base array once however many diff sets run (README, design: sparse diffs); touched
 * encoder Linear weights move to the worker rather than being copied (MOVABLE).
 * Example:
 *   const diffs = new DiffWeights(params, 2 ** 31, 'e0');
 *   Object.assign(feeds, diffs.feeds(plan.diffs));
 */
import { LRUCache } from 'lru-cache';
import type { RowPlan } from '../model/composition';
import { ModuleError, transpose } from '../model/modules';
import type { BaseParams } from './base-params';
import { Session, type HostTensor } from './session';

/** The diff modules of a row group (every row of a group has the same set). */
export type DiffSet = RowPlan['diffs'];

/**
 * Touched tensors nothing on the main thread reads after feeding them (pools read LayerNorms, biases and the MLM
 * head through `effective`): encoder Linear weights. A worker session takes them over instead of a copy, so a diff
 * set's θ₀+δ (340 MB at BERT-base with every encoder matrix touched) is held once, not on both threads.
 */
const MOVABLE = /^layers\.\d+\.(attn\.[qkvo]|ffn_in|ffn_out)\.weight$/;

export function diffSetKey(diffs: DiffSet): string {
  return diffs.map((d) => d.key).join('+');
}

export class DiffWeights {
  private readonly cache: LRUCache<string, Map<string, Float32Array>>;

  /** `maxBytes` bounds the materialised tensors; `shareId` prefixes this engine's shared worker feeds. */
  constructor(
    private readonly params: BaseParams,
    maxBytes: number,
    private readonly shareId: string,
  ) {
    this.cache = new LRUCache<string, Map<string, Float32Array>>({
      maxSize: maxBytes,
      sizeCalculation: (m) => Math.max(1, [...m.values()].reduce((a, x) => a + x.byteLength, 0)),
      dispose: (_m, key) => void Session.forgetShared(`${this.shareId}:diff:${key}:`),
    });
  }

  /** Feeds `w.<name>` for a diff group: θ₀+Σδ for touched tensors, the base's own arrays for the rest. */
  feeds(diffs: DiffSet): Record<string, HostTensor> {
    const key = diffSetKey(diffs);
    const shareKey = (name: string, mine: boolean) => `${this.shareId}:${mine ? `diff:${key}` : 'base'}:${name}`;
    let touched = this.materialised(diffs);
    // A worker that lost what was moved to it (it restarted): materialise again.
    if ([...touched].some(([name, w]) => w.byteLength === 0 && !Session.workerHolds(shareKey(name, true)))) {
      this.cache.delete(key);
      touched = this.materialised(diffs);
    }
    const feeds: Record<string, HostTensor> = {};
    for (const [name, p] of this.params.entries()) {
      const mine = touched.get(name);
      const own = this.params.isTransposed(name) ? this.params.checkpoint(name) : null; // [out, in], see BaseParams.provider
      feeds[`w.${name}`] = { type: 'float32', dims: own ? own.shape : p.dims, data: mine ?? (own ? own.data : p.data), shareKey: shareKey(name, !!mine), ...(mine && MOVABLE.test(name) ? { moveToWorker: true } : {}) };
    }
    return feeds;
  }

  /**
   * A base parameter in engine layout as a diff set changes it. A touched transposed weight is materialised in
   * its checkpoint layout (for the feeds), so it is transposed here: callers are pool builders, whose results
   * are cached per composition.
   */
  effective(name: string, diffs: DiffSet): Float32Array {
    const p = this.params.get(name)!;
    const touched = diffs.length ? this.materialised(diffs).get(name) : undefined;
    if (!touched) return p.data;
    return this.params.isTransposed(name) ? transpose(touched, p.dims[1], p.dims[0]) : touched;
  }

  /** θ₀+Σδ for the tensors a diff set touches (Linear weights in [out, in]), materialised once per set and cached. */
  private materialised(diffs: DiffSet): Map<string, Float32Array> {
    const key = diffSetKey(diffs);
    let touched = this.cache.get(key);
    if (!touched) {
      touched = new Map();
      for (const d of diffs) {
        for (const [name, { indices, values }] of d.params) {
          let w = touched.get(name);
          const p = this.params.get(name);
          if (!p) throw new ModuleError('INCOMPATIBLE_BASE', `module '${d.key}' changes '${name}', which this base does not have`);
          const linear = this.params.isTransposed(name);
          if (!w) {
            w = (linear ? this.params.checkpoint(name).data : p.data).slice();
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
      this.cache.set(key, touched);
    }
    return touched;
  }
}
