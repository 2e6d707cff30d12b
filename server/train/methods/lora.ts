/** LoRA (PEFT): low-rank updates of the attention projections, by default on query and value. */
import { moduleMethod } from './module-method';

export const lora = moduleMethod('lora', { lr: 5e-4, config: { r: 8, lora_alpha: 8, target_modules: ['query', 'value'] }, what: 'LoRA on query and value (r 8, alpha 8)' });
