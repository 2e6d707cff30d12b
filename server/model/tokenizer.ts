/**
 * The base's tokenizer: a thin wrapper over HF `tokenizers` (tokenizer.json) that returns padded, flat
 * batches ready for the engine (ids, attention mask, token types, position ids as [B*T]) plus per-row
 * offsets and word ids for token tasks. Truncation is longest_first for pairs; padding is to the longest row.
 * Example: `const tok = BaseTokenizer.fromFile('base/tokenizer.json', cfg); const b = await tok.encodeBatch(['hi'])`.
 */
import * as fs from 'fs';
import { Tokenizer, type Encoding, type TruncationStrategy } from 'tokenizers';
import { positionIds, type BaseConfig, type Family } from './config';

/** Conventional special tokens of each family. */
export const SPECIAL_TOKENS: Record<Family, { pad: string; unk: string; cls: string; sep: string; mask: string }> = {
  bert: { pad: '[PAD]', unk: '[UNK]', cls: '[CLS]', sep: '[SEP]', mask: '[MASK]' },
  distilbert: { pad: '[PAD]', unk: '[UNK]', cls: '[CLS]', sep: '[SEP]', mask: '[MASK]' },
  roberta: { pad: '<pad>', unk: '<unk>', cls: '<s>', sep: '</s>', mask: '<mask>' },
  'xlm-roberta': { pad: '<pad>', unk: '<unk>', cls: '<s>', sep: '</s>', mask: '<mask>' },
};

export interface EncodeOptions {
  /** Longest row in tokens, special tokens included (default: the config's maxSequenceLength, else 512). */
  maxLength?: number;
  /** Pad T up to a multiple of this (default 1). */
  padToMultipleOf?: number;
}

/** One padded batch; flat arrays are row-major [B*T]. */
export interface EncodedBatch {
  /** B */
  batch: number;
  /** T, the padded length. */
  length: number;
  inputIds: Int32Array;
  attentionMask: Int32Array;
  /** 0/1 for BERT pairs; all 0 for families with at most one token type. */
  tokenTypeIds: Int32Array;
  /** As the family's HF model computes them (RoBERTa: offset by padding_idx + 1, pads get padding_idx). */
  positionIds: Int32Array;
  /** 1 at special tokens ([CLS], [SEP], <s>, </s>) and padding. */
  specialTokensMask: Int32Array;
  /** Real (unpadded) token count per row. */
  lengths: number[];
  tokens: string[][];
  /** Character offsets [start, end) into the row's own text (text or pair, see sequenceIds); [0, 0] for specials. */
  offsets: [number, number][][];
  /** Word index per token within its sequence; null for special tokens. */
  wordIds: (number | null)[][];
  /** 0 = text, 1 = pair, null = special token. */
  sequenceIds: (number | null)[][];
}

const DEFAULT_MAX_LENGTH = 512;

/** Tokenizer of a base model (construct with `BaseTokenizer.fromFile` / `fromString`). */
export class BaseTokenizer {
  readonly family: Family;
  readonly vocabSize: number;
  readonly padId: number;
  readonly padToken: string;
  readonly maskId: number;
  readonly maskToken: string;
  readonly clsId: number;
  readonly sepId: number;
  readonly unkId: number;
  /** Longest allowed row when `maxLength` is not given. */
  readonly defaultMaxLength: number;
  private readonly json: string;
  private readonly base: Tokenizer;
  private readonly truncating = new Map<number, Tokenizer>();
  private readonly config: BaseConfig | undefined;
  private readonly singleTypes: boolean;

