/**
 * Reverse-mode autodiff over a GraphBuilder graph: `gradients(g, loss, wrt)` appends the backward nodes (one
 * vector-Jacobian rule per forward node, from vjp.ts) to the same graph and returns dLoss/dW for each W in
 * `wrt`, so one session run gives the loss and all gradients. Forward activations are reused by name.
 * Example:
 *   const w = g.input('w', 'float32', [4, 2]);
 *   const loss = g.reduce('ReduceSum', g.matmul(x, w), [0, 1], false);
 *   const [dw] = gradients(g, loss, [w]);
 *   g.output(loss, 'loss'); g.output(dw, 'grad.w');
 */
import { GraphBuilder, NodeDef, Value } from './builder';
import { VJP, fillLike } from './vjp';

/** Ops that never carry a gradient (shapes, comparisons, index arithmetic). */
const NON_DIFF = new Set(['Shape', 'Size', 'ConstantOfShape', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Not', 'Sign', 'ArgMax', 'ArgMin', 'Range', 'NonZero', 'RandomUniformLike', 'RandomNormalLike']);

/**
 * Appends the gradient of the scalar (or any-shape, summed) `loss` with respect to each value in `wrt` to `g`
 * and returns them in order. Fan-out gradients are summed; a `wrt` the loss does not depend on gets zeros.
 */
export function gradients(g: GraphBuilder, loss: Value, wrt: Value[]): Value[] {
  if (loss.type !== 'float32') throw new TypeError(`'loss' must be float32, got ${loss.type}`);
  for (const w of wrt) if (w.type !== 'float32') throw new TypeError(`cannot differentiate with respect to '${w.name}' of type ${w.type}`);
  const forward = g.nodes.slice(); // the builder appends nodes in topological order

  // values that depend on some wrt (forward sweep)
  const dep = new Set<string>(wrt.map((w) => w.name));
  for (const n of forward) {
    if (NON_DIFF.has(n.op)) continue;
    if (n.inputs.some((v) => v && dep.has(v.name))) for (const o of n.outputs) if (o.type === 'float32') dep.add(o.name);
  }

  // reverse sweep from the loss
  const grads = new Map<string, Value>();
  const accumulate = (v: Value, d: Value) => {
    const prev = grads.get(v.name);
    grads.set(v.name, prev ? g.add(prev, d) : d);
  };
  if (dep.has(loss.name)) grads.set(loss.name, loss.shape.length === 0 ? g.constFloat(1) : fillLike(g, loss, 1));

  for (let i = forward.length - 1; i >= 0; i--) {
    const n: NodeDef = forward[i];
    const dys = n.outputs.map((o) => grads.get(o.name) ?? null);
    if (dys.every((d) => d === null)) continue;
    const need = n.inputs.map((v) => !!v && v.type === 'float32' && dep.has(v.name));
    if (!need.some(Boolean)) continue;
    if (NON_DIFF.has(n.op)) continue;
    const rule = VJP[n.op];
    if (!rule) throw new TypeError(`no gradient rule for op '${n.op}' (node '${n.name}'); add one to server/model/graph/vjp.ts`);
    const dxs = rule(g, n, dys, need);
    n.inputs.forEach((v, k) => {
      const d = dxs[k];
      if (v && need[k] && d) accumulate(v, d);
    });
  }
  return wrt.map((w) => grads.get(w.name) ?? fillLike(g, w, 0));
}
