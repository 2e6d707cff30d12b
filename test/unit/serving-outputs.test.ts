/**
 * Outputs (server/runtime/outputs.ts): token labels grouped into entities with HF TokenClassificationPipeline's
 * aggregation strategies, worked out by hand for one sentence whose strategies all disagree, and pooled embeddings.
 */
import { pool, tokenClassification, type RowTokens } from '../../server/runtime/outputs';

const LABELS = ['O', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC'];
const TEXT = 'Hugging Face Inc is in New York';

/** [CLS] Hug ##ging Face Inc is in New York [SEP] with per-token label probabilities (logits = log p). */
function sentence(probs: number[][]): { logits: Float32Array; row: RowTokens } {
  const tokens = ['[CLS]', 'Hug', '##ging', 'Face', 'Inc', 'is', 'in', 'New', 'York', '[SEP]'];
  const offsets: [number, number][] = [[0, 0], [0, 3], [3, 7], [8, 12], [13, 16], [17, 19], [20, 22], [23, 26], [27, 31], [0, 0]];
  const wordIds = [null, 0, 0, 1, 2, 3, 4, 5, 6, null];
  const all = [[1, 0, 0, 0, 0], ...probs, [1, 0, 0, 0, 0]];
  const logits = Float32Array.from(all.flatMap((p) => p.map((x) => Math.log(Math.max(x, 1e-12)))));
  return {
    logits,
    row: { length: 10, tokens, offsets, wordIds, sequenceIds: wordIds.map((w) => (w === null ? null : 0)), special: [1, 0, 0, 0, 0, 0, 0, 0, 0, 1], texts: [TEXT, undefined] },
  };
}

const PROBS = [
  [0.02, 0.9, 0.04, 0.02, 0.02], // Hug: B-ORG .9
  [0.91, 0.06, 0.01, 0.01, 0.01], // ##ging: O .91 (its max beats Hug's); mean with Hug: B-ORG .48 > O .465
  [0.1, 0.05, 0.8, 0.025, 0.025], // Face: I-ORG .8
  [0.2, 0.05, 0.7, 0.025, 0.025], // Inc: I-ORG .7
  [0.9, 0.025, 0.025, 0.025, 0.025], // is: O
  [0.9, 0.025, 0.025, 0.025, 0.025], // in: O
  [0.05, 0.025, 0.025, 0.875, 0.025], // New: B-LOC .875
  [0.1, 0.025, 0.025, 0.05, 0.8], // York: I-LOC .8
];

function round(e: object[]): object[] {
  return e.map((x) => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, typeof v === 'number' && k === 'score' ? Math.round(v * 1e4) / 1e4 : v])));
}

describe('token classification entities (HF aggregation strategies)', () => {
  const { logits, row } = sentence(PROBS);
  const LOC = { entity_group: 'LOC', score: 0.8375, word: 'New York', start: 23, end: 31 };

  it('none: every token but O, with its own label', () => {
    const { entities, tokens } = tokenClassification(logits, 5, LABELS, row, 'none');
    expect(tokens).toHaveLength(8);
    expect(round(entities)).toEqual([
      { entity: 'B-ORG', score: 0.9, word: 'Hug', start: 0, end: 3 },
      { entity: 'I-ORG', score: 0.8, word: 'Face', start: 8, end: 12 },
      { entity: 'I-ORG', score: 0.7, word: 'Inc', start: 13, end: 16 },
      { entity: 'B-LOC', score: 0.875, word: 'New', start: 23, end: 26 },
      { entity: 'I-LOC', score: 0.8, word: 'York', start: 27, end: 31 },
    ]);
  });
  it('simple: tokens grouped by tag; the O sub-token splits the organisation', () => {
    expect(round(tokenClassification(logits, 5, LABELS, row, 'simple').entities)).toEqual([
      { entity_group: 'ORG', score: 0.9, word: 'Hug', start: 0, end: 3 },
      { entity_group: 'ORG', score: 0.75, word: 'Face Inc', start: 8, end: 16 },
      LOC,
    ]);
  });
  it("first: a word takes its first token's label", () => {
    expect(round(tokenClassification(logits, 5, LABELS, row, 'first').entities)).toEqual([{ entity_group: 'ORG', score: 0.8, word: 'Hugging Face Inc', start: 0, end: 16 }, LOC]);
  });
  it("average: a word takes the argmax of its tokens' mean scores", () => {
    expect(round(tokenClassification(logits, 5, LABELS, row, 'average').entities)).toEqual([{ entity_group: 'ORG', score: 0.66, word: 'Hugging Face Inc', start: 0, end: 16 }, LOC]);
  });
  it('max: a word takes the label of its most confident token (here O for "Hugging")', () => {
    expect(round(tokenClassification(logits, 5, LABELS, row, 'max').entities)).toEqual([{ entity_group: 'ORG', score: 0.75, word: 'Face Inc', start: 8, end: 16 }, LOC]);
  });
  it('a B- label starts a new entity even after the same tag', () => {
    const p = PROBS.map((x) => [...x]);
    p[7] = [0.1, 0.025, 0.025, 0.8, 0.05]; // York: B-LOC
    const { logits: l2, row: r2 } = sentence(p);
    const ents = tokenClassification(l2, 5, LABELS, r2, 'first').entities;
    expect(ents.map((e) => e.word)).toEqual(['Hugging Face Inc', 'New', 'York']);
  });
});

describe('pooled embeddings', () => {
  const hidden = Float32Array.from([3, 4, 1, -2, 100, 100]); // T=3, D=2; the third token is padding
  const mask = [1, 1, 0];
  it('cls, mean and max over the attended tokens', () => {
    expect(pool(hidden, 2, mask, 3, 'cls', false)).toEqual([3, 4]);
    expect(pool(hidden, 2, mask, 3, 'mean', false)).toEqual([2, 1]);
    expect(pool(hidden, 2, mask, 3, 'max', false)).toEqual([3, 4]);
  });
  it('L2 normalisation', () => {
    const v = pool(hidden, 2, mask, 3, 'cls', true);
    expect(v[0]).toBeCloseTo(0.6, 6);
    expect(v[1]).toBeCloseTo(0.8, 6);
  });
});
