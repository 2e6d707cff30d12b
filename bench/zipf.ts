/**
 * Zipf popularity for the benchmarks' traffic: rank k (0 = most popular) is drawn with probability ∝ 1/(k+1)^alpha.
 * Example:
 *   const pick = zipf(1000, 1, new Rng(7));
 *   const rank = pick();
 */
import type { Rng } from '../server/model/random';

/** Zipf(alpha) sampler over ranks 0..n-1 (rank 0 most popular). */
export function zipf(n: number, alpha: number, rng: Rng): () => number {
  const cdf = new Float64Array(n);
  let s = 0;
  for (let k = 0; k < n; k++) cdf[k] = s += 1 / (k + 1) ** alpha;
  for (let k = 0; k < n; k++) cdf[k] /= s;
  return () => {
    const u = rng.next();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
