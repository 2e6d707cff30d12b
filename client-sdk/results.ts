/**
 * Typed inference results per head kind: `PredictionOf<'classification'>` and friends, and `predictionsOf`, which
 * picks one kind out of an InferResponse and fails with a clear error when the composition's head answers
 * another kind (e.g. `classify` over a composition whose last module has a token-classification head).
 * Example: `for (const p of predictionsOf(res, 'classification')) console.log(p.label, p.score)`.
 */
import { ModhubError } from './errors';
import type { InferResponse, Prediction } from './wire';

export type PredictionType = Prediction['type'];
export type PredictionOf<T extends PredictionType> = Extract<Prediction, { type: T }>;
export type ClassificationPrediction = PredictionOf<'classification'>;
export type TokenClassificationPrediction = PredictionOf<'token_classification'>;
export type FillMaskPrediction = PredictionOf<'fill_mask'>;
export type EmbeddingPrediction = PredictionOf<'embedding'>;

/** What the head of each kind answers, to name it in errors. */
const WHO: Record<PredictionType, string> = {
  classification: 'a classification head',
  token_classification: 'a token-classification head',
  fill_mask: 'a masked-LM head (or task fill_mask)',
  embedding: 'no head (or task embedding)',
};

/**
 * The predictions of `branch` (0 unless the composition is `parallel`), one per input, all of kind `type`;
 * throws ModhubError UNEXPECTED_PREDICTION naming what came back otherwise.
 */
export function predictionsOf<T extends PredictionType>(res: InferResponse, type: T, branch = 0): PredictionOf<T>[] {
  return res.results.map((r, i) => {
    const p = r.branches[branch];
    if (!p) throw new RangeError(`'branch' ${branch} does not exist: input ${i} has ${r.branches.length} branch(es)`);
    if (p.type !== type) {
      const mods = res.modules[branch]?.join(' + ') || 'the bare base';
      throw new ModhubError(0, 'UNEXPECTED_PREDICTION', `expected ${type} predictions, but ${mods} answered ${p.type} (${WHO[p.type]}); compose a module with ${WHO[type]}`);
    }
    return p as PredictionOf<T>;
  });
}
