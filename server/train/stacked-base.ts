/**
 * `stackOn` with parameter-difference modules (sparse or dense diffs: LT-SFT, Diff Pruning, BitFit, full
 * fine-tuning): the diffs are added to the base before training, so the trained module — of any method — learns
 * on the base as the composition will run it (composable-sft trains a task SFT with the language SFT applied).
 * The other stacked modules (bottleneck adapters, LoRA) stay frozen modules of the training graph.
 * The trained module's diffs are then relative to the stacked base, and composing by addition (the engine's
 * `stack` / `sum` of diffs) gives back exactly the model that was trained.
 * Example: `const { base, stackOn } = applyStackedDiffs(o.base, o.stackOn ?? [])`.
 */
import type { Base } from '../model/base';
import type { GivenModule } from './types';

/** The base with every diff module of `stack` added (in order), and the rest of the stack. */
export function applyStackedDiffs(base: Base, stack: GivenModule[]): { base: Base; stackOn: GivenModule[] } {
  for (const m of stack) {
    const fp = (m.manifest.base as { fingerprint?: string } | undefined)?.fingerprint;
    if (fp && fp !== base.fingerprint) throw new RangeError(`'stackOn' module '${m.manifest.id}' was trained on another base (fingerprint ${fp}, this base ${base.fingerprint})`);
  }
  const diffs = stack.filter((m) => m.manifest.kind === 'diff');
  if (!diffs.length) return { base, stackOn: stack };
  const byHf = new Map([...base.hfNames].map(([c, h]) => [h, c]));
  const weights = new Map(base.weights);
  const changed = new Map<string, Float32Array>();
  const own = (canonical: string): Float32Array => {
    let w = changed.get(canonical);
    if (!w) {
      const t = base.weights.get(canonical)!;
      w = Float32Array.from(t.data as Float32Array);
      changed.set(canonical, w);
      weights.set(canonical, { ...t, data: w });
    }
    return w;
  };
  for (const m of diffs) {
    const id = m.manifest.id;
    for (const [name, t] of m.tensors) {
      // a diff module's head belongs to its own task, not to the base the next module trains on
      if (name.startsWith('head.')) continue;
      const parts = /^(.*)\.(index|values|dense)$/.exec(name);
      if (!parts) throw new RangeError(`'stackOn' diff module '${id}': tensor '${name}' must end in .index, .values or .dense`);
      if (parts[2] === 'values') continue;
      const hf = parts[1];
      const canonical = byHf.get(hf) ?? (base.weights.has(hf) ? hf : undefined);
      if (!canonical) throw new RangeError(`'stackOn' diff module '${id}': '${hf}' is not a parameter of this base`);
      const size = base.weights.get(canonical)!.data.length;
      const w = own(canonical);
      if (parts[2] === 'dense') {
        const d = t.data as Float32Array;
        if (d.length !== size) throw new RangeError(`'stackOn' diff module '${id}': '${name}' has ${d.length} values, the base tensor ${size}`);
        for (let i = 0; i < size; i++) w[i] += d[i];
        continue;
      }
      const vals = m.tensors.get(`${hf}.values`)?.data as Float32Array | undefined;
      if (!vals || vals.length !== t.data.length) throw new RangeError(`'stackOn' diff module '${id}': '${hf}.index' needs '${hf}.values' of the same length`);
      for (let i = 0; i < vals.length; i++) {
        const k = Number(t.data[i]);
        if (!(k >= 0 && k < size)) throw new RangeError(`'stackOn' diff module '${id}': '${hf}.index' holds ${k}, outside [0, ${size})`);
        w[k] += vals[i];
      }
    }
  }
  return { base: { ...base, weights }, stackOn: stack.filter((m) => m.manifest.kind !== 'diff') };
}
