/**
 * Resident pools (server/runtime/pool-space.ts): slots are written once and kept while capacity grows, the least
 * recently used slot is reused past the byte budget but never one a batch in flight uses, a wider module moves
 * the family to a wider space, and a worker session sees slots written after it got the arrays (patches).
 * Then the engine end to end: mixed batches over many modules with a tiny budget (constant slot reuse and
 * growth) give every row what the row gives alone, in a worker and on the main thread.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { PoolSpaces } from '../../server/runtime/pool-space';
import { GraphBuilder } from '../../server/model/graph/builder';
import { Session } from '../../server/runtime/session';
import { createTinyBase } from '../../server/model/tiny';
import { loadBase, type Base } from '../../server/model/base';
import { Engine } from '../../server/runtime/engine';
import { parseManifest } from '../../modules-store/manifest';
import { makeAdapterModule, makeLoraModule, type BaseInfo } from '../helpers/modules';

const parts = (r: number) => [{ name: 'w', dims: [2, r] }];
const fill = (space: ReturnType<PoolSpaces['space']>, key: string, v: number) =>
  space.slot(key, (s) => s.part('w').fill(v));

/** A worker session whose output y gathers rows `idx` of the input `pool` [P, 2]. */
async function gatherSession(): Promise<Session> {
  const g = new GraphBuilder('gather');
  const pool = g.input('pool', 'float32', ['P', 2]);
  const idx = g.input('idx', 'int64', ['B']);
  g.output(g.gather(pool, idx), 'y');
  return Session.create(g.toBytes(), { worker: true });
}

