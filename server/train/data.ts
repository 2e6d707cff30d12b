/**
 * Training-data readers for the trainer: sequence classification (JSONL / CSV / TSV with text, optional text
 * pair and label columns), token tagging (CoNLL-style columns or JSONL tokens + tags) and plain text for MLM
 * (one document per line). Every problem in a file is reported as `DataFileError` with `file:line: what`.
 * Example: `const { examples, labels } = await readTextClassification('train.csv', { textColumn: 'sentence' })`.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';

/**
 * A problem in a data file. Not a TypeError/RangeError: those name a wrong argument of ours, this one a line of
 * the user's file, and callers (CLI, HTTP) show it as the user's input error.
 */
export class DataFileError extends Error {
  readonly file: string;
  /** 1-based line number; 0 when the problem concerns the whole file. */
  readonly line: number;

  constructor(file: string, line: number, what: string) {
    super(line > 0 ? `${file}:${line}: ${what}` : `${file}: ${what}`);
    this.name = 'DataFileError';
    this.file = file;
    this.line = line;
  }
}

export type TextFormat = 'jsonl' | 'csv' | 'tsv';
export type TaggingFormat = 'conll' | 'jsonl';

/** Labels of a data set: names in index order, how often each occurs, and name → index. */
export interface LabelSet {
  labels: string[];
  counts: Record<string, number>;
  index: Map<string, number>;
}

export interface TextExample {
  text: string;
  /** Present when the file has the pair column. */
  pair?: string;
  label: string;
  /** Line where the record starts. */
  line: number;
}

export interface TaggedSentence {
  tokens: string[];
  tags: string[];
  /** Line of the first token (CoNLL) or of the record (JSONL). */
  line: number;
}

export interface TextDocument {
  text: string;
  line: number;
}

export interface TextClassificationOptions {
  /** Default: from the extension (.jsonl/.json/.ndjson → jsonl, .csv → csv, .tsv/.tab → tsv). */
  format?: TextFormat;
  /** default 'text' */
  textColumn?: string;
  /** default 'text_pair'; used when the file has it (CSV/TSV header, first JSONL record); null: never. */
  pairColumn?: string | null;
  /** default 'label' */
  labelColumn?: string;
  /** Fixed label set (index = logit index); a label outside it is an error. Default: inferred, sorted. */
  labels?: string[];
  /** How integer labels are read: 'name' (default; 3 → "3") or 'index' (3 → labels[3], needs `labels`; GLUE-style ids). */
  numericLabels?: 'name' | 'index';
}

export interface TaggingOptions {
  /** Default: .jsonl/.json/.ndjson → jsonl, anything else → conll. */
  format?: TaggingFormat;
  /** JSONL field of the token list (default 'tokens'). */
  tokensField?: string;
  /** JSONL field of the tag list (default 'tags'). */
  tagsField?: string;
  /** Fixed tag set; a tag outside it is an error. Default: inferred, sorted. */
  labels?: string[];
  /** How integer tags in JSONL are read: 'name' (default) or 'index' into `labels` (HF datasets' ClassLabel ids). */
  numericLabels?: 'name' | 'index';
}

export interface PlainTextOptions {
  /** Stop after this many documents (default: all). */
  maxDocuments?: number;
}

// ---------------------------------------------------------------------------------------------------------
// formats and labels

/** Format of a sequence-classification file from its extension; throws when the extension says nothing. */
export function detectTextFormat(file: string): TextFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.json' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv' || ext === '.tab') return 'tsv';
  throw new RangeError(`'format' is needed: cannot tell the format of '${file}' from its extension (use jsonl, csv or tsv)`);
}

/** Format of a token-tagging file from its extension (JSONL, else CoNLL columns). */
export function detectTaggingFormat(file: string): TaggingFormat {
  const ext = path.extname(file).toLowerCase();
  return ext === '.jsonl' || ext === '.json' || ext === '.ndjson' ? 'jsonl' : 'conll';
}

