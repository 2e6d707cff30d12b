/** Tiny base creation and reload for every family, fingerprint caching and change detection, F16/BF16 checkpoints. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer } from 'tokenizers';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { FINGERPRINT_FILE, fingerprintWeights, loadBase, parameterCount } from '../../server/model/base';
import type { Family } from '../../server/model/config';
import { mulberry32, Rng } from '../../server/model/random';
import { createTinyBase } from '../../server/model/tiny';
import { canonicalToHf } from '../../server/model/weights';

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-tiny-test-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const dir = (name: string): string => path.join(root, name);

describe('random', () => {
  test('mulberry32 and Rng are reproducible and roughly standard normal', () => {
    const a = mulberry32(7);
    const b = mulberry32(7);
    for (let i = 0; i < 5; i++) expect(a()).toBe(b());
    const x = new Rng(3).fillNormal(new Float64Array(20000), 1);
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    expect(new Rng(3).normal()).toBe(new Rng(3).normal());
    expect(new Rng(3).normal()).not.toBe(new Rng(4).normal());
    expect(() => new Rng(1).int(0)).toThrow(RangeError);
  });
});

describe.each(['bert', 'roberta', 'xlm-roberta', 'distilbert'] as Family[])('createTinyBase %s', (family) => {
  test('writes an HF-layout folder that loads back', async () => {
    const out = dir(`t-${family}`);
    const r = await createTinyBase({ out, family, layers: 3, hidden: 16, heads: 2, maxPositions: 40, seed: 5 });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    const raw = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(raw.model_type).toBe(family);
    if (family === 'distilbert') expect(raw).toMatchObject({ dim: 16, n_layers: 3, n_heads: 2, hidden_dim: 64, sinusoidal_pos_embds: false });
    else expect(raw).toMatchObject({ hidden_size: 16, num_hidden_layers: 3, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 40 });

    const base = await loadBase(out);
    expect(base.config).toMatchObject({ family, hiddenSize: 16, numLayers: 3, numHeads: 2, intermediateSize: 64, maxPositions: 40 });
    expect(base.config.vocabSize).toBe(base.tokenizer.vocabSize);
    expect(base.config.vocabSize).toBe(Tokenizer.fromFile(path.join(out, 'tokenizer.json')).getVocabSize(true));
    expect(parameterCount(base.weights)).toBe(r.parameters);
    expect(base.ignored).toEqual([]);
    expect(base.weights.has('mlm.dense.weight')).toBe(true);
    expect(base.weights.has('mlm.decoder.weight')).toBe(false); // tied to the word embeddings
    expect(base.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);

    // HF names of the family in the file
    const st = parseSafetensors(fs.readFileSync(path.join(out, 'model.safetensors')));
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(st.tensors.has(canonicalToHf(family, 'layers.2.ffn_out.weight'))).toBe(true);
    expect(base.hfNames.get('layers.2.ffn_out.weight')).toBe(canonicalToHf(family, 'layers.2.ffn_out.weight'));

    // initialisation: LayerNorm 1 / 0, N(0, 0.02) elsewhere, pad row of the word embeddings zero
    expect(Array.from(base.weights.get('layers.1.attn_ln.weight')!.data)).toEqual(new Array(16).fill(1));
    expect(Array.from(base.weights.get('mlm.ln.bias')!.data)).toEqual(new Array(16).fill(0));
    const q = base.weights.get('layers.0.attn.q.weight')!.data;
    const std = Math.sqrt(q.reduce((s, v) => s + v * v, 0) / q.length);
    expect(std).toBeGreaterThan(0.015);
    expect(std).toBeLessThan(0.025);
    const pad = base.config.padTokenId;
    expect(Array.from(base.weights.get('embeddings.word')!.data.subarray(pad * 16, pad * 16 + 16))).toEqual(new Array(16).fill(0));
    expect(base.weights.has('embeddings.token_type')).toBe(family !== 'distilbert');

    // special tokens with the family's conventional ids
    const t = base.tokenizer;
    if (family === 'bert' || family === 'distilbert') {
      expect([t.padId, t.unkId, t.clsId, t.sepId, t.maskId]).toEqual([0, 1, 2, 3, 4]);
      expect(t.maskToken).toBe('[MASK]');
    } else {
      expect([t.clsId, t.padId, t.sepId, t.unkId]).toEqual([0, 1, 2, 3]);
      expect(t.maskToken).toBe('<mask>');
      expect(t.maskId).toBe(base.config.vocabSize - 1);
    }
    // token types: 0/1 for BERT pairs; all 0 where the model has at most one type (RoBERTa, XLM-R, DistilBERT)
    const pair = await t.encode('der Fuchs', 'the dog');
    expect(Array.from(pair.tokenTypeIds).includes(1)).toBe(family === 'bert');
    // every character of the training corpus is known to the tokenizer
    const enc = await t.encode('Der schnelle braune Fuchs, 敏捷的棕色狐狸! café');
    expect(Array.from(enc.inputIds)).not.toContain(t.unkId);
  });

  test('same seed gives the same bytes; another seed other weights', async () => {
    const a = await createTinyBase({ out: dir(`s1-${family}`), family, seed: 11 });
    await createTinyBase({ out: dir(`s2-${family}`), family, seed: 11 });
    await createTinyBase({ out: dir(`s3-${family}`), family, seed: 12 });
    const read = (d: string, f: string): Buffer => fs.readFileSync(path.join(dir(d), f));
    expect(read(`s1-${family}`, 'model.safetensors').equals(read(`s2-${family}`, 'model.safetensors'))).toBe(true);
    expect(read(`s1-${family}`, 'tokenizer.json').equals(read(`s2-${family}`, 'tokenizer.json'))).toBe(true);
    expect(read(`s1-${family}`, 'model.safetensors').equals(read(`s3-${family}`, 'model.safetensors'))).toBe(false);
    expect(a.config.hiddenSize).toBe(32);
    expect(a.config.numLayers).toBe(2);
    expect(a.config.intermediateSize).toBe(128);
  });
});

describe('vocabulary size', () => {
  test('bert: shrinks by dropping the highest ids; config.vocab_size is the real size', async () => {
    const full = await createTinyBase({ out: dir('v-full'), family: 'bert' });
    const r = await createTinyBase({ out: dir('v-small'), family: 'bert', vocabSize: 100 });
    expect(r.config.vocabSize).toBe(100);
    const big = JSON.parse(fs.readFileSync(path.join(dir('v-full'), 'tokenizer.json'), 'utf8')).model.vocab as Record<string, number>;
    const small = JSON.parse(fs.readFileSync(path.join(dir('v-small'), 'tokenizer.json'), 'utf8')).model.vocab as Record<string, number>;
    for (const [tok, id] of Object.entries(small)) expect(big[tok]).toBe(id);
    expect(full.config.vocabSize).toBeGreaterThan(100);
    const base = await loadBase(dir('v-small'));
    expect(base.weights.get('embeddings.word')!.shape).toEqual([100, 32]);
    const enc = await base.tokenizer.encode('the quick brown fox');
    expect(Math.max(...enc.inputIds)).toBeLessThan(100);
    // a vocabulary larger than the trained one is an upper bound only
    expect((await createTinyBase({ out: dir('v-large'), family: 'bert', vocabSize: 1e6 })).config.vocabSize).toBe(full.config.vocabSize);
  });

  test('roberta: shrinking drops merges that produce dropped tokens, and still encodes everything', async () => {
    const r = await createTinyBase({ out: dir('v-rob'), family: 'roberta', vocabSize: 300 });
    expect(r.config.vocabSize).toBe(300);
    const tj = JSON.parse(fs.readFileSync(path.join(dir('v-rob'), 'tokenizer.json'), 'utf8'));
    const vocab = tj.model.vocab as Record<string, number>;
    expect(tj.model.merges.length).toBeGreaterThan(0);
    for (const m of tj.model.merges as string[]) {
      const [a, b] = m.split(' ');
      expect(vocab[a]).toBeDefined();
      expect(vocab[b]).toBeDefined();
      expect(vocab[a + b]).toBeDefined();
    }
    expect(vocab['<mask>']).toBe(299);
    const base = await loadBase(dir('v-rob'));
    const text = 'Szybki brązowy lis, 東京 and ünïcödé!';
    const enc = await base.tokenizer.encode(text);
    expect(Math.max(...enc.inputIds)).toBeLessThan(300);
    expect(await base.tokenizer.decode(enc.inputIds)).toBe(text);
    await expect(createTinyBase({ out: dir('v-rob2'), family: 'roberta', vocabSize: 200 })).rejects.toThrow(/'vocabSize' must be >= 261/);
  });
});

describe('createTinyBase options', () => {
  test('custom corpus and pooler', async () => {
    const r = await createTinyBase({ out: dir('corpus'), family: 'bert', corpus: ['alpha beta gamma', 'beta gamma delta', 'alpha delta'], pooler: true });
    const base = await loadBase(dir('corpus'));
    expect(base.weights.has('pooler.dense.weight')).toBe(true);
    expect(r.config.vocabSize).toBeLessThan(200);
    const enc = await base.tokenizer.encode('alpha gamma');
    expect(enc.tokens[0]).toEqual(['[CLS]', 'alpha', 'gamma', '[SEP]']);
  });

  test.each([
    [{ family: 'gpt2' as Family }, /'family' must be one of/],
    [{ hidden: 30, heads: 4 }, /'hidden' \(30\) must be divisible by 'heads' \(4\)/],
    [{ layers: 0 }, /'layers' must be an integer >= 1, got 0/],
    [{ corpus: [] }, /'corpus' must be a non-empty array/],
    [{ family: 'distilbert' as Family, pooler: true }, /'pooler' is not available for distilbert/],
  ])('refuses %j', async (o, re) => {
    await expect(createTinyBase({ out: dir('bad'), ...o })).rejects.toThrow(re);
  });
});

describe('fingerprint', () => {
  test('is cached, stable, and recomputed when model.safetensors changes', async () => {
    const out = dir('fp');
    await createTinyBase({ out, family: 'bert', seed: 1 });
    const a = await loadBase(out);
    const cacheFile = path.join(out, FINGERPRINT_FILE);
    expect(fs.existsSync(cacheFile)).toBe(true);
    expect(fingerprintWeights(a.weights)).toBe(a.fingerprint);
    const b = await loadBase(out);
    expect(b.fingerprint).toBe(a.fingerprint);

    // the cache is used while size and mtime match...
    const cache = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
    fs.writeFileSync(cacheFile, JSON.stringify({ ...cache, fingerprint: `sha256:${'0'.repeat(64)}` }));
    expect((await loadBase(out)).fingerprint).toBe(`sha256:${'0'.repeat(64)}`);
    fs.writeFileSync(cacheFile, JSON.stringify(cache));

    // ...and a changed weight (same file size, new mtime) gives a new fingerprint
    const stFile = path.join(out, 'model.safetensors');
    const st = parseSafetensors(fs.readFileSync(stFile));
    const q = st.tensors.get('bert.encoder.layer.1.attention.self.query.weight')!.data as Float32Array;
    q[5] += 0.5;
    const before = fs.statSync(stFile);
    fs.writeFileSync(stFile, serializeSafetensors(st.tensors, st.metadata));
    fs.utimesSync(stFile, before.atime, new Date(before.mtimeMs + 5000));
    expect(fs.statSync(stFile).size).toBe(before.size);
    const c = await loadBase(out);
    expect(c.fingerprint).not.toBe(a.fingerprint);
    expect(c.fingerprint).toBe(fingerprintWeights(c.weights));
    expect(JSON.parse(fs.readFileSync(cacheFile, 'utf8')).fingerprint).toBe(c.fingerprint);
  });

  test('depends on names and shapes, not only bytes, and not on insertion order', () => {
    const t = (shape: number[], data: number[]) => ({ dtype: 'F32' as const, shape, data: Float32Array.from(data) });
    const fp1 = fingerprintWeights(new Map([['a', t([2], [1, 2])], ['b', t([1], [3])]]));
    expect(fingerprintWeights(new Map([['b', t([1], [3])], ['a', t([2], [1, 2])]]))).toBe(fp1);
    expect(fingerprintWeights(new Map([['a', t([1, 2], [1, 2])], ['b', t([1], [3])]]))).not.toBe(fp1);
    expect(fingerprintWeights(new Map([['c', t([2], [1, 2])], ['b', t([1], [3])]]))).not.toBe(fp1);
  });
});

/** Writes tensors as F16 or BF16 safetensors (serializeSafetensors writes F32/I32/I64 only). */
function writeHalf(file: string, tensors: Map<string, Tensor>, dtype: 'F16' | 'BF16'): void {
  const header: Record<string, unknown> = {};
  const parts: Buffer[] = [];
  let off = 0;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (const [name, t] of tensors) {
    const src = t.data as Float32Array;
    const bits = new Uint16Array(src.length);
    for (let i = 0; i < src.length; i++) {
      f32[0] = src[i];
      const x = u32[0];
      if (dtype === 'BF16') bits[i] = x >>> 16;
      else {
        // round-to-nearest F16 for the small magnitudes used here (normal and subnormal ranges)
        const sign = (x >>> 16) & 0x8000;
        const a = Math.abs(src[i]);
        if (a === 0) bits[i] = sign;
        else if (a < 2 ** -14) bits[i] = sign | Math.round(a / 2 ** -24);
        else {
          const e = Math.floor(Math.log2(a));
          let m = Math.round((a / 2 ** e - 1) * 1024);
          let ee = e;
          if (m === 1024) { m = 0; ee += 1; }
          bits[i] = sign | ((ee + 15) << 10) | m;
        }
      }
    }
    const buf = Buffer.from(bits.buffer);
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + buf.length] };
    parts.push(buf);
    off += buf.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, ...parts]));
}

