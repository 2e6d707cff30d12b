/**
 * (IA)³: learned scaling vectors, by default AdapterHub's IA3Config placement (key, value and the output of
 * intermediate.dense); `config.target_modules: ['key', 'value', 'ffn_out']` gives PEFT's (modules-store/kinds/ia3.ts).
 * The vectors start at ones, so training starts from the base; lr 3e-3 as the IA³ paper's (Liu et al. 2022).
 * Weight decay follows HF Trainer's policy as PEFT uses it (the vectors are decayed, like any non-bias weight).
 */
import { moduleMethod } from './module-method';

export const ia3 = moduleMethod('ia3', { lr: 3e-3, config: { target_modules: ['key', 'value', 'ffn_in'] }, what: 'IA³ scaling vectors on key, value and ffn_in (AdapterHub IA3Config)' });
