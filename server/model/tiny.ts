/**
 * Creates a tiny random base in Hugging Face layout (config.json, model.safetensors, tokenizer.json) for any
 * supported family, so tests, demos and CI never download a checkpoint. The vocabulary is trained with HF
 * `tokenizers` on a small corpus (built-in multilingual sentences by default); weights are drawn from a seeded
 * PRNG, so the same options give the same bytes. Example:
 * `await createTinyBase({ out: '/tmp/base', family: 'roberta', layers: 2, hidden: 32, seed: 1 })`.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { byteLevelAlphabet } from 'tokenizers';
import { serializeSafetensors, numel, type Tensor } from '../../modules-store/safetensors';
import { FAMILIES, parseConfig, type BaseConfig, type Family } from './config';
import { Rng } from './random';
import { SPECIAL_TOKENS } from './tokenizer';
import { canonicalShape, MLM_HEAD_NAMES, POOLER_NAMES, requiredCanonicalNames, toHf } from './weights';

export interface TinyBaseOptions {
  /** Output folder (created when missing; our three files are overwritten). */
  out: string;
  /** default 'bert' */
  family?: Family;
  /** default 2 */
  layers?: number;
  /** default 32 */
  hidden?: number;
  /** default 4 */
  heads?: number;
  /** default 4 * hidden */
  intermediate?: number;
  /** Upper bound on the vocabulary; the trained vocabulary may be smaller (default: keep all trained tokens). */
  vocabSize?: number;
  /** Rows of the position table, HF `max_position_embeddings` (default 128; RoBERTa/XLM-R use 2 for the offset). */
  maxPositions?: number;
  /** default 0 */
  seed?: number;
  /** Training sentences for the vocabulary (default: the built-in multilingual corpus). */
  corpus?: string[];
  /** Also write a pooler (BERT / RoBERTa / XLM-R only; default false). */
  pooler?: boolean;
}

export interface TinyBase {
  dir: string;
  config: BaseConfig;
  /** Number of parameters written. */
  parameters: number;
}

/** A few dozen sentences in several languages and scripts; enough for a vocabulary of some hundred tokens. */
export const BUILTIN_CORPUS: readonly string[] = [
  'The quick brown fox jumps over the lazy dog.',
  'A new study shows that the market grew by three percent last year.',
  'The football team won the championship after a dramatic final match.',
  'Scientists discovered a new species of frog in the rainforest.',
  'The government announced new taxes on imported cars.',
  'She plays the piano every evening before dinner.',
  'Our server returns the prediction in less than ten milliseconds.',
  'Paris is the capital of France and Berlin is the capital of Germany.',
  'The museum opens at nine in the morning and closes at six.',
  'He bought apples, bread and cheese at the market.',
  'Der schnelle braune Fuchs springt über den faulen Hund.',
  'Die Regierung hat neue Steuern auf importierte Autos angekündigt.',
  'Die Mannschaft gewann das Finale nach einem spannenden Spiel.',
  'Wissenschaftler haben eine neue Froschart im Regenwald entdeckt.',
  'Ich trinke jeden Morgen eine Tasse Kaffee mit Milch.',
  'Berlin ist die Hauptstadt von Deutschland.',
  'Le renard brun rapide saute par-dessus le chien paresseux.',
  'Le gouvernement a annoncé de nouveaux impôts sur les voitures.',
  "L'équipe a gagné le championnat après un match dramatique.",
  'Paris est la capitale de la France.',
  'El rápido zorro marrón salta sobre el perro perezoso.',
  'El gobierno anunció nuevos impuestos a los coches importados.',
  'Madrid es la capital de España y tiene muchos museos.',
  'Il veloce volpe marrone salta sopra il cane pigro.',
  'Roma è la capitale d\'Italia.',
  'De snelle bruine vos springt over de luie hond.',
  'Den snabba bruna räven hoppar över den lata hunden.',
  'Szybki brązowy lis przeskakuje nad leniwym psem.',
  'Быстрая коричневая лиса прыгает через ленивую собаку.',
  'Москва — столица России.',
  'Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.',
  'Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.',
  'Nopea ruskea kettu hyppää laiskan koiran yli.',
  'O rápido raposo marrom pula sobre o cão preguiçoso.',
  '敏捷的棕色狐狸跳过了懒狗。',
  '東京は日本の首都です。',
  'السريع الثعلب البني يقفز فوق الكلب الكسول.',
  'तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।',
  'Numbers like 42, 3.14 and 2026 appear in text too.',
  'Email me at team@example.com or visit https://example.com/docs today!',
];

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`'${name}' must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Continuation characters are trained as private-use code points (this offset + the character). */
const CONTINUATION = 0xf0000;

/**
 * Trains a raw vocabulary in a child process. 'bpe': byte-level BPE. 'wordpiece': a real WordPiece vocabulary
 * (each piece once, as a word start or as a '##' continuation, as HF's WordPiece trainer learns it: BPE merges
 * over words whose non-initial characters are marked) made deterministic: the `tokenizers` WordPiece trainer
 * numbers its '##' pieces in hash-map order, so the corpus is normalised and pre-tokenised here with BERT's
 * normaliser and pre-tokenizer, every non-initial character of a word is written as CONTINUATION + its code
 * point, and a plain BPE trainer (whose alphabet is sorted and whose merges are ordered) learns the pieces;
 * wordPieceTokenizer maps them back. Runs in a child process: the `tokenizers` trainer draws a progress bar on
 * stdout that cannot be switched off from the node bindings, and the CLI's and tests' output should stay clean.
 * Returns the trained tokenizer.json object (vocab in id order, merges for BPE).
 */
function trainRaw(kind: 'wordpiece' | 'bpe', corpusFile: string, outFile: string): { vocab: Record<string, number>; merges?: unknown[] } {
  const script = `
