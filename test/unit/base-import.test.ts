/**
 * `importBase` / `modhub base import`: HF checkpoint folders (sharded, half precision, with other task heads)
 * become clean F32 (or, asked, F16) base folders whose fingerprint is that of the widened original; bad folders fail naming the
 * missing file or tensor; pickle checkpoints are refused.
 */
import { runCommand } from '../helpers/cli';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { registerBaseCommands } from '../../server/cli/base';
import { fingerprintWeights, importBase, loadBase, FINGERPRINT_FILE } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { hfToCanonical, type F32Tensor } from '../../server/model/weights';
import { parseSafetensors, parseSafetensorsHeader, serializeSafetensors } from '../../modules-store/safetensors';

type Half = 'F16' | 'BF16';

/** f32 → IEEE half bits, round to nearest even (independent of the reader's decoder). */
function toF16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** half bits → f32 value, by the formula (not through the library). */
function fromF16Bits(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 → bfloat16 bits, round to nearest even. */
function toBf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
const fromBf16Bits = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];

interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/** Writes a safetensors file with any dtypes (the library writer does F32/I32/I64 only). */
function writeSafetensors(file: string, tensors: Map<string, RawTensor>): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...[...tensors.values()].map((t) => t.bytes)]));
}

/** Half-precision copy of an F32 tensor, plus the F32 values the half bits stand for. */
function halve(t: F32Tensor, dtype: Half): { raw: RawTensor; widened: Float32Array } {
  const bits = new Uint16Array(t.data.length);
  const widened = new Float32Array(t.data.length);
  for (let i = 0; i < bits.length; i++) {
    bits[i] = dtype === 'F16' ? toF16Bits(t.data[i]) : toBf16Bits(t.data[i]);
    widened[i] = dtype === 'F16' ? fromF16Bits(bits[i]) : fromBf16Bits(bits[i]);
  }
  return { raw: { dtype, shape: [...t.shape], bytes: Buffer.from(bits.buffer) }, widened };
}

let root: string;
let tiny: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-import-'));
  tiny = path.join(root, 'tiny');
  await createTinyBase({ out: tiny, family: 'bert', layers: 2, hidden: 16, heads: 2, seed: 5, pooler: true });
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/**
 * A HF-style checkpoint folder from the tiny base: the tiny base's tensors in `dtype` (plus a sequence
 * classifier head, a position_ids buffer and a stored copy of the tied decoder), spread over `shards` files with
 * an index (shards = 0: one model.safetensors). Returns the folder and the fingerprint of the widened original.
 */
async function checkpoint(name: string, dtype: Half, shards: number): Promise<{ dir: string; expected: string }> {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tiny, f), path.join(dir, f));
  const config = JSON.parse(fs.readFileSync(path.join(tiny, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, torch_dtype: dtype === 'F16' ? 'float16' : 'bfloat16', architectures: ['BertForPreTraining'] }));
  const st = parseSafetensors(fs.readFileSync(path.join(tiny, 'model.safetensors'))).tensors;
  const all = new Map<string, RawTensor>();
  const expected = new Map<string, F32Tensor>();
  for (const [hf, t] of st) {
    const { raw, widened } = halve(t as F32Tensor, dtype);
    all.set(hf, raw);
    expected.set(hfToCanonical('bert', hf)!, { dtype: 'F32', shape: [...t.shape], data: widened });
  }
  const D = config.hidden_size as number;
  const word = st.get('bert.embeddings.word_embeddings.weight')!;
  all.set('cls.predictions.decoder.weight', halve(word as F32Tensor, dtype).raw); // tied copy, as HF saves it
  all.set('cls.seq_relationship.weight', halve({ dtype: 'F32', shape: [2, D], data: new Float32Array(2 * D).fill(0.5) }, dtype).raw);
  all.set('cls.seq_relationship.bias', halve({ dtype: 'F32', shape: [2], data: new Float32Array(2) }, dtype).raw);
  all.set('classifier.weight', halve({ dtype: 'F32', shape: [3, D], data: new Float32Array(3 * D).fill(0.25) }, dtype).raw);
  all.set('bert.embeddings.position_ids', { dtype: 'I64', shape: [1, 4], bytes: Buffer.from(new BigInt64Array([0n, 1n, 2n, 3n]).buffer) });
  if (shards === 0) {
    writeSafetensors(path.join(dir, 'model.safetensors'), all);
  } else {
    const names = [...all.keys()];
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = new Map(names.filter((_, i) => i % shards === s).map((n) => [n, all.get(n)!]));
      writeSafetensors(path.join(dir, file), part);
      for (const n of part.keys()) weightMap[n] = file;
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  }
  return { dir, expected: fingerprintWeights(expected) };
}

