/** Manifest schema, per-kind weight validation, model cards and package read/write. */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  expectedTensors,
  generateCard,
  parseCard,
  parseManifest,
  parseRef,
  readModulePackage,
  resolveBottleneckConfig,
  StoreError,
  validatePackage,
  writeModulePackage,
  type ModuleKind,
} from '../../modules-store';
import { kindOf, TensorReader } from '../../modules-store/kinds';
import type { DiffLayout } from '../../modules-store/kinds/diff';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { makeManifestInput, makePackageFiles, makeTensors, type MakeOptions } from '../helpers/hub';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof StoreError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

describe('manifest', () => {
  it('accepts a valid manifest and fills defaults', () => {
    const m = parseManifest({ ...makeManifestInput(), head: undefined, labels: undefined, description: undefined });
    expect(m.head).toBeNull();
    expect(m.labels).toEqual([]);
    expect(m.description).toBe('');
  });
  it('refuses a newer format version with an upgrade hint', () => {
    expect(code(() => parseManifest({ ...makeManifestInput(), format_version: 2 }))).toMatch(/^UNSUPPORTED_FORMAT_VERSION: .*format_version 2.*upgrade modhub/);
  });
  it.each([
    ['id', 'Lang/de', /id: must be namespace\/name/],
    ['id', '../etc', /id:/],
    ['id', 'a/b/c', /id:/],
    ['version', '1.0', /version: must be a semver/],
    ['version', 'v1.0.0', /version:/],
    ['kind', 'adapterx', /kind/],
  ])('names the bad field %s=%s', (field, value, re) => {
    expect(code(() => parseManifest({ ...makeManifestInput(), [field]: value }))).toMatch(re);
  });
  it('names a bad base fingerprint', () => {
    expect(code(() => parseManifest({ ...makeManifestInput(), base: { family: 'bert', fingerprint: 'md5:x', hidden_size: 8, num_layers: 2, vocab_size: 3 } }))).toMatch(
      /INVALID_MANIFEST: .*base\.fingerprint/,
    );
  });
  it('parses refs', () => {
    expect(parseRef('lang/de')).toEqual({ namespace: 'lang', name: 'de', kind: 'tag', tag: 'latest' });
    expect(parseRef('lang/de@1.2.0')).toEqual({ namespace: 'lang', name: 'de', kind: 'version', version: '1.2.0' });
    expect(parseRef('lang/de@stable')).toEqual({ namespace: 'lang', name: 'de', kind: 'tag', tag: 'stable' });
    expect(() => parseRef('lang')).toThrow(/namespace\/name/);
    expect(() => parseRef('lang/de@Bad Tag')).toThrow(/neither a semver version nor a valid tag/);
  });
});

