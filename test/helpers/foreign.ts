/**
 * Foreign-format fixtures written from the published formats, independently of modules-store/interop: AdapterHub
 * (`adapters` v1: loading.py file names, methods/bottleneck.py + modeling.py module names, methods/lora.py,
 * heads/base.py index layout), PEFT (utils/save_and_load.py key layout) and composable-sft (src/sft/sft.py
 * encode_sparse_tensor: column-major, delta-encoded indices). Each writer takes a native modhub fixture
 * (test/helpers/modules.ts) and spells the same tensors under the foreign names, as those libraries save them.
 * Example: `adapterHubFolder(native, 'bert', { name: 'sst2' })` → Map of file name → bytes.
 */
import { serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import type { RefModule } from '../reference/modules';
import { Pickler, pickleTensor, stateDictPickle, torchSave } from './torch-files';

type Fam = 'bert' | 'roberta' | 'xlm-roberta' | 'distilbert';

interface FamNames {
  prefix: string;
  layer: string;
  mod: Record<string, string>;
  attnAdapters: string;
  outAdapters: string;
}
const BERTLIKE = (prefix: string): FamNames => ({
  prefix,
  layer: 'encoder.layer',
  mod: { query: 'attention.self.query', key: 'attention.self.key', value: 'attention.self.value', attn_output: 'attention.output.dense', ffn_in: 'intermediate.dense', ffn_out: 'output.dense' },
  attnAdapters: 'attention.output.adapters',
  outAdapters: 'output.adapters',
});
/** Spelled out per family, as the transformers model classes name their modules. */
export const FAMILY_NAMES: Record<Fam, FamNames> = {
  bert: BERTLIKE('bert.'),
  roberta: BERTLIKE('roberta.'),
  'xlm-roberta': BERTLIKE('roberta.'),
  distilbert: {
    prefix: 'distilbert.',
    layer: 'transformer.layer',
    mod: { query: 'attention.q_lin', key: 'attention.k_lin', value: 'attention.v_lin', attn_output: 'attention.out_lin', ffn_in: 'ffn.lin1', ffn_out: 'ffn.lin2' },
    attnAdapters: 'attention_adapters.adapters',
    outAdapters: 'output_adapters.adapters',
  },
};

function json(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}

/** A state dict as safetensors or as a torch.save .bin. */
function weights(entries: [string, Tensor][], bin: boolean): Buffer {
  return bin ? torchSave(stateDictPickle(entries)) : serializeSafetensors(new Map(entries));
}

export interface AhOptions {
  name: string;
  /** Write pytorch_adapter.bin / pytorch_model_head.bin instead of safetensors. */
  bin?: boolean;
  /** Keys with the model prefix (saved from an AdapterModel, default) or without (from a bare model). */
  prefixed?: boolean;
  /** The adapter config block (BnConfig / LoRAConfig fields as saved). */
  config: Record<string, unknown>;
}

/** AdapterHub `save_adapter` output for a native bottleneck / lora / ia3 fixture (+ its head). */
export function adapterHubFolder(m: RefModule, family: Fam, o: AhOptions): Map<string, Buffer> {
  const n = FAMILY_NAMES[family];
  const pre = o.prefixed === false ? '' : n.prefix;
  const files = new Map<string, Buffer>();
  files.set('adapter_config.json', json({ config: o.config, hidden_size: m.manifest.base.hidden_size, model_class: 'BertAdapterModel', model_name: `${family}-tiny`, model_type: family, name: o.name, version: 'adapters.1.1.0' }));
  const w: [string, Tensor][] = [];
  const lnBefore = o.config.ln_before === true;
  for (const [k, t] of m.tensors) {
    let mm = /^layers\.(\d+)\.(attention|output)\.(adapter_down|adapter_up|ln_before|ln_after)\.(weight|bias)$/.exec(k);
    if (mm) {
      const site = `${pre}${n.layer}.${mm[1]}.${mm[2] === 'attention' ? n.attnAdapters : n.outAdapters}.${o.name}`;
      if (mm[3] === 'adapter_down') w.push([`${site}.adapter_down.${lnBefore ? 1 : 0}.${mm[4]}`, t]);
      if (mm[3] === 'adapter_up') w.push([`${site}.adapter_up.${mm[4]}`, t]);
      if (mm[3] === 'ln_before') w.push([`${site}.adapter_norm_before.${mm[4]}`, t], [`${site}.adapter_down.0.${mm[4]}`, t]);
      if (mm[3] === 'ln_after') w.push([`${site}.adapter_norm_after.${mm[4]}`, t]);
      continue;
    }
    mm = /^invertible\.(F|G)\.(down|up)\.(weight|bias)$/.exec(k);
    if (mm) {
      w.push([`${pre}invertible_adapters.${o.name}.${mm[1]}.${mm[2] === 'down' ? 0 : 2}.${mm[3]}`, t]);
      continue;
    }
    mm = /^layers\.(\d+)\.([a-z_]+)\.(lora_A|lora_B|ia3_l)$/.exec(k);
    if (mm) {
      w.push([`${pre}${n.layer}.${mm[1]}.${n.mod[mm[2]]}.loras.${o.name}.${mm[3] === 'ia3_l' ? 'lora_B' : mm[3]}`, t]);
      continue;
    }
    if (!k.startsWith('head.')) throw new Error(`adapterHubFolder: no AdapterHub name for '${k}'`);
  }
  files.set(o.bin ? 'pytorch_adapter.bin' : 'adapter.safetensors', weights(w, !!o.bin));
  const h = m.manifest.head;
  if (h && h.type !== 'masked_lm') {
    const hw: [string, Tensor][] = [];
    const label2id = Object.fromEntries(m.manifest.labels.map((l, i) => [l, i]));
    let config: Record<string, unknown>;
    if (h.type === 'classification') {
      // PredictionHead: Dropout(0), Linear(1), Activation(2), Dropout(3), Linear(4)
      if (h.layers === 2) hw.push([`heads.${o.name}.1.weight`, m.tensors.get('head.dense.weight')!], [`heads.${o.name}.1.bias`, m.tensors.get('head.dense.bias')!]);
      const i = h.layers === 2 ? 4 : 1;
      hw.push([`heads.${o.name}.${i}.weight`, m.tensors.get('head.out_proj.weight')!], [`heads.${o.name}.${i}.bias`, m.tensors.get('head.out_proj.bias')!]);
      config = { head_type: 'classification', num_labels: h.num_labels, layers: h.layers, activation_function: 'tanh', label2id, use_pooler: false, bias: true, dropout_prob: null };
    } else {
      hw.push([`heads.${o.name}.1.weight`, m.tensors.get('head.out_proj.weight')!], [`heads.${o.name}.1.bias`, m.tensors.get('head.out_proj.bias')!]);
      config = { head_type: 'tagging', num_labels: h.num_labels, layers: 1, activation_function: 'tanh', label2id };
    }
    files.set('head_config.json', json({ config, hidden_size: m.manifest.base.hidden_size, model_class: 'BertAdapterModel', model_name: `${family}-tiny`, model_type: family, name: o.name, version: 'adapters.1.1.0' }));
    files.set(o.bin ? 'pytorch_model_head.bin' : 'model_head.safetensors', weights(hw, !!o.bin));
  }
  return files;
}

/** PEFT `save_pretrained` output (LoRA or IA³) for a task model of `family`; the head through modules_to_save. */
export function peftFolder(m: RefModule, family: Fam, o: { bin?: boolean; config: Record<string, unknown> }): Map<string, Buffer> {
  const n = FAMILY_NAMES[family];
  const w: [string, Tensor][] = [];
  for (const [k, t] of m.tensors) {
    const mm = /^layers\.(\d+)\.([a-z_]+)\.(lora_A|lora_B|ia3_l)$/.exec(k);
    if (mm) {
      const path = `base_model.model.${n.prefix}${n.layer}.${mm[1]}.${n.mod[mm[2]]}`;
      w.push([mm[3] === 'ia3_l' ? `${path}.ia3_l` : `${path}.${mm[3]}.weight`, t]);
    }
  }
  const h = m.manifest.head;
  if (h?.type === 'classification' && family === 'bert') {
    w.push(['base_model.model.bert.pooler.dense.weight', m.tensors.get('head.dense.weight')!], ['base_model.model.bert.pooler.dense.bias', m.tensors.get('head.dense.bias')!]);
    w.push(['base_model.model.classifier.weight', m.tensors.get('head.out_proj.weight')!], ['base_model.model.classifier.bias', m.tensors.get('head.out_proj.bias')!]);
  } else if (h?.type === 'classification') {
    w.push(['base_model.model.classifier.dense.weight', m.tensors.get('head.dense.weight')!], ['base_model.model.classifier.dense.bias', m.tensors.get('head.dense.bias')!]);
    w.push(['base_model.model.classifier.out_proj.weight', m.tensors.get('head.out_proj.weight')!], ['base_model.model.classifier.out_proj.bias', m.tensors.get('head.out_proj.bias')!]);
  } else if (h?.type === 'token_classification') {
    w.push(['base_model.model.classifier.weight', m.tensors.get('head.out_proj.weight')!], ['base_model.model.classifier.bias', m.tensors.get('head.out_proj.bias')!]);
  }
  return new Map([
    ['adapter_config.json', json(o.config)],
    [o.bin ? 'adapter_model.bin' : 'adapter_model.safetensors', weights(w, !!o.bin)],
  ]);
}

/**
 * composable-sft `SFT.save`: pytorch_diff.bin = {'diffs': {param: {'size': torch.Size, 'index_steps': [np.int64, int...],
 * 'values': tensor}}, 'abs': {...}} with column-major flat indices, sorted, delta-encoded.
 */
export function sftFolder(m: RefModule, shapes: Map<string, number[]>, abs: [string, Tensor][] = []): Map<string, Buffer> {
  const p = new Pickler();
  const storages = new Map<string, Buffer>();
  let key = 0;
  p.raw(0x7d).str('diffs').raw(0x7d);
  for (const [k, idxT] of m.tensors) {
    if (!k.endsWith('.index')) continue;
    const param = k.slice(0, -'.index'.length);
    const size = shapes.get(param)!;
    const vals = m.tensors.get(`${param}.values`)!.data as Float32Array;
    const rowMajor = Array.from(idxT.data as BigInt64Array, Number);
    // row-major → coordinates → column-major (first dimension fastest), then sort as encode_sparse_tensor does
    const pairs = rowMajor.map((ix, i) => {
      let rest = ix;
      const coords = new Array<number>(size.length);
      for (let d = size.length - 1; d >= 0; d--) {
        coords[d] = rest % size[d];
        rest = Math.floor(rest / size[d]);
      }
      let col = 0;
      for (let d = size.length - 1; d >= 0; d--) col = col * size[d] + coords[d];
      return [col, vals[i]] as [number, number];
    });
    pairs.sort((a, b) => a[0] - b[0]);
    p.str(param).raw(0x7d).mark();
    p.str('size').global('torch', 'Size').mark().ints(size).tuple().raw(0x52);
    // index_steps: indices[0] is a numpy int64, the rest Python ints (from .tolist())
    p.str('index_steps').raw(0x5d).mark();
    p.global('numpy.core.multiarray', 'scalar').mark().global('numpy', 'dtype').mark().str('i8').raw(0x89, 0x88).tuple().raw(0x52);
    p.mark().int(3).str('<').raw(0x4e, 0x4e, 0x4e).int(-1).int(-1).int(0).tuple().raw(0x62);
    const first = Buffer.alloc(8);
    first.writeBigInt64LE(BigInt(pairs[0][0]));
    p.bytes(first).tuple().raw(0x52);
    for (let i = 1; i < pairs.length; i++) p.int(pairs[i][0] - pairs[i - 1][0]);
    p.raw(0x65); // APPENDS
    p.str('values');
    pickleTensor(p, { dtype: 'F32', shape: [pairs.length], data: Float32Array.from(pairs, (x) => x[1]) }, String(key++), storages);
    p.raw(0x75, 0x73); // SETITEMS into the param dict, SETITEM into diffs
  }
  p.raw(0x73); // SETITEM 'diffs' into the top dict
  p.str('abs').raw(0x7d);
  for (const [name, t] of abs) {
    p.str(name);
    pickleTensor(p, t, String(key++), storages);
    p.raw(0x73);
  }
  p.raw(0x73);
  return new Map([['pytorch_diff.bin', torchSave({ pkl: p.done(), storages })]]);
}

/** AdapterHub `save_adapter_fusion` output for a native fusion fixture fusing adapters named `names`. */
export function adapterFusionFolder(m: RefModule, family: Fam, names: string[], config: Record<string, unknown> = {}): Map<string, Buffer> {
  const n = FAMILY_NAMES[family];
  const name = names.join(',');
  const w: [string, Tensor][] = [];
  for (const [k, t] of m.tensors) {
    const mm = /^layers\.(\d+)\.(attention|output)\.(query|key|value)\.(weight|bias)$/.exec(k);
    if (!mm) throw new Error(`adapterFusionFolder: no AdapterHub name for '${k}'`);
    const site = family === 'distilbert' ? (mm[2] === 'attention' ? 'attention_adapters' : 'output_adapters') : mm[2] === 'attention' ? 'attention.output' : 'output';
    w.push([`${n.prefix}${n.layer}.${mm[1]}.${site}.adapter_fusion_layer.${name}.${mm[3]}.${mm[4]}`, t]);
  }
  const c = m.manifest.config as { dynamic?: boolean };
  const fc = { key: true, query: true, value: c.dynamic !== false, query_before_ln: false, regularization: true, residual_before: false, temperature: false, value_before_softmax: true, value_initialized: true, dropout_prob: null, ...config };
  return new Map([
    ['adapter_fusion_config.json', json({ config: fc, hidden_size: m.manifest.base.hidden_size, model_class: 'BertAdapterModel', model_name: `${family}-tiny`, model_type: family, name, version: 'adapters.1.1.0' })],
    ['model_adapter_fusion.safetensors', serializeSafetensors(new Map(w))],
  ]);
}