async function cli(args: string[]): Promise<string> {
  return runCommand(registerBaseCommands, args);
}

describe('importBase', () => {
  it('merges a sharded F16 checkpoint into one F32 model.safetensors whose fingerprint is the widened original', async () => {
    const { dir, expected } = await checkpoint('sharded-f16', 'F16', 3);
    const out = path.join(root, 'out-sharded');
    const r = await importBase(dir, out);
    expect(r.fingerprint).toBe(expected);
    expect(r.sources).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    expect(r.dtypes.F16).toBeGreaterThan(0);
    expect(r.dropped.sort()).toEqual(['bert.embeddings.position_ids', 'classifier.weight', 'cls.predictions.decoder.weight', 'cls.seq_relationship.bias', 'cls.seq_relationship.weight']);
    expect(r.notes.join('\n')).toMatch(/merged 3 shards/);
    expect(r.notes.join('\n')).toMatch(/converted \d+ F16 tensor\(s\) to F32/);
    expect(r.notes.join('\n')).toMatch(/task heads of other architectures\): .*classifier\.weight/);

    expect(fs.readdirSync(out).sort()).toEqual([FINGERPRINT_FILE, 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].sort());
    const header = parseSafetensorsHeader(fs.readFileSync(path.join(out, 'model.safetensors')));
    expect(new Set([...header.entries.values()].map((e) => e.dtype))).toEqual(new Set(['F32']));
    expect(header.entries.has('classifier.weight')).toBe(false);
    expect(header.entries.has('bert.pooler.dense.weight')).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float32');
    const cache = JSON.parse(fs.readFileSync(path.join(out, FINGERPRINT_FILE), 'utf8'));
    expect(cache.fingerprint).toBe(expected);

    // The imported folder loads as a base, and without the cache the fingerprint is recomputed to the same value.
    fs.rmSync(path.join(out, FINGERPRINT_FILE));
    const b = await loadBase(out);
    expect(b.fingerprint).toBe(expected);
    expect(b.weights.has('mlm.dense.weight')).toBe(true);
    expect(b.ignored).toEqual([]);
  });

  it('converts a single-file BF16 checkpoint', async () => {
    const { dir, expected } = await checkpoint('single-bf16', 'BF16', 0);
    const r = await importBase(dir, path.join(root, 'out-bf16'));
    expect(r.fingerprint).toBe(expected);
    expect(r.sources).toEqual(['model.safetensors']);
    expect(r.notes.join('\n')).toMatch(/BF16 tensor\(s\) to F32/);
    expect(r.parameters).toBe([...(await loadBase(path.join(root, 'out-bf16'))).weights.values()].reduce((a, t) => a + t.data.length, 0));
  });

  it('imports an F32 checkpoint to the same fingerprint as the original base', async () => {
    const r = await importBase(tiny, path.join(root, 'out-f32'));
    expect(r.fingerprint).toBe((await loadBase(tiny)).fingerprint);
    expect(r.dropped).toEqual([]);
  });

  it('writes an F16 base (dtype F16): half the bytes, every weight the nearest F16 value, the fingerprint of the rounded weights', async () => {
    const out = path.join(root, 'out-f16');
    const r = await importBase(tiny, out, { dtype: 'F16' });
    const original = await loadBase(tiny);
    const written = parseSafetensorsHeader(fs.readFileSync(path.join(out, 'model.safetensors')));
    expect(new Set([...written.entries.values()].map((e) => e.dtype))).toEqual(new Set(['F16']));
    expect(fs.statSync(path.join(out, 'model.safetensors')).size).toBeLessThan(0.55 * fs.statSync(path.join(tiny, 'model.safetensors')).size);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float16');
    const rounded = new Map<string, F32Tensor>();
    for (const [name, t] of original.weights) rounded.set(name, { ...t, data: Float32Array.from(t.data, (x) => fromF16Bits(toF16Bits(x))) });
    expect(r.fingerprint).toBe(fingerprintWeights(rounded));
    expect(r.fingerprint).not.toBe(original.fingerprint);
    const back = await loadBase(out);
    for (const [name, t] of rounded) expect(back.weights.get(name)!.data).toEqual(t.data);
    // rounding is idempotent: an F16 base imported again as F16 keeps its fingerprint (modules trained on it still fit)
    expect((await importBase(out, path.join(root, 'out-f16-again'), { dtype: 'F16' })).fingerprint).toBe(r.fingerprint);
    expect((await importBase(out, path.join(root, 'out-f16-wide'))).fingerprint).toBe(r.fingerprint);
  });

  it('refuses F16 for weights beyond the F16 range, naming the tensor', async () => {
    const dir = path.join(root, 'huge');
    fs.cpSync(tiny, dir, { recursive: true });
    const st = parseSafetensors(fs.readFileSync(path.join(tiny, 'model.safetensors'))).tensors;
    const w = st.get('bert.embeddings.word_embeddings.weight')!;
    (w.data as Float32Array)[3] = 1e6;
    fs.writeFileSync(path.join(dir, 'model.safetensors'), serializeSafetensors(st));
    fs.rmSync(path.join(dir, FINGERPRINT_FILE), { force: true });
    await expect(importBase(dir, path.join(root, 'out-huge'), { dtype: 'F16' })).rejects.toThrow(/'bert\.embeddings\.word_embeddings\.weight' holds 1000000 at element 3, beyond the F16 range/);
  });

  it('names the missing file, shard or tensor', async () => {
    const { dir } = await checkpoint('broken', 'F16', 2);
    const out = path.join(root, 'out-broken');
    const copy = (name: string) => {
      const d = path.join(root, name);
      fs.cpSync(dir, d, { recursive: true });
      return d;
    };

    const noTok = copy('no-tokenizer');
    fs.rmSync(path.join(noTok, 'tokenizer.json'));
    await expect(importBase(noTok, out)).rejects.toThrow(/missing tokenizer\.json/);

    const noConfig = copy('no-config');
    fs.rmSync(path.join(noConfig, 'config.json'));
    await expect(importBase(noConfig, out)).rejects.toThrow(/missing config\.json/);

    const noShard = copy('no-shard');
    fs.rmSync(path.join(noShard, 'model-00002-of-00002.safetensors'));
    await expect(importBase(noShard, out)).rejects.toThrow(/missing shard file\(s\) model-00002-of-00002\.safetensors/);

    const noIndex = copy('no-index');
    fs.rmSync(path.join(noIndex, 'model.safetensors.index.json'));
    await expect(importBase(noIndex, out)).rejects.toThrow(/no model\.safetensors\.index\.json/);

    // The index names a tensor its shard does not hold.
    const badIndex = copy('bad-index');
    const idxFile = path.join(badIndex, 'model.safetensors.index.json');
    const idx = JSON.parse(fs.readFileSync(idxFile, 'utf8'));
    idx.weight_map['bert.encoder.layer.9.output.dense.weight'] = 'model-00001-of-00002.safetensors';
    fs.writeFileSync(idxFile, JSON.stringify(idx));
    await expect(importBase(badIndex, out)).rejects.toThrow(/'bert\.encoder\.layer\.9\.output\.dense\.weight' \(model-00001-of-00002\.safetensors\)/);

    // An encoder tensor missing from the checkpoint (dropped from its shard and the index).
    const noTensor = copy('no-tensor');
    const idx2File = path.join(noTensor, 'model.safetensors.index.json');
    const idx2 = JSON.parse(fs.readFileSync(idx2File, 'utf8'));
    const victim = 'bert.encoder.layer.1.attention.self.key.weight';
    const shard = idx2.weight_map[victim];
    delete idx2.weight_map[victim];
    fs.writeFileSync(idx2File, JSON.stringify(idx2));
    const r = parseSafetensors(fs.readFileSync(path.join(noTensor, shard)));
    expect(r.tensors.has(victim)).toBe(true);
    // Still in the shard, but not in the index: ignored with a note, hence missing.
    await expect(importBase(noTensor, out)).rejects.toThrow(new RegExp(`missing 1 tensor\\(s\\) of the bert encoder: '${victim.replace(/\./g, '\\.')}'`));

    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses pickle checkpoints, saying to convert to safetensors', async () => {
    const dir = path.join(root, 'pickle');
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'tokenizer.json']) fs.copyFileSync(path.join(tiny, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), Buffer.from('PK\x03\x04 not really a zip'));
    await expect(importBase(dir, path.join(root, 'out-pickle'))).rejects.toThrow(/pytorch_model\.bin.*convert it to safetensors first/);
    fs.rmSync(path.join(dir, 'pytorch_model.bin'));
    await expect(importBase(dir, path.join(root, 'out-pickle'))).rejects.toThrow(/has no weights: expected model\.safetensors, or model\.safetensors\.index\.json/);
  });

  it('refuses a non-empty output folder unless forced', async () => {
    const out = path.join(root, 'out-busy');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    await expect(importBase(tiny, out)).rejects.toThrow(/is not empty/);
    await expect(importBase(tiny, tiny)).rejects.toThrow(/must differ from 'src'/);
    const r = await importBase(tiny, out, { force: true });
    expect(r.fingerprint).toBe((await loadBase(tiny)).fingerprint);
    expect(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8')).toBe('mine');
  });
});

