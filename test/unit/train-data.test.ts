/** Training-data readers: formats, column options, label sets, and file:line errors for bad files. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  buildLabelSet, DataFileError, detectTextFormat, iterateTextDocuments, parseDelimited, parseTextClassification, parseTokenTagging,
  readPlainText, readPlainTextSync, readTextClassification, readTokenTagging, sortLabels,
} from '../../server/train/data';

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-data-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
function write(name: string, text: string): string {
  const f = path.join(root, name);
  fs.writeFileSync(f, text);
  return f;
}
/** Expects a DataFileError at `line` whose message contains `what`. */
function expectDataError(fn: () => unknown, file: string, line: number, what: string | RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DataFileError);
  const e = err as DataFileError;
  expect(e.file).toBe(file);
  expect(e.line).toBe(line);
  expect(e.message.startsWith(line > 0 ? `${file}:${line}: ` : `${file}: `)).toBe(true);
  if (typeof what === 'string') expect(e.message).toContain(what);
  else expect(e.message).toMatch(what);
}

describe('parseDelimited (RFC 4180)', () => {
  test('quoted fields with delimiters, doubled quotes, line breaks; CRLF; BOM; blank lines', () => {
    const text = '\ufefftext,label\r\n"a, b",x\r\n"say ""hi""",y\n\n"two\nlines",z\nplain,"w"\n';
    const r = parseDelimited(text, 'f.csv');
    expect(r.map((x) => x.fields)).toEqual([['text', 'label'], ['a, b', 'x'], ['say "hi"', 'y'], ['two\nlines', 'z'], ['plain', 'w']]);
    expect(r.map((x) => x.line)).toEqual([1, 2, 3, 5, 7]);
  });

  test('empty fields, a last line without a newline, spaces around quotes', () => {
    expect(parseDelimited('a,,c\n,\n"" \n x , "y" ', 'f.csv').map((r) => r.fields)).toEqual([['a', '', 'c'], ['', ''], [''], [' x ', 'y']]);
  });

  test('TSV without quoting keeps quotes as characters', () => {
    expect(parseDelimited('a "quoted\tb\n', 'f.tsv', { delimiter: '\t', quoting: false }).map((r) => r.fields)).toEqual([['a "quoted', 'b']]);
  });

  test('errors', () => {
    expectDataError(() => parseDelimited('a,b\n"open,x\ny,z\n', 'f.csv'), 'f.csv', 2, 'quoted field is never closed');
    expectDataError(() => parseDelimited('a,b\nab"c,d\n', 'f.csv'), 'f.csv', 2, "stray '\"'");
    expectDataError(() => parseDelimited('a,b\n"x"y,d\n', 'f.csv'), 'f.csv', 2, 'unexpected "y" after a closing quote');
    expect(() => parseDelimited('a', 'f', { delimiter: '"' })).toThrow(RangeError);
  });
});

