/** config.json normalisation per family (real HF configs of the base checkpoints) and its errors. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseConfig, positionIds, readConfig } from '../../server/model/config';

const BERT_BASE = {
  architectures: ['BertForMaskedLM'], attention_probs_dropout_prob: 0.1, gradient_checkpointing: false, hidden_act: 'gelu',
  hidden_dropout_prob: 0.1, hidden_size: 768, initializer_range: 0.02, intermediate_size: 3072, layer_norm_eps: 1e-12,
  max_position_embeddings: 512, model_type: 'bert', num_attention_heads: 12, num_hidden_layers: 12, pad_token_id: 0,
  position_embedding_type: 'absolute', transformers_version: '4.6.0.dev0', type_vocab_size: 2, use_cache: true, vocab_size: 30522,
};
const ROBERTA_BASE = {
  architectures: ['RobertaForMaskedLM'], attention_probs_dropout_prob: 0.1, bos_token_id: 0, eos_token_id: 2, hidden_act: 'gelu',
  hidden_dropout_prob: 0.1, hidden_size: 768, initializer_range: 0.02, intermediate_size: 3072, layer_norm_eps: 1e-5,
  max_position_embeddings: 514, model_type: 'roberta', num_attention_heads: 12, num_hidden_layers: 12, pad_token_id: 1,
  type_vocab_size: 1, vocab_size: 50265,
};
const XLMR_BASE = { ...ROBERTA_BASE, architectures: ['XLMRobertaForMaskedLM'], model_type: 'xlm-roberta', output_past: true, vocab_size: 250002 };
const DISTILBERT_BASE = {
  activation: 'gelu', architectures: ['DistilBertForMaskedLM'], attention_dropout: 0.1, dim: 768, dropout: 0.1, hidden_dim: 3072,
  initializer_range: 0.02, max_position_embeddings: 512, model_type: 'distilbert', n_heads: 12, n_layers: 6, pad_token_id: 0,
  qa_dropout: 0.1, seq_classif_dropout: 0.2, sinusoidal_pos_embds: false, tie_weights_: true, vocab_size: 30522,
};

describe('parseConfig', () => {
  test('bert-base-uncased', () => {
    const c = parseConfig(BERT_BASE);
    expect(c).toMatchObject({
      family: 'bert', hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072, vocabSize: 30522, maxPositions: 512,
      maxSequenceLength: 512, typeVocabSize: 2, layerNormEps: 1e-12, hiddenAct: 'gelu', positionOffset: 0, padTokenId: 0,
    });
    expect(c.raw).toBe(BERT_BASE);
  });

  test('roberta-base: offset positions by padding_idx + 1', () => {
    const c = parseConfig(ROBERTA_BASE);
    expect(c).toMatchObject({ family: 'roberta', vocabSize: 50265, maxPositions: 514, maxSequenceLength: 512, typeVocabSize: 1, layerNormEps: 1e-5, positionOffset: 2, padTokenId: 1 });
  });

  test('xlm-roberta-base', () => {
    expect(parseConfig(XLMR_BASE)).toMatchObject({ family: 'xlm-roberta', vocabSize: 250002, positionOffset: 2, padTokenId: 1 });
  });

  test('distilbert-base-uncased uses its own field names and has no token types', () => {
    expect(parseConfig(DISTILBERT_BASE)).toMatchObject({
      family: 'distilbert', hiddenSize: 768, numLayers: 6, numHeads: 12, intermediateSize: 3072, vocabSize: 30522, maxPositions: 512,
      typeVocabSize: 0, layerNormEps: 1e-12, hiddenAct: 'gelu', positionOffset: 0, padTokenId: 0,
    });
    expect(parseConfig({ ...DISTILBERT_BASE, activation: 'relu' }).hiddenAct).toBe('relu');
  });

  test('activations: gelu_new and its aliases are the tanh approximation', () => {
    expect(parseConfig({ ...BERT_BASE, hidden_act: 'gelu_new' }).hiddenAct).toBe('gelu_new');
    expect(parseConfig({ ...BERT_BASE, hidden_act: 'gelu_pytorch_tanh' }).hiddenAct).toBe('gelu_new');
    expect(parseConfig({ ...BERT_BASE, hidden_act: 'relu' }).hiddenAct).toBe('relu');
    expect(() => parseConfig({ ...BERT_BASE, hidden_act: 'swish' })).toThrow(/'hidden_act'.*swish/);
  });

  test('defaults follow the HF config classes', () => {
    const { layer_norm_eps, pad_token_id, type_vocab_size, ...rest } = ROBERTA_BASE;
    void layer_norm_eps; void pad_token_id; void type_vocab_size;
    expect(parseConfig(rest)).toMatchObject({ layerNormEps: 1e-12, padTokenId: 1, typeVocabSize: 1, positionOffset: 2 });
  });

  test.each([
    [{ ...BERT_BASE, model_type: 'gpt2' }, RangeError, /'model_type' is 'gpt2'; supported: bert, roberta, xlm-roberta, distilbert/],
    [{ ...BERT_BASE, model_type: undefined }, TypeError, /'model_type' is missing/],
    [{ ...BERT_BASE, hidden_size: undefined }, TypeError, /'hidden_size' is missing/],
    [{ ...BERT_BASE, num_hidden_layers: 2.5 }, TypeError, /'num_hidden_layers' must be an integer, got 2.5/],
    [{ ...BERT_BASE, vocab_size: 0 }, RangeError, /'vocab_size' must be >= 1, got 0/],
    [{ ...BERT_BASE, num_attention_heads: 5 }, RangeError, /'hidden_size' \(768\) must be divisible by 'num_attention_heads' \(5\)/],
    [{ ...BERT_BASE, position_embedding_type: 'relative_key' }, RangeError, /'position_embedding_type'/],
    [{ ...BERT_BASE, layer_norm_eps: -1 }, RangeError, /'layer_norm_eps'/],
    [{ ...BERT_BASE, pad_token_id: 40000 }, RangeError, /'pad_token_id' \(40000\) must be < 'vocab_size'/],
    [{ ...DISTILBERT_BASE, sinusoidal_pos_embds: true }, RangeError, /'sinusoidal_pos_embds' is true/],
    [{ ...DISTILBERT_BASE, dim: undefined }, TypeError, /'dim' is missing/],
    [{ ...DISTILBERT_BASE, n_heads: 7 }, RangeError, /'dim' \(768\) must be divisible by 'n_heads' \(7\)/],
    [[1, 2], TypeError, /must be a JSON object/],
  ])('refuses %#', (raw, cls, re) => {
    expect(() => parseConfig(raw, 'x/config.json')).toThrow(cls as ErrorConstructor);
    expect(() => parseConfig(raw, 'x/config.json')).toThrow(re as RegExp);
  });

  test('readConfig names the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-cfg-'));
    const f = path.join(dir, 'config.json');
    fs.writeFileSync(f, '{ not json');
    expect(() => readConfig(f)).toThrow(`${f}: not valid JSON`);
    fs.writeFileSync(f, JSON.stringify({ ...BERT_BASE, hidden_size: 'big' }));
    expect(() => readConfig(f)).toThrow(`${f}: config field 'hidden_size' must be an integer`);
    expect(() => readConfig(path.join(dir, 'missing.json'))).toThrow(/cannot read config/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('positionIds', () => {
  test('bert: 0..T-1 per row', () => {
    expect(Array.from(positionIds(parseConfig(BERT_BASE), [101, 7, 102, 0, 101, 102, 0, 0], 4))).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
  });
  test('roberta: create_position_ids_from_input_ids (pads get padding_idx)', () => {
    // HF: mask = ids != 1; (cumsum(mask) * mask) + 1
    expect(Array.from(positionIds(parseConfig(ROBERTA_BASE), [0, 9, 2, 1, 0, 2, 1, 1], 4))).toEqual([2, 3, 4, 1, 2, 3, 1, 1]);
  });
  test('rejects a length that does not divide the ids', () => {
    expect(() => positionIds(parseConfig(BERT_BASE), [1, 2, 3], 2)).toThrow(RangeError);
  });
});
