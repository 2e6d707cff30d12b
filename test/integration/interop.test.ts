/**
 * Proof of the foreign formats (modules-store/interop) on tiny random bases of every family: folders written from
 * the published AdapterHub / PEFT / composable-sft layouts (test/helpers/foreign.ts) import into packages whose
 * engine outputs equal those of the same module built natively (1e-5), and whose tensors are the native ones;
 * export → import gives back the same weights.safetensors bytes.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { convertForeign, exportModule } from '../../modules-store/interop';
import { parseManifest, type BaseRef } from '../../modules-store/manifest';
import { resolveBottleneckConfig } from '../../modules-store/kinds/bottleneck';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { loadBase, type Base } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { Engine, type RowOutput } from '../../server/runtime/engine';
import { EMPTY_PLAN } from '../../server/model/composition';
import { adapterFusionFolder, adapterHubFolder, peftFolder, sftFolder } from '../helpers/foreign';
import { makeAdapterModule, makeDiffModule, makeFusionModule, makeIa3Module, makeLoraModule, type BaseInfo } from '../helpers/modules';
import type { RefModule } from '../reference/modules';

const TEXTS = ['the quick brown fox', 'hello world and more words here'];
type Fam = 'bert' | 'roberta' | 'xlm-roberta' | 'distilbert';

function weightsOf(files: Map<string, Buffer>): Map<string, Tensor> {
  return parseSafetensors(files.get('weights.safetensors')!).tensors;
}

function expectSameTensors(got: Map<string, Tensor>, want: Map<string, Tensor>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, t] of want) {
    expect({ k, shape: got.get(k)!.shape }).toEqual({ k, shape: t.shape });
    expect(Buffer.from(got.get(k)!.data.buffer, got.get(k)!.data.byteOffset, got.get(k)!.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true);
  }
}

function maxAbsDiff(a: ArrayLike<number> | undefined, b: ArrayLike<number> | undefined): number {
  if (!a || !b) throw new Error('missing output');
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe.each(['bert', 'roberta', 'xlm-roberta', 'distilbert'] as const)('foreign formats on %s', (family: Fam) => {
  let base: Base;
  let engine: Engine;
  let info: BaseInfo;
  let ref: BaseRef;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `modhub-interop-${family}-`));
    await createTinyBase({ out: dir, family, layers: 2, hidden: 16, heads: 2, intermediate: 24, seed: 11, maxPositions: 64 });
    base = await loadBase(dir);
    engine = await Engine.create({ base });
    const c = base.config;
    info = { family, fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
    ref = { ...info, family } as BaseRef;
  }, 120_000);
  afterAll(async () => {
    await engine?.close();
  });

  /** Imports `files` as `id`, checks tensors equal the native ones, and runs both through the engine. */
  async function importAndCompare(native: RefModule, files: Map<string, Buffer>, id: string, compose?: (ref: string) => unknown, adapters?: string[]): Promise<void> {
    const pkg = convertForeign(files, { id, version: '1.0.0', base: ref, adapters });
    expectSameTensors(weightsOf(pkg.files), native.tensors);
    expect(pkg.manifest.head).toEqual(native.manifest.head);
    engine.addModule(parseManifest(native.manifest), native.tensors);
    engine.addModule(pkg.manifest, weightsOf(pkg.files));
    const enc = await base.tokenizer.encodeBatch([...TEXTS, ...TEXTS]);
    const comp = compose ?? ((r: string) => r);
    const nat = (await engine.plan(comp(`${native.manifest.id}@1.0.0`) as never))[0];
    const imp = (await engine.plan(comp(`${id}@1.0.0`) as never))[0];
    const plans = [nat, nat, imp, imp];
    const out: RowOutput[] = await engine.forward(enc, plans, { hidden: true });
    // a row's arrays are as long as its run's longest row (the engine runs rows as length ranges): compare its own positions
    const D = base.config.hiddenSize;
    const real = (o: RowOutput, x: Float32Array) => x.subarray(0, (x.length / (o.hidden!.length / D)) * o.length);
    for (let i = 0; i < TEXTS.length; i++) {
      const a = out[i];
      const b = out[i + TEXTS.length];
      expect(maxAbsDiff(real(a, a.hidden!), real(b, b.hidden!))).toBeLessThanOrEqual(1e-5);
      if (native.manifest.head?.type === 'classification') expect(maxAbsDiff(a.clsLogits!, b.clsLogits!)).toBeLessThanOrEqual(1e-5);
      if (native.manifest.head?.type === 'token_classification') expect(maxAbsDiff(real(a, a.tokLogits!), real(b, b.tokLogits!))).toBeLessThanOrEqual(1e-5);
    }
    // the module changes the output, so the equality above is not the bare base twice
    const bare = await engine.forward(enc, plans.map(() => EMPTY_PLAN), { hidden: true });
    expect(maxAbsDiff(real(bare[0], bare[0].hidden!), real(out[0], out[0].hidden!))).toBeGreaterThan(1e-4);
  }

  it('AdapterHub bottleneck (seq_bn_inv + ln_before/ln_after + leave_out, classification head, safetensors, prefixed keys)', async () => {
    const native = makeAdapterModule({ id: 'nat/ah-bn', base: info, preset: 'seq_bn_inv', config: { ln_before: true, ln_after: true, reduction_factor: 4, leave_out: [1] }, head: { type: 'classification', num_labels: 3 }, seed: 1 });
    const rc = resolveBottleneckConfig(native.manifest.config as never);
    const files = adapterHubFolder(native, family, { name: 'sst2', config: { architecture: 'bottleneck', ...rc, init_weights: 'bert', use_gating: false, phm_layer: false, dropout: 0.0, cross_adapter: false } });
    await importAndCompare(native, files, 'imp/ah-bn');
  });

  it('AdapterHub double_seq_bn (houlsby) from pytorch_adapter.bin with unprefixed keys and a tagging head from pytorch_model_head.bin', async () => {
    const native = makeAdapterModule({ id: 'nat/ah-houlsby', base: info, preset: 'double_seq_bn', config: { reduction_factor: 2 }, head: { type: 'token_classification', num_labels: 4 }, seed: 2 });
    const rc = resolveBottleneckConfig(native.manifest.config as never);
    const files = adapterHubFolder(native, family, { name: 'ner', bin: true, prefixed: false, config: { architecture: 'bottleneck', ...rc, use_gating: false } });
    await importAndCompare(native, files, 'imp/ah-houlsby');
  });

  it('AdapterHub LoRA (q, v, intermediate, output) and IA³ (k, v, intermediate)', async () => {
    const lora = makeLoraModule({ id: 'nat/ah-lora', base: info, r: 4, lora_alpha: 8, target_modules: ['query', 'value', 'ffn_in', 'ffn_out'], seed: 3 });
    await importAndCompare(lora, adapterHubFolder(lora, family, { name: 'lora', config: { architecture: 'lora', selfattn_lora: true, intermediate_lora: true, output_lora: true, attn_matrices: ['q', 'v'], r: 4, alpha: 8, composition_mode: 'add', init_weights: 'lora', use_gating: false, dropout: 0.0 } }), 'imp/ah-lora');
    const ia3 = makeIa3Module({ id: 'nat/ah-ia3', base: info, target_modules: ['key', 'value', 'ffn_in'], seed: 4 });
    await importAndCompare(ia3, adapterHubFolder(ia3, family, { name: 'ia3', config: { architecture: 'lora', selfattn_lora: true, intermediate_lora: true, output_lora: false, attn_matrices: ['k', 'v'], r: 1, alpha: 1, composition_mode: 'scale', init_weights: 'ia3', use_gating: false, dropout: 0.0 } }), 'imp/ah-ia3');
  });

  it('PEFT LoRA with a head through modules_to_save, and PEFT IA³ from adapter_model.bin', async () => {
    const head = family === 'distilbert' ? { type: 'token_classification' as const, num_labels: 3 } : { type: 'classification' as const, num_labels: 2 };
    const lora = makeLoraModule({ id: 'nat/peft-lora', base: info, r: 2, lora_alpha: 16, target_modules: ['query', 'value', 'attn_output', 'ffn_out'], leave_out: [0], head, seed: 5 });
    const cfg = { peft_type: 'LORA', task_type: head.type === 'classification' ? 'SEQ_CLS' : 'TOKEN_CLS', r: 2, lora_alpha: 16, lora_dropout: 0.1, target_modules: ['query', 'value', 'dense'], bias: 'none', modules_to_save: ['classifier'], base_model_name_or_path: `${family}-tiny`, inference_mode: true, use_rslora: false, use_dora: false };
    const pkgNative = { ...lora, manifest: { ...lora.manifest, labels: lora.manifest.labels.map((_, i) => `LABEL_${i}`) } };
    await importAndCompare(pkgNative, peftFolder(pkgNative, family, { config: cfg }), 'imp/peft-lora');
    const ia3 = makeIa3Module({ id: 'nat/peft-ia3', base: info, target_modules: ['key', 'value', 'ffn_out'], seed: 6 });
    await importAndCompare(ia3, peftFolder(ia3, family, { bin: true, config: { peft_type: 'IA3', target_modules: ['key', 'value', 'output.dense'], feedforward_modules: ['output.dense'], task_type: 'FEATURE_EXTRACTION' } }), 'imp/peft-ia3');
  });

  it('composable-sft diffs (column-major, delta-encoded) with the token classifier from abs', async () => {
    const names = family === 'distilbert' ? ['distilbert.transformer.layer.0.attention.q_lin.weight', 'distilbert.transformer.layer.1.ffn.lin1.weight', 'distilbert.embeddings.word_embeddings.weight'] : [`${family === 'bert' ? 'bert' : 'roberta'}.encoder.layer.0.attention.self.query.weight`, `${family === 'bert' ? 'bert' : 'roberta'}.encoder.layer.1.intermediate.dense.weight`, `${family === 'bert' ? 'bert' : 'roberta'}.embeddings.word_embeddings.weight`];
    const shapes = new Map([
      [names[0], [16, 16]],
      [names[1], [24, 16]],
      [names[2], [info.vocab_size, 16]],
    ]);
    const diff = makeDiffModule({ id: 'nat/sft', base: info, targets: names.map((n) => ({ name: n, shape: shapes.get(n)! })), density: 0.2, method: 'lt-sft', head: { type: 'token_classification', num_labels: 3 }, seed: 7 });
    const nnz = [...diff.tensors].filter(([k]) => k.endsWith('.index')).reduce((a, [, t]) => a + t.data.length, 0);
    const native = { ...diff, manifest: { ...diff.manifest, config: { method: 'lt-sft', nnz }, labels: ['LABEL_0', 'LABEL_1', 'LABEL_2'], task: 'token-classification' } };
    const files = sftFolder(native, shapes, [
      ['classifier.weight', native.tensors.get('head.out_proj.weight')!],
      ['classifier.bias', native.tensors.get('head.out_proj.bias')!],
    ]);
    await importAndCompare(native, files, 'imp/sft');
  });

  it('AdapterHub AdapterFusion (dynamic, attention and output sites) over two bottleneck adapters', async () => {
    const a = makeAdapterModule({ id: 'nat/fa', base: info, preset: 'double_seq_bn', config: { reduction_factor: 4 }, seed: 21 });
    const b = makeAdapterModule({ id: 'nat/fb', base: info, preset: 'double_seq_bn', config: { reduction_factor: 4 }, head: { type: 'classification', num_labels: 2 }, seed: 22 });
    engine.addModule(parseManifest(a.manifest), a.tensors);
    engine.addModule(parseManifest(b.manifest), b.tensors);
    const fusion = makeFusionModule({ id: 'nat/fusion', base: info, adapters: ['nat/fa', 'nat/fb'], sites: ['attention', 'output'], seed: 23 });
    const native = { ...fusion, manifest: { ...fusion.manifest, task: 'fusion', config: { ...fusion.manifest.config, leave_out: [] } } };
    const files = adapterFusionFolder(native, family, ['fa', 'fb']);
    await importAndCompare(native, files, 'imp/fusion', (f) => ({ fuse: ['nat/fa@1.0.0', 'nat/fb@1.0.0'], fusion: f }), ['nat/fa', 'nat/fb']);
    // without explicit ids the fused adapters are <namespace>/<name>
    expect(convertForeign(files, { id: 'nat/fusion2', version: '1.0.0', base: ref }).manifest.config).toMatchObject({ adapters: ['nat/fa', 'nat/fb'], dynamic: true, sites: ['attention', 'output'] });
  });

  it('export → import gives back the same weights.safetensors bytes (AdapterHub and PEFT)', () => {
    const cases: [RefModule, string][] = [
      [makeAdapterModule({ id: 'rt/bn', base: info, preset: 'seq_bn_inv', config: { ln_before: true, reduction_factor: 4 }, head: { type: 'classification', num_labels: 3 }, seed: 8 }), 'adapterhub'],
      [makeAdapterModule({ id: 'rt/par', base: info, preset: 'par_bn', head: { type: 'token_classification', num_labels: 2 }, seed: 9 }), 'adapterhub'],
      [makeLoraModule({ id: 'rt/lora', base: info, r: 4, target_modules: ['query', 'key', 'ffn_in'], leave_out: [1], seed: 10 }), 'adapterhub'],
      [makeIa3Module({ id: 'rt/ia3', base: info, seed: 11 }), 'adapterhub'],
      [makeLoraModule({ id: 'rt/lora', base: info, r: 4, target_modules: ['query', 'attn_output', 'ffn_out'], head: family === 'distilbert' ? { type: 'token_classification', num_labels: 2 } : { type: 'classification', num_labels: 2 }, seed: 12 }), 'peft'],
      [makeIa3Module({ id: 'rt/ia3', base: info, target_modules: ['key', 'attn_output', 'ffn_in', 'ffn_out'], leave_out: [0], seed: 13 }), 'peft'],
      [makeFusionModule({ id: 'rt/fusion', base: info, adapters: ['rt/a', 'rt/b', 'rt/c'], seed: 14 }), 'adapterhub'],
      [makeFusionModule({ id: 'rt/fusion', base: info, adapters: ['rt/a', 'rt/b'], dynamic: false, sites: ['attention'], seed: 15 }), 'adapterhub'],
    ];
    for (const [native, format] of cases) {
      const m = parseManifest(native.manifest);
      const bytes = serializeSafetensors(native.tensors, { format: 'pt', 'modhub.kind': m.kind });
      const exported = exportModule(m, parseSafetensors(bytes).tensors, format);
      const back = convertForeign(exported, { id: m.id, version: m.version, base: ref });
      expect({ format, id: m.id, same: back.files.get('weights.safetensors')!.equals(bytes) }).toEqual({ format, id: m.id, same: true });
      expect(back.manifest.kind).toBe(m.kind);
      expect(back.manifest.head).toEqual(m.head);
      if (m.kind === 'bottleneck') expect(resolveBottleneckConfig(back.manifest.config)).toEqual(resolveBottleneckConfig(m.config));
      else expect({ ...back.manifest.config, leave_out: back.manifest.config.leave_out ?? [] }).toMatchObject({ ...m.config, leave_out: (m.config as { leave_out?: number[] }).leave_out ?? [] });
    }
  });
});
