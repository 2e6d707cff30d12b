/**
 * Fresh (untrained) module packages for a base, initialised as the reference libraries do; each kind's init
 * lives in its descriptor (modules-store/kinds: AdapterHub's "bert" init for bottleneck and fusion, PEFT's for
 * LoRA, ones for IA³), heads in kinds/heads.ts. The trainer starts from these; `modhub module init` writes them.
 * Example: `initModule(base, { kind: 'bottleneck', id: 'lang/de', config: { preset: 'seq_bn_inv' } })`.
 */
import { parseManifest, type HeadConfig, type Manifest, type ManifestInput } from '../../modules-store/manifest';
import { initHead, kindOf, type InitContext, type ModuleKind } from '../../modules-store/kinds';
import type { Tensor } from '../../modules-store/safetensors';
import type { Base } from './base';
import { Rng } from './random';

export interface InitOptions {
  kind: Exclude<ModuleKind, 'diff'>;
  id: string;
  version?: string;
  /** Kind config (AdapterHub / PEFT names); defaults per kind. */
  config?: Record<string, unknown>;
  head?: { type: HeadConfig['type']; labels?: string[]; layers?: 1 | 2 };
  task?: string;
  language?: string;
  description?: string;
  seed?: number;
}

/** Builds a valid, untrained module for `base`. */
export function initModule(base: Base, o: InitOptions): { manifest: Manifest; tensors: Map<string, Tensor> } {
  const cfg = base.config;
  const D = cfg.hiddenSize;
  const rng = new Rng(o.seed ?? 0);
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const ctx: InitContext = {
    dims: { hidden: D, layers: cfg.numLayers, vocab: cfg.vocabSize, ffn: cfg.intermediateSize },
    normal: (shape, std = 0.02) => {
      const data = new Float32Array(size(shape));
      for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
      return { dtype: 'F32', shape, data };
    },
    uniform: (shape, bound) => {
      const data = new Float32Array(size(shape));
      for (let i = 0; i < data.length; i++) data[i] = (rng.next() * 2 - 1) * bound;
      return { dtype: 'F32', shape, data };
    },
    fill: (shape, v) => ({ dtype: 'F32', shape, data: new Float32Array(size(shape)).fill(v) }),
  };
  const kind = kindOf(o.kind);
  const config = kind.initConfig({ ...(o.config ?? {}) });
  const parsedConfig = kind.config.safeParse(config);
  if (!parsedConfig.success) {
    const problems = parsedConfig.error.issues.map((i) => `config.${i.path.join('.')}: ${i.message}`);
    throw new RangeError(`invalid ${o.kind} config: ${problems.join('; ')}`);
  }

  let head: Record<string, unknown> | null = null;
  let labels: string[] = [];
  if (o.head) {
    labels = o.head.labels ?? [];
    if (o.head.type === 'masked_lm') head = { type: 'masked_lm' };
    else {
      if (labels.length < 1) throw new RangeError(`a ${o.head.type} head needs 'labels' (at least one)`);
      const C = labels.length;
      head = o.head.type === 'classification' ? { type: 'classification', num_labels: C, layers: o.head.layers ?? 2, activation: 'tanh' } : { type: 'token_classification', num_labels: C };
    }
  }
  // Module tensors first, then the head, from one generator: the same seed gives the same package as before.
  const t = kind.init(parsedConfig.data, ctx);
  if (head) for (const [name, x] of initHead(head as HeadConfig, ctx)) t.set(name, x);

  const input = {
    format_version: 1,
    id: o.id,
    version: o.version ?? '0.1.0',
    kind: o.kind,
    config,
    head,
    task: o.task ?? (o.head ? o.head.type : o.kind === 'bottleneck' && config.preset?.toString().endsWith('_inv') ? 'mlm' : 'adapter'),
    ...(o.language ? { language: o.language } : {}),
    labels,
    base: { family: cfg.family, fingerprint: base.fingerprint, hidden_size: D, num_layers: cfg.numLayers, vocab_size: cfg.vocabSize, intermediate_size: cfg.intermediateSize },
    description: o.description ?? `untrained ${o.kind} module (initialised by modhub)`,
  } as ManifestInput;
  return { manifest: parseManifest(input), tensors: t };
}