describe('weights validation per kind', () => {
  const cases: [string, MakeOptions][] = [
    ['bottleneck seq_bn', { kind: 'bottleneck' }],
    ['bottleneck houlsby + ln + leave_out', { kind: 'bottleneck', config: { preset: 'houlsby', reduction_factor: 2, ln_before: true, ln_after: true, leave_out: [1] } }],
    ['bottleneck MAD-X inv', { kind: 'bottleneck', config: { preset: 'seq_bn_inv', reduction_factor: 2 }, head: { type: 'masked_lm' }, labels: [] }],
    ['bottleneck per-layer reduction', { kind: 'bottleneck', config: { reduction_factor: { '0': 2, default: 4 } } }],
    ['lora attention + ffn', { kind: 'lora', config: { r: 2, target_modules: ['query', 'value', 'ffn_in', 'ffn_out'] } }],
    ['diff', { kind: 'diff', config: { method: 'lt-sft', nnz: 11 }, head: { type: 'token_classification', num_labels: 3 } }],
    ['fusion dynamic', { kind: 'fusion', head: null, labels: [] }],
    ['fusion static, two sites', { kind: 'fusion', config: { adapters: ['a/b', 'c/d'], dynamic: false, sites: ['attention', 'output'] }, head: null, labels: [] }],
  ];
  it.each(cases)('accepts a valid %s package', (_n, o) => {
    const pkg = validatePackage(makePackageFiles(o));
    expect(pkg.files.has('README.md')).toBe(true);
  });

  it('derives the documented tensor names and shapes', () => {
    const m = parseManifest(makeManifestInput({ kind: 'bottleneck', config: { preset: 'houlsby', reduction_factor: 4 } }));
    const exp = expectedTensors(m);
    expect(exp.get('layers.1.attention.adapter_down.weight')?.shape).toEqual([2, 8]);
    expect(exp.get('layers.0.output.adapter_up.weight')?.shape).toEqual([8, 2]);
    expect(exp.get('head.out_proj.weight')?.shape).toEqual([3, 8]);
    const lora = parseManifest(makeManifestInput({ kind: 'lora', config: { r: 2, target_modules: ['ffn_in'] }, base: { intermediate_size: 32 } as never }));
    expect(expectedTensors(lora).get('layers.0.ffn_in.lora_B')?.shape).toEqual([32, 2]);
    expect(resolveBottleneckConfig({ preset: 'par_bn' })).toMatchObject({ is_parallel: true, scaling: 4, reduction_factor: 2 });
  });

  function withTensors(o: MakeOptions, edit: (t: ReturnType<typeof makeTensors>) => void): Map<string, Buffer> {
    const files = makePackageFiles(o);
    const m = parseManifest(JSON.parse(files.get('module.json')!.toString()));
    const t = makeTensors(m);
    edit(t);
    files.set('weights.safetensors', serializeSafetensors(t));
    return files;
  }

  it('names a missing tensor', () => {
    const files = withTensors({}, (t) => t.delete('layers.1.output.adapter_up.bias'));
    expect(code(() => validatePackage(files))).toMatch(/INVALID_WEIGHTS: .*lacks 1 tensor.*'layers\.1\.output\.adapter_up\.bias'/);
  });
  it('names an unexpected tensor', () => {
    const files = withTensors({}, (t) => t.set('layers.0.attention.adapter_up.bias', { dtype: 'F32', shape: [8], data: new Float32Array(8) }));
    expect(code(() => validatePackage(files))).toMatch(/does not define: 'layers\.0\.attention\.adapter_up\.bias'/);
  });
  it('names a wrong shape', () => {
    const files = withTensors({ kind: 'lora' }, (t) => t.set('layers.0.query.lora_A', { dtype: 'F32', shape: [3, 8], data: new Float32Array(24) }));
    expect(code(() => validatePackage(files))).toMatch(/'layers\.0\.query\.lora_A' has shape \[3, 8\], expected \[2, 8\]/);
  });
  it('names a wrong dtype', () => {
    const files = withTensors({}, (t) => t.set('head.out_proj.bias', { dtype: 'I32', shape: [3], data: new Int32Array(3) }));
    expect(code(() => validatePackage(files))).toMatch(/'head\.out_proj\.bias' has dtype I32/);
  });
  it('refuses unsorted diff indices and unpaired diff tensors', () => {
    const unsorted = withTensors({ kind: 'diff' }, (t) => t.set('bert.encoder.layer.0.attention.self.query.weight.index', { dtype: 'I64', shape: [3], data: BigInt64Array.from([5n, 1n, 9n]) }));
    expect(code(() => validatePackage(unsorted))).toMatch(/sorted, unique/);
    const unpaired = withTensors({ kind: 'diff' }, (t) => t.delete('bert.encoder.layer.0.attention.self.query.weight.values'));
    expect(code(() => validatePackage(unpaired))).toMatch(/needs both/);
    const nnz = makePackageFiles({ kind: 'diff', config: { method: 'lt-sft', nnz: 4 } });
    expect(code(() => validatePackage(nnz))).toMatch(/config\.nnz is 4, but the tensors hold 11/);
  });
  it('refuses labels that disagree with the head', () => {
    expect(code(() => validatePackage(makePackageFiles({ labels: ['x', 'y'] })))).toMatch(/labels has 2 entries, but head\.num_labels is 3/);
  });
  it('refuses a broken safetensors header', () => {
    const files = makePackageFiles();
    files.set('weights.safetensors', Buffer.from('garbage!'));
    expect(code(() => validatePackage(files))).toMatch(/^INVALID_WEIGHTS: weights\.safetensors: /);
  });
  it('refuses unknown files, missing files and oversized files', () => {
    const extra = makePackageFiles();
    extra.set('evil.sh', Buffer.from('x'));
    expect(code(() => validatePackage(extra))).toMatch(/INVALID_PACKAGE: unexpected file 'evil\.sh'/);
    const missing = makePackageFiles();
    missing.delete('weights.safetensors');
    expect(code(() => validatePackage(missing))).toMatch(/no weights\.safetensors/);
    expect(code(() => validatePackage(makePackageFiles(), { maxWeightsBytes: 100, maxManifestBytes: 1e6, maxCardBytes: 1e6 }))).toMatch(/^TOO_LARGE: 'weights\.safetensors'/);
  });
  it.each<ModuleKind>(['bottleneck', 'lora', 'diff', 'fusion'])('reports a manifest error before a weights error (%s)', (kind) => {
    const files = makePackageFiles({ kind });
    files.set('module.json', Buffer.from('{not json'));
    expect(code(() => validatePackage(files))).toMatch(/^INVALID_MANIFEST: module\.json is not valid JSON/);
  });
});