/**
 * Sorted unique labels: numerically when every label is a number ("2" before "10"), otherwise by code point
 * (locale-independent, so the label → index mapping is the same on every machine).
 */
export function sortLabels(labels: Iterable<string>): string[] {
  const unique = [...new Set(labels)];
  const numeric = unique.length > 0 && unique.every((l) => l.trim() !== '' && Number.isFinite(Number(l)));
  return numeric ? unique.sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : a > b ? 1 : 0)) : unique.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Label set from observed labels: `fixed` (in its order) when given, else the sorted unique labels; with counts. */
export function buildLabelSet(observed: Iterable<string>, fixed?: string[]): LabelSet {
  const counts: Record<string, number> = {};
  const seen: string[] = [];
  for (const l of observed) {
    if (!(l in counts)) {
      counts[l] = 0;
      seen.push(l);
    }
    counts[l]++;
  }
  const labels = fixed ? [...fixed] : sortLabels(seen);
  for (const l of labels) counts[l] ??= 0;
  const ordered: Record<string, number> = {};
  for (const l of labels) ordered[l] = counts[l];
  return { labels, counts: ordered, index: new Map(labels.map((l, i) => [l, i])) };
}

function checkFixedLabels(labels: string[] | undefined): void {
  if (labels === undefined) return;
  if (!Array.isArray(labels) || labels.length === 0 || !labels.every((l) => typeof l === 'string' && l !== '')) {
    throw new TypeError("'labels' must be a non-empty array of non-empty strings");
  }
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup !== undefined) throw new RangeError(`'labels' lists '${dup}' twice`);
}

function quoteList(items: string[], max = 10): string {
  const shown = items.slice(0, max).map((s) => JSON.stringify(s));
  return shown.join(', ') + (items.length > max ? `, ... (${items.length} in all)` : '');
}

/** Reads one label value (string, or integer per `numericLabels`) and checks it against the fixed set. */
function readLabel(
  value: unknown,
  what: string,
  file: string,
  line: number,
  fixed: Set<string> | undefined,
  fixedList: string[] | undefined,
  numeric: 'name' | 'index',
): string {
  let label: string;
  if (typeof value === 'string') {
    label = value.trim();
    if (label === '') throw new DataFileError(file, line, `empty ${what}`);
  } else if (typeof value === 'number' && Number.isFinite(value)) {
    if (numeric === 'index') {
      if (!fixedList) throw new DataFileError(file, line, `${what} ${value} is an index, but no label set was given`);
      if (!Number.isInteger(value) || value < 0 || value >= fixedList.length) {
        throw new DataFileError(file, line, `${what} ${value} is not an index into the ${fixedList.length} labels`);
      }
      return fixedList[value];
    }
    label = String(value);
  } else if (typeof value === 'boolean') {
    label = String(value);
  } else if (value === undefined || value === null) {
    throw new DataFileError(file, line, `missing ${what}`);
  } else {
    throw new DataFileError(file, line, `${what} must be a string or a number, got ${JSON.stringify(value)}`);
  }
  if (fixed && !fixed.has(label)) {
    throw new DataFileError(file, line, `unknown ${what} ${JSON.stringify(label)}; the label set is ${quoteList(fixedList!)}`);
  }
  return label;
}

// ---------------------------------------------------------------------------------------------------------
// CSV / TSV

export interface CsvRecord {
  fields: string[];
  /** Line where the record starts (1-based). */
  line: number;
}

/**
 * Parses delimiter-separated text into records. With `quoting` (default true; RFC 4180) fields may be quoted
 * with `"`, quotes inside doubled, and quoted fields may span lines; a stray quote inside an unquoted field is
 * an error. Without quoting (TSV as IANA text/tab-separated-values defines it) quotes are plain characters.
 * Blank lines are skipped. CRLF and LF line ends are accepted; a leading UTF-8 BOM is dropped.
 */