describe.each(['F16', 'BF16'] as const)('%s checkpoints', (dtype) => {
  test('load widened to F32 within the format precision', async () => {
    const out = dir(`half-${dtype}`);
    await createTinyBase({ out, family: 'roberta', seed: 2 });
    const ref = await loadBase(out);
    const stFile = path.join(out, 'model.safetensors');
    writeHalf(stFile, parseSafetensors(fs.readFileSync(stFile)).tensors, dtype);
    const half = await loadBase(out);
    expect(half.fingerprint).not.toBe(ref.fingerprint);
    const rel = dtype === 'F16' ? 2 ** -11 : 2 ** -7; // F16 rounds (half ulp), BF16 here truncates (one ulp)
    for (const [name, t] of ref.weights) {
      const h = half.weights.get(name)!;
      expect(h.dtype).toBe('F32');
      expect(h.shape).toEqual(t.shape);
      for (let i = 0; i < t.data.length; i++) {
        const tol = Math.abs(t.data[i]) * rel + (dtype === 'F16' ? 2 ** -25 : 0);
        if (Math.abs(h.data[i] - t.data[i]) > tol) throw new Error(`${name}[${i}]: ${h.data[i]} vs ${t.data[i]}`);
      }
    }
    // LayerNorm weights are exactly 1 in every format
    expect(Array.from(half.weights.get('embeddings.ln.weight')!.data)).toEqual(new Array(32).fill(1));
  });
});