  private constructor(json: string, config: BaseConfig | undefined, source: string) {
    this.json = json;
    this.config = config;
    try {
      this.base = Tokenizer.fromString(json);
    } catch (e) {
      throw new TypeError(`${source}: not a valid tokenizer.json (${(e as Error).message})`);
    }
    this.base.disablePadding();
    this.base.disableTruncation();
    const has = (t: string): boolean => this.base.tokenToId(t) !== null;
    const guessed: Family | null = has('[CLS]') ? 'bert' : has('<s>') ? 'roberta' : null;
    const family = config?.family ?? guessed;
    if (!family) throw new TypeError(`${source}: cannot tell the family (no [CLS] or <s> token); pass the base config`);
    this.family = family;
    const sp = SPECIAL_TOKENS[this.family];
    const id = (t: string): number => {
      const v = this.base.tokenToId(t);
      if (v === null || v === undefined) throw new TypeError(`${source}: the ${this.family} special token '${t}' is not in the vocabulary`);
      return v;
    };
    this.vocabSize = this.base.getVocabSize(true);
    this.padId = config ? config.padTokenId : id(sp.pad);
    // The config's pad id is authoritative (a checkpoint may name its pad token differently), but it must exist.
    const padToken = this.base.idToToken(this.padId);
    if (padToken === null || padToken === undefined) throw new RangeError(`${source}: pad_token_id ${this.padId} is not in the vocabulary`);
    this.padToken = padToken;
    this.maskId = id(sp.mask);
    this.maskToken = sp.mask;
    this.clsId = id(sp.cls);
    this.sepId = id(sp.sep);
    this.unkId = id(sp.unk);
    if (config && this.vocabSize > config.vocabSize) {
      throw new RangeError(`${source}: the tokenizer has ${this.vocabSize} tokens, more than the config's vocab_size ${config.vocabSize}`);
    }
    this.defaultMaxLength = config ? config.maxSequenceLength : DEFAULT_MAX_LENGTH;
    this.singleTypes = config ? config.typeVocabSize <= 1 : this.family !== 'bert';
  }

  /** Loads tokenizer.json; `config` (recommended) fixes the family, pad id and maximum length. */
  static fromFile(file: string, config?: BaseConfig): BaseTokenizer {
    let json: string;
    try {
      json = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new TypeError(`${file}: cannot read tokenizer (${(e as Error).message})`);
    }
    return new BaseTokenizer(json, config, file);
  }

  /** Builds from the text of a tokenizer.json. */
  static fromString(json: string, config?: BaseConfig): BaseTokenizer {
    return new BaseTokenizer(json, config, 'tokenizer.json');
  }

  /** Id of `token`, or null when it is not in the vocabulary. */
  tokenToId(token: string): number | null {
    return this.base.tokenToId(token) ?? null;
  }

  /** Token string of `id`, or null. */
  idToToken(id: number): string | null {
    return this.base.idToToken(id) ?? null;
  }

  /** The whole vocabulary (added tokens included), token → id. */
  getVocab(): Record<string, number> {
    return this.base.getVocab(true);
  }

  /** Decodes ids to text (default: special tokens skipped). */
  async decode(ids: ArrayLike<number>, skipSpecialTokens = true): Promise<string> {
    return this.base.decode(Array.from(ids), skipSpecialTokens);
  }

  /** Number of special tokens the post-processor adds for a single text or a pair. */
  numSpecialTokens(pair: boolean): number {
    if (this.family === 'bert' || this.family === 'distilbert') return pair ? 3 : 2;
    return pair ? 4 : 2;
  }

  /** Without a config: the family's HF convention (RoBERTa offsets positions by padding_idx + 1). */
  private guessedPositions(): { positionOffset: number; padTokenId: number } {
    const roberta = this.family === 'roberta' || this.family === 'xlm-roberta';
    return { positionOffset: roberta ? this.padId + 1 : 0, padTokenId: this.padId };
  }

  private tokenizerFor(maxLength: number): Tokenizer {
    let t = this.truncating.get(maxLength);
    if (!t) {
      // One instance per length: setTruncation mutates the tokenizer, and encodes run asynchronously.
      t = Tokenizer.fromString(this.json);
      t.disablePadding();
      t.setTruncation(maxLength, { strategy: 'LongestFirst' as TruncationStrategy });
      // Callers use a handful of lengths; keep the 8 most recently created.
      if (this.truncating.size >= 8) this.truncating.delete(this.truncating.keys().next().value as number);
      this.truncating.set(maxLength, t);
    }
    return t;
  }

