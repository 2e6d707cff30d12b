/**
 * Fresh (untrained) module packages for a base, initialised as the reference libraries do: AdapterHub's "bert"
 * init for bottleneck and fusion layers (Linear weights N(0, 0.02), biases 0, LayerNorms 1/0; dynamic fusion's
 * value matrix = identity), PEFT's LoRA init (A Kaiming-uniform, B = 0, so the module starts as the base), heads
 * N(0, 0.02). The trainer starts from these; `modhub module init` writes them for experiments.
 * Example: `initModule(base, { kind: 'bottleneck', id: 'lang/de', config: { preset: 'seq_bn_inv' } })`.
 */
import { parseManifest, type HeadConfig, type Manifest, type ManifestInput } from '../../modules-store/manifest';
import { bottleneckSize, resolveBottleneckConfig } from '../../modules-store/validate';
import type { Tensor } from '../../modules-store/safetensors';
import type { Base } from './base';
import { Rng } from './random';

export interface InitOptions {
  kind: 'bottleneck' | 'lora' | 'fusion';
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
  const normal = (shape: number[], std = 0.02): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    return { dtype: 'F32', shape, data };
  };
  const fill = (shape: number[], v: number): Tensor => ({ dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(v) });
  const t = new Map<string, Tensor>();
  const config: Record<string, unknown> = { ...(o.config ?? {}) };

  if (o.kind === 'bottleneck') {
    if (!config.preset) config.preset = 'seq_bn';
    const c = resolveBottleneckConfig(config as never);
    for (let l = 0; l < cfg.numLayers; l++) {
      if (c.leave_out.includes(l)) continue;
      for (const site of ['attention', 'output'] as const) {
        if ((site === 'attention' && !c.mh_adapter) || (site === 'output' && !c.output_adapter)) continue;
        const r = bottleneckSize(c, D, l);
        const p = `layers.${l}.${site}`;
        t.set(`${p}.adapter_down.weight`, normal([r, D]));
        t.set(`${p}.adapter_down.bias`, fill([r], 0));
        t.set(`${p}.adapter_up.weight`, normal([D, r]));
        t.set(`${p}.adapter_up.bias`, fill([D], 0));
        for (const ln of ['ln_before', 'ln_after'] as const) {
          if (!c[ln]) continue;
          t.set(`${p}.${ln}.weight`, fill([D], 1));
          t.set(`${p}.${ln}.bias`, fill([D], 0));
        }
      }
    }
    if (c.inv_adapter === 'nice') {
      const n = Math.floor(D / 2);
      const m = Math.floor(n / c.inv_adapter_reduction_factor);
      for (const w of ['F', 'G']) {
        t.set(`invertible.${w}.down.weight`, normal([m, n]));
        t.set(`invertible.${w}.down.bias`, fill([m], 0));
        t.set(`invertible.${w}.up.weight`, normal([D - n, m]));
        t.set(`invertible.${w}.up.bias`, fill([D - n], 0));
      }
    }
  } else if (o.kind === 'lora') {
    if (config.r === undefined) config.r = 8;
    if (config.lora_alpha === undefined) config.lora_alpha = 8;
    if (config.target_modules === undefined) config.target_modules = ['query', 'value'];
    const r = config.r as number;
    const leave = (config.leave_out as number[] | undefined) ?? [];
    for (let l = 0; l < cfg.numLayers; l++) {
      if (leave.includes(l)) continue;
      for (const target of config.target_modules as string[]) {
        const inDim = target === 'ffn_out' ? cfg.intermediateSize : D;
        const outDim = target === 'ffn_in' ? cfg.intermediateSize : D;
        // Kaiming-uniform with a = sqrt(5) (nn.Linear's default, which PEFT keeps for A): bound = 1/sqrt(in).
        const bound = 1 / Math.sqrt(inDim);
        const A = new Float32Array(r * inDim);
        for (let i = 0; i < A.length; i++) A[i] = (rng.next() * 2 - 1) * bound;
        t.set(`layers.${l}.${target}.lora_A`, { dtype: 'F32', shape: [r, inDim], data: A });
        t.set(`layers.${l}.${target}.lora_B`, fill([outDim, r], 0));
      }
    }
  } else {
    const sites = (config.sites as string[] | undefined) ?? ['output'];
    const dynamic = (config.dynamic as boolean | undefined) ?? true;
    if (!Array.isArray(config.adapters) || !config.adapters.length) throw new RangeError("fusion needs config.adapters: the ids of the fused adapters");
    const identity = fill([D, D], 0);
    for (let i = 0; i < D; i++) (identity.data as Float32Array)[i * D + i] = 1;
    for (let l = 0; l < cfg.numLayers; l++) {
      for (const site of sites) {
        const p = `layers.${l}.${site}`;
        t.set(`${p}.query.weight`, normal([D, D]));
        t.set(`${p}.query.bias`, fill([D], 0));
        t.set(`${p}.key.weight`, normal([D, D]));
        t.set(`${p}.key.bias`, fill([D], 0));
        if (dynamic) t.set(`${p}.value.weight`, identity);
      }
    }
  }

  let head: Record<string, unknown> | null = null;
  let labels: string[] = [];
  if (o.head) {
    labels = o.head.labels ?? [];
    if (o.head.type === 'masked_lm') {
      head = { type: 'masked_lm' };
      t.set('head.transform.dense.weight', normal([D, D]));
      t.set('head.transform.dense.bias', fill([D], 0));
      t.set('head.transform.layer_norm.weight', fill([D], 1));
      t.set('head.transform.layer_norm.bias', fill([D], 0));
      t.set('head.decoder.bias', fill([cfg.vocabSize], 0));
    } else {
      if (labels.length < 1) throw new RangeError(`a ${o.head.type} head needs 'labels' (at least one)`);
      const C = labels.length;
      const layers = o.head.type === 'classification' ? (o.head.layers ?? 2) : 1;
      head = o.head.type === 'classification' ? { type: 'classification', num_labels: C, layers, activation: 'tanh' } : { type: 'token_classification', num_labels: C };
      if (layers === 2) {
        t.set('head.dense.weight', normal([D, D]));
        t.set('head.dense.bias', fill([D], 0));
      }
      t.set('head.out_proj.weight', normal([C, D]));
      t.set('head.out_proj.bias', fill([C], 0));
    }
  }

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
