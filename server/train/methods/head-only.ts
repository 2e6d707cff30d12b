/**
 * What the methods that train base tensors (BitFit, full fine-tuning, Diff Pruning, LT-SFT) share: the base
 * tensors they may train, and the diff module they produce, holding only the task head until packaging adds
 * the base tensors' changes.
 * Example: `const mod = headOnlyModule(ctx, 'bitfit')`.
 */
import type { Base } from '../../model/base';
import { initModule } from '../../model/module-init';
import type { Manifest, ManifestInput } from '../../../modules-store/manifest';
import { parseManifest } from '../../../modules-store/manifest';
import { isHeadTensor } from '../../../modules-store/kinds/heads';
import type { SlotModule } from '../graph';
import type { Task } from '../types';
import type { MethodContext } from './strategy';

/** The head a module of `task` gets. */
export function headConfig(task: Task, labels: string[]): { type: 'classification' | 'token_classification' | 'masked_lm'; labels?: string[]; layers?: 1 | 2 } {
  if (task === 'classification') return { type: 'classification', labels, layers: 2 };
  if (task === 'token_classification') return { type: 'token_classification', labels };
  return { type: 'masked_lm' };
}

/** Canonical base tensors a diff method may train: all but the pooler, the MLM head only for MLM. */
export function trainableBaseNames(base: Base, task: Task): string[] {
  const names = [...base.weights.keys()].filter((n) => !n.startsWith('pooler.'));
  return task === 'mlm' ? names : names.filter((n) => !n.startsWith('mlm.'));
}

/** A head-only module (BitFit, full FT): the head tensors of a diff module. */
export function headOnlyModule(ctx: MethodContext, method: string): SlotModule {
  const { base, task, labels, seed, id } = ctx;
  if (task === 'mlm') {
    const m = parseManifest(diffManifestInput(base, id, '0.1.0', method, null, [], 'mlm'));
    return { manifest: m, tensors: new Map(), trainable: true };
  }
  const init = initModule(base, { kind: 'lora', id, config: { r: 1, lora_alpha: 1, target_modules: ['query'], leave_out: [...Array(base.config.numLayers).keys()] }, head: headConfig(task, labels), seed });
  const tensors = new Map([...init.tensors].filter(([k]) => isHeadTensor(k)));
  const manifest = parseManifest(diffManifestInput(base, id, '0.1.0', method, init.manifest.head, labels, task));
  return { manifest, tensors, trainable: true };
}

function diffManifestInput(base: Base, id: string, version: string, method: string, head: Manifest['head'] | null, labels: string[], task: string): ManifestInput {
  const cfg = base.config;
  return {
    format_version: 1,
    id,
    version,
    kind: 'diff',
    config: { method },
    head,
    task,
    labels,
    base: { family: cfg.family, fingerprint: base.fingerprint, hidden_size: cfg.hiddenSize, num_layers: cfg.numLayers, vocab_size: cfg.vocabSize, intermediate_size: cfg.intermediateSize },
    description: `${method} module trained by modhub`,
  } as ManifestInput;
}