describe('sequence classification', () => {
  test('CSV with pairs and inferred labels (sorted, counted)', async () => {
    const f = write('pairs.csv', 'label,text,text_pair\nneutral,"A man, walking",A person\nentail,Hi,Hello\nneutral,x,y\ncontradict,"He said ""no""",Yes\n');
    const d = await readTextClassification(f);
    expect(d.hasPairs).toBe(true);
    expect(d.examples[0]).toEqual({ text: 'A man, walking', pair: 'A person', label: 'neutral', line: 2 });
    expect(d.examples[3].text).toBe('He said "no"');
    expect(d.labels.labels).toEqual(['contradict', 'entail', 'neutral']);
    expect(d.labels.counts).toEqual({ contradict: 1, entail: 1, neutral: 2 });
    expect(d.labels.index.get('neutral')).toBe(2);
  });

  test('TSV with custom columns and no pair column', async () => {
    const f = write('sst.tsv', 'sentence\tlabel\nit\'s a "great" film\t1\nboring\t0\n');
    const d = await readTextClassification(f, { textColumn: 'sentence' });
    expect(d.hasPairs).toBe(false);
    expect(d.examples).toEqual([{ text: 'it\'s a "great" film', label: '1', line: 2 }, { text: 'boring', label: '0', line: 3 }]);
    expect(d.examples[0].pair).toBeUndefined();
    expect(d.labels.labels).toEqual(['0', '1']);
  });

  test('JSONL with string and numeric labels, blank lines, custom columns', async () => {
    const f = write('topics.jsonl', '{"body": "Markets rally", "y": "business"}\n\n{"body": "Cup final", "y": "sport"}\n{"body": "Stocks", "y": "business"}\n');
    const d = await readTextClassification(f, { textColumn: 'body', labelColumn: 'y' });
    expect(d.examples.map((e) => [e.text, e.label, e.line])).toEqual([['Markets rally', 'business', 1], ['Cup final', 'sport', 3], ['Stocks', 'business', 4]]);
    expect(d.labels.counts).toEqual({ business: 2, sport: 1 });
    const n = parseTextClassification('{"text":"a","label":10}\n{"text":"b","label":2}\n', 'n.jsonl');
    expect(n.labels.labels).toEqual(['2', '10']); // numeric labels sort as numbers
  });

  test('fixed label set: its order is the index, zero counts kept, unknown labels refused', () => {
    const d = parseTextClassification('{"text":"a","label":"pos"}\n', 'x.jsonl', { labels: ['neg', 'pos', 'neutral'] });
    expect(d.labels.labels).toEqual(['neg', 'pos', 'neutral']);
    expect(d.labels.counts).toEqual({ neg: 0, pos: 1, neutral: 0 });
    expectDataError(() => parseTextClassification('{"text":"a","label":"pos"}\n{"text":"b","label":"meh"}\n', 'x.jsonl', { labels: ['neg', 'pos'] }),
      'x.jsonl', 2, 'unknown \'label\' "meh"; the label set is "neg", "pos"');
    expectDataError(() => parseTextClassification('text,label\na,pos\nb,meh\n', 'x.csv', { labels: ['neg', 'pos'] }), 'x.csv', 3, 'unknown \'label\' "meh"');
  });

  test('integer labels as indices into the label set (GLUE style)', () => {
    const d = parseTextClassification('{"text":"a","label":1}\n{"text":"b","label":0}\n', 'g.jsonl', { labels: ['negative', 'positive'], numericLabels: 'index' });
    expect(d.examples.map((e) => e.label)).toEqual(['positive', 'negative']);
    const t = parseTextClassification('sentence\tlabel\na\t1\n', 'g.tsv', { textColumn: 'sentence', labels: ['negative', 'positive'], numericLabels: 'index' });
    expect(t.examples[0].label).toBe('positive');
    expectDataError(() => parseTextClassification('{"text":"a","label":2}\n', 'g.jsonl', { labels: ['n', 'p'], numericLabels: 'index' }), 'g.jsonl', 1, 'not an index into the 2 labels');
    expect(() => parseTextClassification('', 'g.jsonl', { numericLabels: 'index' })).toThrow("'numericLabels: index' needs 'labels'");
  });

  test.each([
    ['bad.jsonl', '{"text":"a","label":"x"}\n{"text": "b", label: 1}\n', 2, 'bad JSON'],
    ['arr.jsonl', '[1, 2]\n', 1, 'expected one JSON object per line (JSON Lines), got an array'],
    ['notext.jsonl', '{"text":"a","label":"x"}\n{"label":"x"}\n', 2, "missing 'text'"],
    ['empty.jsonl', '{"text":"  ","label":"x"}\n', 1, "empty 'text'"],
    ['numtext.jsonl', '{"text":5,"label":"x"}\n', 1, "'text' must be a string, got 5"],
    ['nolabel.jsonl', '{"text":"a"}\n', 1, "missing 'label'"],
    ['objlabel.jsonl', '{"text":"a","label":{"k":1}}\n', 1, "'label' must be a string or a number"],
    ['emptylabel.jsonl', '{"text":"a","label":""}\n', 1, "empty 'label'"],
    ['pairmix.jsonl', '{"text":"a","text_pair":"b","label":"x"}\n{"text":"a","label":"x"}\n', 2, "missing 'text_pair'"],
    ['pairlate.jsonl', '{"text":"a","label":"x"}\n{"text":"a","text_pair":"b","label":"x"}\n', 2, "has 'text_pair' but the first record does not"],
    ['nocol.csv', 'sentence,label\na,b\n', 1, "no column 'text' in the header; columns are \"sentence\", \"label\""],
    ['fields.csv', 'text,label\na,b\nc,d,e\n', 3, '3 field(s), the header has 2 (quote fields that contain commas)'],
    ['emptytext.csv', 'text,label\n"",x\n', 2, "empty 'text'"],
    ['emptylabel.tsv', 'text\tlabel\nhello\t\n', 2, "empty 'label'"],
    ['dup.csv', 'text,label,text\na,b,c\n', 1, "header names column 'text' twice"],
    ['unclosed.csv', 'text,label\n"a,b\n', 2, 'quoted field is never closed'],
  ])('%s: error at line %#', async (name, text, line, what) => {
    const f = write(name as string, text as string);
    await expect(readTextClassification(f)).rejects.toBeInstanceOf(DataFileError);
    expectDataError(() => parseTextClassification(text as string, f), f, line as number, what as string);
  });

  test('whole-file errors', async () => {
    expectDataError(() => parseTextClassification('', 'e.csv'), 'e.csv', 0, 'is empty (expected a header line)');
    expectDataError(() => parseTextClassification('text,label\n', 'h.csv'), 'h.csv', 0, 'has no examples');
    expectDataError(() => parseTextClassification('\n\n', 'b.jsonl'), 'b.jsonl', 0, 'has no examples');
    const missing = path.join(root, 'nope.csv');
    await expect(readTextClassification(missing)).rejects.toThrow(`${missing}: cannot read`);
    expect(() => detectTextFormat('data.txt')).toThrow(/'format' is needed/);
    // an explicit format overrides the extension
    const d = parseTextClassification('a\tb\nhello\tx\n', 'data.txt', { format: 'tsv', textColumn: 'a', labelColumn: 'b', pairColumn: null });
    expect(d.examples).toEqual([{ text: 'hello', label: 'x', line: 2 }]);
  });
});

