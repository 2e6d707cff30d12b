/**
 * Plain-loop numeric ops of the reference forward pass (test/reference/encoder.ts). Everything is float64,
 * row-major. Shape letters: N rows (= B·T tokens), I input features, O output features, D hidden size.
 * Written from PyTorch / Hugging Face definitions, not from the engine.
 * Example: `const y = linear(x, N, I, W, b, O)` is `x·Wᵀ + b` for `W` in nn.Linear layout [O, I].
 */

/** A float64 matrix [rows, cols], row-major. */
export type Mat = Float64Array;

// Module-local copies of the globals used in the loops: under jest every global lookup goes through the vm
// context's interceptors, which made the loops ~10× slower.
const F64 = Float64Array;
const { abs, exp, sqrt, tanh, PI, SQRT2 } = Math;

/** `x·Wᵀ + b` (torch.nn.Linear): x [N, I], W [O, I], b [O] or null → [N, O]. */
export function linear(x: Mat, N: number, I: number, W: Mat, b: Mat | null, O: number): Mat {
  if (x.length !== N * I) throw new RangeError(`linear: input has ${x.length} values, expected [${N}, ${I}]`);
  if (W.length !== O * I) throw new RangeError(`linear: weight has ${W.length} values, expected [${O}, ${I}]`);
  const y = new F64(N * O);
  for (let n = 0; n < N; n++) {
    const xo = n * I;
    for (let o = 0; o < O; o++) {
      const wo = o * I;
      let s = b ? b[o] : 0;
      for (let i = 0; i < I; i++) s += x[xo + i] * W[wo + i];
      y[n * O + o] = s;
    }
  }
  return y;
}

/** Element-wise a + b (same length). */
export function add(a: Mat, b: Mat): Mat {
  if (a.length !== b.length) throw new RangeError(`add: lengths ${a.length} and ${b.length} differ`);
  const y = new F64(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

/** Element-wise a · s. */
export function scale(a: Mat, s: number): Mat {
  const y = new F64(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] * s;
  return y;
}

/** torch.nn.LayerNorm over the last dim D: (x − mean)/sqrt(var + eps)·w + b, biased variance. */
export function layerNorm(x: Mat, N: number, D: number, w: Mat, b: Mat, eps: number): Mat {
  const y = new F64(N * D);
  for (let n = 0; n < N; n++) {
    const o = n * D;
    let mean = 0;
    for (let d = 0; d < D; d++) mean += x[o + d];
    mean /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[o + d] - mean) ** 2;
    v /= D;
    const inv = 1 / sqrt(v + eps);
    for (let d = 0; d < D; d++) y[o + d] = (x[o + d] - mean) * inv * w[d] + b[d];
  }
  return y;
}

/**
 * erf to ~1e-15: Maclaurin series for |x| < 3, continued fraction for erfc beyond (JS has no Math.erf; the
 * usual 1.5e-7 Abramowitz–Stegun fit is too coarse for an oracle compared at 1e-4 relative near zero).
 */
export function erf(x: number): number {
  const ax = abs(x);
  if (ax < 3) {
    // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = ax;
    let sum = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (abs(add) < 1e-17 * abs(sum)) break;
    }
    const r = (2 / sqrt(PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), modified Lentz
  const tiny = 1e-300;
  let f = ax;
  let C = ax;
  let Dd = 0;
  for (let k = 1; k < 200; k++) {
    const a = k / 2;
    Dd = ax + a * Dd;
    Dd = abs(Dd) < tiny ? tiny : Dd;
    C = ax + a / C;
    C = abs(C) < tiny ? tiny : C;
    Dd = 1 / Dd;
    const delta = C * Dd;
    f *= delta;
    if (abs(delta - 1) < 1e-16) break;
  }
  const erfc = exp(-ax * ax) / sqrt(PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

/**
 * One activation, by the names Hugging Face `ACT2FN` / AdapterHub `Activation_Function_Class` accept:
 * gelu (exact erf, `GELUActivation`), gelu_new / gelu_pytorch_tanh / gelu_fast (tanh form), relu,
 * swish / silu (x·σ(x)), tanh, sigmoid, leakyrelu (slope 0.01, torch default), linear / identity.
 */
export function activationFn(name: string): (x: number) => number {
  switch (name.toLowerCase()) {
    case 'gelu':
      return (x) => 0.5 * x * (1 + erf(x / SQRT2));
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return (x) => 0.5 * x * (1 + tanh(sqrt(2 / PI) * (x + 0.044715 * x * x * x)));
    case 'relu':
      return (x) => (x > 0 ? x : 0);
    case 'swish':
    case 'silu':
      return (x) => x / (1 + exp(-x));
    case 'tanh':
      return (x) => tanh(x);
    case 'sigmoid':
      return (x) => 1 / (1 + exp(-x));
    case 'leakyrelu':
      return (x) => (x > 0 ? x : 0.01 * x);
    case 'linear':
    case 'identity':
      return (x) => x;
    default:
      throw new RangeError(`unknown activation '${name}': expected gelu, gelu_new, relu, swish, silu, tanh, sigmoid, leakyrelu`);
  }
}

/** Applies `activationFn(name)` element-wise. */
export function activate(x: Mat, name: string): Mat {
  const f = activationFn(name);
  const y = new F64(x.length);
  for (let i = 0; i < x.length; i++) y[i] = f(x[i]);
  return y;
}

/** Numerically stable softmax of `v` (in place on a copy). */
export function softmax(v: number[]): number[] {
  let m = -Infinity;
  for (const x of v) if (x > m) m = x;
  const e = v.map((x) => exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Columns [c0, c1) of x [N, C] → [N, c1 − c0]. */
export function sliceCols(x: Mat, N: number, C: number, c0: number, c1: number): Mat {
  const W = c1 - c0;
  const y = new F64(N * W);
  for (let n = 0; n < N; n++) for (let c = 0; c < W; c++) y[n * W + c] = x[n * C + c0 + c];
  return y;
}

/** Concatenates a [N, Ca] and b [N, Cb] along columns → [N, Ca + Cb]. */
export function concatCols(a: Mat, Ca: number, b: Mat, Cb: number, N: number): Mat {
  const C = Ca + Cb;
  const y = new F64(N * C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < Ca; c++) y[n * C + c] = a[n * Ca + c];
    for (let c = 0; c < Cb; c++) y[n * C + Ca + c] = b[n * Cb + c];
  }
  return y;
}
