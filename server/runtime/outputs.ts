/**
 * Turns one row's engine output into what a client reads: classification labels and scores, token labels grouped
 * into entities (HF TokenClassificationPipeline's aggregation strategies), fill-mask candidates, or a pooled
 * sentence embedding. Pure functions of the row's logits/hidden states and its tokenisation.
 * Example:
 *   const p = tokenClassification(logits, numLabels, labels, row, { aggregation: 'simple' });
 */

import { AGGREGATIONS, POOLINGS } from '../../client-sdk/wire';

export { AGGREGATIONS, POOLINGS };
export type Aggregation = (typeof AGGREGATIONS)[number];
export type Pooling = (typeof POOLINGS)[number];

/** One token's label, as before grouping. */
export interface TokenLabel {
  token: string;
  label: string;
  score: number;
  start: number;
  end: number;
}

/**
 * An entity: with aggregation 'none' one token (`entity` = its label, HF's key), otherwise a group of words whose
 * labels continue one another (`entity_group` = the label without its B-/I- prefix). `word` is the covered span of
 * the input text, [start, end) in characters of the text (or of text_pair when `sequence` is 1).
 */
export interface Entity {
  entity?: string;
  entity_group?: string;
  score: number;
  word: string;
  start: number;
  end: number;
  sequence?: 1;
}

/** The tokenisation of one row, as the tokenizer gives it (no padding beyond `length`). */
export interface RowTokens {
  length: number;
  tokens: string[];
  offsets: [number, number][];
  wordIds: (number | null)[];
  sequenceIds: (number | null)[];
  special: ArrayLike<number>;
  texts: [string, string | undefined];
}

export function softmax(x: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]);
  const out = new Float64Array(x.length);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += out[i] = Math.exp(x[i] - m);
  for (let i = 0; i < x.length; i++) out[i] /= s;
  return out;
}

export function topIndices(p: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: p.length }, (_, i) => i)
    .sort((a, b) => p[b] - p[a])
    .slice(0, Math.max(1, Math.min(k, p.length)));
}

function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
  return best;
}

interface PreEntity {
  scores: Float64Array;
  start: number;
  end: number;
  sequence: number;
  word: number | null;
  token: string;
}

/**
 * Per-token labels and the entities of one row. Grouping follows transformers' TokenClassificationPipeline:
 *  - none: every non-special token is an entity of its own (label = argmax);
 *  - simple: tokens labelled by argmax, then grouped;
 *  - first / average / max: tokens first merged into words — the word's scores are its first token's, the mean
 *    of its tokens' score vectors, or those of its token with the highest score — then grouped.
 * Grouping (group_entities): a label continues the previous group when its tag (the label without B-/I-) is
 * the same and it does not start with B-; a group's score is the mean of its members'. Entities labelled 'O'
 * are left out (HF's default ignore_labels). Words come from the tokenizer's word ids (HF's is_subword test
 * approximates them from offsets), so a word never splits however the tokenizer marks continuations.
 */
