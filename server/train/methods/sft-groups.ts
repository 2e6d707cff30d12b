/**
 * Which base tensors LT-SFT may select, as composable-sft (Ansell et al. 2022, `sft_args.py` and its example
 * scripts) decides it: the body of the model (embeddings, attention, FFN, LayerNorms) is "maskable" — its
 * entries compete for the K selected — while the masked-LM head (transform + decoder bias) is trained densely
 * and stored whole; `freeze` removes groups:
 *   embeddings  the input embeddings (word, position, token type)            — freeze_embeddings
 *   layer_norm  every LayerNorm, the MLM head's included                     — freeze_layer_norm
 *   decoder     MLM: the output embeddings untied from the input ones, frozen — freeze_decoder
 *   head        MLM: the whole MLM head (transform, decoder bias, decoder)   — freeze_head
 * Defaults as composable-sft's published scripts train them: language SFTs (task mlm) freeze layer_norm and
 * decoder (train_mlm.sh), task SFTs freeze layer_norm (train_nli.sh, train_ner.sh, …). K is `nnz`
 * (ft_params_num) or ⌊density × maskable parameters⌋ (ft_params_proportion, default 0.01).
 * Example: `sftGroups(base, 'mlm', undefined)` → { maskable: [...], dense: ['mlm.dense.weight', …], untieDecoder: true }.
 */
import type { Base } from '../../model/base';
import type { Task } from '../types';

export const SFT_GROUPS = ['embeddings', 'layer_norm', 'decoder', 'head'] as const;
export type SftGroup = (typeof SFT_GROUPS)[number];

/** composable-sft's defaults: language SFTs (MLM) and task SFTs. */
export function defaultFreeze(task: Task): SftGroup[] {
  return task === 'mlm' ? ['layer_norm', 'decoder'] : ['layer_norm'];
}

const isLayerNorm = (n: string) => /(^|\.)([a-z]+_)?ln\.(weight|bias)$/.test(n);
const isEmbedding = (n: string) => /^embeddings\.(word|position|token_type)$/.test(n);

export interface SftSelection {
  /** Base tensors whose entries compete for the K selected. */
  maskable: string[];
  /** Base tensors trained densely in both phases and stored whole (the MLM head). */
  dense: string[];
  /** MLM with tied embeddings and a frozen decoder: the decoder reads θ₀'s word embeddings. */
  untieDecoder: boolean;
  freeze: SftGroup[];
}

/** The selection groups of an LT-SFT run; `freeze` undefined = composable-sft's default for the task. */
export function sftGroups(base: Base, task: Task, freeze: readonly string[] | undefined): SftSelection {
  const groups = freeze ?? defaultFreeze(task);
  for (const g of groups) if (!(SFT_GROUPS as readonly string[]).includes(g)) throw new RangeError(`'freeze' groups are ${SFT_GROUPS.join(', ')}; got '${g}'`);
  if (task !== 'mlm') for (const g of ['decoder', 'head']) if (groups.includes(g)) throw new RangeError(`freezing '${g}' applies to the masked-LM head (task mlm), not to task '${task}'`);
  const has = (g: SftGroup) => groups.includes(g);
  const maskable: string[] = [];
  const dense: string[] = [];
  for (const n of base.weights.keys()) {
    if (n.startsWith('pooler.')) continue;
    if (has('layer_norm') && isLayerNorm(n)) continue;
    if (n.startsWith('mlm.')) {
      if (task !== 'mlm' || has('head')) continue;
      if (n === 'mlm.decoder.weight' && has('decoder')) continue;
      dense.push(n);
      continue;
    }
    if (has('embeddings') && isEmbedding(n)) continue;
    maskable.push(n);
  }
  const tied = !base.weights.has('mlm.decoder.weight');
  // a frozen head freezes the decoder too (composable-sft's freeze_head unties and freezes it)
  const untieDecoder = task === 'mlm' && tied && (has('decoder') || has('head')) && maskable.includes('embeddings.word');
  if (!maskable.length) throw new RangeError(`'freeze' ${groups.join(', ')} leaves no tensor for LT-SFT to select`);
  return { maskable, dense, untieDecoder, freeze: [...groups] as SftGroup[] };
}
