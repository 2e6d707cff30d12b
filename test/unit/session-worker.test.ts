/**
 * Worker-thread sessions: same results as main-thread ones, shared feeds cross once and are reused until
 * forgotten (or moved there, not copied), errors come back as rejections, and the worker's event loop is not the caller's.
 */
import { GraphBuilder } from '../../server/model/graph/builder';
import { Session, overwritten, type HostTensor } from '../../server/runtime/session';

function model(): Uint8Array {
  const g = new GraphBuilder('t');
  const x = g.input('x', 'float32', ['B', 3]);
  const w = g.input('w', 'float32', [3, 2]);
  g.output(g.unary('Tanh', g.matmul(x, w)), 'y');
  return g.toBytes();
}

/** A graph that takes a while: repeated 256x256 matmuls (fed `slowFeeds`). */
function slowModel(): Uint8Array {
  const g = new GraphBuilder('slow');
  let h = g.input('x', 'float32', [256, 256]);
  const w = g.input('w', 'float32', [256, 256]);
  for (let i = 0; i < 200; i++) h = g.unary('Tanh', g.matmul(h, w));
  g.output(h, 'y');
  return g.toBytes();
}
/** y = w: a feed as the worker holds it. */
function echoModel(n: number): Uint8Array {
  const g = new GraphBuilder('echo');
  g.output(g.unary('Identity', g.input('w', 'float32', [n])), 'y');
  return g.toBytes();
}

/** Bitwise-equal float arrays (a fast check for large ones). */
function same(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

const slowData = new Float32Array(256 * 256).fill(0.01);
const slowFeeds = { x: { type: 'float32' as const, dims: [256, 256], data: slowData }, w: { type: 'float32' as const, dims: [256, 256], data: slowData } };

const x: HostTensor = { type: 'float32', dims: [2, 3], data: Float32Array.from([1, 2, 3, -1, 0.5, 2]) };
const w1 = Float32Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]);
const w2 = Float32Array.from([1, 1, 1, 1, 1, 1]);

it('gives the same outputs as a main-thread session', async () => {
  const main = await Session.create(model());
  const worker = await Session.create(model(), { worker: true });
  const feeds = { x, w: { type: 'float32' as const, dims: [3, 2], data: w1 } };
  const a = await main.run(feeds, ['y']);
  const b = await worker.run(feeds, ['y']);
  expect(Array.from(b.y.data as Float32Array)).toEqual(Array.from(a.y.data as Float32Array));
  expect(b.y.dims).toEqual([2, 2]);
  await main.release();
  await worker.release();
});

it('gives the same outputs with threads spinning or parked, on two threads', async () => {
  const feeds = { x, w: { type: 'float32' as const, dims: [3, 2], data: w1 } };
  const outs: number[][] = [];
  for (const spin of [true, false]) {
    const s = await Session.create(model(), { threads: 2, spin, worker: true });
    outs.push(Array.from((await s.run(feeds, ['y'])).y.data as Float32Array));
    await s.release();
  }
  expect(outs[1]).toEqual(outs[0]);
  expect(outs[0].every(Number.isFinite)).toBe(true);
});

it('writes outputs named in `into` into the caller buffers, main thread and worker alike (a view into a larger array too)', async () => {
  const feeds = { x, w: { type: 'float32' as const, dims: [3, 2], data: w1 } };
  const ref = await Session.create(model());
  const expected = Array.from((await ref.run(feeds, ['y'])).y.data as Float32Array);
  await ref.release();
  for (const worker of [false, true]) {
    const s = await Session.create(model(), { worker });
    const big = new Float32Array(10).fill(-7);
    const view = big.subarray(3, 7);
    const r = await s.run(feeds, ['y'], { y: { type: 'float32', dims: [2, 2], data: view } });
    expect(r.y.data).toBe(view);
    expect(Array.from(view)).toEqual(expected);
    expect([...big.subarray(0, 3), ...big.subarray(7)]).toEqual([-7, -7, -7, -7, -7, -7]); // neighbours untouched
    await s.release();
  }
});

