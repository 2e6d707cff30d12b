/**
 * Vector-Jacobian rules: for each ONNX op the encoder, modules, heads and losses use, the nodes that turn the
 * gradient of the op's outputs (dY) into the gradients of its float inputs (dX). `autodiff.ts` walks the graph
 * backwards and calls these. Every rule is checked against central finite differences in
 * test/unit/autodiff-ops.test.ts.
 *
 * A rule gets the forward node (its inputs and outputs are values of the same graph, so the backward can
 * reuse forward activations), the output gradients (null where an output gets none) and which inputs need a
 * gradient; it returns one gradient per input (null: none / not needed).
 *
 * Broadcasting: a gradient of a broadcast input is summed over the broadcast axes (`unbroadcast`), decided
 * from the static shapes (numbers and symbols; equal symbols are equal dims).
 * Example:
 *   const dx = VJP.Tanh(g, node, [dy], [true])[0];   // dy * (1 - y^2)
 */
import { GraphBuilder, NodeDef, Value, Dim, TensorInit, unknownDim } from './builder';

export type VjpRule = (g: GraphBuilder, node: NodeDef, dys: (Value | null)[], needs: boolean[]) => (Value | null)[];

// ---- small emit helpers (kept here, so the builder's class stays the engine's) ------------------------------

function one(g: GraphBuilder, op: string, inputs: (Value | null)[], attrs: NodeDef['attrs'], type: Value['type'], shape: readonly Dim[]): Value {
  return g.node(op, inputs, attrs, [{ type, shape }])[0];
}

/** A float32 tensor of the runtime shape of `like`, filled with `value`. */
export function fillLike(g: GraphBuilder, like: Value, value: number): Value {
  const t: TensorInit = { type: 'float32', dims: [1], data: Float32Array.from([value]) };
  return one(g, 'ConstantOfShape', [g.shapeOf(like)], { value: t }, 'float32', like.shape);
}

/** GatherElements along `axis` (the losses pick the target's log-probability with it). */
export function gatherElements(g: GraphBuilder, data: Value, idx: Value, axis: number): Value {
  return one(g, 'GatherElements', [data, idx], { axis: { int: axis } }, data.type, idx.shape);
}

/** LogSoftmax along `axis` (forward op used by the losses). */
export function logSoftmax(g: GraphBuilder, x: Value, axis = -1): Value {
  return one(g, 'LogSoftmax', [x], { axis: { int: axis } }, x.type, x.shape);
}

/** Gemm on 2-D operands: alpha * op(A) op(B) (+ C); the backward of batched MatMul against a 2-D weight. */
export function gemm(g: GraphBuilder, a: Value, b: Value, transA: boolean, transB: boolean, alpha = 1, c?: Value): Value {
  return g.gemm(a, b, { transA, transB, alpha, c });
}

/** Int64 scalar-or-1-D constant data of an initializer (axes, starts, exponents), or null when not constant. */
function constData(g: GraphBuilder, v: Value | null | undefined): number[] | null {
  if (!v) return null;
  const init = g.initializers.get(v.name);
  if (!init) return null;
  return Array.from(init.init.data as ArrayLike<number | bigint>, (x) => Number(x));
}

function normAxis(a: number, rank: number): number {
  return a < 0 ? a + rank : a;
}

function sameDim(a: Dim, b: Dim): boolean {
  return a === b;
}

/**
 * Sums `dy` (shape of a broadcast result) back to the shape of `x`: over leading extra axes, and over axes where
 * x has 1 and the result does not. Shapes must decide it statically (a symbolic dim that could be 1 throws).
 */
export function unbroadcast(g: GraphBuilder, dy: Value, x: Value): Value {
  const extra = dy.shape.length - x.shape.length;
  const keepAxes: number[] = [];
  for (let i = 0; i < x.shape.length; i++) {
    const dx = x.shape[i];
    const dd = dy.shape[i + extra];
    if (sameDim(dx, dd)) continue;
    if (dx === 1) keepAxes.push(i + extra);
    else if (typeof dx === 'number' && typeof dd === 'number') throw new RangeError(`unbroadcast: dim ${dd} cannot reduce to ${dx} ([${dy.shape}] -> [${x.shape}])`);
    else if (typeof dd === 'number' && dd === 1) throw new RangeError(`unbroadcast: [${dy.shape}] -> [${x.shape}] would expand`);
    // a symbol against a number or another symbol: the broadcast was between equal dims (builder picks the
    // known one), so no reduction; a symbol that is 1 at run time would be wrong, and reshapeLike catches it.
  }
  let out = dy;
  if (keepAxes.length) out = g.reduce('ReduceSum', out, keepAxes, true);
  if (extra > 0) out = g.reduce('ReduceSum', out, Array.from({ length: extra }, (_, i) => i), false);
  if (out.shape.length !== x.shape.length) throw new RangeError(`unbroadcast: rank ${out.shape.length} != ${x.shape.length}`);
  // carry x's (possibly symbolic) shape forward without a runtime op
  return out.shape.every((d, i) => sameDim(d, x.shape[i])) ? out : { ...out, shape: x.shape };
}