describe('modhub base import', () => {
  it('prints family, dims, parameters and fingerprint', async () => {
    const { dir, expected } = await checkpoint('cli-f16', 'F16', 2);
    const out = path.join(root, 'out-cli');
    const text = await cli(['base', 'import', dir, '--out', out]);
    expect(text).toMatch(/^imported bert base into /);
    expect(text).toMatch(/family +bert/);
    expect(text).toMatch(/dims +L=2 D=16 H=2 F=64/);
    expect(text).toMatch(new RegExp(`fingerprint +${expected}`));
    expect(text).toMatch(/note: merged 2 shards/);
    const json = JSON.parse(await cli(['base', 'import', dir, '--out', out, '--force', '--json']));
    expect(json).toMatchObject({ family: 'bert', layers: 2, hidden_size: 16, fingerprint: expected });
    const info = JSON.parse(await cli(['base', 'info', out, '--json']));
    expect(info.fingerprint).toBe(expected);
    await expect(cli(['base', 'import', dir, '--out', out])).rejects.toThrow(/is not empty/);
    const half = JSON.parse(await cli(['base', 'import', dir, '--out', path.join(root, 'out-cli-f16'), '--dtype', 'f16', '--json']));
    expect(half.notes).toContain('rounded every weight to F16');
    await expect(cli(['base', 'import', dir, '--out', path.join(root, 'out-cli-f8'), '--dtype', 'f8'])).rejects.toThrow(/--dtype.*f8.*f32, f16|f8/);
  });
});