describe('token tagging', () => {
  test('CoNLL-2003 columns (token first, tag last), -DOCSTART-, blank lines, tabs and spaces', async () => {
    const f = write('ner.conll', '-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n\nPeter\tB-PER\nBlackburn\tI-PER\n');
    const d = await readTokenTagging(f);
    expect(d.sentences).toEqual([
      { tokens: ['EU', 'rejects', 'German'], tags: ['B-ORG', 'O', 'B-MISC'], line: 3 },
      { tokens: ['Peter', 'Blackburn'], tags: ['B-PER', 'I-PER'], line: 8 },
    ]);
    expect(d.labels.labels).toEqual(['B-MISC', 'B-ORG', 'B-PER', 'I-PER', 'O']);
    expect(d.labels.counts['O']).toBe(1);
  });

  test('tab-separated tokens may contain spaces', () => {
    const d = parseTokenTagging('New York\tB-LOC\nis\tO\n', 't.conll');
    expect(d.sentences[0].tokens).toEqual(['New York', 'is']);
  });

  test('JSONL tokens + tags, custom fields, numeric tags as names or indices', async () => {
    const f = write('ner.jsonl', '{"tokens": ["Berlin", "is", "big"], "tags": ["B-LOC", "O", "O"]}\n{"tokens": ["Ana"], "tags": ["B-PER"]}\n');
    const d = await readTokenTagging(f);
    expect(d.sentences.map((s) => s.line)).toEqual([1, 2]);
    expect(d.labels.counts).toEqual({ 'B-LOC': 1, 'B-PER': 1, O: 2 });
    const hf = parseTokenTagging('{"words": ["a", "b"], "ner_tags": [0, 3]}\n', 'h.jsonl', { tokensField: 'words', tagsField: 'ner_tags', labels: ['O', 'B-PER', 'I-PER', 'B-LOC'], numericLabels: 'index' });
    expect(hf.sentences[0].tags).toEqual(['O', 'B-LOC']);
    expect(parseTokenTagging('{"tokens": ["a"], "tags": [7]}\n', 'n.jsonl').sentences[0].tags).toEqual(['7']);
  });

  test.each([
    ['one.conll', 'EU B-ORG\nrejects\n', 2, "expected 'token<TAB>tag' (or 'token tag'), got one column \"rejects\""],
    ['unk.conll', 'EU B-ORG\nx B-FOO\n', 2, 'unknown tag "B-FOO"'],
    ['emptytok.conll', 'EU\tO\n\tO\n', 2, 'empty token'],
    ['len.jsonl', '{"tokens": ["a", "b"], "tags": ["O"]}\n', 1, '2 tokens but 1 tags'],
    ['notoks.jsonl', '{"tags": ["O"]}\n', 1, "missing 'tokens'"],
    ['notags.jsonl', '{"tokens": ["a"]}\n', 1, "missing 'tags'"],
    ['badtoks.jsonl', '{"tokens": "a b", "tags": ["O"]}\n', 1, "'tokens' must be an array of strings"],
    ['emptytoks.jsonl', '{"tokens": [], "tags": []}\n', 1, "empty 'tokens'"],
    ['blanktok.jsonl', '{"tokens": ["a", " "], "tags": ["O", "O"]}\n', 1, 'token 1 is empty'],
    ['nulltag.jsonl', '{"tokens": ["a"], "tags": [null]}\n', 1, 'missing tag 0'],
    ['json.jsonl', '{"tokens": ["a"],\n', 1, 'bad JSON'],
  ])('%s: error at line %#', (name, text, line, what) => {
    const fixed = name === 'unk.conll' ? { labels: ['B-ORG', 'O'] } : {};
    expectDataError(() => parseTokenTagging(text as string, name as string, fixed), name as string, line as number, what as string);
  });

  test('a file without sentences', () => {
    expectDataError(() => parseTokenTagging('-DOCSTART- O\n\n\n', 'd.conll'), 'd.conll', 0, 'has no sentences');
  });
});