it('sends a shared feed once, reuses it by key, and drops it on forgetShared', async () => {
  const s = await Session.create(model(), { worker: true });
  const first = await s.run({ x, w: { type: 'float32', dims: [3, 2], data: w1, shareKey: 'test:w' } }, ['y']);
  // Same key, other bytes: the worker still holds the first tensor (the key promises the data is unchanged).
  const reused = await s.run({ x, w: { type: 'float32', dims: [3, 2], data: w2, shareKey: 'test:w' } }, ['y']);
  expect(Array.from(reused.y.data as Float32Array)).toEqual(Array.from(first.y.data as Float32Array));
  await Session.forgetShared('test:');
  const fresh = await s.run({ x, w: { type: 'float32', dims: [3, 2], data: w2, shareKey: 'test:w' } }, ['y']);
  expect(Array.from(fresh.y.data as Float32Array)).not.toEqual(Array.from(first.y.data as Float32Array));
  await s.release();
});

it('moves a moveToWorker feed instead of copying it, reuses it by key, and refuses to resend it once the worker forgot it', async () => {
  const s = await Session.create(model(), { worker: true });
  const expected = Array.from((await s.run({ x, w: { type: 'float32', dims: [3, 2], data: w1.slice() } }, ['y'])).y.data as Float32Array);
  const moved = w1.slice();
  const feed: HostTensor = { type: 'float32', dims: [3, 2], data: moved, shareKey: 'move:w', moveToWorker: true };
  expect(Array.from((await s.run({ x, w: feed }, ['y'])).y.data as Float32Array)).toEqual(expected);
  expect(moved.byteLength).toBe(0); // held once, by the worker
  expect(Session.workerHolds('move:w')).toBe(true);
  expect(Array.from((await s.run({ x, w: feed }, ['y'])).y.data as Float32Array)).toEqual(expected);
  await Session.forgetShared('move:');
  expect(Session.workerHolds('move:w')).toBe(false);
  await expect(s.run({ x, w: feed }, ['y'])).rejects.toThrow(/no longer holds it/);
  await s.release();
});

it('a refused run takes nothing: no pending updates are consumed and no key counts as held', async () => {
  const s = await Session.create(model(), { worker: true });
  let taken = 0;
  const gone: HostTensor = { type: 'float32', dims: [2, 3], data: new Float32Array(0), shareKey: 'refuse:x', moveToWorker: true };
  const w: HostTensor = { type: 'float32', dims: [3, 2], data: w1.slice(), shareKey: 'refuse:w', updates: () => (taken++, [{ offset: 0, length: 1 }]) };
  try {
    await expect(s.run({ w, x: gone }, ['y'])).rejects.toThrow(/no longer holds it/);
    expect(taken).toBe(0);
    expect(Session.workerHolds('refuse:w')).toBe(false);
  } finally {
    await s.release();
  }
});

it('adds a sparse overwrite to a shared feed for one run only, every run, on a worker and on the main thread alike', async () => {
  // index 1 repeats: its deltas add up in order, and the base value comes back after the run
  const overwrite = { key: 'ow:set:w', indices: Int32Array.from([1, 4, 1]), deltas: Float32Array.from([0.25, -1, 0.5]) };
  const patched = w1.slice();
  for (let i = 0; i < overwrite.indices.length; i++) patched[overwrite.indices[i]] += overwrite.deltas[i];
  for (const worker of [true, false]) {
    const s = await Session.create(model(), { worker });
    const run = async (feed: HostTensor) => Array.from((await s.run({ x, w: feed }, ['y'])).y.data as Float32Array);
    const expected = await run({ type: 'float32', dims: [3, 2], data: patched });
    const plain = await run({ type: 'float32', dims: [3, 2], data: w1.slice() });
    const base = w1.slice();
    const shared: HostTensor = { type: 'float32', dims: [3, 2], data: base, shareKey: `ow:base:${worker}` };
    expect(await run({ ...shared, overwrite })).toEqual(expected);
    expect(await run(shared)).toEqual(plain); // restored
    // the pair is held by key now (on the worker, a later run writes the values the first one kept, and undoes them)
    expect(await run({ ...shared, overwrite })).toEqual(expected);
    expect(await run(shared)).toEqual(plain);
    expect(await run({ ...shared, overwrite })).toEqual(expected);
    expect(Array.from(base)).toEqual(Array.from(w1)); // the caller's array is never written
    if (worker) {
      expect(Session.workerHolds('ow:set:w')).toBe(true);
      await Session.forgetShared('ow:');
      expect(Session.workerHolds('ow:set:w')).toBe(false);
      expect(await run({ ...shared, overwrite })).toEqual(expected); // sent again
    }
    await s.release();
  }
});

