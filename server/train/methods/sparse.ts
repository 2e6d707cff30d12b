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
import type { TrainOptions, TrainResult } from '../types';
import type { TrainingRecord } from '../package';
import { full } from './full';
import { headOnlyModule, trainableBaseNames } from './head-only';
import { frozenStack } from './module-method';
import type { SftSelection } from './sft-groups';
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
  /** Method-specific options besides the selection's ('density', 'nnz'). */
  uses?: readonly (keyof TrainOptions)[];
  /** Which base tensors compete for the K selected and which train densely (default: every trainable base tensor competes). */
  select?(ctx: MethodContext): SftSelection;
  /** Phase 1: what trains before the selection. */
  phase1(ctx: MethodContext, sel: SftSelection): PhasePlan;
  /** Change of each candidate base tensor (canonical name) after phase 1. */
  deltas(ctx: MethodContext, p1: TrainResult, names: string[]): Map<string, Float32Array>;
  /** Phase 2 starts the task head from its initial values instead of phase 1's (LT-SFT's reset). */
  resetHead?: boolean;
  /** Phase 2's start value of a base tensor, from θ₀, its phase-1 change and its mask. */
  start(t0: Float32Array, delta: Float32Array | undefined, mask: Float32Array | undefined): Float32Array;
}

/** Sizes of the selection, for the manifest and the tests: K of `eligible` maskable parameters. */
export function selectionSize(ctx: MethodContext, maskable: string[], defaultDensity: number): { K: number; eligible: number } {
  const { o, base } = ctx;
  const eligible = maskable.reduce((a, n) => a + base.weights.get(n)!.data.length, 0);
  // composable-sft: n = ft_params_num, else int(ft_params_proportion × maskable parameters)
  const K = o.nnz ?? Math.max(1, Math.floor((o.density ?? defaultDensity) * eligible));
  if (o.density !== undefined && !(o.density > 0 && o.density <= 1)) throw new RangeError(`'density' must be in (0, 1], got ${o.density}`);
  return { K, eligible };
}

/** A sparse diff method from its phase 1, its selection input and its phase-2 start. */
export function sparseMethod(spec: SparseSpec): MethodStrategy {
  const { defaults } = spec;
  const selectionOf = (ctx: MethodContext): SftSelection =>
    spec.select?.(ctx) ?? { maskable: trainableBaseNames(ctx.base, ctx.task), dense: [], untieDecoder: false, freeze: [] };
  return {
    defaults,
    uses: ['density', 'nnz', ...(spec.uses ?? [])],
    plan: (ctx) => spec.phase1(ctx, selectionOf(ctx)),
    async run(ctx, runPhase) {
      const { o, base } = ctx;
      const sel = selectionOf(ctx);
      const names = sel.maskable;
      const { K, eligible: N } = selectionSize(ctx, names, defaults.config.density as number);
      // the phases are full fine-tuning runs (full's description) at this method's learning rate
      const settings = (phase: string) => ({ lr: o.lr ?? defaults.lr, what: full.defaults.what, checkpointDir: o.checkpointDir && path.join(o.checkpointDir, phase) });
      const phase = (index: number, name: string) => o.onPhase?.({ index, count: 2, name: `${o.method}: ${name}` });

      phase(1, `dense training of ${N} eligible parameters, then selection of ${K}`);
      const p1 = await runPhase(ctx, spec.phase1(ctx, sel), settings('phase1'));
      await p1.release();
      const deltas = spec.deltas(ctx, p1, names);
      const masks = topKMasks(deltas, K);
      // a candidate phase 1 left alone (Diff Pruning does not gate the MLM head) has nothing selected
      for (const n of names) if (!masks.has(n)) masks.set(n, new Float32Array(base.weights.get(n)!.data.length));
      const start = new Map<string, Float32Array>();
      for (const n of names) start.set(n, spec.start(base.weights.get(n)!.data as Float32Array, deltas.get(n), masks.get(n)));
      // phase 2: base tensors from `start`, only the K selected entries change; the task head goes on from
      // phase 1 (Diff Pruning) or restarts from its initial values (LT-SFT: composable-sft resets every
      // parameter, heads and the densely trained MLM head included, before the sparse phase)
      const mod = headOnlyModule(ctx, 'full');
      if (!spec.resetHead) for (const [k, t] of p1.tensors) if (isHeadTensor(k)) mod.tensors.set(k, t);
      phase(2, `training only the ${K} selected parameters${sel.dense.length ? ` (+ ${sel.dense.length} dense head tensors)` : ''}`);
      const p2 = await runPhase(
        ctx,
        {
          modules: [...frozenStack(ctx), mod],
          trainableBase: [...names, ...sel.dense],
          masks,
          graphTerms: () => ({ untieDecoder: sel.untieDecoder }),
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
      const selected = nnz;
      // densely trained tensors (the MLM head) are stored whole, as composable-sft stores heads
      for (const n of sel.dense) {
        const hf = base.hfNames.get(n) ?? n;
        const t = p2.tensors.get(`${hf}.dense`);
        if (!t) continue;
        tensors.set(`${hf}.dense`, t);
        nnz += t.data.length;
      }
      const training = (p2.manifest as unknown as { training: TrainingRecord }).training;
      const manifest = parseManifest({
        ...(p2.manifest as unknown as Record<string, unknown>),
        training: { ...training, steps: p1.steps + p2.steps, phase_steps: [p1.steps, p2.steps], ...(p1.before ? { dev_before: p1.before } : {}) },
        config: { method: o.method, density: selected / N, nnz, selected, eligible: N, ...(spec.select ? { frozen: sel.freeze, dense: sel.dense.map((n) => base.hfNames.get(n) ?? n) } : {}) },
        description: `${defaults.what}; trained by modhub for ${o.task}`,
      });
      return { ...p2, manifest, tensors, before: p1.before, history: [...p1.history, ...p2.history], steps: p1.steps + p2.steps };
    },
  };
}
