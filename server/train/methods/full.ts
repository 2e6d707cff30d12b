/** Full fine-tuning: every base tensor (but the pooler) and the head; the result is a dense diff of each. */
import { headOnlyModule, trainableBaseNames } from './head-only';
import { frozenStack } from './module-method';
import type { MethodStrategy } from './strategy';

export const full: MethodStrategy = {
  defaults: { lr: 2e-5, config: { method: 'full' }, what: 'full fine-tuning (dense diff of every tensor)' },
  plan: (ctx) => ({ modules: [...frozenStack(ctx), headOnlyModule(ctx, 'full')], trainableBase: trainableBaseNames(ctx.base, ctx.task) }),
};