describe('plain text', () => {
  test('one document per line; blank lines skipped; maxDocuments; streaming', async () => {
    const f = write('corpus.txt', '\ufeffFirst doc.\n\n  \nSecond doc.\r\nThird doc.');
    const docs = await readPlainText(f);
    expect(docs).toEqual([{ text: 'First doc.', line: 1 }, { text: 'Second doc.', line: 4 }, { text: 'Third doc.', line: 5 }]);
    expect(readPlainTextSync(f)).toEqual(docs);
    expect(await readPlainText(f, { maxDocuments: 2 })).toHaveLength(2);
    expect(readPlainTextSync(f, { maxDocuments: 1 })).toHaveLength(1);
    const streamed = [];
    for await (const d of iterateTextDocuments(f)) streamed.push(d);
    expect(streamed).toEqual(docs);
  });

  test('errors', async () => {
    const blank = write('blank.txt', '\n  \n');
    await expect(readPlainText(blank)).rejects.toThrow(`${blank}: has no text (every line is blank)`);
    expect(() => readPlainTextSync(blank)).toThrow(DataFileError);
    await expect(readPlainText(path.join(root, 'missing.txt'))).rejects.toThrow(/missing\.txt: cannot read/);
    await expect(readPlainText(blank, { maxDocuments: 0 })).rejects.toThrow(RangeError);
  });
});

describe('labels', () => {
  test('sortLabels: numeric when all numeric, else code-point order', () => {
    expect(sortLabels(['10', '2', '-1', '2'])).toEqual(['-1', '2', '10']);
    expect(sortLabels(['b', 'B', 'a', '10', '9'])).toEqual(['10', '9', 'B', 'a', 'b']);
  });
  test('buildLabelSet with and without a fixed set', () => {
    expect(buildLabelSet(['x', 'y', 'x'])).toMatchObject({ labels: ['x', 'y'], counts: { x: 2, y: 1 } });
    expect(() => parseTextClassification('{"text":"a","label":"x"}\n', 'f.jsonl', { labels: ['x', 'x'] })).toThrow("'labels' lists 'x' twice");
    expect(() => parseTextClassification('{"text":"a","label":"x"}\n', 'f.jsonl', { labels: [] })).toThrow(TypeError);
  });
});
