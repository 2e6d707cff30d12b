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
