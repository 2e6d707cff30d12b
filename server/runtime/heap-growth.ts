/**
 * How far V8's JavaScript heap may grow past what survived the last full collection before it starts the next
 * one (V8's `--heap-growing-percent`; process-wide, so the onnxruntime worker's heap follows it too).
 *
 * Why the server sets it: the engine's data lives in ArrayBuffers outside the JS heap, so the heap itself stays
 * small (~25 MB live at BERT-base) and V8 sizes its next limit at about twice that. Every few requests' garbage
 * then starts incremental marking, and its finalising pause and helper threads run beside onnxruntime's two
 * threads on a 2-core machine. Measured with `bench:serve --shape bert-base --ns 1,64 --cold 32 --cold-only`
 * (first request to a module not in memory, extra over the same request loaded, median over 32 modules):
 * +51 to +58 ms with V8's own growth, +32 to +35 ms at 900%; with `--ns 1,48 --cold 16` the main thread ran 24
 * full collections in the cold phase with V8's own growth, 7 at 900% (README, Design decisions). The cost is
 * memory: up to `1 + percent/100` times the live JS heap, a few hundred MB at most next to GBs of weights.
 * Example:
 *   setHeapGrowingPercent(900); // 0 = V8's own, adaptive growth
 */
import * as v8 from 'v8';

/** `serve`'s default: collect once the heap is 10× what survived the last full collection. */
export const DEFAULT_HEAP_GROWING_PERCENT = 900;

export function setHeapGrowingPercent(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 10_000) {
    throw new RangeError(`heap growing percent must be an integer from 0 (V8's own growth) to 10000, got ${percent}`);
  }
  // Read by V8 each time it sets the next limit, so it takes effect after the next collection; 0 restores V8's.
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}
