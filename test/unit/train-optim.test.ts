/**
 * AdamW in onnxruntime against a float64 JS reference (decoupled decay, bias correction, clipping, masks),
 * the linear warmup/decay schedule, and accumulation.
 */
import { AdamW, ParamStore, accumulate, linearSchedule } from '../../server/train/optim';

function reference(p: number[], grads: number[][], o: { lr: number; wd: number; b1: number; b2: number; eps: number; clip: number }, mask?: number[]): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const x = p.slice();
  grads.forEach((g, t0) => {
    const t = t0 + 1;
    const norm = Math.sqrt(g.reduce((a, y) => a + y * y, 0));
    const c = o.clip > 0 && norm > o.clip ? o.clip / (norm + 1e-6) : 1;
    for (let i = 0; i < x.length; i++) {
      const k = mask ? mask[i] : 1;
      const gi = g[i] * c * k;
      m[i] = o.b1 * m[i] + (1 - o.b1) * gi;
      v[i] = o.b2 * v[i] + (1 - o.b2) * gi * gi;
      const upd = m[i] / (1 - o.b1 ** t) / (Math.sqrt(v[i] / (1 - o.b2 ** t)) + o.eps);
      x[i] = x[i] - o.lr * o.wd * x[i] * k - o.lr * upd * k;
    }
  });
  return x;
}

test('AdamW matches the reference (decay group, clipping active, masked elements frozen)', async () => {
  const p0 = [0.5, -1, 2, 0.1];
  const grads = [[1, 2, -3, 0.5], [0.1, -0.2, 0.3, 4], [2, 2, 2, 2]];
  const mask = [1, 0, 1, 1];
  const store = new ParamStore([{ name: 'w', dims: [4], data: Float32Array.from(p0), decay: true }]);
  store.setMask('w', Float32Array.from(mask));
  const opt = await AdamW.create(store, { lr: 0.1, weightDecay: 0.01, maxGradNorm: 1 });
  for (const g of grads) {
    store.views.get('w')!.grad.set(g);
    await opt.step();
  }
  const ref = reference(p0, grads, { lr: 0.1, wd: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, clip: 1 }, mask);
  const got = Array.from(store.get('w'));
  console.log('AdamW maxdiff vs float64 reference', Math.max(...got.map((x, i) => Math.abs(x - ref[i]))).toExponential(2));
  got.forEach((x, i) => expect(x).toBeCloseTo(ref[i], 5));
  expect(got[1]).toBe(-1); // masked: untouched by update and decay
});

test('no weight decay for the no-decay group', async () => {
  const store = new ParamStore([{ name: 'b', dims: [2], data: Float32Array.from([1, 1]), decay: false }]);
  const opt = await AdamW.create(store, { lr: 0.1, weightDecay: 0.5 });
  await opt.step(); // zero gradient: only decay could move it
  expect(Array.from(store.get('b'))).toEqual([1, 1]);
});

test('linear warmup then linear decay', () => {
  expect(linearSchedule(0, 10, 100)).toBeCloseTo(0.1);
  expect(linearSchedule(9, 10, 100)).toBeCloseTo(1);
  expect(linearSchedule(55, 10, 100)).toBeCloseTo(0.5);
  expect(linearSchedule(100, 10, 100)).toBe(0);
});

test('accumulate adds in onnxruntime', async () => {
  const a = Float32Array.from([1, 2, 3]);
  await accumulate(a, Float32Array.from([0.5, 0.5, -3]));
  expect(Array.from(a)).toEqual([1.5, 2.5, 0]);
});

test('AdamW and accumulate over arrays longer than one chunk (in-place writes across chunk boundaries)', async () => {
  const n = (1 << 18) * 2 + 1234; // three chunks, the last one partial
  const p0 = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const g1 = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.7) * 1e-3);
  const g2 = Float32Array.from({ length: n }, (_, i) => ((i % 13) - 6) * 1e-4);
  const mask = Float32Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : 1));
  const store = new ParamStore([{ name: 'w', dims: [n], data: p0.slice(), decay: true }]);
  store.setMask('w', mask);
  const opt = await AdamW.create(store, { lr: 0.01, weightDecay: 0.1, maxGradNorm: 0 });
  const grad = store.views.get('w')!.grad;
  grad.set(g1);
  await accumulate(grad, g2); // in place
  await opt.step();
  // float64 reference of one step with g = g1 + g2 (no clipping)
  const { b1, b2, eps, lr, wd } = { b1: 0.9, b2: 0.999, eps: 1e-8, lr: 0.01, wd: 0.1 };
  let maxdiff = 0;
  const w = store.get('w');
  for (let i = 0; i < n; i++) {
    const g = (g1[i] + g2[i]) * mask[i];
    const m = (1 - b1) * g;
    const v = (1 - b2) * g * g;
    const ref = p0[i] - lr * wd * p0[i] * mask[i] - (lr * (m / (1 - b1)) / (Math.sqrt(v / (1 - b2)) + eps)) * mask[i];
    maxdiff = Math.max(maxdiff, Math.abs(w[i] - ref));
  }
  console.log('multi-chunk AdamW maxdiff vs float64 reference', maxdiff.toExponential(2));
  expect(maxdiff).toBeLessThan(1e-5);
  for (let i = 0; i < n; i += 5) expect(w[i]).toBe(p0[i]); // masked elements untouched in every chunk
  expect(Array.from(store.groups[0].grads.subarray(0, 3))).toEqual([0, 0, 0]); // zeroed after the step
});
