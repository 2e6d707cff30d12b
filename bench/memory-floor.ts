/**
 * The memory floors under two of the serving issue's first-request targets at BERT-base (README, Performance: why
 * the rest is out of reach on this VM). Neither is modhub code; both are what any code pays on this machine:
 * - first touch: a new 28 MB Float32Array (a reduction-2 MAD-X language adapter) with one write a 4 KB page, the
 *   least a module that size costs in memory the process never had; then one full write pass over a 28 MB array
 *   already touched (what a server at its budgets pays instead, reusing what it evicted);
 * - scattered read: 850k sorted random indices into 340 MB of floats (an LT-SFT set at 1% over BERT-base's
 *   encoder weights), gathered, the read that a set's first overwrite pass cannot avoid.
 *
 *   npm run bench:memory-floor   (or node dist-bench/bench/memory-floor.js [--rounds 6]; about 5 s)
 */
const argv = process.argv.slice(2);
const roundsAt = argv.indexOf('--rounds');
const ROUNDS = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 6;

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const FLOATS_A_PAGE = 1024;

/** Kept alive so that every round gets memory the process never had (a freed array's pages come back at no cost). */
const held: Float32Array[] = [];

function firstTouch(bytes: number): number {
  const t0 = process.hrtime.bigint();
  const a = new Float32Array(bytes / 4);
  for (let i = 0; i < a.length; i += FLOATS_A_PAGE) a[i] = 1;
  const took = ms(t0);
  held.push(a);
  return took;
}

function writePass(a: Float32Array, v: number): number {
  const t0 = process.hrtime.bigint();
  a.fill(v);
  return ms(t0);
}

/** Deterministic random indices (xorshift), sorted as a diff set keeps them. */
function sortedIndices(count: number, range: number): Uint32Array {
  let s = 0x9e3779b9;
  const idx = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    idx[i] = (s >>> 0) % range;
  }
  return idx.sort();
}

function gather(weights: Float32Array, idx: Uint32Array, out: Float32Array): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < idx.length; i++) out[i] = weights[idx[i]];
  return ms(t0);
}

const touch = Array.from({ length: ROUNDS }, () => firstTouch(28 * 1024 * 1024));
const pass = Array.from({ length: ROUNDS }, (_, r) => writePass(held[0], r));
held.length = 0;
const weights = new Float32Array(85_000_000);
weights.fill(0.5); // every page resident before timing: what is measured is the reads, not faults
const idx = sortedIndices(850_000, weights.length);
const out = new Float32Array(idx.length);
const reads = Array.from({ length: ROUNDS }, () => gather(weights, idx, out));

const fmt = (xs: number[]) => `${xs.map((x) => x.toFixed(1)).join(', ')} (median ${median(xs).toFixed(1)})`;
console.log(`first touch of a new 28 MB array, ms: ${fmt(touch)}`);
console.log(`one write pass over a 28 MB array already touched, ms: ${fmt(pass)}`);
console.log(`850k sorted scattered reads over 340 MB, ms: ${fmt(reads)}`);