const t = require(${JSON.stringify(require.resolve('tokenizers'))});
const fs = require('fs');
const [kind, corpus, out] = process.argv.slice(1);
let tok;
let file = corpus;
if (kind === 'wordpiece') {
  const norm = t.bertNormalizer({ lowercase: true });
  const pre = t.bertPreTokenizer();
  const mark = (w) => { const cs = [...w]; return cs[0] + cs.slice(1).map((c) => String.fromCodePoint(${CONTINUATION} + c.codePointAt(0))).join(''); };
  const lines = fs.readFileSync(corpus, 'utf8').split('\\n').map((l) => pre.preTokenizeString(norm.normalizeString(l)).map(([w]) => mark(w)).join(' '));
  file = corpus + '.marked';
  fs.writeFileSync(file, lines.join('\\n') + '\\n');
  tok = new t.Tokenizer(t.BPE.empty());
  tok.setPreTokenizer(t.whitespaceSplitPreTokenizer());
} else {
  tok = new t.Tokenizer(t.BPE.empty());
  tok.setPreTokenizer(t.byteLevelPreTokenizer(false, true));
}
tok.train([file]);
tok.save(out);
`;
  const r = spawnSync(process.execPath, ['-e', script, kind, corpusFile, outFile], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tokenizer training failed: ${r.stderr || r.error?.message || `exit ${r.status}`}`);
  const json = JSON.parse(fs.readFileSync(outFile, 'utf8')) as { model: { vocab: Record<string, number>; merges?: unknown[] } };
  return json.model;
}

/** A trained marked piece as a WordPiece token: continuation characters back, '##' when it continues a word. */
function unmark(piece: string): string {
  const cs = [...piece];
  const cont = (c: string) => c.codePointAt(0)! >= CONTINUATION;
  const text = cs.map((c) => (cont(c) ? String.fromCodePoint(c.codePointAt(0)! - CONTINUATION) : c)).join('');
  return cont(cs[0]) ? `##${text}` : text;
}

function idOrder(vocab: Record<string, number>): string[] {
  return Object.entries(vocab)
    .sort((a, b) => a[1] - b[1])
    .map(([t]) => t);
}

function addedToken(id: number, content: string, lstrip = false): Record<string, unknown> {
  return { id, content, single_word: false, lstrip, rstrip: false, normalized: false, special: true };
}

/**
 * WordPiece from the trained marked pieces (in BPE id order) + BERT normaliser / pre-tokenizer / post-processor;
 * specials [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then every character of the corpus as a word start and as a
 * '##' continuation (so no word of known characters becomes [UNK]; only the alphabet is held twice), then the
 * learned pieces in merge order, each once; `vocabSize` drops the last merges first.
 */
