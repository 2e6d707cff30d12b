/** The base tokenizer wrapper: special tokens per family, pairs, truncation, padding, offsets, word ids. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadBase } from '../../server/model/base';
import { BaseTokenizer, toBigInt64 } from '../../server/model/tokenizer';
import { createTinyBase } from '../../server/model/tiny';

let root: string;
let bert: BaseTokenizer;
let roberta: BaseTokenizer;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-tok-'));
  await createTinyBase({ out: path.join(root, 'bert'), family: 'bert', maxPositions: 64 });
  await createTinyBase({ out: path.join(root, 'roberta'), family: 'roberta', maxPositions: 66 });
  bert = (await loadBase(path.join(root, 'bert'))).tokenizer;
  roberta = (await loadBase(path.join(root, 'roberta'))).tokenizer;
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const row = (a: Int32Array, b: number, T: number): number[] => Array.from(a.subarray(b * T, (b + 1) * T));

describe('bert', () => {
  test('single text: [CLS] text [SEP], offsets into the original text, word ids', async () => {
    const text = 'The quick brown fox';
    const e = await bert.encode(text);
    const toks = e.tokens[0];
    expect(toks[0]).toBe('[CLS]');
    expect(toks[toks.length - 1]).toBe('[SEP]');
    expect(e.length).toBe(toks.length);
    expect(row(e.attentionMask, 0, e.length)).toEqual(new Array(e.length).fill(1));
    expect(row(e.tokenTypeIds, 0, e.length)).toEqual(new Array(e.length).fill(0));
    expect(e.inputIds[0]).toBe(bert.clsId);
    expect(e.inputIds[e.length - 1]).toBe(bert.sepId);
    expect(row(e.specialTokensMask, 0, e.length)).toEqual([1, ...new Array(e.length - 2).fill(0), 1]);
    for (let i = 1; i < e.length - 1; i++) {
      const [s, t] = e.offsets[0][i];
      expect(text.slice(s, t).toLowerCase()).toBe(toks[i].replace(/^##/, ''));
    }
    const words = e.wordIds[0];
    expect(words[0]).toBeNull();
    expect(words[words.length - 1]).toBeNull();
    expect([...new Set(words.filter((w) => w !== null))]).toEqual([0, 1, 2, 3]);
    expect(Array.from(e.positionIds)).toEqual([...Array(e.length).keys()]);
    expect(await bert.decode(e.inputIds)).toBe('the quick brown fox');
  });

  test('offsets are character offsets into the original (accented, uppercase) text', async () => {
    const text = 'Über café Straße';
    const e = await bert.encode(text);
    const firstOfWord = (w: number): [number, number] => e.offsets[0][e.wordIds[0].indexOf(w)];
    const lastOfWord = (w: number): [number, number] => e.offsets[0][e.wordIds[0].lastIndexOf(w)];
    expect(text.slice(firstOfWord(0)[0], lastOfWord(0)[1])).toBe('Über');
    expect(text.slice(firstOfWord(1)[0], lastOfWord(1)[1])).toBe('café');
    expect(text.slice(firstOfWord(2)[0], lastOfWord(2)[1])).toBe('Straße');
  });

  test('pair: [CLS] a [SEP] b [SEP] with token types 0 / 1 and sequence ids', async () => {
    const e = await bert.encode('hello world', 'the fox');
    const toks = e.tokens[0];
    const seps = toks.flatMap((t, i) => (t === '[SEP]' ? [i] : []));
    expect(toks[0]).toBe('[CLS]');
    expect(seps).toHaveLength(2);
    expect(seps[1]).toBe(toks.length - 1);
    const types = row(e.tokenTypeIds, 0, e.length);
    expect(types).toEqual(toks.map((_, i) => (i <= seps[0] ? 0 : 1)));
    expect(e.sequenceIds[0]).toEqual(toks.map((t, i) => (t === '[CLS]' || t === '[SEP]' ? null : i < seps[0] ? 0 : 1)));
    // offsets of the pair refer to the pair's own text
    const pairTok = seps[0] + 1;
    expect('the fox'.slice(...e.offsets[0][pairTok])).toBe(toks[pairTok]);
    expect(e.wordIds[0][pairTok]).toBe(0);
  });

  test('truncation: longest_first trims the longer sequence of a pair', async () => {
    const long = 'the quick brown fox jumps over the lazy dog and the cat sleeps in the sun all day long';
    const e = await bert.encode(long, 'the dog', { maxLength: 12 });
    expect(e.length).toBe(12);
    const toks = e.tokens[0];
    const seps = toks.flatMap((t, i) => (t === '[SEP]' ? [i] : []));
    expect(toks.slice(seps[0] + 1, seps[1])).toEqual(['the', 'dog']); // the short one is intact
    expect(seps[0] - 1).toBe(12 - 3 - 2); // the long one gets the rest
    const both = await bert.encode(long, long, { maxLength: 13 });
    const s2 = both.tokens[0].flatMap((t, i) => (t === '[SEP]' ? [i] : []));
    const aLen = s2[0] - 1;
    const bLen = s2[1] - s2[0] - 1;
    expect(aLen + bLen).toBe(10);
    expect(Math.abs(aLen - bLen)).toBeLessThanOrEqual(1);
    const single = await bert.encode(long, undefined, { maxLength: 5 });
    expect(single.tokens[0]).toEqual(['[CLS]', 'the', 'quick', 'brown', '[SEP]']);
  });

  test('padding to the longest row, rounded up to padToMultipleOf', async () => {
    const e = await bert.encodeBatch(['a', 'the quick brown fox', 'dog'], undefined, { padToMultipleOf: 8 });
    expect(e.batch).toBe(3);
    const longest = Math.max(...e.lengths);
    expect(e.length).toBe(Math.ceil(longest / 8) * 8);
    expect(e.inputIds.length).toBe(3 * e.length);
    for (let b = 0; b < 3; b++) {
      const n = e.lengths[b];
      expect(row(e.attentionMask, b, e.length)).toEqual([...new Array(n).fill(1), ...new Array(e.length - n).fill(0)]);
      expect(row(e.inputIds, b, e.length).slice(n)).toEqual(new Array(e.length - n).fill(bert.padId));
      expect(row(e.specialTokensMask, b, e.length).slice(n)).toEqual(new Array(e.length - n).fill(1));
      expect(e.tokens[b].slice(n)).toEqual(new Array(e.length - n).fill('[PAD]'));
      expect(e.offsets[b]).toHaveLength(e.length);
      expect(e.wordIds[b].slice(n)).toEqual(new Array(e.length - n).fill(null));
    }
    const unpadded = await bert.encodeBatch(['a', 'the quick brown fox']);
    expect(unpadded.length).toBe(Math.max(...unpadded.lengths));
  });

  test('concurrent batches with different maxLength do not interfere', async () => {
    const text = 'the quick brown fox jumps over the lazy dog';
    const [a, b, c] = await Promise.all([
      bert.encode(text, undefined, { maxLength: 4 }),
      bert.encode(text, undefined, { maxLength: 7 }),
      bert.encode(text),
    ]);
    expect(a.length).toBe(4);
    expect(b.length).toBe(7);
    expect(c.length).toBeGreaterThan(7);
    // more distinct lengths than the cache holds still truncate correctly
    for (let m = 3; m <= 14; m++) expect((await bert.encode(text, undefined, { maxLength: m })).length).toBe(Math.min(m, c.length));
    expect((await bert.encode(text, undefined, { maxLength: 4 })).length).toBe(4);
  });

  test('special tokens, mask token and vocabulary', () => {
    expect(bert.family).toBe('bert');
    expect(bert.maskToken).toBe('[MASK]');
    expect(bert.tokenToId('[MASK]')).toBe(bert.maskId);
    expect(bert.idToToken(bert.padId)).toBe('[PAD]');
    expect(Object.keys(bert.getVocab())).toHaveLength(bert.vocabSize);
    expect(bert.numSpecialTokens(false)).toBe(2);
    expect(bert.numSpecialTokens(true)).toBe(3);
  });
});

describe('roberta', () => {
  test('pair: <s> a </s></s> b </s>, token types all 0, positions from padding_idx + 1', async () => {
    const e = await roberta.encodeBatch(['Hello world', 'Der Fuchs springt'], ['the fox', 'x']);
    for (let b = 0; b < 2; b++) {
      const toks = e.tokens[b].slice(0, e.lengths[b]);
      expect(toks[0]).toBe('<s>');
      const eos = toks.flatMap((t, i) => (t === '</s>' ? [i] : []));
      expect(eos).toHaveLength(3);
      expect(eos[1]).toBe(eos[0] + 1);
      expect(eos[2]).toBe(toks.length - 1);
    }
    expect(Array.from(e.tokenTypeIds)).toEqual(new Array(e.batch * e.length).fill(0));
    const T = e.length;
    const n1 = e.lengths[1];
    expect(n1).toBeLessThan(T);
    expect(row(e.positionIds, 1, T)).toEqual([...[...Array(n1).keys()].map((i) => i + 2), ...new Array(T - n1).fill(1)]);
    expect(row(e.inputIds, 1, T).slice(n1)).toEqual(new Array(T - n1).fill(roberta.padId));
    expect(roberta.padId).toBe(1);
  });

  test('byte-level offsets and lossless decoding', async () => {
    const text = 'Der schnelle Fuchs, café 東京!';
    const e = await roberta.encode(text);
    const toks = e.tokens[0];
    for (let i = 1; i < e.length - 1; i++) {
      const [s, t] = e.offsets[0][i];
      expect(t).toBeGreaterThanOrEqual(s); // byte pieces of one CJK character may share or lack a span
      if (/^Ġ?[A-Za-z,!]+$/.test(toks[i])) expect(text.slice(s, t)).toBe(toks[i].replace(/^Ġ/, ''));
    }
    expect(await roberta.decode(e.inputIds)).toBe(text);
    expect(await roberta.decode(e.inputIds, false)).toBe(`<s>${text}</s>`);
    expect(roberta.maskToken).toBe('<mask>');
    expect(roberta.numSpecialTokens(true)).toBe(4);
  });

  test('truncation keeps </s></s> between the pair', async () => {
    const long = 'The quick brown fox jumps over the lazy dog and the cat sleeps in the sun';
    const e = await roberta.encode(long, long, { maxLength: 14 });
    expect(e.length).toBe(14);
    const toks = e.tokens[0];
    expect(toks.filter((t) => t === '</s>')).toHaveLength(3);
    expect(toks[13]).toBe('</s>');
  });
});

describe('errors and edges', () => {
  test('argument errors name the argument', async () => {
    await expect(bert.encodeBatch(['a', 'b'], ['x'])).rejects.toThrow("'pairs' must have as many entries as 'texts' (2), got 1");
    await expect(bert.encodeBatch(['a'], undefined, { maxLength: 1 })).rejects.toThrow(RangeError);
    await expect(bert.encodeBatch(['a'], ['b'], { maxLength: 4 })).rejects.toThrow("'maxLength' must be an integer >= 5, got 4");
    await expect(bert.encodeBatch(['a'], undefined, { maxLength: 65 })).rejects.toThrow("'maxLength' must be <= 64");
    await expect(roberta.encodeBatch(['a'], undefined, { maxLength: 65 })).rejects.toThrow("'maxLength' must be <= 64");
    await expect(bert.encodeBatch(['a'], undefined, { padToMultipleOf: 0 })).rejects.toThrow(/'padToMultipleOf'/);
    await expect(bert.encodeBatch([1 as unknown as string])).rejects.toThrow(TypeError);
  });

  test('an empty batch is B = 0', async () => {
    const e = await bert.encodeBatch([]);
    expect(e.batch).toBe(0);
    expect(e.inputIds.length).toBe(0);
  });

  test('without a config the family is read from the vocabulary', async () => {
    const t = BaseTokenizer.fromFile(path.join(root, 'roberta', 'tokenizer.json'));
    expect(t.family).toBe('roberta');
    expect(t.padId).toBe(1);
    const e = await t.encodeBatch(['hello', 'hello world foo'], undefined);
    expect(row(e.positionIds, 0, e.length).slice(0, 3)).toEqual([2, 3, 4]);
    expect(() => BaseTokenizer.fromString('{"nope": 1}')).toThrow(/not a valid tokenizer.json/);
    expect(() => BaseTokenizer.fromFile(path.join(root, 'none.json'))).toThrow(/cannot read tokenizer/);
  });

  test('toBigInt64', () => {
    expect(Array.from(toBigInt64(Int32Array.from([1, -2, 3])))).toEqual([1n, -2n, 3n]);
  });
});