export function tokenClassification(logits: Float32Array, C: number, labels: string[], row: RowTokens, aggregation: Aggregation): { tokens: TokenLabel[]; entities: Entity[] } {
  const name = (i: number) => labels[i] ?? `LABEL_${i}`;
  const pre: PreEntity[] = [];
  const tokens: TokenLabel[] = [];
  for (let t = 0; t < row.length; t++) {
    if (row.special[t]) continue;
    const scores = softmax(logits.subarray(t * C, (t + 1) * C));
    const best = argmax(scores);
    const [start, end] = row.offsets[t] ?? [0, 0];
    tokens.push({ token: row.tokens[t], label: name(best), score: scores[best], start, end });
    pre.push({ scores, start, end, sequence: row.sequenceIds[t] ?? 0, word: row.wordIds[t] ?? null, token: row.tokens[t] });
  }
  const span = (sequence: number, start: number, end: number): Entity => {
    const text = row.texts[sequence] ?? '';
    const e: Entity = { score: 0, word: text.slice(start, end), start, end };
    if (sequence === 1) e.sequence = 1;
    return e;
  };
  type Labelled = { label: string; score: number; sequence: number; start: number; end: number };
  let units: Labelled[];
  if (aggregation === 'none' || aggregation === 'simple') {
    units = pre.map((p) => {
      const i = argmax(p.scores);
      return { label: name(i), score: p.scores[i], sequence: p.sequence, start: p.start, end: p.end };
    });
    if (aggregation === 'none') {
      const entities = units.filter((u) => u.label !== 'O').map((u) => ({ entity: u.label, ...span(u.sequence, u.start, u.end), score: u.score }));
      return { tokens, entities };
    }
  } else {
    units = words(pre).map((w) => {
      let scores: Float64Array;
      if (aggregation === 'first') scores = w[0].scores;
      else if (aggregation === 'max') scores = w.reduce((a, b) => (b.scores[argmax(b.scores)] > a.scores[argmax(a.scores)] ? b : a)).scores;
      else {
        scores = new Float64Array(C);
        for (const p of w) for (let c = 0; c < C; c++) scores[c] += p.scores[c] / w.length;
      }
      const i = argmax(scores);
      return { label: name(i), score: scores[i], sequence: w[0].sequence, start: w[0].start, end: w[w.length - 1].end };
    });
  }
  const entities: Entity[] = [];
  let group: Labelled[] = [];
  const flush = () => {
    if (!group.length) return;
    const tag = splitTag(group[0].label)[1];
    if (tag !== 'O') entities.push({ entity_group: tag, ...span(group[0].sequence, group[0].start, group[group.length - 1].end), score: group.reduce((a, u) => a + u.score, 0) / group.length });
    group = [];
  };
  for (const u of units) {
    if (group.length) {
      const [bi, tag] = splitTag(u.label);
      const last = group[group.length - 1];
      if (tag !== splitTag(last.label)[1] || bi === 'B' || u.sequence !== last.sequence) flush();
    }
    group.push(u);
  }
  flush();
  return { tokens, entities };
}

/** HF get_tag: 'B-PER' → ['B', 'PER'], 'I-PER' → ['I', 'PER'], anything else continues: ['I', label]. */
function splitTag(label: string): ['B' | 'I', string] {
  if (label.startsWith('B-')) return ['B', label.slice(2)];
  if (label.startsWith('I-')) return ['I', label.slice(2)];
  return ['I', label];
}

/** Consecutive tokens of one word (same word id in the same sequence). */
function words(pre: PreEntity[]): PreEntity[][] {
  const out: PreEntity[][] = [];
  for (const p of pre) {
    const last = out[out.length - 1]?.[0];
    if (last && p.word !== null && last.word === p.word && last.sequence === p.sequence) out[out.length - 1].push(p);
    else out.push([p]);
  }
  return out;
}

/**
 * A sentence embedding from a row's last hidden states [T, D]: 'cls' the first token's, 'mean' the mean and 'max'
 * the per-dimension maximum over the attended tokens (special tokens included, as sentence-transformers pools);
 * `normalize` scales it to unit L2 norm.
 */
export function pool(hidden: Float32Array, D: number, mask: ArrayLike<number>, length: number, pooling: Pooling, normalize: boolean): number[] {
  const out = new Float64Array(D);
  if (pooling === 'cls') for (let d = 0; d < D; d++) out[d] = hidden[d];
  else if (pooling === 'max') {
    out.fill(-Infinity);
    for (let t = 0; t < length; t++) if (mask[t]) for (let d = 0; d < D; d++) out[d] = Math.max(out[d], hidden[t * D + d]);
  } else {
    let n = 0;
    for (let t = 0; t < length; t++) {
      if (!mask[t]) continue;
      n++;
      for (let d = 0; d < D; d++) out[d] += hidden[t * D + d];
    }
    for (let d = 0; d < D; d++) out[d] /= Math.max(1, n);
  }
  if (normalize) {
    let s = 0;
    for (let d = 0; d < D; d++) s += out[d] * out[d];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let d = 0; d < D; d++) out[d] *= inv;
  }
  return Array.from(out);
}
