/**
 * Stricter upload validation (issue 13, item 4): safetensors headers other readers refuse (overlaps, gaps,
 * trailing bytes, duplicate names, non-string metadata, ...), non-finite values in every module kind, diff modules
 * checked against the base's parameters (names, dense shapes, index ranges), and a manifest whose base family
 * disagrees with the registered base.
 */
import { openMemoryRegistry, StoreError, validatePackage, type ModuleKind, type Registry } from '../../modules-store';
import { parseSafetensorsHeader, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { parseConfig } from '../../server/model/config';
import { hfParameterShapes } from '../../server/model/weights';
import { parseComposition } from '../../server/model/composition';
import { makeManifestInput, makePackageFiles, makeTensors, registerTestBase, TEST_BASE } from '../helpers/hub';
import { parseManifest } from '../../modules-store';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof StoreError) return `${e.code}: ${e.message}`;
    if (e instanceof Error) return `${e.name}: ${e.message}`;
  }
  return 'no error';
}

/** A safetensors file from a literal header object and a data section (bypasses the writer's own checks). */
function rawFile(header: unknown, data: Buffer, headerText?: string): Buffer {
  const json = Buffer.from(headerText ?? JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

const f32 = (n: number, b: number): Record<string, unknown> => ({ dtype: 'F32', shape: [n], data_offsets: [b, b + 4 * n] });

describe('safetensors headers other readers refuse', () => {
  it('accepts what the writer produces', () => {
    const h = parseSafetensorsHeader(serializeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array(2) }, b: { dtype: 'I64', shape: [1], data: new BigInt64Array(1) } }));
    expect([...h.entries.keys()].sort()).toEqual(['a', 'b']);
  });
  it('refuses 12 tensors sharing the same bytes', () => {
    const header: Record<string, unknown> = {};
    for (let i = 0; i < 12; i++) header[`t${i}`] = f32(4, 0);
    expect(code(() => parseSafetensorsHeader(rawFile(header, Buffer.alloc(16))))).toMatch(/overlaps tensor/);
  });
  it('refuses partial overlaps, gaps and trailing bytes', () => {
    expect(code(() => parseSafetensorsHeader(rawFile({ a: f32(2, 0), b: f32(2, 4) }, Buffer.alloc(12))))).toMatch(/'b' \(bytes 4-12\) overlaps tensor 'a'/);
    expect(code(() => parseSafetensorsHeader(rawFile({ a: f32(1, 0), b: f32(1, 8) }, Buffer.alloc(12))))).toMatch(/bytes 4-8 of the data section belong to no tensor/);
    expect(code(() => parseSafetensorsHeader(rawFile({ a: f32(1, 0) }, Buffer.alloc(8))))).toMatch(/cover 4 bytes, but the data section holds 8/);
  });
  it('refuses duplicate names, non-string metadata, a header not starting with {, invalid UTF-8 and overflowing shapes', () => {
    const dup = `{"a":${JSON.stringify(f32(1, 0))},"a":${JSON.stringify(f32(1, 4))}}`;
    expect(code(() => parseSafetensorsHeader(rawFile(null, Buffer.alloc(8), dup)))).toMatch(/names 'a' twice/);
    expect(code(() => parseSafetensorsHeader(rawFile({ __metadata__: { n: 1 }, a: f32(1, 0) }, Buffer.alloc(4))))).toMatch(/__metadata__' must be an object of string values/);
    expect(code(() => parseSafetensorsHeader(rawFile(null, Buffer.alloc(4), ` {"a":${JSON.stringify(f32(1, 0))}}`)))).toMatch(/must start with '\{'/);
    const bad = rawFile({ a: f32(1, 0) }, Buffer.alloc(4));
    bad[9] = 0xff; // inside the first key's quotes
    expect(code(() => parseSafetensorsHeader(bad))).toMatch(/not valid UTF-8|not valid JSON/);
    expect(code(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F32', shape: [2 ** 30, 2 ** 30], data_offsets: [0, 4] } }, Buffer.alloc(4))))).toMatch(/overflows|needs/);
    expect(code(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1))))).toMatch(/unknown dtype/);
  });
  it('answers INVALID_WEIGHTS for an overlapping weights file in a package', () => {
    const files = makePackageFiles();
    const w = files.get('weights.safetensors')!;
    const h = parseSafetensorsHeader(w);
    const header: Record<string, unknown> = {};
    for (const [n, e] of h.entries) header[n] = { ...e, data_offsets: [0, e.data_offsets[1] - e.data_offsets[0]] };
    files.set('weights.safetensors', rawFile(header, w.subarray(h.dataStart)));
    expect(code(() => validatePackage(files))).toMatch(/^INVALID_WEIGHTS: weights\.safetensors: .*(overlaps|belong to no tensor)/);
  });
});

