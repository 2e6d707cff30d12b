/**
 * Classification scores for the multilingual example: accuracy and macro-F1 (the mean of per-label F1 over the
 * labels that occur in the gold data).
 * Example: `scores(['a', 'b'], ['a', 'a'])` → accuracy 0.5, macro_f1 (2/3 + 0) / 2.
 */

/** Accuracy, macro-F1 and per-label F1 (with gold counts); `gold` and `pred` are aligned label lists. */
export function scores(gold: string[], pred: string[]): { accuracy: number; macro_f1: number; per_label: Record<string, { f1: number; n: number }> } {
  if (gold.length !== pred.length) throw new RangeError(`'pred' must have one label per gold label (${gold.length}), got ${pred.length}`);
  if (gold.length === 0) throw new RangeError("'gold' must not be empty");
  const labels = [...new Set(gold)].sort();
  let right = 0;
  for (let i = 0; i < gold.length; i++) if (gold[i] === pred[i]) right++;
  const per: Record<string, { f1: number; n: number }> = {};
  for (const l of labels) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < gold.length; i++) {
      if (pred[i] === l && gold[i] === l) tp++;
      else if (pred[i] === l) fp++;
      else if (gold[i] === l) fn++;
    }
    per[l] = { f1: tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn), n: tp + fn };
  }
  const macro = labels.reduce((s, l) => s + per[l].f1, 0) / labels.length;
  return { accuracy: right / gold.length, macro_f1: macro, per_label: per };
}
