/**
 * The two-phase driver of the sparse diff methods (Diff Pruning, LT-SFT): phase 1 trains densely (or gated),
 * the K entries of largest change are selected, phase 2 trains only those from a method-given start, and the
 * result is a sparse diff module (`<tensor>.index` / `<tensor>.values` per base tensor, head dense).
 * Checkpoints of the phases go to `phase1/` and `phase2/` of the checkpoint folder.
 * Example: `export const ltSft = sparseMethod({ defaults, phase1: full.plan, deltas, start: (t0) => t0 })`.
 */
import * as path from 'path';
import { parseManifest } from '../../../modules-store/manifest';
import type { Tensor } from '../../../modules-store/safetensors';
import { isHeadTensor } from '../../../modules-store/kinds/heads';
import type { TrainResult } from '../types';
import { full } from './full';
import { headOnlyModule, trainableBaseNames } from './head-only';
import { frozenStack } from './module-method';
import type { MethodContext, MethodDefaults, MethodStrategy, PhasePlan } from './strategy';

/** 0/1 masks selecting exactly K entries of largest |value| over all tensors (ties broken by order). */
export function topKMasks(deltas: Map<string, Float32Array>, K: number): Map<string, Float32Array> {
  const total = [...deltas.values()].reduce((a, d) => a + d.length, 0);
  if (!Number.isInteger(K) || K < 1 || K > total) throw new RangeError(`'nnz' must be an integer in [1, ${total}], got ${K}`);
  const all = new Float32Array(total);
  let off = 0;
  for (const d of deltas.values()) {
    for (let i = 0; i < d.length; i++) all[off + i] = Math.abs(d[i]);
    off += d.length;
  }
  const sorted = all.slice().sort();
  const thr = sorted[total - K];
  let above = 0;
  for (let i = 0; i < total; i++) if (all[i] > thr) above++;
  let ties = K - above;
  const masks = new Map<string, Float32Array>();
  for (const [name, d] of deltas) {
    const m = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) {
      const a = Math.abs(d[i]);
      if (a > thr) m[i] = 1;
      else if (a === thr && ties > 0) {
        m[i] = 1;
        ties--;
      }
    }
    masks.set(name, m);
  }
  return masks;
}

export interface SparseSpec {
  defaults: MethodDefaults;
  /** Phase 1: what trains before the selection. */
  phase1(ctx: MethodContext): PhasePlan;
  /** Change of each candidate base tensor (canonical name) after phase 1. */
  deltas(ctx: MethodContext, p1: TrainResult, names: string[]): Map<string, Float32Array>;
  /** Phase 2's start value of a base tensor, from θ₀, its phase-1 change and its mask. */
  start(t0: Float32Array, delta: Float32Array | undefined, mask: Float32Array | undefined): Float32Array;
}

/** A sparse diff method from its phase 1, its selection input and its phase-2 start. */
export function sparseMethod(spec: SparseSpec): MethodStrategy {
  const { defaults } = spec;
  return {
    defaults,
    plan: spec.phase1,
    async run(ctx, runPhase) {
      const { o, base } = ctx;
      const names = trainableBaseNames(base, ctx.task);
      const N = names.reduce((a, n) => a + base.weights.get(n)!.data.length, 0);
      const density = o.density ?? (defaults.config.density as number);
      const K = o.nnz ?? Math.max(1, Math.round(density * N));
      // the phases are full fine-tuning runs (full's description) at this method's learning rate
      const settings = (phase: string) => ({ lr: o.lr ?? defaults.lr, what: full.defaults.what, checkpointDir: o.checkpointDir && path.join(o.checkpointDir, phase) });

      const p1 = await runPhase(ctx, spec.phase1(ctx), settings('phase1'));
      await p1.release();
      const deltas = spec.deltas(ctx, p1, names);
      const masks = topKMasks(deltas, K);
      // a candidate phase 1 left alone (Diff Pruning does not gate the MLM head) has nothing selected
      for (const n of names) if (!masks.has(n)) masks.set(n, new Float32Array(base.weights.get(n)!.data.length));
      const start = new Map<string, Float32Array>();
      for (const n of names) start.set(n, spec.start(base.weights.get(n)!.data as Float32Array, deltas.get(n), masks.get(n)));
      // phase 2: the head goes on from phase 1, base tensors from `start`, only the K selected entries change
      const mod = headOnlyModule(ctx, 'full');
      for (const [k, t] of p1.tensors) if (isHeadTensor(k)) mod.tensors.set(k, t);
      const p2 = await runPhase(
        ctx,
        {
          modules: [...frozenStack(ctx), mod],
          trainableBase: names,
          masks,
          paramInit: (name) => {
            const s = name.startsWith('base:') ? start.get(name.slice(5)) : undefined;
            return s && { data: s, dims: [...base.weights.get(name.slice(5))!.shape] };
          },
        },
        settings('phase2'),
      );

      // final diff = (start − θ₀) + phase-2 change, kept at the K selected entries: P.index / P.values
      const tensors = new Map<string, Tensor>([...p2.tensors].filter(([k]) => isHeadTensor(k)));
      let nnz = 0;
      for (const n of names) {
        const m = masks.get(n)!;
        const hf = base.hfNames.get(n) ?? n;
        const dense = p2.tensors.get(`${hf}.dense`)?.data as Float32Array | undefined;
        const t0 = base.weights.get(n)!.data;
        const s0 = start.get(n)!;
        const idx: number[] = [];
        const vals: number[] = [];
        for (let i = 0; i < m.length; i++) {
          if (!m[i]) continue;
          idx.push(i);
          vals.push(s0[i] - t0[i] + (dense ? dense[i] : 0));
        }
        if (!idx.length) continue;
        nnz += idx.length;
        tensors.set(`${hf}.index`, { dtype: 'I64', shape: [idx.length], data: BigInt64Array.from(idx.map(BigInt)) });
        tensors.set(`${hf}.values`, { dtype: 'F32', shape: [vals.length], data: Float32Array.from(vals) });
      }
      const manifest = parseManifest({
        ...(p2.manifest as unknown as Record<string, unknown>),
        config: { method: o.method, density: nnz / N, nnz },
        description: `${defaults.what}; trained by modhub for ${o.task}`,
      });
      return { ...p2, manifest, tensors, history: [...p1.history, ...p2.history], steps: p1.steps + p2.steps };
    },
  };
}