describe('diff indices on load', () => {
  // a [3, 4] weight (12 entries) as the checkpoint stores it; the loaded indices stay in that layout
  const load = (index: Tensor) =>
    kindOf('diff').load(
      {},
      {
        id: 't/d@1.0.0',
        dims: { hidden: 4, layers: 1, vocab: 10, ffn: 16 },
        reader: new TensorReader('t/d@1.0.0', new Map([['w.index', index], ['w.values', { dtype: 'F32', shape: [index.data.length], data: new Float32Array(index.data.length).fill(0.5) }]])),
        family: 'bert',
        canonical: (hf) => hf,
        shapeOf: () => [3, 4],
      },
    ) as unknown as DiffLayout;
  it('reads I64 and I32 indices as they are stored, views included', () => {
    const all = new BigInt64Array([99n, 0n, 5n, 11n]);
    expect(Array.from(load({ dtype: 'I64', shape: [3], data: all.subarray(1) }).params.get('w')!.indices)).toEqual([0, 5, 11]);
    expect(Array.from(load({ dtype: 'I32', shape: [2], data: new Int32Array([3, 7]) }).params.get('w')!.indices)).toEqual([3, 7]);
  });
  it.each([
    [-1n, /holds -1, outside \[0, 12\)/],
    [12n, /holds 12, outside \[0, 12\)/],
    [2n ** 31n, /holds 2147483648, outside/],
    [2n ** 32n + 5n, /holds 4294967301, outside/],
    [-(2n ** 33n) - 7n, /holds -8589934599, outside/],
  ])('refuses the I64 index %s, naming its value exactly', (k, msg) => {
    expect(() => load({ dtype: 'I64', shape: [2], data: BigInt64Array.from([1n, k]) })).toThrow(msg);
  });
  it('refuses an I32 index out of range', () => {
    expect(() => load({ dtype: 'I32', shape: [1], data: new Int32Array([-4]) })).toThrow(/'w\.index' holds -4, outside \[0, 12\)/);
  });
});

