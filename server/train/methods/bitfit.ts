/** BitFit (Ben Zaken et al. 2021): train the base's bias terms and the head; the result is a dense diff module. */
import { headOnlyModule, trainableBaseNames } from './head-only';
import { frozenStack } from './module-method';
import type { MethodStrategy } from './strategy';

export const bitfit: MethodStrategy = {
  defaults: { lr: 1e-3, config: { method: 'bitfit' }, what: 'BitFit: bias terms + head' },
  plan: (ctx) => ({
    modules: [...frozenStack(ctx), headOnlyModule(ctx, 'bitfit')],
    trainableBase: trainableBaseNames(ctx.base, ctx.task).filter((n) => n.endsWith('.bias')),
  }),
};
