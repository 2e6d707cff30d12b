/**
 * Bottleneck adapters (AdapterHub presets): Pfeiffer (seq_bn), Houlsby (double_seq_bn), Bapna & Firat,
 * parallel (par_bn) and the MAD-X language adapter with its invertible adapter (seq_bn_inv).
 */
import { moduleMethod } from './module-method';

export const seqBn = moduleMethod('bottleneck', { lr: 1e-4, config: { preset: 'seq_bn' }, what: 'Pfeiffer bottleneck adapter after the FFN (relu, reduction 16)' });
export const doubleSeqBn = moduleMethod('bottleneck', { lr: 1e-4, config: { preset: 'double_seq_bn' }, what: 'Houlsby adapters after attention and FFN (swish, reduction 16)' });
export const bapna = moduleMethod('bottleneck', { lr: 1e-4, config: { preset: 'seq_bn', ln_before: true, residual_before_ln: false }, what: 'Bapna & Firat adapter with its own LayerNorm (ln_before)' });
export const parBn = moduleMethod('bottleneck', { lr: 1e-4, config: { preset: 'par_bn' }, what: 'parallel adapter (reduction 2, scaling 4)' });
export const seqBnInv = moduleMethod('bottleneck', { lr: 1e-4, config: { preset: 'seq_bn_inv', non_linearity: 'gelu', reduction_factor: 2 }, what: 'MAD-X language adapter + invertible adapter (MLM under the base\'s frozen head; gelu, reduction 2)' });
