/** HF ↔ canonical tensor names per family, shape checks and the loader's handling of real checkpoint quirks. */
import { f32, type Tensor } from '../../modules-store/safetensors';
import { parseConfig, type BaseConfig, type Family } from '../../server/model/config';
import { randomWeights } from '../../server/model/tiny';
import {
  canonicalShape, canonicalToHf, fromHf, hfToCanonical, isTransposedLinear, MLM_HEAD_NAMES, POOLER_NAMES, requiredCanonicalNames, toHf,
} from '../../server/model/weights';

function smallConfig(family: Family, layers = 2): BaseConfig {
  if (family === 'distilbert') {
    return parseConfig({ model_type: 'distilbert', dim: 8, n_layers: layers, n_heads: 2, hidden_dim: 12, vocab_size: 20, max_position_embeddings: 16 });
  }
  const roberta = family !== 'bert';
  return parseConfig({
    model_type: family, hidden_size: 8, num_hidden_layers: layers, num_attention_heads: 2, intermediate_size: 12, vocab_size: 20,
    max_position_embeddings: 16, type_vocab_size: roberta ? 1 : 2, pad_token_id: roberta ? 1 : 0,
  });
}

const FAMS: Family[] = ['bert', 'roberta', 'xlm-roberta', 'distilbert'];

describe('name mapping', () => {
  test.each([
    ['bert', 'embeddings.word', 'bert.embeddings.word_embeddings.weight'],
    ['bert', 'embeddings.ln.bias', 'bert.embeddings.LayerNorm.bias'],
    ['bert', 'layers.3.attn.q.weight', 'bert.encoder.layer.3.attention.self.query.weight'],
    ['bert', 'layers.3.attn.o.bias', 'bert.encoder.layer.3.attention.output.dense.bias'],
    ['bert', 'layers.3.attn_ln.weight', 'bert.encoder.layer.3.attention.output.LayerNorm.weight'],
    ['bert', 'layers.3.ffn_in.weight', 'bert.encoder.layer.3.intermediate.dense.weight'],
    ['bert', 'layers.3.ffn_out.weight', 'bert.encoder.layer.3.output.dense.weight'],
    ['bert', 'layers.3.ffn_ln.bias', 'bert.encoder.layer.3.output.LayerNorm.bias'],
    ['bert', 'mlm.dense.weight', 'cls.predictions.transform.dense.weight'],
    ['bert', 'mlm.ln.weight', 'cls.predictions.transform.LayerNorm.weight'],
    ['bert', 'mlm.decoder.bias', 'cls.predictions.bias'],
    ['bert', 'mlm.decoder.weight', 'cls.predictions.decoder.weight'],
    ['bert', 'pooler.dense.weight', 'bert.pooler.dense.weight'],
    ['roberta', 'layers.0.attn.k.weight', 'roberta.encoder.layer.0.attention.self.key.weight'],
    ['roberta', 'mlm.ln.bias', 'lm_head.layer_norm.bias'],
    ['roberta', 'mlm.decoder.bias', 'lm_head.bias'],
    ['xlm-roberta', 'embeddings.token_type', 'roberta.embeddings.token_type_embeddings.weight'],
    ['xlm-roberta', 'mlm.dense.bias', 'lm_head.dense.bias'],
    ['distilbert', 'embeddings.position', 'distilbert.embeddings.position_embeddings.weight'],
    ['distilbert', 'layers.1.attn.v.weight', 'distilbert.transformer.layer.1.attention.v_lin.weight'],
    ['distilbert', 'layers.1.attn.o.bias', 'distilbert.transformer.layer.1.attention.out_lin.bias'],
    ['distilbert', 'layers.1.attn_ln.weight', 'distilbert.transformer.layer.1.sa_layer_norm.weight'],
    ['distilbert', 'layers.1.ffn_in.weight', 'distilbert.transformer.layer.1.ffn.lin1.weight'],
    ['distilbert', 'layers.1.ffn_out.bias', 'distilbert.transformer.layer.1.ffn.lin2.bias'],
    ['distilbert', 'layers.1.ffn_ln.weight', 'distilbert.transformer.layer.1.output_layer_norm.weight'],
    ['distilbert', 'mlm.dense.weight', 'vocab_transform.weight'],
    ['distilbert', 'mlm.ln.bias', 'vocab_layer_norm.bias'],
    ['distilbert', 'mlm.decoder.bias', 'vocab_projector.bias'],
  ] as [Family, string, string][])('%s %s <-> %s', (family, canonical, hf) => {
    expect(canonicalToHf(family, canonical)).toBe(hf);
    expect(hfToCanonical(family, hf)).toBe(canonical);
  });

  test.each(FAMS)('%s: every canonical name round-trips, with and without the prefix', (family) => {
    const cfg = smallConfig(family, 3);
    const names = [...requiredCanonicalNames(cfg), ...MLM_HEAD_NAMES, 'mlm.decoder.weight', ...(family === 'distilbert' ? [] : POOLER_NAMES)];
    const hfSeen = new Set<string>();
    for (const c of names) {
      const hf = canonicalToHf(family, c);
      expect(hfSeen.has(hf)).toBe(false);
      hfSeen.add(hf);
      expect(hfToCanonical(family, hf)).toBe(c);
      expect(hfToCanonical(family, canonicalToHf(family, c, false))).toBe(c);
    }
  });

  test('legacy gamma/beta LayerNorm names and unknown names', () => {
    expect(hfToCanonical('bert', 'bert.encoder.layer.0.output.LayerNorm.gamma')).toBe('layers.0.ffn_ln.weight');
    expect(hfToCanonical('bert', 'embeddings.LayerNorm.beta')).toBe('embeddings.ln.bias');
    expect(hfToCanonical('bert', 'cls.predictions.transform.LayerNorm.gamma')).toBe('mlm.ln.weight');
    expect(hfToCanonical('bert', 'cls.predictions.decoder.bias')).toBe('mlm.decoder.bias');
    expect(hfToCanonical('bert', 'cls.seq_relationship.weight')).toBeNull();
    expect(hfToCanonical('bert', 'roberta.encoder.layer.0.output.dense.weight')).toBeNull();
    expect(hfToCanonical('distilbert', 'distilbert.transformer.layer.0.attention.query.weight')).toBeNull();
    expect(() => canonicalToHf('bert', 'layers.0.attn.z.weight')).toThrow(RangeError);
    expect(() => canonicalToHf('gpt2' as Family, 'embeddings.word')).toThrow(/'family' must be one of/);
  });

  test('shapes follow the config, Linear layout [out, in]', () => {
    const c = smallConfig('bert');
    expect(canonicalShape(c, 'layers.1.ffn_in.weight')).toEqual([12, 8]);
    expect(canonicalShape(c, 'layers.1.ffn_out.weight')).toEqual([8, 12]);
    expect(canonicalShape(c, 'layers.1.ffn_in.bias')).toEqual([12]);
    expect(canonicalShape(c, 'embeddings.position')).toEqual([16, 8]);
    expect(canonicalShape(c, 'embeddings.token_type')).toEqual([2, 8]);
    expect(canonicalShape(c, 'mlm.decoder.bias')).toEqual([20]);
    expect(() => canonicalShape(c, 'layers.2.ffn_in.weight')).toThrow(/2 layers/);
    expect(() => canonicalShape(smallConfig('distilbert'), 'embeddings.token_type')).toThrow(RangeError);
  });
});