describe('PoolSpace', () => {
  it('writes a slot once, keeps it when capacity grows, and slot 0 stays zero', () => {
    const spaces = new PoolSpaces('t', 2 ** 30);
    const seq = spaces.begin();
    const space = spaces.space('f', 1, parts(3));
    let writes = 0;
    const slots = new Map<string, number>();
    for (let i = 0; i < 40; i++) slots.set(`m${i}`, space.slot(`m${i}`, (s) => (writes++, s.part('w').fill(i + 1))));
    expect(writes).toBe(40);
    expect(space.slot('m7', () => writes++)).toBe(slots.get('m7'));
    expect(writes).toBe(40);
    for (const [k, s] of slots) expect(Array.from(space.array('w').subarray(s * 6, s * 6 + 6))).toEqual(Array(6).fill(Number(k.slice(1)) + 1));
    expect(Array.from(space.array('w').subarray(0, 6))).toEqual(Array(6).fill(0));
    expect(space.feed('w').dims[0]).toBeGreaterThanOrEqual(41);
    spaces.end(seq);
  });

  it('past the budget reuses the least recently used slot, zeroed, and never one a batch in flight uses', () => {
    // the first 4 slots × 2·1 floats = 32 bytes: a budget of 32 allows no growth
    const spaces = new PoolSpaces('t', 32);
    let seq = spaces.begin();
    const space = spaces.space('f', 1, parts(1));
    for (let i = 1; i <= 3; i++) fill(space, `m${i}`, i);
    spaces.end(seq);
    seq = spaces.begin();
    space.touch('m1'); // m1 is now the most recent; m2 the oldest
    const epoch = spaces.epoch;
    const s4 = space.slot('m4', (s) => expect(Array.from(s.part('w'))).toEqual([0, 0]));
    expect(spaces.epoch).toBe(epoch + 1);
    expect(space.touch('m2')).toBeNull();
    expect(space.touch('m1')).not.toBeNull();
    expect(s4).toBeGreaterThan(0);
    // every slot is now used by the batch in flight: a new key grows the space instead of evicting
    space.touch('m3');
    const before = space.bytes;
    fill(space, 'm5', 5);
    expect(space.bytes).toBe(2 * before);
    for (const k of ['m1', 'm3', 'm4', 'm5']) expect(space.touch(k)).not.toBeNull();
    spaces.end(seq);
  });

  it('a wider entry moves the family to a new space with the larger dims', () => {
    const spaces = new PoolSpaces('t', 2 ** 30);
    const seq = spaces.begin();
    const a = spaces.space('f', 1, parts(4));
    expect(spaces.space('f', 1, parts(2))).toBe(a);
    const epoch = spaces.epoch;
    const b = spaces.space('f', 1, parts(8));
    expect(b).not.toBe(a);
    expect(b.dims('w')).toEqual([2, 8]);
    expect(spaces.epoch).toBe(epoch + 1);
    spaces.end(seq);
  });

  it.each([true, false])('a worker session reads slots written after it first got the arrays (host copy %s)', async (hostCopy) => {
    const session = await gatherSession();
    try {
      const spaces = new PoolSpaces(`t${Date.now()}${hostCopy}`, 2 ** 30, hostCopy);
      const space = spaces.space('f', 1, [{ name: 'w', dims: [2] }]);
      const run = async (keys: string[]) => {
        const seq = spaces.begin();
        const slots = keys.map((k) => space.slot(k, (s) => s.part('w').fill(Number(k.slice(1)))));
        const r = await session.run({ pool: space.feed('w'), idx: { type: 'int64', dims: [keys.length], data: BigInt64Array.from(slots.map(BigInt)) } }, ['y']);
        spaces.end(seq);
        return Array.from(r.y.data as Float32Array);
      };
      expect(await run(['m1', 'm2'])).toEqual([1, 1, 2, 2]);
      expect(await run(['m3', 'm1'])).toEqual([3, 3, 1, 1]); // m3 written after the worker got the array
      // growth by one step (capacity 4 -> 8): the worker extends its copy; only the new slot crosses
      const post = jest.spyOn(Worker.prototype, 'postMessage');
      expect(await run(['m4', 'm2'])).toEqual([4, 4, 2, 2]);
      const sent = post.mock.calls.map(([m]) => m as { type: string; feeds?: Record<string, { data?: unknown; from?: string; patches?: unknown[] }> }).find((m) => m.type === 'run')!;
      post.mockRestore();
      expect(sent.feeds!.pool.data).toBeUndefined();
      expect(sent.feeds!.pool.from).toMatch(/:0:w$/);
      expect(sent.feeds!.pool.patches).toHaveLength(1);
      expect(await run(['m3', 'm4', 'm1'])).toEqual([3, 3, 4, 4, 1, 1]);
      const keys = Array.from({ length: 20 }, (_, i) => `m${i + 5}`); // growth by several steps at once: sent whole
      expect(await run(keys)).toEqual(keys.flatMap((k) => [Number(k.slice(1)), Number(k.slice(1))]));
      expect(await run(['m2', 'm23', 'm4'])).toEqual([2, 2, 23, 23, 4, 4]);
      await spaces.close();
    } finally {
      await session.release();
    }
  });

  it('one module at a time grows the worker copy step by step (4 -> 32 slots of 4 MB): every slot keeps its values, slot 0 its zeros', async () => {
    // Each step goes through the worker's grow. Parts this large (16 MB at 4 slots) get room reserved up to the
    // budget's capacity on the first growth; the later steps extend a view of that buffer.
    const session = await gatherSession();
    try {
      const L = 2 ** 19; // entries of [2] floats: 4 MB per slot
      const spaces = new PoolSpaces(`g${Date.now()}`, 2 ** 30, false);
      const space = spaces.space('f', L, [{ name: 'w', dims: [2] }]);
      const slotOf = new Map<number, number>();
      const read = async (ks: number[], layer = L - 1) => {
        const seq = spaces.begin();
        const slots = ks.map((k) => (k === 0 ? 0 : (slotOf.get(k) ?? space.slot(`m${k}`, (s) => s.part('w').fill(k)))));
        ks.forEach((k, i) => k && slotOf.set(k, slots[i]));
        const idx = BigInt64Array.from(slots.map((sl) => BigInt(space.entry(sl, layer))));
        const r = await session.run({ pool: space.feed('w'), idx: { type: 'int64', dims: [ks.length], data: idx } }, ['y']);
        spaces.end(seq);
        return Array.from(r.y.data as Float32Array);
      };
      for (let k = 1; k <= 20; k++) expect(await read([k, 0, 1])).toEqual([k, k, 0, 0, 1, 1]);
      const all = Array.from({ length: 20 }, (_, i) => i + 1);
      expect(await read([0, ...all], 0)).toEqual([0, 0, ...all.flatMap((k) => [k, k])]);
      expect(await read([0, ...all])).toEqual([0, 0, ...all.flatMap((k) => [k, k])]);
      expect(space.bytes).toBe(32 * L * 2 * 4);
      await spaces.close();
    } finally {
      await session.release();
    }
  }, 60_000);

  it('without a host copy the worker holds the only arrays: staged slots cross as moved patches, and a lost space starts over', async () => {
    const session = await gatherSession();
    try {
      const spaces = new PoolSpaces(`w${Date.now()}`, 2 ** 30, false);
      const run = async (keys: string[], onStaged?: (a: Float32Array) => void) => {
        const seq = spaces.begin();
        const space = spaces.space('f', 1, [{ name: 'w', dims: [2] }]);
        const slots = keys.map((k) => space.slot(k, (s) => {
          const a = s.part('w').fill(Number(k.slice(1)));
          onStaged?.(a);
        }),
      );
        const r = await session.run({ pool: space.feed('w'), idx: { type: 'int64', dims: [keys.length], data: BigInt64Array.from(slots.map(BigInt)) } }, ['y']);
        spaces.end(seq);
        return { y: Array.from(r.y.data as Float32Array), space };
      };
      const first = await run(['m1', 'm2']);
      expect(first.y).toEqual([1, 1, 2, 2]);
      expect(() => first.space.array('w')).toThrow(/no host copy/);
      const staged: Float32Array[] = [];
      expect((await run(['m3', 'm1'], (a) => staged.push(a))).y).toEqual([3, 3, 1, 1]);
      expect(staged).toHaveLength(1);
      expect(staged[0].byteLength).toBe(0); // moved to the worker, not copied
      // the worker drops the space's arrays (as after a restart): the family starts over in a new space
      const epoch = spaces.epoch;
      await Session.forgetShared(`${spaces.shareId}:space:`);
      const again = await run(['m2', 'm3']);
      expect(again.y).toEqual([2, 2, 3, 3]);
      expect(again.space).not.toBe(first.space);
      expect(spaces.epoch).toBeGreaterThan(epoch);
      await spaces.close();
    } finally {
      await session.release();
    }
  });

  it('without a host copy a reused slot reads zeros in the parts its new module leaves alone', async () => {
    const g = new GraphBuilder('gather2');
    const idx = g.input('idx', 'int64', ['B']);
    for (const part of ['a', 'b']) g.output(g.gather(g.input(part, 'float32', ['P', 2]), idx), `y${part}`);
    const session = await Session.create(g.toBytes(), { worker: true });
    try {
      // 4 slots × 2 parts × 2 floats = 64 bytes: no growth, the oldest slot is reused
      const spaces = new PoolSpaces(`z${Date.now()}`, 64, false);
      const run = async (key: string, parts: string[]) => {
        const seq = spaces.begin();
        const space = spaces.space('f', 1, [
          { name: 'a', dims: [2] },
          { name: 'b', dims: [2] },
        ]);
        const slot = space.slot(key, (s) => parts.forEach((p) => s.part(p).fill(Number(key.slice(1)))));
        const r = await session.run({ a: space.feed('a'), b: space.feed('b'), idx: { type: 'int64', dims: [1], data: BigInt64Array.from([BigInt(slot)]) } }, ['ya', 'yb']);
        spaces.end(seq);
        return [...Array.from(r.ya.data as Float32Array), ...Array.from(r.yb.data as Float32Array)];
      };
      for (let i = 1; i <= 3; i++) expect(await run(`m${i}`, ['a', 'b'])).toEqual([i, i, i, i]);
      expect(await run('m4', ['a'])).toEqual([4, 4, 0, 0]); // took m1's slot: m1's 'b' must not show through
      await spaces.close();
    } finally {
      await session.release();
    }
  });
});

