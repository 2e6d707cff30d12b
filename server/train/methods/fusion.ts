/**
 * AdapterFusion: attention over the outputs of frozen adapters (`fuse`), trained with a new head; the fused
 * adapters stay as they are and the result is the fusion module.
 */
import { initModule } from '../../model/module-init';
import { headConfig } from './head-only';
import { frozenStack } from './module-method';
import type { MethodStrategy } from './strategy';

export const fusion: MethodStrategy = {
  uses: ['config', 'fuse'],
  defaults: { lr: 5e-5, config: { dynamic: true, temperature: 1 }, what: 'AdapterFusion over frozen adapters (--fuse), dynamic (query, key, value; value regularised to identity)' },
  plan(ctx) {
    const { o, base, task, labels, id, seed } = ctx;
    if (!o.fuse?.length) throw new RangeError("method 'fusion' needs 'fuse': the adapters to fuse");
    const init = initModule(base, {
      kind: 'fusion',
      id,
      version: o.version,
      config: { ...fusion.defaults.config, ...(o.config ?? {}), adapters: o.fuse.map((m) => m.manifest.id) },
      head: headConfig(task, labels),
      task,
      seed,
    });
    const fused = o.fuse.map((m) => ({ ...m, trainable: false }));
    return { modules: [...frozenStack(ctx), ...fused, { manifest: init.manifest, tensors: init.tensors, trainable: true }], trainableBase: [] };
  },
};