function wordPieceTokenizer(trained: string[], vocabSize: number | undefined): Record<string, unknown> {
  const sp = SPECIAL_TOKENS.bert;
  const specials = [sp.pad, sp.unk, sp.cls, sp.sep, sp.mask];
  const pieces = trained.map(unmark);
  const chars = pieces.filter((p) => [...p.replace(/^##/, '')].length === 1);
  const starts = [...new Set(chars.map((p) => p.replace(/^##/, '')))].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const conts = starts.map((c) => `##${c}`);
  let tokens = [...new Set([...specials, ...starts, ...conts, ...pieces])];
  if (vocabSize !== undefined && tokens.length > vocabSize) tokens = tokens.slice(0, vocabSize); // drop the highest ids
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((t, i) => addedToken(i, t)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: [sp.sep, 3], cls: [sp.cls, 2] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: sp.unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

/**
 * Byte-level BPE + RoBERTa post-processor; specials <s>=0 <pad>=1 </s>=2 <unk>=3, the 256 byte symbols, the
 * learned merges, <mask> last (as in roberta-base). XLM-R really uses a SentencePiece Unigram model; for the
 * tiny base a byte-level BPE with XLM-R's special tokens and ids is enough: the engine only sees ids.
 */
function bpeTokenizer(trained: string[], trainedMerges: unknown[], vocabSize: number | undefined): Record<string, unknown> {
  const sp = SPECIAL_TOKENS.roberta;
  const head = [sp.cls, sp.pad, sp.sep, sp.unk];
  const alphabet = byteLevelAlphabet().sort();
  const seen = new Set([...head, ...alphabet, sp.mask]);
  let learned = trained.filter((t) => !seen.has(t));
  const fixed = head.length + alphabet.length + 1;
  if (vocabSize !== undefined) {
    if (vocabSize < fixed) throw new RangeError(`'vocabSize' must be >= ${fixed} for a byte-level BPE vocabulary (4 specials, 256 bytes, <mask>), got ${vocabSize}`);
    learned = learned.slice(0, vocabSize - fixed); // drop the highest ids
  }
  const tokens = [...head, ...alphabet, ...learned, sp.mask];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  const merges: string[] = [];
  for (const m of trainedMerges) {
    const [a, b] = Array.isArray(m) ? (m as string[]) : String(m).split(' ');
    // Keep a merge only when its parts and its product survive the shrink.
    if (a in vocab && b in vocab && a + b in vocab) merges.push(`${a} ${b}`);
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...head.map((t, i) => addedToken(i, t)), addedToken(tokens.length - 1, sp.mask, true)],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'RobertaProcessing', sep: [sp.sep, 2], cls: [sp.cls, 0], trim_offsets: true, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

function hfConfig(family: Family, o: Required<Omit<TinyBaseOptions, 'out' | 'vocabSize' | 'corpus' | 'pooler' | 'seed'>>, vocabSize: number): Record<string, unknown> {
  if (family === 'distilbert') {
    return {
      architectures: ['DistilBertForMaskedLM'],
      model_type: 'distilbert',
      activation: 'gelu',
      attention_dropout: 0.1,
      dim: o.hidden,
      dropout: 0.1,
      hidden_dim: o.intermediate,
      initializer_range: 0.02,
      max_position_embeddings: o.maxPositions,
      n_heads: o.heads,
      n_layers: o.layers,
      pad_token_id: 0,
      qa_dropout: 0.1,
      seq_classif_dropout: 0.2,
      sinusoidal_pos_embds: false,
      tie_weights_: true,
      torch_dtype: 'float32',
      vocab_size: vocabSize,
    };
  }
  const roberta = family !== 'bert';
  const arch = family === 'bert' ? 'BertForMaskedLM' : family === 'roberta' ? 'RobertaForMaskedLM' : 'XLMRobertaForMaskedLM';
  return {
    architectures: [arch],
    model_type: family,
    attention_probs_dropout_prob: 0.1,
    ...(roberta ? { bos_token_id: 0, eos_token_id: 2 } : {}),
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    hidden_size: o.hidden,
    initializer_range: 0.02,
    intermediate_size: o.intermediate,
    layer_norm_eps: roberta ? 1e-5 : 1e-12,
    max_position_embeddings: o.maxPositions,
    num_attention_heads: o.heads,
    num_hidden_layers: o.layers,
    pad_token_id: roberta ? 1 : 0,
    position_embedding_type: 'absolute',
    torch_dtype: 'float32',
    type_vocab_size: roberta ? 1 : 2,
    vocab_size: vocabSize,
  };
}

function tokenizerConfig(family: Family, maxLength: number): Record<string, unknown> {
  const sp = SPECIAL_TOKENS[family];
  const cls = { bert: 'BertTokenizerFast', distilbert: 'DistilBertTokenizerFast', roberta: 'RobertaTokenizerFast', 'xlm-roberta': 'XLMRobertaTokenizerFast' }[family];
  return {
    tokenizer_class: cls,
    model_max_length: maxLength,
    ...(family === 'bert' || family === 'distilbert' ? { do_lower_case: true } : { bos_token: sp.cls, eos_token: sp.sep }),
    pad_token: sp.pad,
    unk_token: sp.unk,
    cls_token: sp.cls,
    sep_token: sp.sep,
    mask_token: sp.mask,
  };
}

/** Random weights for `config` in canonical names: N(0, 0.02), LayerNorm 1 / 0, pad rows zero as HF initialises them. */
export function randomWeights(config: BaseConfig, seed = 0, opts: { mlm?: boolean; pooler?: boolean } = {}): Map<string, Tensor> {
  const rng = new Rng(seed);
  const names = requiredCanonicalNames(config);
  if (opts.mlm ?? true) names.push(...MLM_HEAD_NAMES);
  if (opts.pooler) names.push(...POOLER_NAMES);
  const out = new Map<string, Tensor>();
  const D = config.hiddenSize;
  for (const name of names) {
    const shape = canonicalShape(config, name);
    const data = new Float32Array(numel(shape));
    if (/(^|\.)(ln|attn_ln|ffn_ln)\.weight$/.test(name)) data.fill(1);
    else if (/(^|\.)(ln|attn_ln|ffn_ln)\.bias$/.test(name)) data.fill(0);
    // Biases are random too (HF starts them at 0): a reference test then catches a forgotten bias add.
    else rng.fillNormal(data, 0.02);
    if (name === 'embeddings.word') data.fill(0, config.padTokenId * D, (config.padTokenId + 1) * D);
    if (name === 'embeddings.position' && config.positionOffset > 0) data.fill(0, config.padTokenId * D, (config.padTokenId + 1) * D);
    out.set(name, { dtype: 'F32', shape, data });
  }
  return out;
}

/** Writes a tiny random base (see TinyBaseOptions for defaults) and returns its normalised config. */
export async function createTinyBase(opts: TinyBaseOptions): Promise<TinyBase> {
  if (!opts || typeof opts.out !== 'string' || opts.out === '') throw new TypeError("'out' must be a folder path");
  const family = opts.family ?? 'bert';
  if (!(FAMILIES as readonly string[]).includes(family)) throw new RangeError(`'family' must be one of ${FAMILIES.join(', ')}, got '${family}'`);
  const hidden = checkInt('hidden', opts.hidden ?? 32, 1);
  const o = {
    family,
    layers: checkInt('layers', opts.layers ?? 2, 1),
    hidden,
    heads: checkInt('heads', opts.heads ?? 4, 1),
    intermediate: checkInt('intermediate', opts.intermediate ?? 4 * hidden, 1),
    maxPositions: checkInt('maxPositions', opts.maxPositions ?? 128, family === 'roberta' || family === 'xlm-roberta' ? 8 : 6),
  };
  if (hidden % o.heads !== 0) throw new RangeError(`'hidden' (${hidden}) must be divisible by 'heads' (${o.heads})`);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new TypeError(`'seed' must be an integer, got ${seed}`);
  if (opts.vocabSize !== undefined) checkInt('vocabSize', opts.vocabSize, 6);
  if (opts.pooler && family === 'distilbert') throw new RangeError("'pooler' is not available for distilbert (DistilBERT has no pooler)");
  const corpus = opts.corpus ?? BUILTIN_CORPUS;
  if (!Array.isArray(corpus) || corpus.length === 0 || !corpus.every((s) => typeof s === 'string')) {
    throw new TypeError("'corpus' must be a non-empty array of strings");
  }
  if (corpus.every((s) => s.trim() === '')) throw new RangeError("'corpus' holds only empty lines");

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-tiny-'));
  let tokJson: Record<string, unknown>;
  try {
    const corpusFile = path.join(tmp, 'corpus.txt');
    fs.writeFileSync(corpusFile, corpus.map((s) => s.replace(/[\r\n]+/g, ' ')).join('\n') + '\n');
    const bpe = family === 'roberta' || family === 'xlm-roberta';
    const trained = trainRaw(bpe ? 'bpe' : 'wordpiece', corpusFile, path.join(tmp, 'trained.json'));
    tokJson = bpe ? bpeTokenizer(idOrder(trained.vocab), trained.merges ?? [], opts.vocabSize) : wordPieceTokenizer(idOrder(trained.vocab), opts.vocabSize);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const vocabSize = Object.keys((tokJson.model as { vocab: Record<string, number> }).vocab).length;
  const rawConfig = hfConfig(family, o, vocabSize);
  const config = parseConfig(rawConfig, 'config.json');
  const weights = randomWeights(config, seed, { mlm: true, pooler: opts.pooler ?? false });
  const hf = toHf(config, weights);
  let parameters = 0;
  for (const t of weights.values()) parameters += t.data.length;

  fs.mkdirSync(opts.out, { recursive: true });
  fs.writeFileSync(path.join(opts.out, 'config.json'), JSON.stringify(rawConfig, null, 2) + '\n');
  fs.writeFileSync(path.join(opts.out, 'tokenizer.json'), JSON.stringify(tokJson, null, 2) + '\n');
  fs.writeFileSync(path.join(opts.out, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig(family, config.maxSequenceLength), null, 2) + '\n');
  fs.writeFileSync(path.join(opts.out, 'model.safetensors'), serializeSafetensors(hf, { format: 'pt' }));
  // A stale fingerprint of an earlier base in the same folder must not survive.
  fs.rmSync(path.join(opts.out, '.modhub-fingerprint.json'), { force: true });
  return { dir: opts.out, config, parameters };
}
