/**
 * Diff Pruning (Guo et al. 2021): phase 1 learns θ = θ₀ + z ⊙ w with hard-concrete L0 gates z (Louizos et al.
 * 2017) on every encoder tensor, the K entries of largest gated change are kept (magnitude projection), and
 * phase 2 fine-tunes those from θ₀ + the projected change. Two-phase driver: sparse.ts.
 */
import type { Base } from '../../model/base';
import type { GraphBuilder, Value } from '../../model/graph/builder';
import { decays } from '../graph';
import { full } from './full';
import { sparseMethod } from './sparse';

/** Hard-concrete stretch and temperature (Louizos et al. 2017, as Guo et al. 2020 use them). */
const HC = { beta: 2 / 3, gamma: -0.1, zeta: 1.1 };

/**
 * Diff Pruning gates: θ = θ₀ + z ⊙ w with z = min(1, max(0, sigmoid((log u − log(1−u) + log α)/β)(ζ−γ)+γ)),
 * u ~ U(0,1) drawn in the graph (RandomUniformLike, seeded); at evaluation z uses sigmoid(log α). Adds the
 * expected-L0 penalty λ Σ sigmoid(log α − β log(−γ/ζ)).
 */
function hardConcreteGates(base: Base, gated: Set<string>, training: boolean, seed: number, lambda: number) {
  const created: Value[] = [];
  const l0: Value[] = [];
  return {
    baseParam: (g: GraphBuilder, name: string, frozen: Value) => {
      if (!gated.has(name)) return null;
      const t = base.weights.get(name)!;
      const w = g.input(`dp.w:${name}`, 'float32', [...t.shape]);
      const la = g.input(`dp.la:${name}`, 'float32', [...t.shape]);
      created.push(w, la);
      let s: Value;
      if (training) {
        const u = g.node('RandomUniformLike', [la], { low: { float: 1e-6 }, high: { float: 1 - 1e-6 }, seed: { float: seed * 7919 + created.length } }, [{ type: 'float32', shape: la.shape }])[0];
        const logit = g.sub(g.unary('Log', u), g.unary('Log', g.sub(g.constFloat(1), u)));
        s = g.unary('Sigmoid', g.div(g.add(logit, la), g.constFloat(HC.beta)));
      } else s = g.unary('Sigmoid', la);
      const z = g.min(g.constFloat(1), g.max(g.constFloat(0), g.add(g.mul(s, g.constFloat(HC.zeta - HC.gamma)), g.constFloat(HC.gamma))));
      l0.push(g.reduce('ReduceSum', g.unary('Sigmoid', g.sub(la, g.constFloat(HC.beta * Math.log(-HC.gamma / HC.zeta)))), t.shape.map((_, i) => i), false));
      return g.add(frozen, g.mul(z, w));
    },
    extraLoss: (g: GraphBuilder) => {
      if (!l0.length) return null;
      let sum = l0[0];
      for (let i = 1; i < l0.length; i++) sum = g.add(sum, l0[i]);
      return g.mul(sum, g.constFloat(lambda));
    },
    extraTrainable: () => created,
  };
}

/** Deterministic gate value at the end of Diff Pruning (one-time, load-time JS). */
function gateValue(la: number): number {
  const s = 1 / (1 + Math.exp(-la));
  return Math.min(1, Math.max(0, s * (HC.zeta - HC.gamma) + HC.gamma));
}

export const diffPruning = sparseMethod({
  uses: ['l0Lambda'],
  defaults: { lr: 1e-3, config: { method: 'diff-pruning', density: 0.005 }, what: 'Diff Pruning: hard-concrete L0 gates (Louizos 2017; beta 2/3, gamma -0.1, zeta 1.1, lambda 1.25e-7), magnitude projection to density 0.5%, fixed-mask fine-tuning' },
  phase1(ctx) {
    // Guo et al. gate every encoder tensor; composable-sft's selection controls are LT-SFT's (sft-groups.ts)
    const { base, seed, o } = ctx;
    const plan = full.plan(ctx);
    // the encoder's tensors are gated (inputs dp.w / dp.la), not trained themselves; the MLM head is not gated
    const gated = new Set(plan.trainableBase.filter((n) => !n.startsWith('mlm.')));
    return {
      ...plan,
      trainableBase: [],
      graphTerms: (training) => hardConcreteGates(base, gated, training, seed, o.l0Lambda ?? 1.25e-7),
      paramInit: (name) => {
        if (!name.startsWith('dp.')) return undefined;
        const t = base.weights.get(name.slice(name.indexOf(':') + 1))!;
        // w starts at 0 (θ = θ₀); log α at 3 (gates open with probability ~0.99 at the start)
        return { data: new Float32Array(t.data.length).fill(name.startsWith('dp.la:') ? 3 : 0), dims: [...t.shape] };
      },
      decay: (name) => !name.startsWith('dp.la:') && decays(name),
    };
  },
  deltas(_ctx, p1, names) {
    const deltas = new Map<string, Float32Array>();
    for (const n of names) {
      const w = p1.tensors.get(`dp.w:${n}`)?.data as Float32Array | undefined;
      const la = p1.tensors.get(`dp.la:${n}`)?.data as Float32Array | undefined;
      if (!w || !la) continue;
      deltas.set(n, Float32Array.from(w, (x, i) => x * gateValue(la[i])));
    }
    return deltas;
  },
  // θ₀ + the projected gated change
  start: (t0, d, m) => (d && m ? Float32Array.from(t0, (x, i) => x + d[i] * m[i]) : t0),
});