export function parseDelimited(text: string, file: string, opts: { delimiter?: string; quoting?: boolean } = {}): CsvRecord[] {
  const delimiter = opts.delimiter ?? ',';
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === '\n' || delimiter === '\r') {
    throw new RangeError(`'delimiter' must be one character other than a quote or a line end, got ${JSON.stringify(delimiter)}`);
  }
  const quoting = opts.quoting ?? true;
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let i = 0;
  const n = text.length;
  let fieldStarted = false; // distinguishes a blank line from a record with one empty field
  const endRecord = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === '' && !fieldStarted)) records.push({ fields, line: recordLine });
    fields = [];
    field = '';
    fieldStarted = false;
  };
  while (i < n) {
    const c = text[i];
    if (quoting && c === '"') {
      // Spaces before an opening quote are tolerated (`a, "b"`); anything else before it is a stray quote.
      if (field.trim() !== '') {
        throw new DataFileError(file, line, `stray '"' inside an unquoted field (quote the whole field and double inner quotes)`);
      }
      field = '';
      const startLine = line;
      i++;
      for (;;) {
        if (i >= n) throw new DataFileError(file, startLine, 'quoted field is never closed');
        const q = text[i];
        if (q === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (q === '\n') line++;
        field += q;
        i++;
      }
      fieldStarted = true;
      // after the closing quote: optional spaces, then a delimiter, a line end or the end of the text
      while (i < n && text[i] === ' ' && delimiter !== ' ') i++;
      const next = text[i];
      if (i < n && next !== delimiter && next !== '\n' && next !== '\r') {
        throw new DataFileError(file, line, `unexpected ${JSON.stringify(next)} after a closing quote`);
      }
      continue;
    }
    if (c === delimiter) {
      fields.push(field);
      field = '';
      fieldStarted = true;
      i++;
      continue;
    }
    if (c === '\r' || c === '\n') {
      endRecord();
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      line++;
      recordLine = line;
      continue;
    }
    field += c;
    fieldStarted = true;
    i++;
  }
  if (fieldStarted || field !== '' || fields.length > 0) endRecord();
  return records;
}

// ---------------------------------------------------------------------------------------------------------
// sequence classification

export interface TextClassificationData {
  file: string;
  examples: TextExample[];
  labels: LabelSet;
  /** Whether the examples carry a text pair. */
  hasPairs: boolean;
}

function readWhole(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataFileError(file, 0, `cannot read (${(e as Error).message})`);
  }
}

function requireText(value: unknown, column: string, file: string, line: number): string {
  if (value === undefined || value === null) throw new DataFileError(file, line, `missing '${column}'`);
  if (typeof value !== 'string') throw new DataFileError(file, line, `'${column}' must be a string, got ${JSON.stringify(value)}`);
  if (value.trim() === '') throw new DataFileError(file, line, `empty '${column}'`);
  return value;
}

function checkColumnName(name: unknown, arg: string): string {
  if (typeof name !== 'string' || name === '') throw new TypeError(`'${arg}' must be a non-empty string`);
  return name;
}

/** Parses JSON Lines: one object per non-blank line; returns [object, line] pairs. */
function parseJsonl(text: string, file: string): [Record<string, unknown>, number][] {
  const out: [Record<string, unknown>, number][] = [];
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[0].charCodeAt(0) === 0xfeff) lines[0] = lines[0].slice(1);
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new DataFileError(file, i + 1, `bad JSON (${(e as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw new DataFileError(file, i + 1, `expected one JSON object per line (JSON Lines), got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
    }
    out.push([v as Record<string, unknown>, i + 1]);
  });
  return out;
}

/**
 * Parses sequence-classification data held in memory (see `readTextClassification`); `file` names the source
 * in errors.
 */
