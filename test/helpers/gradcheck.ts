/**
 * Gradient check: analytic gradients from `gradients()` (one onnxruntime run) against central finite
 * differences of the same forward graph run in onnxruntime (float32). Prints max abs / rel diff per tensor,
 * llm.c style. Example:
 *   const r = await gradcheck((g, [x]) => g.unary('Tanh', x), [{ name: 'x', dims: [2, 3] }]);
 *   expect(r.ok).toBe(true);
 */
import { GraphBuilder, Value, ElemType } from '../../server/model/graph/builder';
import { gradients } from '../../server/model/graph/autodiff';
import { Session, HostTensor } from '../../server/runtime/session';
import { Rng } from '../../server/model/random';

export interface GradInput {
  name: string;
  dims: number[];
  /** float32 (default, differentiated) or int64 (fed as given, not differentiated). */
  type?: ElemType;
  data?: Float32Array | BigInt64Array | Uint8Array;
  /** symbolic shape to declare (defaults to dims). */
  shape?: (number | string)[];
  /** float inputs not differentiated (still fed). */
  noGrad?: boolean;
}

export interface GradCheckResult {
  ok: boolean;
  report: { name: string; maxAbs: number; maxRel: number; maxGrad: number }[];
}

const nel = (d: number[]) => d.reduce((a, b) => a * b, 1);

function build(fn: (g: GraphBuilder, xs: Value[]) => Value, inputs: GradInput[], withGrad: boolean, weightSeed: number): { bytes: Uint8Array; outDims: number[] } {
  const g = new GraphBuilder('gradcheck');
  const xs = inputs.map((i) => g.input(i.name, i.type ?? 'float32', i.shape ?? i.dims));
  const y = fn(g, xs);
  const outDims = y.shape.map((d) => {
    if (typeof d !== 'number') throw new TypeError(`gradcheck: output dims must be static, got [${y.shape}]`);
    return d;
  });
  // loss = sum(y * R), R fixed random weights so every output element's gradient matters differently
  const R = new Rng(weightSeed).fillNormal(new Float32Array(nel(outDims)), 1);
  const r = g.initializer('R', { type: 'float32', dims: outDims, data: R });
  const loss = g.reduce('ReduceSum', g.mul(y, r), Array.from({ length: outDims.length }, (_, i) => i), false);
  g.output(loss, 'loss');
  if (withGrad) {
    const wrt = xs.filter((_, i) => (inputs[i].type ?? 'float32') === 'float32' && !inputs[i].noGrad);
    const ds = gradients(g, loss, wrt);
    ds.forEach((d, i) => g.output(d, `grad.${wrt[i].name}`));
  }
  return { bytes: g.toBytes(), outDims };
}

/** Runs the check; tolerance: |analytic - numeric| <= atol + rtol * |numeric| for every element. */
export async function gradcheck(
  fn: (g: GraphBuilder, xs: Value[]) => Value,
  inputs: GradInput[],
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number; label?: string; scale?: number } = {},
): Promise<GradCheckResult> {
  const eps = opts.eps ?? 1e-2;
  const atol = opts.atol ?? 2e-3;
  const rtol = opts.rtol ?? 2e-2;
  const rng = new Rng(opts.seed ?? 1);
  const feeds: Record<string, HostTensor> = {};
  for (const i of inputs) {
    const type = i.type ?? 'float32';
    const data = i.data ?? (type === 'float32' ? rng.fillNormal(new Float32Array(nel(i.dims)), opts.scale ?? 1) : undefined);
    if (!data) throw new TypeError(`gradcheck: input '${i.name}' of type ${type} needs data`);
    feeds[i.name] = { type: type as HostTensor['type'], dims: i.dims, data };
  }
  const gradSess = await Session.create(build(fn, inputs, true, 7).bytes, { threads: 1 });
  const fwdSess = await Session.create(build(fn, inputs, false, 7).bytes, { threads: 1 });
  const diffInputs = inputs.filter((i) => (i.type ?? 'float32') === 'float32' && !i.noGrad);
  const analytic = await gradSess.run(feeds, diffInputs.map((i) => `grad.${i.name}`));
  const report: GradCheckResult['report'] = [];
  let ok = true;
  for (const i of diffInputs) {
    const a = analytic[`grad.${i.name}`].data as Float32Array;
    const x = feeds[i.name].data as Float32Array;
    if (a.length !== x.length) throw new RangeError(`gradcheck: grad of '${i.name}' has ${a.length} elements, input ${x.length}`);
    let maxAbs = 0;
    let maxRel = 0;
    let maxGrad = 0;
    for (let k = 0; k < x.length; k++) {
      const x0 = x[k];
      x[k] = x0 + eps;
      const lp = ((await fwdSess.run(feeds, ['loss'])).loss.data as Float32Array)[0];
      x[k] = x0 - eps;
      const lm = ((await fwdSess.run(feeds, ['loss'])).loss.data as Float32Array)[0];
      x[k] = x0;
      const num = (lp - lm) / (2 * eps);
      const diff = Math.abs(a[k] - num);
      maxAbs = Math.max(maxAbs, diff);
      maxRel = Math.max(maxRel, diff / Math.max(Math.abs(num), 1e-3));
      maxGrad = Math.max(maxGrad, Math.abs(num));
      if (!(diff <= atol + rtol * Math.abs(num))) ok = false;
    }
    report.push({ name: i.name, maxAbs, maxRel, maxGrad });
  }
  await gradSess.release();
  await fwdSess.release();
  const label = opts.label ?? 'gradcheck';
  // eslint-disable-next-line no-console
  console.log(report.map((r) => `${label} ${r.name}: maxdiff abs ${r.maxAbs.toExponential(2)} rel ${r.maxRel.toExponential(2)} (max |grad| ${r.maxGrad.toFixed(3)}) ${ok ? 'OK' : 'FAIL'}`).join('\n'));
  return { ok, report };
}