function isFloat(v: Value | null): boolean {
  return !!v && v.type === 'float32';
}

function neg(g: GraphBuilder, x: Value): Value {
  return g.unary('Neg', x);
}

/** The node producing `v` (null for inputs and initializers). */
function producer(g: GraphBuilder, v: Value): NodeDef | null {
  for (let i = g.nodes.length - 1; i >= 0; i--) if (g.nodes[i].outputs.some((o) => o.name === v.name)) return g.nodes[i];
  return null;
}

/** Moves the last two axes' roles: [..., M, K] -> [..., K, M]. */
function swapLast(g: GraphBuilder, x: Value): Value {
  // x = Transpose(W, [1, 0]) (a Linear weight seen as [in, out]): W itself, no copy
  if (x.shape.length === 2) {
    const p = producer(g, x);
    const perm = p && p.op === 'Transpose' ? (p.attrs.perm as { ints: number[] }).ints : null;
    if (p && perm && perm[0] === 1 && perm[1] === 0) return p.inputs[0]!;
  }
  const r = x.shape.length;
  const perm = Array.from({ length: r }, (_, i) => i);
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return g.transpose(x, perm);
}

/** [..., K] -> [-1, K] (2-D view for Gemm); the last dim must be static or symbolic-but-known. */
function flat2(g: GraphBuilder, x: Value): Value {
  if (x.shape.length === 2) return x;
  const last = x.shape[x.shape.length - 1];
  return g.reshape(x, [-1, typeof last === 'number' ? last : -1], [unknownDim(), last]);
}

// ---- rules: forward op name -> backward ---------------------------------------------------------------------

