/**
 * Comparing engine outputs with the oracle's: element-wise `|a − b| <= atol + rtol·|b|` (numpy.allclose with the
 * reference as `b`), default rtol 1e-4 and atol 1e-5 (the absolute floor keeps near-zero logits from failing on
 * float32 noise). The failure message names the worst element and its index.
 * Example: `expectMatchesReference(engineHidden, ref.hidden!, 'hidden')`.
 */
import type { Tensor } from '../../modules-store/safetensors';

export interface CompareResult {
  ok: boolean;
  /** Largest |a − b|, and the largest |a − b| / (atol + rtol·|b|) (≤ 1 passes), with the flat index of the latter. */
  maxAbs: number;
  worstRatio: number;
  worstIndex: number;
}

type Floats = Tensor | Float32Array | Float64Array | number[];

function values(t: Floats): { shape?: number[]; data: ArrayLike<number> } {
  if (Array.isArray(t) || t instanceof Float32Array || t instanceof Float64Array) return { data: t };
  return { shape: t.shape, data: t.data as ArrayLike<number> };
}

/** Compares `actual` with the reference `expected`; shapes must match when both are tensors. */
export function compareToReference(actual: Floats, expected: Floats, rtol = 1e-4, atol = 1e-5): CompareResult {
  const a = values(actual);
  const b = values(expected);
  if (a.shape && b.shape && a.shape.join() !== b.shape.join()) throw new RangeError(`shape [${a.shape}] differs from the reference [${b.shape}]`);
  if (a.data.length !== b.data.length) throw new RangeError(`${a.data.length} values, the reference has ${b.data.length}`);
  let maxAbs = 0;
  let worstRatio = 0;
  let worstIndex = -1;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    const ratio = Number.isNaN(d) ? Infinity : d / (atol + rtol * Math.abs(b.data[i]));
    if (d > maxAbs) maxAbs = d;
    if (ratio > worstRatio || worstIndex < 0) {
      worstRatio = ratio;
      worstIndex = i;
    }
  }
  return { ok: worstRatio <= 1, maxAbs, worstRatio, worstIndex };
}

/** Throws (failing the test) when `actual` is not within tolerance of the reference; `what` names the output. */
export function expectMatchesReference(actual: Floats, expected: Floats, what: string, rtol = 1e-4, atol = 1e-5): void {
  const r = compareToReference(actual, expected, rtol, atol);
  if (!r.ok) {
    const a = values(actual).data[r.worstIndex];
    const b = values(expected).data[r.worstIndex];
    throw new Error(`${what}: element ${r.worstIndex} is ${a}, the reference ${b} (|diff| ${Math.abs(a - b)} > ${atol} + ${rtol}·|ref|); max |diff| ${r.maxAbs}`);
  }
}
