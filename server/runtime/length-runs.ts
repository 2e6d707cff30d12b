/**
 * Rows of one run are padded to its longest row, and on a CPU a run costs about a fixed part plus a part per padded
 * token (BERT-base shape, 2 threads: ~10 ms + ~1.15 ms a token; the small base ~1.3 ms + ~0.045 ms): five sentences
 * of 12–45 tokens padded to 45 cost a third more than the same rows in three runs of similar lengths. So a group
 * of rows runs as the contiguous length ranges that minimise Σ (overhead + rows × longest), in padded tokens, where
 * `overheadTokens` is a run's fixed cost expressed in tokens (Engine measures it at start; on a GPU padding is
 * nearly free and a group runs whole).
 * Example:
 *   lengthRuns([12, 45, 18, 30, 25], 8)   // → [[0, 2], [4, 3], [1]] (indices into the lengths)
 */

/** Indices of `lengths` grouped into runs, shortest run first; one run when `overheadTokens` is Infinity. */
export function lengthRuns(lengths: readonly number[], overheadTokens: number): number[][] {
  const n = lengths.length;
  const order = [...lengths.keys()].sort((a, b) => lengths[a] - lengths[b] || a - b);
  if (n <= 1 || !Number.isFinite(overheadTokens)) return n ? [order] : [];
  // best[i]: the cheapest split of the i shortest rows; from[i]: where its last run starts
  const best = new Float64Array(n + 1);
  const from = new Int32Array(n + 1);
  for (let i = 1; i <= n; i++) {
    best[i] = Infinity;
    const longest = lengths[order[i - 1]];
    for (let j = 0; j < i; j++) {
      const c = best[j] + overheadTokens + (i - j) * longest;
      if (c < best[i]) {
        best[i] = c;
        from[i] = j;
      }
    }
  }
  const runs: number[][] = [];
  for (let i = n; i > 0; i = from[i]) runs.unshift(order.slice(from[i], i));
  return runs;
}

/**
 * A run's fixed cost in tokens from two timings of one row (ms): `short` of `shortTokens`, `long` of `longTokens`
 * (cost = fixed + perToken × tokens), within [1, 256]; Infinity when the longer row cost no more (a GPU).
 */
export function overheadTokensFrom(short: number, shortTokens: number, long: number, longTokens: number): number {
  const perToken = (long - short) / (longTokens - shortTokens);
  if (!(perToken > 0)) return Infinity;
  return Math.min(256, Math.max(1, (short - perToken * shortTokens) / perToken));
}

/** Runs a fit keeps (its session's latest), and the fewest it answers from. */
const FIT_WINDOW = 64;
const FIT_MIN = 16;

/**
 * A session's fixed cost per run in tokens, fitted from its own runs: run time = fixed + perToken × padded tokens,
 * by Theil–Sen (the median of pairwise slopes, then the median intercept), which a run slowed by the machine's
 * other work does not pull. The measured bare cost scaled by node count (Engine.runOverhead) is only an estimate
 * for a larger graph: at BERT-base most of a run's fixed cost is reading the weights, which every graph pays alike.
 * `overheadTokens` is null until FIT_MIN runs spanning a factor of 2 in padded tokens came in.
 */
export class RunCostFit {
  private readonly tokens = new Float64Array(FIT_WINDOW);
  private readonly ms = new Float64Array(FIT_WINDOW);
  private added = 0;
  private fitted: number | null = null;
  /** Runs added since the last fit: refitting after every run would sort ~2,000 slopes per run. */
  private stale = 0;

  add(paddedTokens: number, ms: number): void {
    if (!(paddedTokens > 0) || !(ms >= 0)) return;
    const i = this.added++ % FIT_WINDOW;
    this.tokens[i] = paddedTokens;
    this.ms[i] = ms;
    this.stale++;
  }

  /** The fitted fixed cost in tokens within [1, 256]; null without enough spread or with a slope ≤ 0. */
  overheadTokens(): number | null {
    const n = Math.min(this.added, FIT_WINDOW);
    if (n < FIT_MIN) return null;
    if (this.stale < 8) return this.fitted;
    this.stale = 0;
    let lo = Infinity;
    let hi = 0;
    for (let i = 0; i < n; i++) {
      lo = Math.min(lo, this.tokens[i]);
      hi = Math.max(hi, this.tokens[i]);
    }
    if (hi < 2 * lo) return (this.fitted = null);
    const slopes: number[] = [];
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (this.tokens[i] !== this.tokens[j]) slopes.push((this.ms[j] - this.ms[i]) / (this.tokens[j] - this.tokens[i]));
    const perToken = median(slopes);
    if (!(perToken > 0)) return (this.fitted = null);
    const fixed = median(Array.from({ length: n }, (_, i) => this.ms[i] - perToken * this.tokens[i]));
    return (this.fitted = Math.min(256, Math.max(1, fixed / perToken)));
  }
}

function median(xs: number[]): number {
  xs.sort((a, b) => a - b);
  const m = xs.length >> 1;
  return xs.length % 2 ? xs[m] : (xs[m - 1] + xs[m]) / 2;
}