export const VJP: Record<string, VjpRule> = {
  // Y = A + B
  Add(g, n, [dy], need) {
    const [a, b] = n.inputs as Value[];
    return [need[0] ? unbroadcast(g, dy!, a) : null, need[1] ? unbroadcast(g, dy!, b) : null];
  },
  // Y = A - B
  Sub(g, n, [dy], need) {
    const [a, b] = n.inputs as Value[];
    return [need[0] ? unbroadcast(g, dy!, a) : null, need[1] ? unbroadcast(g, neg(g, dy!), b) : null];
  },
  // Y = A * B: dA = dY * B, dB = dY * A
  Mul(g, n, [dy], need) {
    const [a, b] = n.inputs as Value[];
    return [need[0] ? unbroadcast(g, g.mul(dy!, b), a) : null, need[1] ? unbroadcast(g, g.mul(dy!, a), b) : null];
  },
  // Y = A / B: dA = dY / B, dB = -dY * Y / B
  Div(g, n, [dy], need) {
    const [a, b] = n.inputs as Value[];
    const y = n.outputs[0];
    return [need[0] ? unbroadcast(g, g.div(dy!, b), a) : null, need[1] ? unbroadcast(g, neg(g, g.div(g.mul(dy!, y), b)), b) : null];
  },
  // Y = X ^ c (c constant): dX = dY * c * X^(c-1)
  Pow(g, n, [dy], need) {
    const [x, c] = n.inputs as Value[];
    if (need[1]) throw new TypeError(`Pow: gradient with respect to the exponent '${c.name}' is not supported (constant exponents only)`);
    const cm1 = g.sub(c, g.constFloat(1));
    return [unbroadcast(g, g.mul(dy!, g.mul(c, g.pow(x, cm1))), x), null];
  },
  // Y = A @ B, batch-broadcast: dA = dY @ B^T, dB = A^T @ dY (summed over broadcast batch dims)
  MatMul(g, n, [dy], need) {
    const [a, b] = n.inputs as Value[];
    let da: Value | null = null;
    let db: Value | null = null;
    if (need[0]) da = unbroadcast(g, g.matmul(dy!, swapLast(g, b)), a);
    if (need[1]) {
      if (b.shape.length === 2 && a.shape.length > 2) {
        // [B,T,K] x [K,N]: one GEMM over the flattened rows instead of a batched product + reduce
        db = { ...gemm(g, flat2(g, a), flat2(g, dy!), true, false), shape: b.shape };
      } else {
        db = unbroadcast(g, g.matmul(swapLast(g, a), dy!), b);
      }
    }
    return [da, db];
  },
  // Y = alpha * op(A) op(B) + beta * C
  Gemm(g, n, [dy], need) {
    const [a, b, c] = n.inputs as (Value | null)[];
    const tA = Number((n.attrs.transA as { int: number } | undefined)?.int ?? 0) === 1;
    const tB = Number((n.attrs.transB as { int: number } | undefined)?.int ?? 0) === 1;
    const alpha = (n.attrs.alpha as { float: number } | undefined)?.float ?? 1;
    const beta = (n.attrs.beta as { float: number } | undefined)?.float ?? 1;
    // op(A) = [M,K], op(B) = [K,N]; d op(A) = dY op(B)^T, d op(B) = op(A)^T dY
    let da: Value | null = null;
    let db: Value | null = null;
    if (need[0]) da = tA ? gemm(g, b!, dy!, tB, true, alpha) : gemm(g, dy!, b!, false, !tB, alpha);
    if (need[1]) db = tB ? gemm(g, dy!, a!, true, tA, alpha) : gemm(g, a!, dy!, !tA, false, alpha);
    let dc: Value | null = null;
    if (c && need[2]) {
      dc = unbroadcast(g, dy!, c);
      if (beta !== 1) dc = g.mul(dc, g.constFloat(beta));
    }
    return [da && { ...da, shape: a!.shape }, db && { ...db, shape: b!.shape }, dc];
  },
  Transpose(g, n, [dy]) {
    const perm = (n.attrs.perm as { ints: number[] }).ints;
    if (perm.length === 2 && perm[0] === 1 && perm[1] === 0) {
      // dY = Gemm(A, B, transA) just emitted by MatMul's rule: (AᵀB)ᵀ = BᵀA, one GEMM instead of GEMM + copy
      const p = producer(g, dy!);
      const at = p && p.op === 'Gemm' ? p.attrs : null;
      if (p && at && (at.transA as { int: number }).int === 1 && (at.transB as { int: number }).int === 0 && !at.alpha && p.inputs.length === 2 && g.nodes[g.nodes.length - 1] === p) {
        g.nodes.pop(); // the transposed product has no other consumer yet
        return [{ ...gemm(g, p.inputs[1]!, p.inputs[0]!, true, false), shape: n.inputs[0]!.shape }];
      }
    }
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [g.transpose(dy!, inv)];
  },
  Reshape(g, n, [dy]) {
    return [g.reshapeLike(dy!, n.inputs[0]!), null];
  },
  Unsqueeze(g, n, [dy]) {
    return [g.reshapeLike(dy!, n.inputs[0]!), null];
  },
  Squeeze(g, n, [dy]) {
    return [g.reshapeLike(dy!, n.inputs[0]!), null];
  },
  Flatten(g, n, [dy]) {
    return [g.reshapeLike(dy!, n.inputs[0]!)];
  },
  Identity(_g, _n, [dy]) {
    return [dy];
  },
  // Concat along axis: split dY by the inputs' (runtime) sizes on that axis
  Concat(g, n, [dy], need) {
    const xs = n.inputs as Value[];
    const rank = xs[0].shape.length;
    const ax = normAxis(Number((n.attrs.axis as { int: number }).int), rank);
    const sizes = xs.map((x) => g.gather(g.shapeOf(x), g.constInt64([ax]), 0));
    const split = one(g, 'Concat', sizes, { axis: { int: 0 } }, 'int64', [xs.length]);
    const outs = g.node('Split', [dy!, split], { axis: { int: ax } }, xs.map((x) => ({ type: x.type, shape: x.shape })));
    return outs.map((o, i) => (need[i] ? o : null));
  },
  // Split along axis: concatenate the output gradients (zeros where an output has none)
  Split(g, n, dys) {
    const ax = normAxis(Number((n.attrs.axis as { int: number } | undefined)?.int ?? 0), n.inputs[0]!.shape.length);
    const parts = n.outputs.map((o, i) => dys[i] ?? fillLike(g, o, 0));
    const dx = one(g, 'Concat', parts, { axis: { int: ax } }, 'float32', n.inputs[0]!.shape);
    return [dx, null];
  },
  // Slice (steps 1): pad dY with zeros back to X's extent on each sliced axis
  Slice(g, n, [dy]) {
    const [x, starts, , axesV, steps] = n.inputs as (Value | null)[];
    const st = constData(g, starts);
    const axes = axesV ? constData(g, axesV) : st ? st.map((_, i) => i) : null;
    const sp = steps ? constData(g, steps) : null;
    if (!st || !axes) throw new TypeError(`Slice '${n.name}': starts and axes must be constants for the gradient`);
    if (sp && sp.some((s) => s !== 1)) throw new RangeError(`Slice '${n.name}': only steps of 1 have a gradient rule`);
    const rank = x!.shape.length;
    let out = dy!;
    const shX = g.shapeOf(x!);
    st.forEach((s0, i) => {
      const ax = normAxis(axes[i], rank);
      const dimX = g.gather(shX, g.constInt64([ax]), 0);
      const dimY = g.gather(g.shapeOf(dy!), g.constInt64([ax]), 0);
      // start clamped to [0, dimX] (negative counts from the end)
      const before = s0 >= 0 ? g.min(g.constInt64([s0]), dimX) : g.max(g.add(dimX, g.constInt64([s0])), g.constInt64([0]));
      const after = g.sub(g.sub(dimX, before), dimY);
      const pads = one(g, 'Concat', [before, after], { axis: { int: 0 } }, 'int64', [2]);
      const shape = [...out.shape];
      shape[ax] = x!.shape[ax];
      out = one(g, 'Pad', [out, pads, g.constFloat(0), g.constInt64([ax])], { mode: 'constant' }, 'float32', shape);
    });
    return [out, null, null, null, null];
  },
  // Gather(data, idx, axis): scatter-add dY into zeros of data's shape
  Gather(g, n, [dy], need) {
    const [data, idx] = n.inputs as Value[];
    if (!need[0]) return [null, null];
    const rank = data.shape.length;
    const ax = normAxis(Number((n.attrs.axis as { int: number } | undefined)?.int ?? 0), rank);
    const r = idx.shape.length;
    const idx64 = idx.type === 'int64' ? idx : g.cast(idx, 'int64');
    // ScatterND wants data with the gathered axis first and updates as idx.shape + rest
    let dyT = dy!;
    let permBack: number[] | null = null;
    let zerosOf = data;
    if (ax !== 0) {
      const dataPerm = [ax, ...Array.from({ length: rank }, (_, i) => i).filter((i) => i !== ax)];
      zerosOf = g.transpose(data, dataPerm);
      // dy = data[:ax] + idx + data[ax+1:] -> idx + data[:ax] + data[ax+1:]
      const dyPerm = [...Array.from({ length: r }, (_, i) => ax + i), ...Array.from({ length: ax }, (_, i) => i), ...Array.from({ length: rank - ax - 1 }, (_, i) => ax + r + i)];
      dyT = g.transpose(dy!, dyPerm);
      permBack = new Array<number>(rank);
      dataPerm.forEach((p, i) => (permBack![p] = i));
    }
    const zeros = fillLike(g, zerosOf, 0);
    const ind = g.unsqueeze(idx64, [-1]);
    let dx = one(g, 'ScatterND', [zeros, ind, dyT], { reduction: 'add' }, 'float32', zerosOf.shape);
    if (permBack) dx = g.transpose(dx, permBack);
    return [dx, null];
  },
  // GatherElements(data, idx, axis): scatter-add dY into zeros of data's shape at the same positions
  GatherElements(g, n, [dy], need) {
    const [data, idx] = n.inputs as Value[];
    if (!need[0]) return [null, null];
    const ax = Number((n.attrs.axis as { int: number } | undefined)?.int ?? 0);
    const dx = one(g, 'ScatterElements', [fillLike(g, data, 0), idx, dy!], { axis: { int: ax }, reduction: 'add' }, 'float32', data.shape);
    return [dx, null];
  },
  // y = softmax(x): dx = y * (dy - sum(dy * y))
  Softmax(g, n, [dy]) {
    const y = n.outputs[0];
    const ax = Number((n.attrs.axis as { int: number } | undefined)?.int ?? -1);
    const s = g.reduce('ReduceSum', g.mul(dy!, y), [ax], true);
    return [g.mul(y, g.sub(dy!, s))];
  },
  // y = log_softmax(x): dx = dy - exp(y) * sum(dy)
  LogSoftmax(g, n, [dy]) {
    const y = n.outputs[0];
    const ax = Number((n.attrs.axis as { int: number } | undefined)?.int ?? -1);
    const s = g.reduce('ReduceSum', dy!, [ax], true);
    return [g.sub(dy!, g.mul(g.unary('Exp', y), s))];
  },
  // y = (x - mu) * rstd * scale + bias over the last axis (recomputes mu, rstd; no training op needed)
  //   dbias = sum dy, dscale = sum dy * xhat, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * scale
  LayerNormalization(g, n, [dy], need) {
    const [x, scale, bias] = n.inputs as (Value | null)[];
    const ax = Number((n.attrs.axis as { int: number } | undefined)?.int ?? -1);
    if (normAxis(ax, x!.shape.length) !== x!.shape.length - 1) throw new RangeError(`LayerNormalization '${n.name}': gradient only for the last axis`);
    const eps = (n.attrs.epsilon as { float: number } | undefined)?.float ?? 1e-5;
    const mu = g.reduce('ReduceMean', x!, [-1], true);
    const xc = g.sub(x!, mu);
    const varr = g.reduce('ReduceMean', g.mul(xc, xc), [-1], true);
    const rstd = g.unary('Reciprocal', g.unary('Sqrt', g.add(varr, g.constFloat(eps))));
    const xhat = g.mul(xc, rstd);
    const lead = Array.from({ length: x!.shape.length - 1 }, (_, i) => i);
    const sumLead = (v: Value) => (lead.length ? g.reduce('ReduceSum', v, lead, false) : v);
    let dx: Value | null = null;
    if (need[0]) {
      const gx = g.mul(dy!, scale!);
      const m1 = g.reduce('ReduceMean', gx, [-1], true);
      const m2 = g.reduce('ReduceMean', g.mul(gx, xhat), [-1], true);
      dx = g.mul(rstd, g.sub(g.sub(gx, m1), g.mul(xhat, m2)));
    }
    const dscale = need[1] ? { ...sumLead(g.mul(dy!, xhat)), shape: scale!.shape } : null;
    const dbias = bias && need[2] ? { ...sumLead(dy!), shape: bias.shape } : null;
    return [dx, dscale, dbias];
  },
  // gelu'(x): exact = Phi(x) + x phi(x); tanh = 0.5(1+t) + 0.5 x (1-t^2) sqrt(2/pi)(1 + 3*0.044715 x^2)
  Gelu(g, n, [dy]) {
    const x = n.inputs[0]!;
    const approx = (n.attrs.approximate as string | undefined) ?? 'none';
    let d: Value;
    if (approx === 'tanh') {
      const k = Math.sqrt(2 / Math.PI);
      const x2 = g.mul(x, x);
      const u = g.mul(g.mul(x, g.constFloat(k)), g.add(g.constFloat(1), g.mul(x2, g.constFloat(0.044715))));
      const t = g.unary('Tanh', u);
      const du = g.mul(g.constFloat(k), g.add(g.constFloat(1), g.mul(x2, g.constFloat(3 * 0.044715))));
      const left = g.mul(g.constFloat(0.5), g.add(g.constFloat(1), t));
      const right = g.mul(g.mul(g.constFloat(0.5), x), g.mul(g.sub(g.constFloat(1), g.mul(t, t)), du));
      d = g.add(left, right);
    } else {
      const cdf = g.mul(g.constFloat(0.5), g.add(g.constFloat(1), g.unary('Erf', g.mul(x, g.constFloat(Math.SQRT1_2)))));
      const pdf = g.mul(g.constFloat(1 / Math.sqrt(2 * Math.PI)), g.unary('Exp', g.mul(g.mul(x, x), g.constFloat(-0.5))));
      d = g.add(cdf, g.mul(x, pdf));
    }
    return [g.mul(dy!, d)];
  },
  // erf'(x) = 2/sqrt(pi) exp(-x^2)
  Erf(g, n, [dy]) {
    const x = n.inputs[0]!;
    return [g.mul(dy!, g.mul(g.constFloat(2 / Math.sqrt(Math.PI)), g.unary('Exp', neg(g, g.mul(x, x)))))];
  },
  Tanh(g, n, [dy]) {
    const y = n.outputs[0];
    return [g.mul(dy!, g.sub(g.constFloat(1), g.mul(y, y)))];
  },
  Relu(g, n, [dy]) {
    const x = n.inputs[0]!;
    return [g.where(g.compare('Greater', x, g.constFloat(0)), dy!, g.constFloat(0))];
  },
  Sigmoid(g, n, [dy]) {
    const y = n.outputs[0];
    return [g.mul(dy!, g.mul(y, g.sub(g.constFloat(1), y)))];
  },
  Exp(g, n, [dy]) {
    return [g.mul(dy!, n.outputs[0])];
  },
  Log(g, n, [dy]) {
    return [g.div(dy!, n.inputs[0]!)];
  },
  // sqrt'(x) = 0.5 / y
  Sqrt(g, n, [dy]) {
    return [g.div(g.mul(dy!, g.constFloat(0.5)), n.outputs[0])];
  },
  // (1/x)' = -y^2
  Reciprocal(g, n, [dy]) {
    const y = n.outputs[0];
    return [neg(g, g.mul(dy!, g.mul(y, y)))];
  },
  Neg(g, _n, [dy]) {
    return [neg(g, dy!)];
  },
  Abs(g, n, [dy]) {
    return [g.mul(dy!, g.unary('Sign', n.inputs[0]!))];
  },
  // Reduce{Sum,Mean}(x, axes): broadcast dY back over the reduced axes (and divide by the count for the mean)
  ReduceSum(g, n, [dy]) {
    return [reduceBack(g, n, dy!, false), null];
  },
  ReduceMean(g, n, [dy]) {
    return [reduceBack(g, n, dy!, true), null];
  },
  // Where(c, A, B): dA = where(c, dY, 0), dB = where(c, 0, dY)
  Where(g, n, [dy], need) {
    const [c, a, b] = n.inputs as Value[];
    const zero = g.constFloat(0);
    return [null, need[1] ? unbroadcast(g, g.where(c, dy!, zero), a) : null, need[2] ? unbroadcast(g, g.where(c, zero, dy!), b) : null];
  },
  // Cast: float -> float passes the gradient; anything involving ints has none
  Cast(_g, n, [dy]) {
    return [isFloat(n.inputs[0]) && isFloat(n.outputs[0]) ? dy : null];
  },
  Expand(g, n, [dy]) {
    return [unbroadcast(g, dy!, n.inputs[0]!), null];
  },
  // Max/Min elementwise: the gradient goes to the winner (ties to the first input)
  Max(g, n, [dy], need) {
    return minMax(g, n, dy!, need, 'GreaterOrEqual');
  },
  Min(g, n, [dy], need) {
    return minMax(g, n, dy!, need, 'LessOrEqual');
  },
};