export function parseTextClassification(text: string, file: string, opts: TextClassificationOptions = {}): TextClassificationData {
  const format = opts.format ?? detectTextFormat(file);
  if (format !== 'jsonl' && format !== 'csv' && format !== 'tsv') throw new RangeError(`'format' must be jsonl, csv or tsv, got '${String(format)}'`);
  const textCol = checkColumnName(opts.textColumn ?? 'text', 'textColumn');
  const labelCol = checkColumnName(opts.labelColumn ?? 'label', 'labelColumn');
  const pairCol = opts.pairColumn === null ? null : checkColumnName(opts.pairColumn ?? 'text_pair', 'pairColumn');
  checkFixedLabels(opts.labels);
  const numeric = opts.numericLabels ?? 'name';
  if (numeric !== 'name' && numeric !== 'index') throw new RangeError(`'numericLabels' must be 'name' or 'index', got '${String(numeric)}'`);
  if (numeric === 'index' && !opts.labels) throw new RangeError("'numericLabels: index' needs 'labels'");
  const fixed = opts.labels ? new Set(opts.labels) : undefined;
  const examples: TextExample[] = [];
  let hasPairs = false;

  if (format === 'jsonl') {
    const records = parseJsonl(text, file);
    hasPairs = pairCol !== null && records.length > 0 && pairCol in records[0][0];
    for (const [rec, line] of records) {
      const ex: TextExample = { text: requireText(rec[textCol], textCol, file, line), label: '', line };
      if (hasPairs) ex.pair = requireText(rec[pairCol!], pairCol!, file, line);
      else if (pairCol !== null && pairCol in rec) {
        throw new DataFileError(file, line, `has '${pairCol}' but the first record does not; give every record a pair or none`);
      }
      ex.label = readLabel(rec[labelCol], `'${labelCol}'`, file, line, fixed, opts.labels, numeric);
      examples.push(ex);
    }
  } else {
    const records = parseDelimited(text, file, format === 'csv' ? { delimiter: ',', quoting: true } : { delimiter: '\t', quoting: false });
    if (records.length === 0) throw new DataFileError(file, 0, 'is empty (expected a header line)');
    const header = records[0].fields.map((h) => h.trim());
    const dup = header.find((h, i) => header.indexOf(h) !== i);
    if (dup !== undefined) throw new DataFileError(file, records[0].line, `header names column '${dup}' twice`);
    const col = (name: string): number => {
      const k = header.indexOf(name);
      if (k < 0) throw new DataFileError(file, records[0].line, `no column '${name}' in the header; columns are ${quoteList(header)}`);
      return k;
    };
    const ti = col(textCol);
    const li = col(labelCol);
    const pi = pairCol !== null ? header.indexOf(pairCol) : -1;
    hasPairs = pi >= 0;
    for (const r of records.slice(1)) {
      if (r.fields.length !== header.length) {
        throw new DataFileError(file, r.line, `${r.fields.length} field(s), the header has ${header.length}${format === 'csv' ? ' (quote fields that contain commas)' : ''}`);
      }
      const ex: TextExample = { text: requireText(r.fields[ti], textCol, file, r.line), label: '', line: r.line };
      if (hasPairs) ex.pair = requireText(r.fields[pi], pairCol!, file, r.line);
      const rawLabel = numeric === 'index' && /^\s*\d+\s*$/.test(r.fields[li]) ? Number(r.fields[li]) : r.fields[li];
      ex.label = readLabel(rawLabel, `'${labelCol}'`, file, r.line, fixed, opts.labels, numeric);
      examples.push(ex);
    }
  }
  if (examples.length === 0) throw new DataFileError(file, 0, 'has no examples');
  return { file, examples, labels: buildLabelSet(examples.map((e) => e.label), opts.labels), hasPairs };
}

/**
 * Reads a sequence-classification file (JSONL, CSV with RFC 4180 quoting, or TSV without quoting). Columns
 * default to `text`, `text_pair` (optional) and `label`; labels are inferred (sorted) unless `labels` is given.
 */