describe('fromHf', () => {
  test.each(FAMS)('%s: toHf then fromHf returns the same tensors', (family) => {
    const cfg = smallConfig(family);
    const w = randomWeights(cfg, 3, { pooler: family !== 'distilbert' });
    const hf = toHf(cfg, w);
    const back = fromHf(cfg, hf);
    expect([...back.weights.keys()].sort()).toEqual([...w.keys()].sort());
    for (const [k, t] of w) expect(back.weights.get(k)!.data).toEqual(t.data);
    expect(back.hfNames.get('layers.1.ffn_out.weight')).toBe(canonicalToHf(family, 'layers.1.ffn_out.weight'));
    expect(back.ignored).toEqual([]);
  });

  test('bare BertModel names, legacy LayerNorm names and buffers load', () => {
    const cfg = smallConfig('bert');
    const w = randomWeights(cfg, 1, { mlm: false });
    const hf = new Map<string, Tensor>();
    for (const [c, t] of w) hf.set(canonicalToHf('bert', c, false).replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta'), t);
    hf.set('embeddings.position_ids', { dtype: 'I64', shape: [1, 16], data: new BigInt64Array(16) });
    const back = fromHf(cfg, hf);
    expect(back.weights.size).toBe(w.size);
    expect(back.hfNames.get('embeddings.ln.weight')).toBe('embeddings.LayerNorm.gamma');
    expect(back.ignored).toEqual(['embeddings.position_ids']);
    expect(back.weights.has('mlm.dense.weight')).toBe(false);
  });

  test('a stored copy of the tied decoder is dropped; an untied decoder is kept', () => {
    const cfg = smallConfig('bert');
    const w = randomWeights(cfg, 1);
    const hf = toHf(cfg, w);
    hf.set('cls.predictions.decoder.weight', f32([20, 8], w.get('embeddings.word')!.data as Float32Array));
    hf.set('cls.predictions.decoder.bias', w.get('mlm.decoder.bias')!);
    hf.set('cls.seq_relationship.weight', f32([2, 8]));
    let back = fromHf(cfg, hf);
    expect(back.weights.has('mlm.decoder.weight')).toBe(false);
    expect(back.ignored.sort()).toEqual(['cls.predictions.decoder.bias', 'cls.predictions.decoder.weight', 'cls.seq_relationship.weight']);
    const untied = Float32Array.from(w.get('embeddings.word')!.data as Float32Array, (x) => x + 1);
    hf.set('cls.predictions.decoder.weight', f32([20, 8], untied));
    back = fromHf(cfg, hf);
    expect(back.weights.get('mlm.decoder.weight')!.data).toEqual(untied);
  });

  test('errors name the file, the HF tensor and the shapes', () => {
    const cfg = smallConfig('bert', 4);
    const hf = toHf(cfg, randomWeights(cfg, 1));
    hf.set('bert.encoder.layer.3.output.dense.weight', f32([12, 8]));
    expect(() => fromHf(cfg, hf, 'model.safetensors')).toThrow("model.safetensors: 'bert.encoder.layer.3.output.dense.weight' has shape [12, 8], config expects [8, 12]");
    const cfg2 = smallConfig('bert', 2);
    expect(() => fromHf(cfg2, toHf(cfg, randomWeights(cfg, 1)))).toThrow(/'bert\.encoder\.layer\.2\..*' is layer 2, but the config has 2 layers/);
    const missing = toHf(cfg2, randomWeights(cfg2, 1));
    missing.delete('bert.encoder.layer.1.attention.self.value.bias');
    expect(() => fromHf(cfg2, missing)).toThrow("model.safetensors: missing 1 tensor(s) of the bert encoder: 'bert.encoder.layer.1.attention.self.value.bias'");
    const head = toHf(cfg2, randomWeights(cfg2, 1));
    head.delete('cls.predictions.bias');
    expect(() => fromHf(cfg2, head)).toThrow("incomplete MLM head, missing 'cls.predictions.bias'");
    const typo = toHf(cfg2, randomWeights(cfg2, 1));
    typo.set('bert.encoder.layer.0.attention.self.qurey.weight', f32([8, 8]));
    expect(() => fromHf(cfg2, typo)).toThrow(/'bert\.encoder\.layer\.0\.attention\.self\.qurey\.weight' looks like an encoder tensor/);
    const ints = toHf(cfg2, randomWeights(cfg2, 1));
    ints.set('bert.embeddings.LayerNorm.bias', { dtype: 'I32', shape: [8], data: new Int32Array(8) });
    expect(() => fromHf(cfg2, ints)).toThrow(TypeError);
  });

  test('distilbert refuses a token-type table', () => {
    const cfg = smallConfig('distilbert');
    const hf = toHf(cfg, randomWeights(cfg, 1));
    hf.set('distilbert.embeddings.token_type_embeddings.weight', f32([2, 8]));
    expect(() => fromHf(cfg, hf)).toThrow("'distilbert.embeddings.token_type_embeddings.weight' looks like an encoder tensor but is not a known distilbert parameter name");
  });

  test('toHf checks shapes', () => {
    const cfg = smallConfig('roberta');
    const w = randomWeights(cfg, 1);
    w.set('layers.0.attn.q.weight', f32([8, 9]));
    expect(() => toHf(cfg, w)).toThrow("'weights': 'layers.0.attn.q.weight' has shape [8, 9], config expects [8, 8]");
  });
});

describe('isTransposedLinear', () => {
  it('names exactly the Linear weights the engine and the module loader keep as [in, out]', () => {
    const cfg = smallConfig('bert', 2);
    const all = [...randomWeights(cfg, 1, { mlm: true, pooler: true }).keys()];
    const expected = ['mlm.dense.weight'];
    for (let l = 0; l < 2; l++) expected.push(...['attn.q', 'attn.k', 'attn.v', 'attn.o', 'ffn_in', 'ffn_out'].map((s) => `layers.${l}.${s}.weight`));
    expect(all.filter(isTransposedLinear).sort()).toEqual(expected.sort());
  });
});
