/**
 * Tiny base + synthetic but non-trivial tasks for the trainer tests: the label of a sentence is decided by
 * which keyword group occurs in it (anywhere, among distractors), so the model must attend across tokens.
 * Example: `const { base, train, dev } = await tinyTask(); await train({ base, method: 'seq_bn', ... })`.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createTinyBase } from '../../server/model/tiny';
import { loadBase, type Base } from '../../server/model/base';
import { Rng } from '../../server/model/random';
import type { ClsExample, TokExample, MlmExample } from '../../server/train/trainer';

export const GROUPS: Record<string, string[]> = {
  animal: ['cat', 'dog', 'horse', 'bird'],
  food: ['bread', 'apple', 'cheese', 'rice'],
  place: ['city', 'river', 'mountain', 'village'],
};
export const FILLER = ['the', 'a', 'big', 'small', 'red', 'blue', 'near', 'over', 'quickly', 'slowly', 'old', 'new', 'green', 'under', 'with', 'and'];

export function corpus(): string[] {
  const words = [...Object.values(GROUPS).flat(), ...FILLER];
  const lines: string[] = [];
  const rng = new Rng(99);
  for (let i = 0; i < 300; i++) lines.push(Array.from({ length: 8 }, () => words[rng.int(words.length)]).join(' '));
  for (const w of words) lines.push(`${w} ${w} ${w}`);
  return lines;
}

export function clsData(n: number, seed: number): ClsExample[] {
  const rng = new Rng(seed);
  const labels = Object.keys(GROUPS);
  const out: ClsExample[] = [];
  for (let i = 0; i < n; i++) {
    const label = labels[rng.int(labels.length)];
    const len = 4 + rng.int(5);
    const words = Array.from({ length: len }, () => FILLER[rng.int(FILLER.length)]);
    const kw = GROUPS[label][rng.int(GROUPS[label].length)];
    words[rng.int(len)] = kw;
    out.push({ text: words.join(' '), label });
  }
  return out;
}

/** Token tagging: keywords tagged with their group, fillers `O`. */
export function tokData(n: number, seed: number): TokExample[] {
  const rng = new Rng(seed);
  const labels = Object.keys(GROUPS);
  const out: TokExample[] = [];
  for (let i = 0; i < n; i++) {
    const len = 4 + rng.int(5);
    const tokens: string[] = [];
    const tags: string[] = [];
    for (let k = 0; k < len; k++) {
      if (rng.next() < 0.3) {
        const g = labels[rng.int(labels.length)];
        tokens.push(GROUPS[g][rng.int(4)]);
        tags.push(g.toUpperCase());
      } else {
        tokens.push(FILLER[rng.int(FILLER.length)]);
        tags.push('O');
      }
    }
    out.push({ tokens, tags });
  }
  return out;
}

/** MLM text with structure: "<adj> <keyword> <keyword of the same group>" patterns. */
export function mlmData(n: number, seed: number): MlmExample[] {
  const rng = new Rng(seed);
  const labels = Object.keys(GROUPS);
  return Array.from({ length: n }, () => {
    const g = GROUPS[labels[rng.int(3)]];
    return { text: `the ${g[rng.int(4)]} and the ${g[rng.int(4)]} ${FILLER[rng.int(4)]}` };
  });
}

let cached: Promise<Base> | null = null;
/** A 2-layer, 32-wide BERT base with the task words in its vocabulary (created once per test file). */
export function tinyBase(): Promise<Base> {
  return (cached ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-train-base-'));
    await createTinyBase({ out: dir, layers: 2, hidden: 32, heads: 4, corpus: corpus(), seed: 3 });
    return loadBase(dir);
  })());
}

export function majority(labels: string[]): number {
  const c = new Map<string, number>();
  for (const l of labels) c.set(l, (c.get(l) ?? 0) + 1);
  return Math.max(...c.values()) / labels.length;
}

/** The tiny base after a short MLM pretraining with our own trainer (full FT, objective mlm): a frozen base whose
 * attention carries information, as the adapter methods assume. Cached per test file. */
let pretrained: Promise<Base> | null = null;
export function pretrainedTinyBase(): Promise<Base> {
  return (pretrained ??= (async () => {
    const { train } = await import('../../server/train/trainer');
    const base = await tinyBase();
    const text = clsData(600, 11).map((e) => ({ text: e.text }));
    const res = await train({ base, method: 'full', task: 'mlm', train: text, epochs: 8, batchSize: 32, lr: 2e-3, seed: 5, threads: 1, mlmProbability: 0.3 });
    await res.release();
    const weights = new Map(base.weights);
    const byHf = new Map([...base.hfNames].map(([c, h]) => [h, c]));
    for (const [k, t] of res.tensors) {
      if (!k.endsWith('.dense')) continue;
      const canonical = byHf.get(k.slice(0, -6)) ?? k.slice(0, -6);
      const old = base.weights.get(canonical)!;
      const data = new Float32Array(old.data.length);
      const d = t.data as Float32Array;
      for (let i = 0; i < data.length; i++) data[i] = old.data[i] + d[i];
      weights.set(canonical, { ...old, data });
    }
    return { ...base, weights };
  })());
}

/** The tiny base with its matrices scaled up (std 0.02 → 0.16): a random base whose attention is not uniform
 * and whose [CLS] state depends on the input, as a pretrained one's does; frozen-base methods need that. */
let scaled: Promise<Base> | null = null;
export function liveTinyBase(factor = 8): Promise<Base> {
  return (scaled ??= (async () => {
    const base = await tinyBase();
    const weights = new Map(base.weights);
    for (const [k, t] of base.weights) {
      if (t.shape.length !== 2) continue;
      weights.set(k, { ...t, data: Float32Array.from(t.data, (x) => x * factor) });
    }
    return { ...base, weights };
  })());
}