export async function readTextClassification(file: string, opts: TextClassificationOptions = {}): Promise<TextClassificationData> {
  if (typeof file !== 'string' || file === '') throw new TypeError("'file' must be a path");
  const text = await fs.promises.readFile(file, 'utf8').catch((e: Error) => {
    throw new DataFileError(file, 0, `cannot read (${e.message})`);
  });
  return parseTextClassification(text, file, opts);
}

// ---------------------------------------------------------------------------------------------------------
// token tagging

export interface TaggingData {
  file: string;
  sentences: TaggedSentence[];
  /** Tag set; counts are per token. */
  labels: LabelSet;
}

/**
 * Parses token-tagging data held in memory (see `readTokenTagging`); `file` names the source in errors.
 */
export function parseTokenTagging(text: string, file: string, opts: TaggingOptions = {}): TaggingData {
  const format = opts.format ?? detectTaggingFormat(file);
  if (format !== 'conll' && format !== 'jsonl') throw new RangeError(`'format' must be conll or jsonl, got '${String(format)}'`);
  checkFixedLabels(opts.labels);
  const numeric = opts.numericLabels ?? 'name';
  if (numeric !== 'name' && numeric !== 'index') throw new RangeError(`'numericLabels' must be 'name' or 'index', got '${String(numeric)}'`);
  if (numeric === 'index' && !opts.labels) throw new RangeError("'numericLabels: index' needs 'labels'");
  const fixed = opts.labels ? new Set(opts.labels) : undefined;
  const sentences: TaggedSentence[] = [];

  if (format === 'conll') {
    const lines = text.split(/\r?\n/);
    if (lines.length > 0 && lines[0].charCodeAt(0) === 0xfeff) lines[0] = lines[0].slice(1);
    let cur: TaggedSentence | null = null;
    lines.forEach((raw, i) => {
      const line = i + 1;
      if (raw.trim() === '') {
        if (cur) sentences.push(cur);
        cur = null;
        return;
      }
      // Columns: tab-separated when the line has a tab (tokens may then hold spaces), else whitespace-separated.
      // The token is the first column, the tag the last (CoNLL-2003 has POS and chunk columns in between).
      const cols = raw.includes('\t') ? raw.split('\t').map((c) => c.trim()) : raw.trim().split(/\s+/);
      if (cols[0] === '-DOCSTART-') return;
      if (cols.length < 2) throw new DataFileError(file, line, `expected 'token<TAB>tag' (or 'token tag'), got one column ${JSON.stringify(raw.trim())}`);
      const token = cols[0];
      if (token === '') throw new DataFileError(file, line, 'empty token');
      const tag = readLabel(cols[cols.length - 1], 'tag', file, line, fixed, opts.labels, 'name');
      if (!cur) cur = { tokens: [], tags: [], line };
      cur.tokens.push(token);
      cur.tags.push(tag);
    });
    if (cur) sentences.push(cur);
  } else {
    const tokensField = checkColumnName(opts.tokensField ?? 'tokens', 'tokensField');
    const tagsField = checkColumnName(opts.tagsField ?? 'tags', 'tagsField');
    for (const [rec, line] of parseJsonl(text, file)) {
      const tokens = rec[tokensField];
      const tags = rec[tagsField];
      if (tokens === undefined) throw new DataFileError(file, line, `missing '${tokensField}'`);
      if (tags === undefined) throw new DataFileError(file, line, `missing '${tagsField}'`);
      if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'string')) throw new DataFileError(file, line, `'${tokensField}' must be an array of strings`);
      if (!Array.isArray(tags)) throw new DataFileError(file, line, `'${tagsField}' must be an array`);
      if (tokens.length === 0) throw new DataFileError(file, line, `empty '${tokensField}'`);
      if (tokens.length !== tags.length) throw new DataFileError(file, line, `${tokens.length} tokens but ${tags.length} tags`);
      const blank = tokens.findIndex((t) => (t as string).trim() === '');
      if (blank >= 0) throw new DataFileError(file, line, `token ${blank} is empty`);
      const read = tags.map((t, k) => readLabel(t, `tag ${k}`, file, line, fixed, opts.labels, numeric));
      sentences.push({ tokens: tokens as string[], tags: read, line });
    }
  }
  if (sentences.length === 0) throw new DataFileError(file, 0, 'has no sentences');
  return { file, sentences, labels: buildLabelSet(sentences.flatMap((s) => s.tags), opts.labels) };
}