describe('module loads read tensors as views into the file', () => {
  const file = serializeSafetensors({
    'a.weight': { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    'a.bias': { dtype: 'F32', shape: [2], data: Float32Array.from([7, 8]) },
    'a.index': { dtype: 'I64', shape: [2], data: BigInt64Array.from([1n, 4n]) },
  });
  it('views at aligned offsets, copies elsewhere and without the option', () => {
    const viewed = parseSafetensors(file, { views: true }).tensors;
    for (const t of viewed.values()) expect(t.data.buffer).toBe(file.buffer);
    expect(Array.from(viewed.get('a.weight')!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(viewed.get('a.index')!.data as BigInt64Array)).toEqual([1n, 4n]);
    for (const t of parseSafetensors(file).tensors.values()) expect(t.data.buffer).not.toBe(file.buffer);
    // one byte further on, the F32 and I64 data are no longer aligned: copies, with the same values
    const shifted = Buffer.alloc(file.length + 1).subarray(1);
    file.copy(shifted);
    const copied = parseSafetensors(shifted, { views: true }).tensors;
    for (const t of copied.values()) expect(t.data.buffer).not.toBe(shifted.buffer);
    expect(Array.from(copied.get('a.weight')!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });
  it('a module keeps no view: kept tensors are copies, Linear weights transposed straight from the view', () => {
    const reader = new TensorReader('t/v@1.0.0', parseSafetensors(file, { views: true }).tensors);
    const bias = reader.f32('a.bias', [2]);
    expect(bias.buffer).not.toBe(file.buffer);
    expect(bias.byteLength).toBe(bias.buffer.byteLength);
    expect(Array.from(bias)).toEqual([7, 8]);
    const wT = reader.linT('a.weight', 2, 3);
    expect(wT.buffer).not.toBe(file.buffer);
    expect(Array.from(wT)).toEqual([1, 4, 2, 5, 3, 6]);
    // the file's bytes are left as they were
    expect(Array.from(parseSafetensors(file).tensors.get('a.bias')!.data as Float32Array)).toEqual([7, 8]);
  });
});

describe('model cards', () => {
  it('generates a card with HF front matter that parses back', () => {
    const m = parseManifest(makeManifestInput());
    const card = parseCard(generateCard(m));
    expect(card.data).toMatchObject({ language: ['de'], license: 'apache-2.0', library_name: 'modhub', pipeline_tag: 'text-classification' });
    expect(card.body).toContain('# test/mod@1.0.0');
  });
  it('keeps a supplied card and refuses broken front matter', () => {
    expect(validatePackage(makePackageFiles({}, '---\nlicense: mit\n---\nhello')).files.get('README.md')!.toString()).toBe('---\nlicense: mit\n---\nhello');
    expect(code(() => validatePackage(makePackageFiles({}, '---\n: : [\n---\n')))).toMatch(/front matter is not valid YAML/);
    expect(code(() => validatePackage(makePackageFiles({}, '---\n- a\n---\n')))).toMatch(/must be a YAML mapping/);
  });
});

describe('writeModulePackage / readModulePackage', () => {
  it('round-trips a folder and an archive', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-pkg-'));
    try {
      const m = parseManifest(makeManifestInput({ kind: 'lora' }));
      const written = await writeModulePackage(path.join(dir, 'pkg'), makeManifestInput({ kind: 'lora' }), makeTensors(m));
      const read = await readModulePackage(path.join(dir, 'pkg'));
      expect(read.manifest).toEqual(written.manifest);
      expect(read.files.get('weights.safetensors')!.equals(written.files.get('weights.safetensors')!)).toBe(true);
      const { packArchive } = await import('../../modules-store');
      await fsp.writeFile(path.join(dir, 'pkg.tar.gz'), packArchive(written.files, true));
      const fromArchive = await readModulePackage(path.join(dir, 'pkg.tar.gz'));
      expect(fromArchive.manifest.id).toBe('test/mod');
      await expect(writeModulePackage(path.join(dir, 'bad'), { ...makeManifestInput(), version: 'x' }, new Map())).rejects.toThrow(/version/);
      await expect(fsp.stat(path.join(dir, 'bad'))).rejects.toThrow();
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
