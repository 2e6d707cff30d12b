/**
 * Small seeded PRNG for reproducible fixtures and initialisation: mulberry32 for uniforms, Box-Muller for
 * normals. Not cryptographic. Example: `const rng = new Rng(42); rng.fillNormal(new Float32Array(8), 0.02)`.
 */

/** mulberry32: a 32-bit state generator returning uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  if (!Number.isFinite(seed)) throw new TypeError(`'seed' must be a finite number, got ${seed}`);
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded random source (default seed 0) with uniform, normal and integer draws. */
export class Rng {
  private readonly uniform: () => number;
  private spare: number | null = null;

  constructor(seed = 0) {
    this.uniform = mulberry32(seed);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uniform();
  }

  /** Integer uniform in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`'n' must be a positive integer, got ${n}`);
    return Math.floor(this.uniform() * n);
  }

  /** Normal draw N(mean, std²) via Box-Muller (defaults mean 0, std 1); the second variate is kept for the next call. */
  normal(mean = 0, std = 1): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return mean + std * z;
    }
    let u = 0;
    while (u === 0) u = this.uniform(); // log(0) is -Infinity
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return mean + std * r * Math.cos(2 * Math.PI * v);
  }

  /** Fills `out` with N(mean, std²) draws (default mean 0) and returns it. */
  fillNormal<T extends Float32Array | Float64Array>(out: T, std: number, mean = 0): T {
    for (let i = 0; i < out.length; i++) out[i] = this.normal(mean, std);
    return out;
  }
}