  /** Encodes one text (or pair) as a batch of one. */
  async encode(text: string, pair?: string, opts: EncodeOptions = {}): Promise<EncodedBatch> {
    return this.encodeBatch([text], pair === undefined ? undefined : [pair], opts);
  }

  /**
   * Tokenises `texts` (with optional `pairs`, same length), truncates each row to `maxLength` (longest_first
   * for pairs; default config maxSequenceLength) and pads to the longest row, rounded up to `padToMultipleOf`.
   */
  async encodeBatch(texts: string[], pairs?: string[], opts: EncodeOptions = {}): Promise<EncodedBatch> {
    if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string')) throw new TypeError("'texts' must be an array of strings");
    if (pairs !== undefined) {
      if (!Array.isArray(pairs) || !pairs.every((t) => typeof t === 'string')) throw new TypeError("'pairs' must be an array of strings");
      if (pairs.length !== texts.length) throw new RangeError(`'pairs' must have as many entries as 'texts' (${texts.length}), got ${pairs.length}`);
    }
    const maxLength = opts.maxLength ?? this.defaultMaxLength;
    const minLength = this.numSpecialTokens(pairs !== undefined) + (pairs !== undefined ? 2 : 1);
    if (!Number.isInteger(maxLength) || maxLength < minLength) throw new RangeError(`'maxLength' must be an integer >= ${minLength}, got ${maxLength}`);
    if (maxLength > this.defaultMaxLength && this.config) {
      throw new RangeError(`'maxLength' must be <= ${this.defaultMaxLength} (the model's position table), got ${maxLength}`);
    }
    const multiple = opts.padToMultipleOf ?? 1;
    if (!Number.isInteger(multiple) || multiple < 1) throw new RangeError(`'padToMultipleOf' must be a positive integer, got ${multiple}`);
    const B = texts.length;
    let encodings: Encoding[] = [];
    if (B > 0) {
      const tok = this.tokenizerFor(maxLength);
      // The node bindings' encodeBatch takes single sequences only; pairs go through encode one by one.
      encodings = pairs ? await Promise.all(texts.map((t, i) => tok.encode(t, pairs[i]))) : await tok.encodeBatch(texts);
    }
    const lengths = encodings.map((e) => e.getLength());
    let T = Math.max(1, ...lengths);
    T = Math.ceil(T / multiple) * multiple;
    const inputIds = new Int32Array(B * T).fill(this.padId);
    const attentionMask = new Int32Array(B * T);
    const tokenTypeIds = new Int32Array(B * T);
    const specialTokensMask = new Int32Array(B * T).fill(1);
    const tokens: string[][] = [];
    const offsets: [number, number][][] = [];
    const wordIds: (number | null)[][] = [];
    const sequenceIds: (number | null)[][] = [];
    encodings.forEach((e, b) => {
      const n = lengths[b];
      const base = b * T;
      inputIds.set(e.getIds(), base);
      attentionMask.fill(1, base, base + n);
      if (!this.singleTypes) tokenTypeIds.set(e.getTypeIds(), base);
      specialTokensMask.set(e.getSpecialTokensMask(), base);
      const toks = e.getTokens();
      const offs = e.getOffsets().map((o) => [o[0], o[1]] as [number, number]);
      const words = e.getWordIds().map((w) => (w === undefined ? null : w));
      const seqs = e.getSequenceIds().map((s) => (s === undefined ? null : s));
      for (let i = n; i < T; i++) {
        toks.push(this.padToken);
        offs.push([0, 0]);
        words.push(null);
        seqs.push(null);
      }
      tokens.push(toks);
      offsets.push(offs);
      wordIds.push(words);
      sequenceIds.push(seqs);
    });
    const positions = positionIds(this.config ?? this.guessedPositions(), inputIds, T);
    return { batch: B, length: T, inputIds, attentionMask, tokenTypeIds, positionIds: positions, specialTokensMask, lengths, tokens, offsets, wordIds, sequenceIds };
  }
}


/** Widens an id array for int64 graph inputs. */
export function toBigInt64(a: ArrayLike<number>): BigInt64Array {
  const out = new BigInt64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = BigInt(a[i]);
  return out;
}
