/**
 * Foreign folders modhub cannot express are refused, each with a message naming the field and value (or the
 * tensor) — never imported half-way; exports of modules without a foreign form are refused the same way. Also the
 * few fields converted rather than copied (rsLoRA, AdapterHub IA³ alpha, BnConfig defaults).
 */
import { convertForeign, detectFormat, exportModule } from '../../modules-store/interop';
import { parseManifest, type BaseRef } from '../../modules-store/manifest';
import { f32, parseSafetensors, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { adapterFusionFolder, adapterHubFolder, peftFolder, sftFolder } from '../helpers/foreign';
import { fakeFingerprint, makeAdapterModule, makeDiffModule, makeFusionModule, makeIa3Module, makeLoraModule, type BaseInfo } from '../helpers/modules';
import { Pickler, torchSave } from '../helpers/torch-files';

const info: BaseInfo = { family: 'bert', fingerprint: fakeFingerprint('interop'), hidden_size: 8, num_layers: 2, vocab_size: 32, intermediate_size: 12 };
const base = info as BaseRef;
const opts = { id: 'imp/x', version: '1.0.0', base };

const SEQ_BN = { architecture: 'bottleneck', mh_adapter: false, output_adapter: true, reduction_factor: 4, non_linearity: 'relu', original_ln_before: true, original_ln_after: true, ln_before: false, ln_after: false, residual_before_ln: true, adapter_residual_before_ln: false, is_parallel: false, scaling: 1.0, use_gating: false, leave_out: [], inv_adapter: null, init_weights: 'bert', phm_layer: false };
const bn = makeAdapterModule({ id: 'nat/bn', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, seed: 1 });
const ah = (config: Record<string, unknown>) => adapterHubFolder(bn, 'bert', { name: 'a', config: { ...SEQ_BN, ...config } });
const lora = makeLoraModule({ id: 'nat/lora', base: info, r: 2, target_modules: ['query', 'value'], seed: 2 });
const LORA_CFG = { peft_type: 'LORA', r: 2, lora_alpha: 8, target_modules: ['query', 'value'], bias: 'none' };

function withFile(files: Map<string, Buffer>, name: string, bytes: Buffer): Map<string, Buffer> {
  return new Map([...files, [name, bytes]]);
}
function setJson(files: Map<string, Buffer>, name: string, patch: (v: Record<string, unknown>) => void): Map<string, Buffer> {
  const v = JSON.parse(files.get(name)!.toString('utf8')) as Record<string, unknown>;
  patch(v);
  return withFile(files, name, Buffer.from(JSON.stringify(v)));
}

describe('refused foreign folders name the field and value', () => {
  it.each([
    ['AdapterHub gating', () => ah({ use_gating: true }), /config\.use_gating = true cannot be expressed.*gated adapters/],
    ['AdapterHub prefix tuning', () => ah({ architecture: 'prefix_tuning' }), /config\.architecture = "prefix_tuning".*prefix tuning has no modhub kind/],
    ['an unknown architecture', () => ah({ architecture: 'mystery' }), /config\.architecture = "mystery"/],
    ['a ConfigUnion', () => ah({ architecture: 'union' }), /config\.architecture = "union".*ConfigUnion/],
    ['learned scaling', () => ah({ scaling: 'learned' }), /config\.scaling = "learned"/],
    ['an activation modhub lacks', () => ah({ non_linearity: 'leakyrelu' }), /config\.non_linearity = "leakyrelu"/],
    ['PHM / compacter layers', () => ah({ phm_layer: true }), /config\.phm_layer = true/],
    [
      'AdapterHub IA³ on output.dense',
      () => adapterHubFolder(makeIa3Module({ id: 'nat/ia3', base: info, target_modules: ['key'], seed: 3 }), 'bert', { name: 'i', config: { architecture: 'lora', attn_matrices: ['k'], output_lora: true, composition_mode: 'scale', r: 1, alpha: 1 } }),
      /config\.output_lora = true.*scales output\.dense's OUTPUT/,
    ],
    [
      'tensors modhub cannot place (a gate)',
      () => {
        const files = ah({});
        return withFile(files, 'adapter.safetensors', serializeSafetensors(new Map([...Object.entries({ 'bert.encoder.layer.0.output.adapters.a.gate.weight': f32([1, 8]) }), ...[...adapterHubFolderTensors(files)]])));
      },
      /has tensors modhub cannot place: 'encoder\.layer\.0\.output\.adapters\.a\.gate\.weight'/,
    ],
    ['a head on the pooler', () => setJson(adapterHubFolder(makeAdapterModule({ id: 'nat/h', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, head: { type: 'classification', num_labels: 2 }, seed: 4 }), 'bert', { name: 'a', config: SEQ_BN }), 'head_config.json', (v) => ((v.config as Record<string, unknown>).use_pooler = true)), /config\.use_pooler = true/],
    ['a multiple-choice head', () => setJson(adapterHubFolder(makeAdapterModule({ id: 'nat/h', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, head: { type: 'classification', num_labels: 2 }, seed: 4 }), 'bert', { name: 'a', config: SEQ_BN }), 'head_config.json', (v) => ((v.config as Record<string, unknown>).head_type = 'multiple_choice')), /config\.head_type = "multiple_choice"/],
    ['PEFT prefix tuning', () => peftFolder(lora, 'bert', { config: { ...LORA_CFG, peft_type: 'PREFIX_TUNING' } }), /peft_type = "PREFIX_TUNING".*modhub imports LORA and IA3/],
    ['PEFT DoRA', () => peftFolder(lora, 'bert', { config: { ...LORA_CFG, use_dora: true } }), /use_dora = true/],
    ['PEFT trained biases', () => peftFolder(lora, 'bert', { config: { ...LORA_CFG, bias: 'all' } }), /bias = "all"/],
    ['PEFT rank_pattern', () => peftFolder(lora, 'bert', { config: { ...LORA_CFG, rank_pattern: { query: 4 } } }), /rank_pattern = \{"query":4\}/],
    [
      'PEFT LoRA on a module modhub has no target for',
      () =>
        withFile(peftFolder(lora, 'bert', { config: LORA_CFG }), 'adapter_model.safetensors', serializeSafetensors(new Map([['base_model.model.bert.pooler.dense.lora_A.weight', f32([2, 8])], ['base_model.model.bert.pooler.dense.lora_B.weight', f32([8, 2])]]))),
      /target_modules = \["query","value"\].*'bert\.pooler\.dense' \(lora_A\.weight\) is not an encoder Linear/,
    ],
    [
      'PEFT IA³ scaling attention.output.dense at its input',
      // PEFT's suffix match makes attention.output.dense a feedforward module: its vector is [1, in] and scales the input
      () =>
        new Map([
          ['adapter_config.json', Buffer.from(JSON.stringify({ peft_type: 'IA3', target_modules: ['dense'], feedforward_modules: ['dense'] }))],
          ['adapter_model.safetensors', serializeSafetensors(new Map([0, 1].map((l) => [`base_model.model.bert.encoder.layer.${l}.attention.output.dense.ia3_l`, f32([1, 8])])))],
        ]),
      /feedforward_modules = \["dense"\].*'bert\.encoder\.layer\.0\.attention\.output\.dense' is scaled at its input; modhub's attn_output IA³ target scales the output/,
    ],
    ['a sequence classifier without its pooler', () => peftFolder(makeLoraModule({ id: 'nat/c', base: info, r: 2, head: { type: 'token_classification', num_labels: 2 }, seed: 6 }), 'bert', { config: { ...LORA_CFG, task_type: 'SEQ_CLS', modules_to_save: ['classifier'] } }), /task_type = "SEQ_CLS"/],
    ['an AdapterFusion without its name', () => new Map([['adapter_fusion_config.json', Buffer.from('{"config": {}}')]]), /adapter_fusion_config\.json: name = undefined cannot be expressed/],
    [
      'an annealed AdapterFusion temperature',
      () => adapterFusionFolder(makeFusionModule({ id: 'nat/f', base: info, adapters: ['nat/a', 'nat/b'], seed: 9 }), 'bert', ['a', 'b'], { temperature: true }),
      /config\.temperature = true.*annealed temperature/,
    ],
    [
      'composable-sft abs tensors other than the token classifier',
      () => sftFolder(makeDiffModule({ id: 'nat/s', base: info, targets: [{ name: 'bert.encoder.layer.0.attention.self.query.bias', shape: [8] }], density: 0.5, seed: 10 }), new Map([['bert.encoder.layer.0.attention.self.query.bias', [8]]]), [['bert.pooler.dense.bias', f32([8])]]),
      /abs = \["bert\.pooler\.dense\.bias"\].*only a token classifier/,
    ],
    [
      'composable-sft diffs on a parameter outside the encoder',
      () => sftFolder(makeDiffModule({ id: 'nat/s', base: info, targets: [{ name: 'classifier.weight', shape: [2, 8] }], density: 0.5, seed: 11 }), new Map([['classifier.weight', [2, 8]]])),
      /diffs\['classifier\.weight'\].*not a parameter of the bert encoder/,
    ],
    ['an unknown folder', () => new Map([['pytorch_model.bin', Buffer.from('x')]]), /no known format/],
    ['adapter_config.json of neither library', () => new Map([['adapter_config.json', Buffer.from('{"r": 8}')]]), /neither 'peft_type' \(PEFT\) nor 'config' \(AdapterHub\)/],
    [
      'a pickle that would run code',
      () => {
        const p = new Pickler();
        p.global('os', 'system').str('touch /tmp/pwned').raw(0x85, 0x52);
        return new Map([...ah({})].filter(([k]) => k !== 'adapter.safetensors').concat([['pytorch_adapter.bin', torchSave({ pkl: p.done(), storages: new Map() })]]));
      },
      /pytorch_adapter\.bin: the pickle names the global 'os\.system'.*save the adapter with safetensors/,
    ],
  ])('%s', (_what, make, message) => {
    expect(() => convertForeign(make(), opts)).toThrow(message);
  });

  it('fills fields an AdapterHub config leaves out with BnConfig defaults (original_ln_before false), not a preset', () => {
    const minimal = { mh_adapter: false, output_adapter: true, reduction_factor: 4, non_linearity: 'relu' };
    const files = adapterHubFolder(bn, 'bert', { name: 'a', config: minimal });
    expect(convertForeign(files, opts).manifest.config).toMatchObject({ ...minimal, original_ln_before: false, original_ln_after: true, residual_before_ln: true, ln_before: false, scaling: 1 });
    const noRf = adapterHubFolder(bn, 'bert', { name: 'a', config: { mh_adapter: false, output_adapter: true, non_linearity: 'relu' } });
    expect(() => convertForeign(noRf, opts)).toThrow(/config\.reduction_factor is missing/);
  });

  it('folds what modhub stores differently: rsLoRA scaling into lora_alpha, AdapterHub IA³ alpha into the vectors', () => {
    const rs = convertForeign(peftFolder(lora, 'bert', { config: { ...LORA_CFG, r: 2, lora_alpha: 8, use_rslora: true } }), opts);
    // rsLoRA scales by alpha / sqrt(r); modhub by lora_alpha / r: lora_alpha = alpha * sqrt(r)
    expect((rs.manifest.config as { lora_alpha: number }).lora_alpha).toBeCloseTo(8 * Math.sqrt(2), 12);
    const ia3 = makeIa3Module({ id: 'nat/ia3', base: info, target_modules: ['key'], seed: 12 });
    const files = adapterHubFolder(ia3, 'bert', { name: 'i', config: { architecture: 'lora', attn_matrices: ['k'], composition_mode: 'scale', r: 1, alpha: 2 } });
    const got = parseSafetensors(convertForeign(files, opts).files.get('weights.safetensors')!).tensors.get('layers.0.key.ia3_l')!.data as Float32Array;
    const want = ia3.tensors.get('layers.0.key.ia3_l')!.data as Float32Array;
    expect(Array.from(got)).toEqual(Array.from(want, (x) => Math.fround(x * 2)));
  });

  it('refuses an adapter made for another model type or hidden size', () => {
    expect(() => convertForeign(setJson(ah({}), 'adapter_config.json', (v) => (v.model_type = 'gpt2')), opts)).toThrow(/model_type = "gpt2".*the base is a bert model/);
    expect(() => convertForeign(setJson(ah({}), 'adapter_config.json', (v) => (v.hidden_size = 768)), opts)).toThrow(/hidden_size = 768.*the base has hidden_size 8/);
  });

  it('imports the unrefused AdapterHub folder these variants start from (so each refusal is the variant)', () => {
    expect(detectFormat(ah({}))).toBe('adapterhub');
    expect(convertForeign(ah({}), opts).manifest.kind).toBe('bottleneck');
    expect(convertForeign(peftFolder(lora, 'bert', { config: LORA_CFG }), opts).manifest.kind).toBe('lora');
  });

  it('exports refuse modules without that form', () => {
    const diff = makeDiffModule({ id: 'nat/d', base: info, targets: [{ name: 'bert.encoder.layer.0.attention.self.query.bias', shape: [8] }], seed: 7 });
    const m = parseManifest(diff.manifest);
    expect(() => exportModule(m, diff.tensors, 'peft')).toThrow(/kind 'diff' has no PEFT form/);
    expect(() => exportModule(m, diff.tensors, 'adapterhub')).toThrow(/kind 'diff' has no AdapterHub adapter form/);
    const lo = makeLoraModule({ id: 'nat/lo', base: info, r: 2, target_modules: ['attn_output'], seed: 8 });
    expect(() => exportModule(parseManifest(lo.manifest), lo.tensors, 'adapterhub')).toThrow(/target 'attn_output' has no AdapterHub location/);
    expect(() => exportModule(parseManifest(bn.manifest), bn.tensors, 'peft')).toThrow(/kind 'bottleneck' has no PEFT form/);
    expect(() => exportModule(parseManifest(bn.manifest), bn.tensors, 'onnx')).toThrow(/export format must be one of adapterhub, peft/);
  });
});

/** The tensors of an AdapterHub folder's adapter.safetensors. */
function adapterHubFolderTensors(files: Map<string, Buffer>): Map<string, Tensor> {
  return parseSafetensors(files.get('adapter.safetensors')!).tensors;
}