/**
 * Reads a token-tagging file: CoNLL-style columns (token, tag last; tab- or space-separated; blank line between
 * sentences; -DOCSTART- skipped) or JSONL `{"tokens": [...], "tags": [...]}`. Tags are inferred (sorted)
 * unless `labels` is given.
 */
export async function readTokenTagging(file: string, opts: TaggingOptions = {}): Promise<TaggingData> {
  if (typeof file !== 'string' || file === '') throw new TypeError("'file' must be a path");
  const text = await fs.promises.readFile(file, 'utf8').catch((e: Error) => {
    throw new DataFileError(file, 0, `cannot read (${e.message})`);
  });
  return parseTokenTagging(text, file, opts);
}

// ---------------------------------------------------------------------------------------------------------
// plain text (MLM)

/**
 * Streams the documents of a plain-text file (one per line; blank lines skipped; a leading BOM dropped)
 * without holding the file in memory; for corpora too large to read at once.
 */
export async function* iterateTextDocuments(file: string): AsyncGenerator<TextDocument> {
  if (typeof file !== 'string' || file === '') throw new TypeError("'file' must be a path");
  let stream: fs.ReadStream;
  try {
    await fs.promises.access(file, fs.constants.R_OK);
    stream = fs.createReadStream(file, { encoding: 'utf8' });
  } catch (e) {
    throw new DataFileError(file, 0, `cannot read (${(e as Error).message})`);
  }
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (let raw of rl) {
      line++;
      if (line === 1 && raw.charCodeAt(0) === 0xfeff) raw = raw.slice(1);
      if (raw.trim() === '') continue;
      yield { text: raw, line };
    }
  } finally {
    rl.close();
    stream.destroy();
  }
}

/** Reads a plain-text MLM corpus: one document per line, blank lines skipped; at most `maxDocuments` (default all). */
export async function readPlainText(file: string, opts: PlainTextOptions = {}): Promise<TextDocument[]> {
  const max = opts.maxDocuments ?? Infinity;
  if (max !== Infinity && (!Number.isInteger(max) || max < 1)) throw new RangeError(`'maxDocuments' must be a positive integer, got ${max}`);
  const docs: TextDocument[] = [];
  for await (const d of iterateTextDocuments(file)) {
    docs.push(d);
    if (docs.length >= max) break;
  }
  if (docs.length === 0) throw new DataFileError(file, 0, 'has no text (every line is blank)');
  return docs;
}

/** Synchronous variant of `readPlainText` for small files (tests, fixtures). */
export function readPlainTextSync(file: string, opts: PlainTextOptions = {}): TextDocument[] {
  const max = opts.maxDocuments ?? Infinity;
  if (max !== Infinity && (!Number.isInteger(max) || max < 1)) throw new RangeError(`'maxDocuments' must be a positive integer, got ${max}`);
  const text = readWhole(file);
  const docs: TextDocument[] = [];
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[0].charCodeAt(0) === 0xfeff) lines[0] = lines[0].slice(1);
  for (let i = 0; i < lines.length && docs.length < max; i++) if (lines[i].trim() !== '') docs.push({ text: lines[i], line: i + 1 });
  if (docs.length === 0) throw new DataFileError(file, 0, 'has no text (every line is blank)');
  return docs;
}
