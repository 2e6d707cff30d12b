/**
 * Every vector-Jacobian rule in server/model/graph/vjp.ts against central finite differences (float32,
 * onnxruntime). Each case prints `maxdiff` per input tensor.
 */
import { GraphBuilder, Value } from '../../server/model/graph/builder';
import { logSoftmax, gemm, gatherElements } from '../../server/model/graph/vjp';
import { gradcheck, GradInput } from '../helpers/gradcheck';

type Case = [string, (g: GraphBuilder, xs: Value[]) => Value, GradInput[], { eps?: number; atol?: number; rtol?: number; scale?: number }?];

const f = (name: string, dims: number[], extra: Partial<GradInput> = {}): GradInput => ({ name, dims, ...extra });
const positive = (n: number, seed = 3) => Float32Array.from({ length: n }, (_, i) => 0.5 + ((i * 7919 + seed * 104729) % 97) / 97);
const awayFromZero = (n: number) => Float32Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * (0.2 + ((i * 37) % 11) / 10));

const cases: Case[] = [
  ['Add broadcast', (g, [a, b]) => g.add(a, b), [f('a', [2, 3, 4]), f('b', [3, 1])]],
  ['Add broadcast leading', (g, [a, b]) => g.add(b, a), [f('a', [2, 3, 4]), f('b', [4])]],
  ['Sub broadcast', (g, [a, b]) => g.sub(a, b), [f('a', [2, 3, 4]), f('b', [1, 3, 4])]],
  ['Mul broadcast', (g, [a, b]) => g.mul(a, b), [f('a', [2, 3, 4]), f('b', [2, 1, 4])]],
  ['Div broadcast', (g, [a, b]) => g.div(a, b), [f('a', [2, 3, 4]), f('b', [3, 1], { data: positive(3) })]],
  ['Pow const', (g, [a]) => g.pow(a, g.constFloat(3)), [f('a', [2, 5])]],
  ['Pow const frac', (g, [a]) => g.pow(a, g.constFloat(0.5)), [f('a', [2, 5], { data: positive(10) })]],
  ['MatMul 2D', (g, [a, b]) => g.matmul(a, b), [f('a', [3, 4]), f('b', [4, 5])]],
  ['MatMul batch x 2D weight', (g, [a, b]) => g.matmul(a, b), [f('a', [2, 3, 4]), f('b', [4, 5])]],
  ['MatMul batch x batch (attention)', (g, [a, b]) => g.matmul(a, b), [f('a', [2, 2, 3, 4]), f('b', [2, 2, 4, 3])]],
  ['MatMul batch broadcast', (g, [a, b]) => g.matmul(a, b), [f('a', [2, 3, 4]), f('b', [1, 4, 2])]],
  ['MatMul symbolic batch', (g, [a, b]) => g.reshape(g.matmul(a, b), [6, 5]), [f('a', [2, 3, 4], { shape: ['B', 'T', 4] }), f('b', [4, 5])]],
  ['Gemm transB + C', (g, [a, b, c]) => g.node('Gemm', [a, b, c], { transB: { int: 1 }, alpha: { float: 0.5 }, beta: { float: 2 } }, [{ type: 'float32', shape: [3, 5] }])[0], [f('a', [3, 4]), f('b', [5, 4]), f('c', [5])]],
  ['Gemm transA', (_g, [a, b]) => gemm(_g, a, b, true, false), [f('a', [4, 3]), f('b', [4, 5])]],
  ['Transpose', (g, [a]) => g.transpose(a, [2, 0, 1]), [f('a', [2, 3, 4])]],
  ['Reshape', (g, [a]) => g.reshape(a, [0, 2, 6]), [f('a', [2, 3, 4])]],
  ['Unsqueeze/Squeeze', (g, [a]) => g.squeeze(g.mul(g.unsqueeze(a, [1]), a.shape.length ? g.constFloat(2) : a), [1]), [f('a', [2, 3])]],
  ['Concat', (g, [a, b]) => g.concat([a, b, a], 1), [f('a', [2, 3]), f('b', [2, 2])]],
  ['Split', (g, [a]) => {
    const [p, q] = g.node('Split', [a, g.constInt64([1, 3])], { axis: { int: 1 } }, [{ type: 'float32', shape: [2, 1] }, { type: 'float32', shape: [2, 3] }]);
    return g.mul(q, p);
  }, [f('a', [2, 4])]],
  ['Slice', (g, [a]) => g.slice(a, 1, 1, 3), [f('a', [2, 4, 3])]],
  ['Slice to end', (g, [a]) => g.slice(a, -1, 2, 1e9), [f('a', [2, 4])]],
  ['Slice first token', (g, [a]) => g.slice(a, 1, 0, 1), [f('a', [2, 3, 4])]],
  ['Gather axis 0 (repeated ids)', (g, [w, ids]) => g.gather(w, ids, 0), [f('w', [5, 3]), f('ids', [2, 3], { type: 'int64', data: BigInt64Array.from([0n, 4n, 2n, 2n, 0n, 1n]) })]],
  ['Gather axis 1 scalar', (g, [w, ids]) => g.gather(w, ids, 1), [f('w', [2, 3, 4]), f('ids', [], { type: 'int64', data: BigInt64Array.from([1n]) })]],
  ['GatherElements (loss pick)', (g, [a, i]) => gatherElements(g, a, i, -1), [f('a', [2, 3, 4]), f('i', [2, 3, 1], { type: 'int64', data: BigInt64Array.from([0n, 3n, 1n, 2n, 2n, 0n]) })]],
  ['Softmax', (g, [a]) => g.softmax(a, -1), [f('a', [2, 5])]],
  ['Softmax axis 1', (g, [a]) => g.softmax(a, 1), [f('a', [2, 3, 2])]],
  ['LogSoftmax', (g, [a]) => logSoftmax(g, a, -1), [f('a', [3, 4])]],
  ['LayerNormalization', (g, [x, s, b]) => g.layerNorm(x, s, b, 1e-5), [f('x', [2, 3, 6]), f('s', [6]), f('b', [6])]],
  ['Gelu exact', (g, [a]) => g.gelu(a, 'none'), [f('a', [2, 6], { data: awayFromZero(12) })]],
  ['Gelu tanh', (g, [a]) => g.gelu(a, 'tanh'), [f('a', [2, 6])]],
  ['Erf', (g, [a]) => g.unary('Erf', a), [f('a', [2, 5])]],
  ['Tanh', (g, [a]) => g.unary('Tanh', a), [f('a', [2, 5])]],
  ['Relu', (g, [a]) => g.unary('Relu', a), [f('a', [2, 6], { data: awayFromZero(12) })]],
  ['Sigmoid', (g, [a]) => g.unary('Sigmoid', a), [f('a', [2, 5])]],
  ['Exp', (g, [a]) => g.unary('Exp', a), [f('a', [2, 5])]],
  ['Log', (g, [a]) => g.unary('Log', a), [f('a', [2, 5], { data: positive(10) })]],
  ['Sqrt', (g, [a]) => g.unary('Sqrt', a), [f('a', [2, 5], { data: positive(10) })]],
  ['Reciprocal', (g, [a]) => g.unary('Reciprocal', a), [f('a', [2, 5], { data: positive(10) })]],
  ['Neg', (g, [a]) => g.unary('Neg', a), [f('a', [2, 5])]],
  ['Abs', (g, [a]) => g.unary('Abs', a), [f('a', [2, 6], { data: awayFromZero(12) })]],
  ['ReduceSum keepdims', (g, [a]) => g.reduce('ReduceSum', a, [1], true), [f('a', [2, 3, 4])]],
  ['ReduceSum no keepdims', (g, [a]) => g.reduce('ReduceSum', a, [0, 2], false), [f('a', [2, 3, 4])]],
  ['ReduceMean', (g, [a]) => g.reduce('ReduceMean', a, [-1], false), [f('a', [2, 3, 4])]],
  ['Where', (g, [a, b]) => g.where(g.compare('Greater', a, g.constFloat(0)), a, b), [f('a', [2, 6], { data: awayFromZero(12) }), f('b', [6])]],
  ['Cast float->float', (g, [a]) => g.cast(g.mul(a, a), 'float32'), [f('a', [2, 3])]],
  ['Cast int->float (no grad)', (g, [a, i]) => g.mul(a, g.cast(i, 'float32')), [f('a', [2, 3]), f('i', [2, 3], { type: 'int64', data: BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n]) })]],
  ['Expand', (g, [a]) => g.expand(a, g.constInt64([2, 3, 4]), [2, 3, 4]), [f('a', [3, 1])]],
  ['Identity', (g, [a]) => g.unary('Identity', a), [f('a', [2, 3])]],
  ['Max', (g, [a, b]) => g.max(a, b), [f('a', [2, 6], { data: awayFromZero(12) }), f('b', [6], { data: new Float32Array(6) })]],
  ['Min', (g, [a, b]) => g.min(a, b), [f('a', [2, 6], { data: awayFromZero(12) }), f('b', [6], { data: new Float32Array(6) })]],
  ['fan-out accumulation', (g, [a]) => g.add(g.mul(a, a), g.unary('Tanh', a)), [f('a', [2, 3])]],
  ['unreachable input gets zeros', (g, [a]) => g.unary('Tanh', a), [f('a', [2, 3]), f('unused', [4])]],
];

describe('vector-Jacobian rules vs central finite differences', () => {
  // rows padded to 4 entries: jest treats a missing trailing argument as a `done` callback
  test.each(cases.map(([l, fn, i, o]) => [l, fn, i, o ?? {}] as const))('%s', async (label, fn, inputs, opts) => {
    const r = await gradcheck(fn, inputs, { ...(opts ?? {}), label });
    expect(r.ok).toBe(true);
  });
});