describe('engine over resident pools', () => {
  let base: Base;
  let info: BaseInfo;
  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-pool-space-'));
    await createTinyBase({ out: dir, layers: 2, hidden: 16, heads: 2, seed: 4 });
    base = await loadBase(dir);
    const c = base.config;
    info = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
  });

  it.each([true, false])('mixed batches with constant slot reuse equal each row alone (worker %s)', async (worker) => {
    const mods = [];
    for (let i = 0; i < 12; i++) {
      const head = { type: 'classification' as const, num_labels: 2 + (i % 3) };
      mods.push(
        i % 3 === 2
          ? makeLoraModule({ id: `t/m${i}`, base: info, r: 2 + (i % 4), target_modules: ['query', 'value'], head, seed: 10 + i })
          : makeAdapterModule({ id: `t/m${i}`, base: info, preset: i % 3 === 0 ? 'seq_bn' : 'double_seq_bn', config: { reduction_factor: i % 2 ? 4 : 8 }, head, seed: 10 + i }),
      );
    }
    // a budget of a few slots: batches keep evicting, reusing and growing
    const engine = await Engine.create({ base, worker, residentPoolBytes: 4096 });
    const alone = await Engine.create({ base });
    try {
      for (const m of mods) {
        engine.addModule(parseManifest(m.manifest), m.tensors);
        alone.addModule(parseManifest(m.manifest), m.tensors);
      }
      const texts = ['the cat sat', 'a dog ran far away', 'hello', 'one two three four five'];
      const enc = await base.tokenizer.encodeBatch(texts);
      const expected = new Map<string, Float32Array[]>();
      for (let i = 0; i < mods.length; i++) {
        const plan = (await alone.plan(`t/m${i}@1.0.0`))[0];
        const rows = [];
        for (let t = 0; t < texts.length; t++) {
          const one = await base.tokenizer.encodeBatch([texts[t]]);
          rows.push(Float32Array.from((await alone.forward(one, [plan]))[0].clsLogits!));
        }
        expected.set(`t/m${i}`, rows);
      }
      for (let round = 0; round < 6; round++) {
        const ids = texts.map((_, t) => (round * 5 + t * 7) % mods.length);
        const plans = await Promise.all(ids.map(async (i) => (await engine.plan(`t/m${i}@1.0.0`))[0]));
        const out = await engine.forward(enc, plans);
        out.forEach((o, t) => {
          const want = expected.get(`t/m${ids[t]}`)![t];
          expect(o.clsLogits!.length).toBe(want.length);
          o.clsLogits!.forEach((v, j) => expect(v).toBeCloseTo(want[j], 4));
        });
      }
    } finally {
      await engine.close();
      await alone.close();
    }
  });
});
