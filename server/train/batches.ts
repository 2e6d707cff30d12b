/**
 * Batch building for the training loop and evaluation: tokenises examples into the training graph's feeds
 * (ids, masks, labels, per-position loss weights) for sequence classification, token tagging and masked LM,
 * and the data order of each epoch, a pure function of (seed, epoch) so that a resumed run sees the same batches.
 * Example:
 *   const make = batchMaker({ base, objective: 'cls', labelIndex, maxLength: 128, mlmProbability: 0.15 });
 *   const b = await make(examples.slice(0, 16), new Rng(0));
 */
import type { Base } from '../model/base';
import type { EncodedBatch } from '../model/tokenizer';
import { Rng } from '../model/random';
import type { HostTensor } from '../runtime/session';
import type { Objective } from './graph';
import type { ClsExample, Example, MlmExample, TokExample } from './types';

export interface Batch {
  feeds: Record<string, HostTensor>;
  tokens: number;
  B: number;
  T: number;
  /** gold label per scored position (-1 = ignored): [B] or [B*T] */
  gold: Int32Array;
}

/** Builds one batch; `rng` draws the MLM masks (unused by the other objectives). */
export type BatchMaker = (examples: Example[], rng: Rng) => Promise<Batch>;

function i64(dims: number[], src: ArrayLike<number>): HostTensor {
  const d = new BigInt64Array(src.length);
  for (let i = 0; i < src.length; i++) d[i] = BigInt(src[i]);
  return { type: 'int64', dims, data: d };
}

function baseFeeds(base: Base, enc: EncodedBatch): Record<string, HostTensor> {
  const B = enc.batch;
  const T = enc.length;
  const f: Record<string, HostTensor> = {
    input_ids: i64([B, T], enc.inputIds),
    position_ids: i64([B, T], enc.positionIds),
    attention_mask: { type: 'float32', dims: [B, T], data: Float32Array.from(enc.attentionMask) },
  };
  if (base.config.typeVocabSize > 0) f.token_type_ids = i64([B, T], enc.tokenTypeIds);
  return f;
}

async function clsBatch(base: Base, ex: ClsExample[], labelIndex: Map<string, number>, maxLength: number): Promise<Batch> {
  const pairs = ex.some((e) => e.pair !== undefined) ? ex.map((e) => e.pair ?? '') : undefined;
  const enc = await base.tokenizer.encodeBatch(ex.map((e) => e.text), pairs, { maxLength });
  const B = enc.batch;
  const gold = Int32Array.from(ex.map((e) => labelIndex.get(e.label) ?? -1));
  const w = Float32Array.from(gold, (x) => (x >= 0 ? 1 / B : 0));
  return {
    feeds: { ...baseFeeds(base, enc), labels: i64([B, 1], Array.from(gold, (x) => Math.max(0, x))), label_weights: { type: 'float32', dims: [B, 1], data: w } },
    tokens: enc.lengths.reduce((a, b) => a + b, 0),
    B,
    T: enc.length,
    gold,
  };
}

async function tokBatch(base: Base, ex: TokExample[], labelIndex: Map<string, number>, maxLength: number): Promise<Batch> {
  // words joined by spaces; the first sub-token of each word carries the word's tag (HF run_ner default)
  const enc = await base.tokenizer.encodeBatch(ex.map((e) => e.tokens.join(' ')), undefined, { maxLength });
  const B = enc.batch;
  const T = enc.length;
  const gold = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) {
    let prev: number | null = null;
    enc.wordIds[b].forEach((wid, t) => {
      if (wid !== null && wid !== prev && wid < ex[b].tags.length) gold[b * T + t] = labelIndex.get(ex[b].tags[wid]) ?? -1;
      prev = wid;
    });
  }
  const n = gold.reduce((a, x) => a + (x >= 0 ? 1 : 0), 0) || 1;
  return {
    feeds: { ...baseFeeds(base, enc), labels: i64([B, T, 1], Array.from(gold, (x) => Math.max(0, x))), label_weights: { type: 'float32', dims: [B, T, 1], data: Float32Array.from(gold, (x) => (x >= 0 ? 1 / n : 0)) } },
    tokens: enc.lengths.reduce((a, b) => a + b, 0),
    B,
    T,
    gold,
  };
}

/** BERT masking: each non-special token with probability p; of those 80% [MASK], 10% random, 10% kept. */
async function mlmBatch(base: Base, ex: MlmExample[], rng: Rng, p: number, maxLength: number): Promise<Batch> {
  const tok = base.tokenizer;
  const enc = await tok.encodeBatch(ex.map((e) => e.text), undefined, { maxLength });
  const B = enc.batch;
  const T = enc.length;
  const ids = Int32Array.from(enc.inputIds);
  const gold = new Int32Array(B * T).fill(-1);
  const V = base.config.vocabSize;
  for (let i = 0; i < B * T; i++) {
    if (enc.specialTokensMask[i] || !enc.attentionMask[i]) continue;
    if (rng.next() >= p) continue;
    gold[i] = ids[i];
    const r = rng.next();
    if (r < 0.8) ids[i] = tok.maskId;
    else if (r < 0.9) ids[i] = rng.int(Math.min(V, tok.vocabSize));
  }
  // at least one scored token per batch, so the loss is defined
  if (!gold.some((x) => x >= 0)) {
    const i = enc.specialTokensMask.findIndex((s, k) => !s && enc.attentionMask[k] === 1);
    if (i >= 0) {
      gold[i] = ids[i];
      ids[i] = tok.maskId;
    }
  }
  const n = gold.reduce((a, x) => a + (x >= 0 ? 1 : 0), 0) || 1;
  const feeds = baseFeeds(base, { ...enc, inputIds: ids });
  return {
    feeds: { ...feeds, labels: i64([B, T, 1], Array.from(gold, (x) => Math.max(0, x))), label_weights: { type: 'float32', dims: [B, T, 1], data: Float32Array.from(gold, (x) => (x >= 0 ? 1 / n : 0)) } },
    tokens: enc.lengths.reduce((a, b) => a + b, 0),
    B,
    T,
    gold,
  };
}

/** The batch builder of an objective. */
export function batchMaker(o: { base: Base; objective: Objective; labelIndex: Map<string, number>; maxLength: number; mlmProbability: number }): BatchMaker {
  const { base, objective, labelIndex, maxLength } = o;
  if (objective === 'cls') return (ex) => clsBatch(base, ex as ClsExample[], labelIndex, maxLength);
  if (objective === 'tok') return (ex) => tokBatch(base, ex as TokExample[], labelIndex, maxLength);
  return (ex, rng) => mlmBatch(base, ex as MlmExample[], rng, o.mlmProbability, maxLength);
}

function shuffle<T>(a: readonly T[], rng: Rng): T[] {
  const out = a.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The examples of `epoch` in training order. */
export function epochOrder<T>(examples: readonly T[], seed: number, epoch: number): T[] {
  return shuffle(examples, new Rng(seed * 1000003 + epoch));
}

/** The examples of micro-batch `a` of optimiser step `step` (an epoch's short tail wraps to its start). */
export function microBatch<T>(order: readonly T[], step: number, stepsPerEpoch: number, accum: number, batchSize: number, a: number): T[] {
  const cursor = ((step % stepsPerEpoch) * accum + a) * batchSize;
  const ex = order.slice(cursor, cursor + batchSize);
  return ex.length ? ex : order.slice(0, batchSize);
}
