/**
 * Tiny base + synthetic but non-trivial tasks for the trainer tests: the label of a sentence is decided by
 * which keyword group occurs in it (anywhere, among distractors), so the model must attend across tokens.
 * Example: `const { base, train, dev } = await tinyTask(); await train({ base, method: 'seq_bn', ... })`.
 */
import * as crypto from 'crypto';
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

/**
 * Pretraining text with context that MLM can use: each sentence has a topic (one keyword group) and ~40% of its
 * words are keywords of that topic among fillers, so a masked keyword is predictable only from the other words.
 * (Text with one or two keywords per sentence is not enough: 8 epochs of MLM on it learn little beyond the unigram
 * distribution, the base's outputs hardly vary with the input, and seq_bn / double_seq_bn / LoRA then stay at the
 * majority class.)
 */
export function topicCorpus(n: number, seed: number): MlmExample[] {
  const rng = new Rng(seed);
  const labels = Object.keys(GROUPS);
  return Array.from({ length: n }, () => {
    const g = GROUPS[labels[rng.int(labels.length)]];
    const len = 5 + rng.int(6);
    const words = Array.from({ length: len }, () => (rng.next() < 0.4 ? g[rng.int(g.length)] : FILLER[rng.int(FILLER.length)]));
    words[rng.int(len)] = g[rng.int(g.length)];
    return { text: words.join(' ') };
  });
}

/** Settings of `pretrainedTinyBase` (part of its cache key). */
export const PRETRAIN = { sentences: 1200, epochs: 16, batchSize: 32, lr: 2e-3, mlmProbability: 0.3, warmupRatio: 0.06, seed: 0, corpusSeed: 7 };

/** Hash of the sources that decide the pretrained weights (trainer, model, this file), for the disk cache key. */
function pretrainSourceHash(): string {
  const h = crypto.createHash('sha256').update(JSON.stringify(PRETRAIN));
  const root = path.join(__dirname, '..', '..');
  const files = [__filename];
  for (const d of ['server/train', 'server/model', 'server/model/graph', 'server/runtime']) {
    const dir = path.join(root, d);
    for (const f of fs.readdirSync(dir).sort()) if (f.endsWith('.ts')) files.push(path.join(dir, f));
  }
  for (const f of files) h.update(f.slice(root.length)).update('\0').update(fs.readFileSync(f));
  return h.digest('hex').slice(0, 16);
}

/** Dev perplexity before / after pretraining, when this process pretrained (undefined when it came from the disk cache). */
export let pretrainReport: { perplexity: number[]; seconds: number } | undefined;

/**
 * The tiny base (2 layers, 32 wide) after MLM pretraining from scratch with our own trainer (full training) on
 * `topicCorpus`: a frozen base whose outputs carry the topic of a sentence, as the adapter methods assume.
 * About 6 s on one thread; cached per test process and on disk under os.tmpdir(), keyed by a hash of the
 * settings and of the trainer/model sources, so later test files (and runs) load it instead.
 */
let pretrained: Promise<Base> | null = null;
export function pretrainedTinyBase(): Promise<Base> {
  return (pretrained ??= (async () => {
    const dir = path.join(os.tmpdir(), `modhub-pretrained-tiny-${pretrainSourceHash()}`);
    if (fs.existsSync(path.join(dir, 'model.safetensors'))) return loadBase(dir);
    const { train } = await import('../../server/train/trainer');
    const { saveTrainedBase } = await import('../../server/train/save-base');
    const base = await tinyBase();
    const t0 = Date.now();
    const res = await train({
      base,
      method: 'full',
      task: 'mlm',
      train: topicCorpus(PRETRAIN.sentences, PRETRAIN.corpusSeed),
      dev: topicCorpus(100, PRETRAIN.corpusSeed + 1),
      epochs: PRETRAIN.epochs,
      batchSize: PRETRAIN.batchSize,
      lr: PRETRAIN.lr,
      mlmProbability: PRETRAIN.mlmProbability,
      warmupRatio: PRETRAIN.warmupRatio,
      seed: PRETRAIN.seed,
      threads: 1,
    });
    await res.release();
    pretrainReport = { perplexity: res.history.filter((h) => h.eval).map((h) => h.eval!.perplexity), seconds: (Date.now() - t0) / 1000 };
    // written to a private folder, then renamed into place (another test process may be doing the same)
    const tmp = `${dir}.${process.pid}.tmp`;
    saveTrainedBase(base, res.tensors, tmp);
    try {
      fs.renameSync(tmp, dir);
    } catch {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    return loadBase(dir);
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