describe('non-finite values are refused in every kind', () => {
  const kinds: ModuleKind[] = ['bottleneck', 'lora', 'diff', 'fusion', 'ia3'];
  it.each(kinds)('%s: NaN and Infinity', (kind) => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const m = parseManifest(makeManifestInput({ kind }));
      const t = makeTensors(m);
      const [name, first] = [...t].find(([, x]) => x.dtype === 'F32')!;
      const data = Float32Array.from(first.data as Float32Array);
      data[data.length - 1] = bad;
      t.set(name, { ...first, data });
      const files = new Map([['module.json', Buffer.from(JSON.stringify(makeManifestInput({ kind })))], ['weights.safetensors', serializeSafetensors(t)]]);
      expect(code(() => validatePackage(files))).toMatch(new RegExp(`^INVALID_WEIGHTS: tensor '${name.replace(/\./g, '\\.')}' holds a non-finite value .* at element ${data.length - 1}`));
    }
  });
});

describe('diff modules against the base parameters', () => {
  const cfg = parseConfig({
    model_type: 'bert',
    hidden_size: TEST_BASE.hidden_size,
    num_hidden_layers: TEST_BASE.num_layers,
    num_attention_heads: 2,
    intermediate_size: 32,
    vocab_size: TEST_BASE.vocab_size,
    max_position_embeddings: 16,
    type_vocab_size: 2,
  });
  const baseParams = (fp: string) => (fp === TEST_BASE.fingerprint ? hfParameterShapes(cfg) : null);
  const diffFiles = (edit: (t: Map<string, Tensor>) => void): Map<string, Buffer> => {
    const input = makeManifestInput({ kind: 'diff' });
    const t = makeTensors(parseManifest(input));
    edit(t);
    return new Map([['module.json', Buffer.from(JSON.stringify(input))], ['weights.safetensors', serializeSafetensors(t)]]);
  };
  const Q = 'bert.encoder.layer.0.attention.self.query';

  it('accepts the valid fixture', () => {
    expect(validatePackage(diffFiles(() => undefined), undefined, { baseParams }).manifest.kind).toBe('diff');
  });
  it('refuses an index beyond the parameter', () => {
    const files = diffFiles((t) => t.set(`${Q}.weight.index`, { dtype: 'I64', shape: [3], data: BigInt64Array.from([1n, 5n, 64n]) }));
    expect(code(() => validatePackage(files, undefined, { baseParams }))).toMatch(/'bert\.encoder\.layer\.0\.attention\.self\.query\.weight\.index' holds index 64 at position 2, but base parameter .* has only 64 elements/);
  });
  it('refuses a parameter the base does not have (unknown name, or a layer beyond the base)', () => {
    const values = { dtype: 'F32' as const, shape: [1], data: Float32Array.from([1]) };
    for (const p of ['bert.encoder.layer.0.attention.self.nonsense.weight', 'bert.encoder.layer.7.output.dense.bias']) {
      const files = diffFiles((t) => {
        t.set(`${p}.index`, { dtype: 'I64', shape: [1], data: BigInt64Array.from([0n]) });
        t.set(`${p}.values`, values);
      });
      expect(code(() => validatePackage(files, undefined, { baseParams }))).toMatch(new RegExp(`diff names parameter '${p.replace(/\./g, '\\.')}', which the base does not have`));
    }
  });
  it('refuses a dense diff of the wrong shape', () => {
    const files = diffFiles((t) => t.set(`${Q}.bias.dense`, { dtype: 'F32', shape: [9], data: new Float32Array(9) }));
    expect(code(() => validatePackage(files, undefined, { baseParams }))).toMatch(/'.*query\.bias\.dense' has shape \[9\], but base parameter '.*query\.bias' has shape \[8\]/);
  });
  it('the registry applies the check through its baseParams option', async () => {
    const reg: Registry = await openMemoryRegistry({ baseParams });
    try {
      await registerTestBase(reg);
      const files = diffFiles((t) => t.set(`${Q}.bias.dense`, { dtype: 'F32', shape: [9], data: new Float32Array(9) }));
      await expect(reg.publish({ files })).rejects.toMatchObject({ code: 'INVALID_WEIGHTS' });
      await expect(reg.publish({ files: diffFiles(() => undefined) })).resolves.toMatchObject({ id: 'test/mod' });
    } finally {
      await reg.close();
    }
  });
});

describe('base family and average weights', () => {
  it('refuses a manifest whose family disagrees with the registered fingerprint', async () => {
    const reg = await openMemoryRegistry();
    try {
      await registerTestBase(reg);
      await expect(reg.publish({ files: makePackageFiles({ base: { family: 'x' } }) })).rejects.toMatchObject({ code: 'BASE_MISMATCH', message: expect.stringMatching(/family 'x' vs 'bert'/) });
    } finally {
      await reg.close();
    }
  });
  it('average weights must be sane finite numbers, also after normalising', () => {
    const msg = (c: unknown): string => code(() => parseComposition(c));
    expect(msg({ average: ['a/b', 'a/c'], weights: [1e308, 1] })).toMatch(/numbers between -1000 and 1000/);
    expect(msg({ average: ['a/b', 'a/c'], weights: [0.5, 0.5] })).toBe('no error');
  });
});
