/**
 * LT-SFT (Ansell et al. 2022, lottery-ticket sparse fine-tuning): phase 1 fine-tunes fully, the K entries of
 * largest |change| are kept, the weights are reset to θ₀ and phase 2 trains only those. Which tensors may be
 * selected (and which train densely): sft-groups.ts, composable-sft's controls and defaults. Driver: sparse.ts.
 */
import { headOnlyModule } from './head-only';
import { frozenStack } from './module-method';
import { sftGroups } from './sft-groups';
import { sparseMethod } from './sparse';

export const ltSft = sparseMethod({
  defaults: { lr: 2e-5, config: { method: 'lt-sft', density: 0.01 }, what: 'LT-SFT: full fine-tune, keep the top 1% |change| of the eligible parameters (--freeze), reset, train only those' },
  uses: ['freeze'],
  select: (ctx) => sftGroups(ctx.base, ctx.task, ctx.o.freeze),
  // phase 1: full fine-tuning of the eligible tensors and the densely trained ones (composable-sft trains every
  // parameter that requires grad, then selects among the maskable ones)
  phase1: (ctx, sel) => ({
    modules: [...frozenStack(ctx), headOnlyModule(ctx, 'full')],
    trainableBase: [...sel.maskable, ...sel.dense],
    graphTerms: () => ({ untieDecoder: sel.untieDecoder }),
  }),
  deltas(ctx, p1, names) {
    // phase 1 packages each base tensor's change as `<hf name>.dense`
    const byHf = new Map([...ctx.base.hfNames].map(([c, h]) => [h, c]));
    const deltas = new Map<string, Float32Array>();
    for (const [k, t] of p1.tensors) {
      if (!k.endsWith('.dense')) continue;
      const c = byHf.get(k.slice(0, -6)) ?? k.slice(0, -6);
      if (names.includes(c)) deltas.set(c, t.data as Float32Array);
    }
    return deltas;
  },
  // reset: phase 2 starts from θ₀, the head from its initial values (composable-sft resets every parameter)
  start: (t0) => t0,
  resetHead: true,
});
