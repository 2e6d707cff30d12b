/**
 * The shape of a method that trains one new module of a kind (bottleneck adapters, LoRA, and any kind added
 * later): initialise the module with the method's config, stack it on the frozen modules of `stackOn`, train
 * all its tensors (head included). The result is the module itself.
 * Masked-LM modules (MAD-X language adapters, and any kind trained with task 'mlm') train under the base's own
 * pretrained (tied) MLM head, frozen, as MAD-X does: the module gets no MLM head of its own when the base has
 * one, and the engine then uses the base's head for fill-mask. Only a base without an MLM head gets a fresh one.
 * Example: `export const lora = moduleMethod('lora', { lr: 5e-4, config: { r: 8 }, what: 'LoRA' })`.
 */
import { initModule, type InitOptions } from '../../model/module-init';
import type { SlotModule } from '../graph';
import { headConfig } from './head-only';
import type { MethodContext, MethodDefaults, MethodStrategy, PhasePlan } from './strategy';

/** The frozen modules of `stackOn`, in order. */
export function frozenStack(ctx: MethodContext): SlotModule[] {
  return (ctx.o.stackOn ?? []).map((m) => ({ ...m, trainable: false }));
}

/** Whether the base carries a pretrained masked-LM head (transform + decoder bias; the decoder may be tied). */
export function hasMlmHead(base: MethodContext['base']): boolean {
  return base.weights.has('mlm.dense.weight') && base.weights.has('mlm.decoder.bias');
}

/** A method training a new module of `kind`, configured by the method's defaults and the caller's overrides. */
export function moduleMethod(kind: InitOptions['kind'], defaults: MethodDefaults): MethodStrategy {
  return {
    defaults,
    uses: ['config'],
    plan(ctx: MethodContext): PhasePlan {
      const { o, base, task, labels, id, seed } = ctx;
      const init = initModule(base, {
        kind,
        id,
        version: o.version,
        config: { ...defaults.config, ...(o.config ?? {}) },
        head: task === 'mlm' && hasMlmHead(base) ? undefined : headConfig(task, labels),
        task: task === 'mlm' ? 'mlm' : task === 'classification' ? 'classification' : 'ner',
        language: o.language,
        seed,
      });
      return { modules: [...frozenStack(ctx), { manifest: init.manifest, tensors: init.tensors, trainable: true }], trainableBase: [] };
    },
  };
}