it('derives a feed in the worker between runs from a shared array and a sparse overwrite it holds, without the data crossing; refuses while either is missing', async () => {
  const n = 150_000; // several of the worker's steps
  const base = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const overwrite = { key: 'dv:set:w', indices: Int32Array.from([0, n - 1, 0, 70_000]), deltas: Float32Array.from([1, -0.5, 0.25, 2]) };
  const expected = overwritten(base, overwrite);
  const s = await Session.create(echoModel(n), { worker: true });
  const run = async (feed: HostTensor) => (await s.run({ w: feed }, ['y'])).y.data as Float32Array;
  const copy = (key: string) => ({ key, from: 'dv:base:w', overwrite: 'dv:set:w', dims: [n] });
  const held = (key: string): HostTensor => ({ type: 'float32', dims: [n], data: new Float32Array(0), shareKey: key });
  try {
    await expect(Session.deriveShared([copy('dv:copy:w')])).rejects.toThrow(/cannot derive from 'dv:base:w': the onnxruntime worker does not hold it/);
    const shared: HostTensor = { type: 'float32', dims: [n], data: base, shareKey: 'dv:base:w' };
    expect(same(await run({ ...shared, overwrite }), expected)).toBe(true); // the worker now holds the base and the overwrite
    await Session.deriveShared([copy('dv:copy:w')]);
    expect(Session.workerHolds('dv:copy:w')).toBe(true);
    expect(same(await run(held('dv:copy:w')), expected)).toBe(true);
    expect(same(await run(shared), base)).toBe(true); // the base array itself is left as it was
    // Made between runs, never beside one: a copy asked for while a long run is in flight is made after it.
    const slow = await Session.create(slowModel(), { worker: true });
    const order: string[] = [];
    await Promise.all([slow.run(slowFeeds, ['y']).then(() => order.push('run')), Session.deriveShared([copy('dv:copy2:w')]).then(() => order.push('derived'))]);
    await slow.release();
    expect(order).toEqual(['run', 'derived']);
    expect(same(await run(held('dv:copy2:w')), expected)).toBe(true);
    // Forgotten before it was made: refused, and not held.
    const gone = Session.deriveShared([copy('dv:copy3:w')]);
    await Session.forgetShared('dv:copy3:');
    await expect(gone).rejects.toThrow(/forgotten before they were made/);
    expect(Session.workerHolds('dv:copy3:w')).toBe(false);
    await Session.forgetShared('dv:');
    await expect(run(held('dv:copy:w'))).rejects.toThrow(/no longer holds it; its owner must rebuild it/);
  } finally {
    await s.release();
  }
});

it('returns onnxruntime errors as rejections and keeps working', async () => {
  const s = await Session.create(model(), { worker: true });
  await expect(s.run({ x }, ['y'])).rejects.toThrow(/w/);
  const ok = await s.run({ x, w: { type: 'float32', dims: [3, 2], data: w1 } }, ['y']);
  expect(ok.y.dims).toEqual([2, 2]);
  await s.release();
});

it('keeps the caller responsive: its event loop turns while a worker run computes', async () => {
  const s = await Session.create(slowModel(), { worker: true });
  let finished = false;
  const run = s.run(slowFeeds, ['y']).then(() => (finished = true));
  // The worker needs many event-loop turns' worth of compute; the caller's loop keeps turning meanwhile.
  let turns = 0;
  while (!finished && turns < 100000) {
    await new Promise((r) => setImmediate(r));
    turns++;
  }
  await run;
  expect(turns).toBeGreaterThan(10);
  await s.release();
});

it('forgets a shared feed only after the runs posted before the forget: a run queued behind a slow one still finds it', async () => {
  const slow = await Session.create(slowModel(), { worker: true });
  const small = await Session.create(model(), { worker: true });
  const shared = { type: 'float32' as const, dims: [3, 2], data: w1, shareKey: 'order:w' };
  const expected = Array.from((await small.run({ x, w: shared }, ['y'])).y.data as Float32Array); // the worker holds 'order:w' now
  // Posted in this order without waiting: the slow run, a run that reads 'order:w' by key only, the forget.
  const first = slow.run(slowFeeds, ['y']);
  const second = small.run({ x, w: { ...shared, data: w2 } }, ['y']);
  const forgot = Session.forgetShared('order:');
  await first;
  expect(Array.from((await second).y.data as Float32Array)).toEqual(expected);
  await forgot;
  expect(Session.workerHolds('order:w')).toBe(false);
  await slow.release();
  await small.release();
});
