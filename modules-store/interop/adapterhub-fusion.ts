/**
 * AdapterHub AdapterFusion folders in and out (`save_adapter_fusion`): `adapter_fusion_config.json`
 * (`{"config": {key, query, value, query_before_ln, residual_before, temperature, value_before_softmax,
 * value_initialized, regularization, dropout_prob}, "name": "a,b", "model_name", "model_class", ...}`) +
 * `model_adapter_fusion.safetensors` / `pytorch_model_adapter_fusion.bin`, keys
 * `{layer}.output.adapter_fusion_layer.{a,b}.query.weight` (BERT-like; attention site `attention.output...`;
 * DistilBERT `output_adapters.adapter_fusion_layer...` / `attention_adapters...`), `.key.*`, `.value.weight`.
 * The fused adapters are named in the file ("a,b"); modhub needs their module ids: given by the caller, or
 * `<namespace of the fusion id>/<name>`.
 * Example: `importAdapterHubFusion(files, base, 'fuse/ab', ['task/a', 'task/b'])`.
 */
import type { Family } from '../hf-names';
import { StoreError } from '../errors';
import { FUSE } from '../kinds/fusion';
import type { Site } from '../kinds/bottleneck';
import type { BaseRef, Manifest } from '../manifest';
import { serializeSafetensors, type Tensor } from '../safetensors';
import { adapterName } from './adapterhub';
import { familyOf, familyPrefix, floatAt, jsonFile, layerPath, leaveOutOf, stripPrefix, unsupported, weightsOf } from './names';
import type { ConvertedModule, FileSet } from './types';

export const FUSION_CONFIG = 'adapter_fusion_config.json';
export const FUSION_WEIGHTS = ['model_adapter_fusion.safetensors', 'pytorch_model_adapter_fusion.bin'];

function fusionPath(family: Family, layer: number, site: Site, name: string, prefixed: boolean): string {
  const lp = layerPath(family, layer, prefixed);
  if (family === 'distilbert') return `${lp}.${site === 'attention' ? 'attention_adapters' : 'output_adapters'}.adapter_fusion_layer.${name}`;
  return `${lp}.${site === 'attention' ? 'attention.output' : 'output'}.adapter_fusion_layer.${name}`;
}