function minMax(g: GraphBuilder, n: NodeDef, dy: Value, need: boolean[], cmp: 'GreaterOrEqual' | 'LessOrEqual'): (Value | null)[] {
  const [a, b] = n.inputs as Value[];
  if (n.inputs.length !== 2) throw new RangeError(`${n.op} '${n.name}': gradient only for two inputs`);
  const mask = g.compare(cmp, a, b);
  const zero = g.constFloat(0);
  return [need[0] ? unbroadcast(g, g.where(mask, dy, zero), a) : null, need[1] ? unbroadcast(g, g.where(mask, zero, dy), b) : null];
}

function reduceBack(g: GraphBuilder, n: NodeDef, dy: Value, mean: boolean): Value {
  const x = n.inputs[0]!;
  const rank = x.shape.length;
  const keep = Number((n.attrs.keepdims as { int: number } | undefined)?.int ?? 1) === 1;
  const axesData = constData(g, n.inputs[1]);
  if (n.inputs[1] && !axesData) throw new TypeError(`${n.op} '${n.name}': axes must be a constant for the gradient`);
  const axes = axesData && axesData.length ? axesData.map((a) => normAxis(a, rank)) : Array.from({ length: rank }, (_, i) => i);
  let d = dy;
  if (!keep && axes.length) d = g.unsqueeze(d, [...axes].sort((p, q) => p - q));
  let dx = g.expand(d, g.shapeOf(x), [...x.shape]);
  if (mean) {
    // divide by the number of reduced elements = size(x) / size(y)
    const sx = one(g, 'Size', [x], {}, 'int64', []);
    const sy = one(g, 'Size', [n.outputs[0]], {}, 'int64', []);
    const cnt = g.cast(g.div(sx, sy), 'float32');
    dx = g.div(dx, cnt);
  }
  return dx;
}