/** An AdapterFusion folder → a modhub `fusion` module over `adapters` (ids; default `<ns>/<name>` per fused name). */
export function importAdapterHubFusion(files: FileSet, base: BaseRef, id: string, adapters?: string[]): ConvertedModule {
  const family = familyOf(base);
  const fc = jsonFile(files, FUSION_CONFIG);
  const c = (fc.config ?? {}) as Record<string, unknown>;
  const f = FUSION_CONFIG;
  const name = typeof fc.name === 'string' ? fc.name : unsupported(f, 'name', fc.name, "the fusion name ('a,b') lists the fused adapters");
  const names = name.split(',');
  if (c.query === false || c.key === false) unsupported(f, c.query === false ? 'config.query' : 'config.key', false, 'modhub fusion layers always have query and key projections');
  if (c.temperature === true) unsupported(f, 'config.temperature', true, 'the annealed temperature (50 → 1 over forward passes) is not a fixed function; modhub fusion uses a fixed temperature');
  const ids = adapters ?? names.map((n) => `${id.split('/')[0]}/${n.toLowerCase().replace(/[^a-z0-9._-]/g, '-')}`);
  if (ids.length !== names.length) unsupported(f, 'name', name, `it fuses ${names.length} adapters, but ${ids.length} module ids were given`);
  const { file, tensors: raw } = weightsOf(files, FUSION_WEIGHTS);
  const keys = new Map([...raw].map(([k, t]) => [stripPrefix(family, k), t]));
  const dynamic = c.value !== false;
  const D = base.hidden_size;
  const layers = [...Array(base.num_layers).keys()];
  const has = (l: number, site: Site) => [...keys.keys()].some((k) => k.startsWith(`${fusionPath(family, l, site, name, false)}.`));
  const sites = (['attention', 'output'] as Site[]).filter((site) => layers.some((l) => has(l, site)));
  if (sites.length === 0) throw new StoreError('INVALID_WEIGHTS', `${file} has no adapter_fusion_layer.${name} tensors`);
  const covered = new Set<number>();
  const tensors = new Map<string, Tensor>();
  const used = new Set<string>();
  const take = (k: string, shape: number[]) => {
    used.add(k);
    return floatAt(keys, k, file, shape);
  };
  for (const l of layers) {
    if (!sites.some((site) => has(l, site))) continue;
    covered.add(l);
    for (const site of sites) {
      const p = fusionPath(family, l, site, name, false);
      tensors.set(`${FUSE.query(l, site)}.weight`, take(`${p}.query.weight`, [D, D]));
      tensors.set(`${FUSE.query(l, site)}.bias`, take(`${p}.query.bias`, [D]));
      tensors.set(`${FUSE.key(l, site)}.weight`, take(`${p}.key.weight`, [D, D]));
      tensors.set(`${FUSE.key(l, site)}.bias`, take(`${p}.key.bias`, [D]));
      if (dynamic) tensors.set(`${FUSE.value(l, site)}.weight`, take(`${p}.value.weight`, [D, D]));
    }
  }
  const extra = [...keys.keys()].filter((k) => !used.has(k));
  if (extra.length) throw new StoreError('INVALID_WEIGHTS', `${file} has tensors modhub cannot place: ${extra.slice(0, 5).map((k) => `'${k}'`).join(', ')}`);
  const config: Record<string, unknown> = { adapters: ids, dynamic, temperature: 1, sites, leave_out: leaveOutOf(base.num_layers, covered) };
  for (const k of ['query_before_ln', 'residual_before', 'value_before_softmax'] as const) if (typeof c[k] === 'boolean') config[k] = c[k];
  return { kind: 'fusion', config, head: null, labels: [], task: 'fusion', description: `AdapterHub AdapterFusion '${name}', imported`, tensors };
}

/** A modhub fusion module → the AdapterFusion files `load_adapter_fusion` reads. */
export function exportAdapterHubFusion(m: Manifest, tensors: Map<string, Tensor>): Map<string, Buffer> {
  if (m.kind !== 'fusion') throw new StoreError('INVALID_ARGUMENT', `${m.id}: not a fusion module`);
  const family = familyOf(m.base);
  const name = m.config.adapters.map((a) => adapterName(a.split('@')[0])).join(',');
  const prefix = familyPrefix(family);
  const w = new Map<string, Tensor>();
  for (const [k, t] of tensors) {
    const mm = /^layers\.(\d+)\.(attention|output)\.(query|key|value)\.(weight|bias)$/.exec(k);
    if (mm) w.set(`${prefix}${fusionPath(family, Number(mm[1]), mm[2] as Site, name, false)}.${mm[3]}.${mm[4]}`, t);
  }
  const dynamic = m.config.dynamic ?? true;
  if ((m.config.temperature ?? 1) !== 1) throw new StoreError('INVALID_ARGUMENT', `${m.id}: fusion temperature ${m.config.temperature} has no AdapterHub form (its temperature is 1, or annealed from 50)`);
  const config = { key: true, query: true, value: dynamic, query_before_ln: m.config.query_before_ln ?? false, regularization: dynamic, residual_before: m.config.residual_before ?? false, temperature: false, value_before_softmax: m.config.value_before_softmax ?? true, value_initialized: dynamic };
  const modelClass = `${{ bert: 'Bert', roberta: 'Roberta', 'xlm-roberta': 'XLMRoberta', distilbert: 'DistilBert' }[family]}AdapterModel`;
  const fc = { config, hidden_size: m.base.hidden_size, model_class: modelClass, model_name: family, model_type: family, name, version: 'adapters.1.0.0' };
  return new Map([
    [FUSION_CONFIG, Buffer.from(JSON.stringify(fc, null, 2) + '\n', 'utf8')],
    ['model_adapter_fusion.safetensors', serializeSafetensors(w, { format: 'pt' })],
  ]);
}
