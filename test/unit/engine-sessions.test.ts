/**
 * Engine lifecycle: switching compositions reuses sessions, the session cache is bounded (idle LRU released),
 * mixed batches share covering sessions (joinVariants) and a rare uniform batch borrows one before it gets its own,
 * 'cuda' without onnxruntime's CUDA files fails with an install hint, and malformed modules are refused by name.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createTinyBase } from '../../server/model/tiny';
import { loadBase, type Base } from '../../server/model/base';
import { Engine } from '../../server/runtime/engine';
import { LANES, gateValues, lanedSlot } from '../../server/model/encoder-graph';
import { lengthRuns, overheadTokensFrom } from '../../server/runtime/length-runs';
import { SessionCache, STALE_AFTER, UNIFORM_BUILD_AFTER } from '../../server/runtime/session-cache';
import { coversVariant, joinVariants, laneGroups, rankGroups } from '../../server/runtime/variants';
import { ModuleError } from '../../server/model/modules';
import { parseManifest } from '../../modules-store/manifest';
import { Session, overwritten } from '../../server/runtime/session';
import { BaseParams } from '../../server/runtime/base-params';
import { DiffWeights, REBUILD_RUNS } from '../../server/runtime/diff-weights';
import { baseParamShapes, makeAdapterModule, makeBitfitModule, makeDiffModule, makeLoraModule, type BaseInfo } from '../helpers/modules';
import type { RefModule } from '../reference/modules';
import { EMPTY_PLAN, type RowPlan } from '../../server/model/composition';

let base: Base;
let info: BaseInfo;
beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-sessions-'));
  await createTinyBase({ out: dir, layers: 2, hidden: 16, heads: 2, seed: 2 });
  base = await loadBase(dir);
  const c = base.config;
  info = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
});

async function run(engine: Engine, comp: unknown): Promise<Float32Array> {
  const enc = await base.tokenizer.encodeBatch(['hello world']);
  const [o] = await engine.forward(enc, await engine.plan(comp), { hidden: true });
  return Float32Array.from(o.hidden!);
}

it('switching between compositions of one variant builds no session', async () => {
  const engine = await Engine.create({ base });
  for (const seed of [1, 2, 3]) {
    const m = makeAdapterModule({ id: `task/a${seed}`, base: info, preset: 'seq_bn', seed });
    engine.addModule(parseManifest(m.manifest), m.tensors);
  }
  await run(engine, 'task/a1@1.0.0');
  const built = engine.stats.sessionsBuilt;
  const a2 = await run(engine, 'task/a2@1.0.0');
  await run(engine, 'task/a3@1.0.0');
  expect(await run(engine, 'task/a2@1.0.0')).toEqual(a2);
  expect(engine.stats.sessionsBuilt).toBe(built);
  await engine.close();
});

it('keeps at most maxSessions sessions and rebuilds an evicted one with the same results', async () => {
  const engine = await Engine.create({ base, maxSessions: 2 });
  const a = makeAdapterModule({ id: 'task/a', base: info, preset: 'seq_bn', seed: 4 });
  const l = makeLoraModule({ id: 'task/l', base: info, r: 2, seed: 5 });
  engine.addModule(parseManifest(a.manifest), a.tensors);
  engine.addModule(parseManifest(l.manifest), l.tensors);
  const first = await run(engine, 'task/a@1.0.0'); // bare + adapter variant
  await run(engine, 'task/l@1.0.0'); // a third variant: the LRU idle one goes
  expect(engine.stats.sessionsReleased).toBeGreaterThanOrEqual(1);
  expect(await run(engine, 'task/a@1.0.0')).toEqual(first);
  await engine.close();
});

it('a uniform batch runs on a covering mixed session until it has missed UNIFORM_BUILD_AFTER times, then gets its own (uniformPayback 0)', async () => {
  const engine = await Engine.create({ base, uniformPayback: 0 });
  const a = makeAdapterModule({ id: 'task/ua', base: info, preset: 'seq_bn', seed: 11 });
  const l = makeLoraModule({ id: 'task/ul', base: info, r: 2, seed: 12 });
  engine.addModule(parseManifest(a.manifest), a.tensors);
  engine.addModule(parseManifest(l.manifest), l.tensors);
  const enc = await base.tokenizer.encodeBatch(['hello world', 'hello world']);
  const mixed = await engine.forward(enc, [...(await engine.plan('task/ua@1.0.0')), ...(await engine.plan('task/ul@1.0.0'))], { hidden: true });
  const built = engine.stats.sessionsBuilt;
  const alone: Float32Array[] = [];
  for (let i = 0; i < UNIFORM_BUILD_AFTER; i++) alone.push(await run(engine, 'task/ua@1.0.0'));
  expect(engine.stats.sessionsBuilt).toBe(built); // served by the mixed session
  const own = await run(engine, 'task/ua@1.0.0');
  expect(engine.stats.sessionsBuilt).toBe(built + 1);
  for (const x of [...alone, Float32Array.from(mixed[0].hidden!)]) for (let i = 0; i < own.length; i++) expect(Math.abs(x[i] - own[i])).toBeLessThan(1e-5);
  await engine.close();
});

it('a uniform variant gets its own session only once its runs on the cover have taken uniformPayback times the mean build of its kind so far', async () => {
  const engine = await Engine.create({ base });
  const a = makeAdapterModule({ id: 'task/pa', base: info, preset: 'seq_bn', seed: 16 });
  const l = makeLoraModule({ id: 'task/pl', base: info, r: 2, seed: 17 });
  for (const m of [a, l]) engine.addModule(parseManifest(m.manifest), m.tensors);
  const [pa] = await engine.plan('task/pa@1.0.0');
  const [pl] = await engine.plan('task/pl@1.0.0');
  const mixedV = engine.variantFor([pa, pl], {});
  const uniformV = engine.variantFor([pa], {});
  const built: number[] = [];
  const cache = new SessionCache(base.config, new BaseParams(base), { uniformPayback: 10, onBuilt: (b) => built.push(b.ms) }, { sessionsBuilt: 0, sessionsReleased: 0 });
  const mixed = cache.acquire(mixedV, 'init');
  await mixed.session;
  cache.done(mixed);
  const mean = built[0]; // the one build so far (rounded: the thresholds below keep clear of it)
  const miss = (ms: number) => {
    const e = cache.acquire(uniformV, 'init');
    cache.done(e, { variant: uniformV, ms });
    return e;
  };
  // past UNIFORM_BUILD_AFTER misses, but their runs took less than 10 builds: still the mixed session
  for (let i = 0; i < UNIFORM_BUILD_AFTER + 2; i++) expect(miss(0)).toBe(mixed);
  expect(miss(4 * mean)).toBe(mixed);
  expect(miss(1e6)).toBe(mixed); // well past 10 builds' worth now, counted after this run
  const own = miss(0);
  expect(own).not.toBe(mixed);
  await own.session;
  expect(built).toHaveLength(2);
  // runs on its own session do not count as misses, and a mixed batch still runs on the mixed session
  expect(miss(1e9)).toBe(own);
  const again = cache.acquire(mixedV, 'init');
  cache.done(again);
  expect(again).toBe(mixed);
  await cache.close();
  await engine.close();
});

it('a uniform variant gets its own session only where that evicts no session in use lately: more of them than maxSessions leaves room for run on the cover, not rebuilt in turn', async () => {
  const engine = await Engine.create({ base, maxSessions: 3, uniformPayback: 0 }); // the bare session, the mixed one, one more
  const a = makeAdapterModule({ id: 'task/sa', base: info, preset: 'seq_bn', seed: 13 });
  const b = makeAdapterModule({ id: 'task/sb', base: info, preset: 'seq_bn', seed: 14 });
  const l = makeLoraModule({ id: 'task/sl', base: info, r: 2, seed: 15 });
  for (const m of [a, b, l]) engine.addModule(parseManifest(m.manifest), m.tensors);
  // three uniform variants: one adapter slot, a LoRA, a stack of two adapter slots
  const comps = ['task/sa@1.0.0', 'task/sl@1.0.0', { stack: ['task/sa@1.0.0', 'task/sb@1.0.0'] }];
  const enc = await base.tokenizer.encodeBatch(comps.map(() => 'hello world'));
  const mixed = await engine.forward(enc, (await Promise.all(comps.map((c) => engine.plan(c)))).flat(), { hidden: true });
  const built = engine.stats.sessionsBuilt;
  const rounds: Float32Array[][] = [];
  for (let r = 0; r < 8; r++) {
    const outs: Float32Array[] = [];
    for (const c of comps) outs.push(await run(engine, c));
    rounds.push(outs);
  }
  // the first variant past UNIFORM_BUILD_AFTER misses fills the free place; the others stay on the mixed session
  expect(engine.stats.sessionsBuilt).toBe(built + 1);
  expect(engine.stats.sessionsReleased).toBe(0);
  for (const outs of rounds) outs.forEach((o, k) => { for (let i = 0; i < o.length; i++) expect(Math.abs(o[i] - mixed[k].hidden![i])).toBeLessThan(1e-5); });
  // once the traffic is the stack alone, a session unused for STALE_AFTER acquisitions makes room for its own
  for (let i = 0; i < STALE_AFTER && engine.stats.sessionsBuilt === built + 1; i++) await run(engine, comps[2]);
  expect(engine.stats.sessionsBuilt).toBe(built + 2);
  expect(engine.stats.sessionsReleased).toBe(1);
  const own = await run(engine, comps[2]);
  for (let i = 0; i < own.length; i++) expect(Math.abs(own[i] - mixed[2].hidden![i])).toBeLessThan(1e-5);
  await engine.close();
});

it('making room for a session releases first one that another session covers, not the larger mixed session that ran less lately', async () => {
  const engine = await Engine.create({ base, maxSessions: 3 }); // the bare session and two more
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const mods = [
    makeAdapterModule({ id: 'task/ea', base: info, preset: 'seq_bn', seed: 31 }),
    makeAdapterModule({ id: 'task/eb', base: info, preset: 'seq_bn', seed: 32 }),
    makeLoraModule({ id: 'task/el', base: info, r: 2, seed: 33 }),
    makeLoraModule({ id: 'task/em', base: info, r: 2, seed: 34 }),
    makeDiffModule({ id: 'sft/ed', base: info, targets, density: 0.1, method: 'lt-sft', seed: 35 }),
  ];
  for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
  const plan = async (r: string) => (await engine.plan(r))[0];
  const [pa, pb, pl, pm, pd] = await Promise.all(['task/ea', 'task/eb', 'task/el', 'task/em', 'sft/ed'].map((id) => plan(`${id}@1.0.0`)));
  const enc = await base.tokenizer.encodeBatch(['hello world', 'hello world']);
  const pair = async (x: RowPlan, y: RowPlan) => (await engine.forward(enc, [x, y], { hidden: true })).map((o) => Float32Array.from(o.hidden!));
  const built0 = engine.stats.sessionsBuilt;
  const adapters = await pair(pa, pb); // a mixed session of adapters
  const loras = await pair(pl, pm); // the adapters' session grown by LoRA: it covers the first
  expect(engine.stats.sessionsBuilt).toBe(built0 + 2);
  await pair(pa, pb); // the adapters' own session runs last, so the grown one is the least recently used
  await engine.forward(await base.tokenizer.encodeBatch(['hello']), [EMPTY_PLAN], { hidden: true }); // and the bare one
  await pair(pd, pd); // a sparse-diff group needs a session of its own: one of the three goes
  expect(engine.stats.sessionsBuilt).toBe(built0 + 3);
  expect(engine.stats.sessionsReleased).toBe(1);
  const [a, l] = await pair(pa, pl); // adapters and LoRA in one batch: the grown session is still there
  expect(engine.stats.sessionsBuilt).toBe(built0 + 3);
  for (const [x, want] of [[a, adapters[0]], [l, loras[0]]]) for (let i = 0; i < want.length; i++) expect(Math.abs(x[i] - want[i])).toBeLessThan(1e-5);
  await engine.close();
});

it('joinVariants covers both sides and refuses what one graph cannot serve', async () => {
  const engine = await Engine.create({ base });
  const a = makeAdapterModule({ id: 'task/ja', base: info, preset: 'seq_bn', seed: 13 });
  const h = makeAdapterModule({ id: 'task/jh', base: info, preset: 'double_seq_bn', seed: 14 });
  const l = makeLoraModule({ id: 'task/jl', base: info, r: 2, seed: 15 });
  for (const m of [a, h, l]) engine.addModule(parseManifest(m.manifest), m.tensors);
  const plan = async (r: string) => (await engine.plan(r))[0];
  const [pa, ph, pl] = [await plan('task/ja@1.0.0'), await plan('task/jh@1.0.0'), await plan('task/jl@1.0.0')];
  const v1 = engine.variantFor([pa, pl], {});
  const v2 = engine.variantFor([ph, pa], {});
  const j = joinVariants(v1, v2)!;
  expect(coversVariant(j, v1) && coversVariant(j, v2)).toBe(true);
  expect(coversVariant(v1, v2)).toBe(false);
  expect(j.sites.output!.flags.obf).toBe('mixed'); // on for seq_bn, off for double_seq_bn: per row
  expect(j.lora).toEqual(v1.lora);
  expect(coversVariant(j, engine.variantFor([pa], {}))).toBe(true); // a uniform batch can run on it too
  expect(joinVariants(v1, engine.variantFor([pa, pl], { mlm: true }))).toBeNull(); // masked-LM output differs
  expect(joinVariants(v1, { ...v2, prefix: ['x'] } as typeof v2)).toBeNull(); // a field it does not know (a new kind's)
  await engine.close();
});

it('a batch of sequential adapters runs on a cover that holds parallel ones (parLast does not constrain it), with the same outputs', async () => {
  const engine = await Engine.create({ base });
  const s = makeAdapterModule({ id: 'task/ps', base: info, preset: 'seq_bn', seed: 16 });
  const p = makeAdapterModule({ id: 'task/pp', base: info, preset: 'par_bn', seed: 17 });
  for (const m of [s, p]) engine.addModule(parseManifest(m.manifest), m.tensors);
  const [ps, pp] = [(await engine.plan('task/ps@1.0.0'))[0], (await engine.plan('task/pp@1.0.0'))[0]];
  const cover = engine.variantFor([ps, pp], {});
  expect(cover.sites.output!.flags.parLast).toBe('on');
  expect(coversVariant(cover, engine.variantFor([ps], {}))).toBe(true);
  expect(coversVariant(cover, engine.variantFor([pp], {}))).toBe(true);
  const enc = await base.tokenizer.encodeBatch(['hello world', 'hello world']);
  const mixed = await engine.forward(enc, [ps, pp], { hidden: true });
  const built = engine.stats.sessionsBuilt;
  const alone = await run(engine, 'task/ps@1.0.0'); // borrows the mixed session: no build
  expect(engine.stats.sessionsBuilt).toBe(built);
  for (let i = 0; i < alone.length; i++) expect(Math.abs(alone[i] - mixed[0].hidden![i])).toBeLessThan(1e-5);
  await engine.close();
});

it('feeds moved to the worker (a diff set\'s θ₀+δ, a uniform batch\'s weights) are built again when the worker lost them, with the same results', async () => {
  const engine = await Engine.create({ base });
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const d = makeDiffModule({ id: 'sft/moved', base: info, targets, density: 0.2, method: 'lt-sft', seed: 16 });
  const a = makeAdapterModule({ id: 'task/moved-a', base: info, preset: 'seq_bn', seed: 17 });
  const l = makeLoraModule({ id: 'task/moved-l', base: info, r: 2, seed: 18 });
  for (const m of [d, a, l]) engine.addModule(parseManifest(m.manifest), m.tensors);
  const comps = ['sft/moved@1.0.0', 'task/moved-a@1.0.0', 'task/moved-l@1.0.0', { stack: ['task/moved-a@1.0.0', 'task/moved-l@1.0.0'] }];
  const first = [];
  for (const c of comps) first.push(await run(engine, c));
  for (const [i, c] of comps.entries()) expect(await run(engine, c)).toEqual(first[i]);
  for (let i = 0; i < 2; i++) expect(await run(engine, comps[0])).toEqual(first[0]); // the 4th: the worker makes a copy between runs
  await engine.copiesMade();
  expect(engine.stats.diffCopies).toBe(1);
  expect(await run(engine, comps[0])).toEqual(first[0]); // on the copy
  await Session.forgetShared(''); // what a restarted worker holds: nothing
  for (const [i, c] of comps.entries()) expect(await run(engine, c)).toEqual(first[i]);
  expect(engine.stats.diffCopiesDropped).toBe(1); // the lost copy was dropped; the set ran on its overwrite
  await engine.close();
});

it('a new task adapter under a MAD-X language adapter in use reuses the language\'s folded slots, with the outputs of a fresh engine', async () => {
  const mods = [
    makeAdapterModule({ id: 'lang/fold', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 0.5 }, seed: 31 }),
    makeAdapterModule({ id: 'task/fold-1', base: info, preset: 'seq_bn', seed: 32 }),
    makeAdapterModule({ id: 'task/fold-2', base: info, preset: 'seq_bn', seed: 33 }),
  ];
  const engine = await Engine.create({ base });
  const fresh = await Engine.create({ base });
  for (const e of [engine, fresh]) for (const m of mods) e.addModule(parseManifest(m.manifest), m.tensors);
  const L = base.config.numLayers;
  const stack = (t: string) => ({ stack: ['lang/fold@1.0.0', t] });
  await run(engine, stack('task/fold-1@1.0.0'));
  expect(engine.stats.slotFolds).toBe(2 * L); // both slots at every layer
  const second = await run(engine, stack('task/fold-2@1.0.0'));
  expect(engine.stats.slotFolds).toBe(3 * L); // the task slot only
  expect(second).toEqual(await run(fresh, stack('task/fold-2@1.0.0')));
  await engine.close();
  await fresh.close();
});

it('a sum of sparse diffs that touch the same entries gives the same bits on every run of its overwrite (the sums the first run wrote, written again; undone in between) as on its copy', async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  // 11% each: ~1% of the entries are both's (22% in all stays under MAX_SPARSE_DENSITY: the sum is an overwrite)
  const mods = ['a', 'b', 'other'].map((n, i) => makeDiffModule({ id: `sft/ov-${n}`, base: info, targets, density: 0.11, method: 'lt-sft', seed: 81 + i }));
  const denseBytes = linearCopyBytes(new BaseParams(base));
  const sparse = await Engine.create({ base, diffCacheBytes: Math.floor(1.9 * denseBytes) }); // a copy would take over half: none is made
  const copied = await Engine.create({ base });
  for (const e of [sparse, copied]) for (const m of mods) e.addModule(parseManifest(m.manifest), m.tensors);
  const sum = { sum: ['sft/ov-a@1.0.0', 'sft/ov-b@1.0.0'] };
  const ref = await run(copied, sum); // its first run, on the overwrite
  await copied.copiesMade();
  expect(copied.stats.diffCopies).toBe(1);
  expect(await run(copied, sum)).toEqual(ref); // on the copy
  for (let i = 0; i < 3; i++) {
    expect(await run(sparse, sum)).toEqual(ref);
    await run(sparse, 'sft/ov-other@1.0.0'); // another set's overwrite on the same arrays in between
  }
  await sparse.copiesMade();
  expect(sparse.stats.diffCopies).toBe(0);
  for (const e of [sparse, copied]) await e.close();
});

it('stats.runTimes counts each run under the kind of session and weights it ran on, with its rows, tokens and times; an engine\'s overwrites undone in the worker are counted for it, one run behind', async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const d = makeDiffModule({ id: 'sft/timed', base: info, targets, density: 0.1, method: 'lt-sft', seed: 91 });
  const adapters = [1, 2].map((i) => makeAdapterModule({ id: `task/timed${i}`, base: info, preset: 'seq_bn', seed: 90 + i }));
  const engine = await Engine.create({ base, diffCacheBytes: Math.floor(0.5 * linearCopyBytes(new BaseParams(base))) }); // no copy fits: overwrites
  const other = await Engine.create({ base, diffCacheBytes: Math.floor(0.5 * linearCopyBytes(new BaseParams(base))) });
  for (const m of [d, ...adapters]) for (const e of [engine, other]) e.addModule(parseManifest(m.manifest), m.tensors);
  const texts = ['one two three', 'a much longer row of words than the first one', 'the sparse diff row'];
  const enc = await base.tokenizer.encodeBatch(texts);
  const plans = [...(await engine.plan('task/timed1@1.0.0')), ...(await engine.plan('task/timed2@1.0.0')), ...(await engine.plan('sft/timed@1.0.0'))];
  const mixed0 = { ...(engine.stats.runTimes.mixed ?? { runs: 0, rows: 0, tokens: 0, feedsMs: 0, runMs: 0 }) };
  const runs0 = engine.stats.runs;
  await engine.forward(enc, plans, { hidden: true });
  const mixed = engine.stats.runTimes.mixed!;
  const ow = engine.stats.runTimes['sparse-diff overwrite']!;
  // the two adapter rows are one run (or two length ranges) of the mixed session; the diff row is a run of its own
  expect(mixed.rows - mixed0.rows).toBe(2);
  expect(ow).toMatchObject({ runs: 1, rows: 1 });
  expect(ow.tokens).toBe(enc.lengths[2]);
  expect(mixed.runs - mixed0.runs + ow.runs).toBe(engine.stats.runs - runs0);
  expect(mixed.runMs - mixed0.runMs).toBeGreaterThan(0);
  expect(ow.runMs).toBeGreaterThan(0);
  expect(ow.feedsMs).toBeGreaterThan(0); // the overwrite applied
  expect(engine.stats.runTimes['sparse-diff copy']).toBeUndefined();
  expect(engine.stats.overwriteUndoMs).toBe(0); // the first overwrite is undone after its outputs were posted
  await other.forward(await base.tokenizer.encodeBatch(['the sparse diff row']), [plans[2]], { hidden: true }); // another engine's overwrite in the same worker
  await engine.forward(await base.tokenizer.encodeBatch(['the sparse diff row']), [plans[2]], { hidden: true });
  expect(engine.stats.runTimes['sparse-diff overwrite']).toMatchObject({ runs: 2, rows: 2 });
  const undone = engine.stats.overwriteUndoMs;
  expect(undone).toBeGreaterThan(0);
  expect(other.stats.overwriteUndoMs).toBe(0); // its own undo is counted with its next overwrite run, not with this engine's
  await other.forward(await base.tokenizer.encodeBatch(['the sparse diff row']), [plans[2]], { hidden: true });
  expect(other.stats.overwriteUndoMs).toBeGreaterThan(0);
  expect(engine.stats.overwriteUndoMs).toBe(undone);
  for (const e of [engine, other]) await e.close();
});

it('a diff set runs as a sparse overwrite until it has a copy (made by the worker after its first run while memory is free; under pressure only by taking the copy of a set that ran less than half as often), with identical outputs', async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  // 12 bytes a non-zero (as the worker holds them) at 1/30 take as much of the budget as 5% did at 8
  const mods = ['pad', 'slow', 'hot', 'rare'].map((n, i) => makeDiffModule({ id: `sft/${n}`, base: info, targets, density: 1 / 30, method: 'lt-sft', seed: 21 + i }));
  const params = new BaseParams(base);
  const denseBytes = linearCopyBytes(params);
  const budget = Math.floor(2.5 * denseBytes); // two copies fit, a third does not
  const engine = await Engine.create({ base, diffCacheBytes: budget });
  for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
  const [pad, slow, hot, rare] = await Promise.all(mods.map(async (m) => (await engine.plan(`${m.manifest.id}@1.0.0`))[0].diffs));
  // Through the engine (sessions in the worker): memory is free, so the worker makes the copy after the first run,
  // which ran on the overwrite; the runs after it are on the copy; every run gives the first run's bits.
  const outs = [await run(engine, 'sft/hot@1.0.0')];
  await engine.copiesMade();
  expect(engine.stats).toMatchObject({ diffSetsBuilt: 1, diffCopies: 1, diffCopiesDropped: 0 });
  for (let i = 0; i < 2; i++) outs.push(await run(engine, 'sft/hot@1.0.0'));
  for (const o of outs) expect(o).toEqual(outs[0]);
  // The choice itself, on a DiffWeights of its own with the same budget (copies made here, before the run: from the
  // 4th run on while memory is free).
  const stats = { diffSetsBuilt: 0, diffCopies: 0, diffCopiesDropped: 0 };
  const diffs = new DiffWeights(params, budget, 'dw-test', stats);
  const q = 'w.layers.0.attn.q.weight';
  const first = diffs.feeds(pad)[q];
  expect(first.overwrite).toBeDefined(); // a set seen once stays sparse
  expect(first.shareKey).toBe('dw-test:base:layers.0.attn.q.weight'); // the base's own array, shared with every set
  expect(first.data).toBe(params.checkpoint('layers.0.attn.q.weight').data);
  const expected = overwritten(first.data as Float32Array, first.overwrite!);
  for (let i = 0; i < 2; i++) expect(diffs.feeds(pad)[q].overwrite).toBeDefined();
  const copied = diffs.feeds(pad)[q]; // its 4th run
  expect(copied.overwrite).toBeUndefined();
  expect(copied.moveToWorker).toBe(true);
  expect(copied.shareKey).toBe('dw-test:diff:sft/pad@1.0.0:copy:layers.0.attn.q.weight');
  expect(Array.from(copied.data as Float32Array)).toEqual(Array.from(expected));
  const spread = (d: typeof pad) => {
    const got = diffs.feeds(d)[q];
    for (let j = 0; j < 70; j++) diffs.feeds(pad); // other diff groups run in between
    return got;
  };
  // Memory is free: a set that comes back slowly gets a copy on its 4th run all the same.
  const slowFirst = spread(slow);
  for (let i = 0; i < 2; i++) expect(spread(slow).overwrite).toBeDefined();
  expect(slowFirst.overwrite).toBeDefined();
  expect(spread(slow).overwrite).toBeUndefined();
  expect(stats).toEqual({ diffSetsBuilt: 2, diffCopies: 2, diffCopiesDropped: 0 });
  // Now two copies fill the budget. A set that ran up to twice as often as the least used copy's set (slow: 4 runs)
  // stays sparse...
  for (let i = 0; i < 8; i++) expect(diffs.feeds(hot)[q].overwrite).toBeDefined();
  // ...and takes that copy once it ran more than twice as often: slow's copy is dropped, pad's (run far more) stays.
  expect(diffs.feeds(hot)[q].overwrite).toBeUndefined();
  expect(stats).toEqual({ diffSetsBuilt: 3, diffCopies: 3, diffCopiesDropped: 1 });
  expect(diffs.feeds(pad)[q].overwrite).toBeUndefined();
  const back = diffs.feeds(slow)[q];
  expect(back.overwrite!.deltas).toBe(slowFirst.overwrite!.deltas); // its non-zeros were kept, not built again
  expect(stats.diffSetsBuilt).toBe(3);
  // A set that comes back, but not twice as often as the least used copy's set (hot: 9 runs), stays sparse.
  for (let i = 0; i < 18; i++) expect(diffs.feeds(rare)[q].overwrite).toBeDefined();
  expect(stats).toEqual({ diffSetsBuilt: 4, diffCopies: 3, diffCopiesDropped: 1 });
  expect(diffs.usage().bytes).toBeLessThanOrEqual(budget);
  await engine.close();
});

it('through a worker engine under memory pressure, a set takes the copy of one that ran less than half as often only once it ran 4 times', async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const mods = ['first', 'second', 'later'].map((n, i) => makeDiffModule({ id: `sft/${n}`, base: info, targets, density: 0.05, method: 'lt-sft', seed: 61 + i }));
  const params = new BaseParams(base);
  const copyBytes = linearCopyBytes(params);
  const engine = await Engine.create({ base, diffCacheBytes: Math.floor(2.5 * copyBytes) }); // room for two copies
  for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
  const first = await run(engine, 'sft/first@1.0.0');
  await run(engine, 'sft/second@1.0.0');
  await engine.copiesMade();
  expect(engine.stats).toMatchObject({ diffCopies: 2, diffCopiesDropped: 0 }); // memory was free: after one run each
  const later = [];
  for (let i = 0; i < 3; i++) {
    later.push(await run(engine, 'sft/later@1.0.0'));
    await engine.copiesMade();
    expect(engine.stats).toMatchObject({ diffCopies: 2, diffCopiesDropped: 0 }); // no room, and not popular yet
  }
  later.push(await run(engine, 'sft/later@1.0.0')); // its 4th run against 1 each: it takes one of their copies
  await engine.copiesMade();
  expect(engine.stats).toMatchObject({ diffCopies: 3, diffCopiesDropped: 1 });
  later.push(await run(engine, 'sft/later@1.0.0')); // on its copy
  for (const o of later) expect(o).toEqual(later[0]);
  expect(await run(engine, 'sft/first@1.0.0')).toEqual(first); // on its overwrite again, or its copy: the same bits
  const { bytes, budget } = engine.memory().diffs;
  expect(bytes).toBeLessThanOrEqual(budget);
  await engine.close();
});

it('a diff group of few tokens runs with its weights on the left, a larger one on the right, with the same results', async () => {
  const engine = await Engine.create({ base });
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const d = makeDiffModule({ id: 'sft/sides', base: info, targets, density: 0.2, method: 'lt-sft', seed: 19 });
  engine.addModule(parseManifest(d.manifest), d.tensors);
  const [plan] = await engine.plan('sft/sides@1.0.0');
  const texts = ['the first row of the group', ...Array.from({ length: 7 }, (_, i) => `row ${i} with a few more words than that to pass the token count of the engine's rule for the left side`)];
  const built0 = engine.stats.sessionsBuilt;
  const alone = await engine.forward(await base.tokenizer.encodeBatch(texts.slice(0, 1)), [plan], { hidden: true });
  expect(engine.stats.sessionsBuilt).toBe(built0 + 1); // 'inputs-left'
  const enc = await base.tokenizer.encodeBatch(texts);
  expect(enc.batch * enc.length).toBeGreaterThan(128); // past LEFT_MAX_TOKENS
  const together = await engine.forward(enc, texts.map(() => plan), { hidden: true });
  expect(engine.stats.sessionsBuilt).toBe(built0 + 2); // 'inputs'
  const D = base.config.hiddenSize;
  const n = alone[0].length * D; // the row's own positions (the group pads past them)
  const a = alone[0].hidden!.subarray(0, n);
  const b = together[0].hidden!.subarray(0, n);
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  expect(worst).toBeLessThan(1e-5);
  await engine.close();
});

it('with sessions on the calling thread (worker: false) a diff set gets its copy here, with the worker engine\'s results', async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const d = makeDiffModule({ id: 'sft/here', base: info, targets, density: 0.2, method: 'lt-sft', seed: 27 });
  const outs: Float32Array[][] = [];
  for (const worker of [false, true]) {
    const engine = await Engine.create({ base, worker });
    engine.addModule(parseManifest(d.manifest), d.tensors);
    const runs = [];
    for (let i = 0; i < 4; i++) runs.push(await run(engine, 'sft/here@1.0.0'));
    await engine.copiesMade();
    runs.push(await run(engine, 'sft/here@1.0.0'));
    expect(engine.stats.diffCopies).toBe(1);
    outs.push(runs);
    await engine.close();
  }
  for (const o of [...outs[0], ...outs[1]]) expect(o).toEqual(outs[0][0]);
});

/** Bytes of one diff set's copy: the encoder's Linear weights. */
function linearCopyBytes(params: BaseParams): number {
  return [...params.entries()].filter(([n]) => /^layers\.\d+\.(attn\.[qkvo]|ffn_in|ffn_out)\.weight$/.test(n)).reduce((a, [, p]) => a + p.data.byteLength, 0);
}

/** Twelve LT-SFT sets of ~0.2 copy each (10% of the encoder's Linear weights), added to a fresh engine. */
async function lttSets(prefix: string, seed: number) {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const mods = Array.from({ length: 12 }, (_, i) => makeDiffModule({ id: `sft/${prefix}${i}`, base: info, targets, density: 0.1, method: 'lt-sft', seed: seed + i }));
  const engine = await Engine.create({ base });
  for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
  const sets = await Promise.all(mods.map(async (m) => (await engine.plan(`${m.manifest.id}@1.0.0`))[0].diffs));
  const params = new BaseParams(base);
  return { engine, sets, params, copyBytes: linearCopyBytes(params) };
}

it('a popular set makes room for its copy by evicting sets without one that ran less often, least recently used first, never below a quarter of the budget, once it ran REBUILD_RUNS times per recent set it leaves without room', async () => {
  const { engine, sets, params, copyBytes } = await lttSets('tail', 40);
  const stats = { diffSetsBuilt: 0, diffCopies: 0, diffCopiesDropped: 0 };
  const budget = Math.floor(2.5 * copyBytes);
  const diffs = new DiffWeights(params, budget, 'dw-tail', stats);
  const q = 'w.layers.0.attn.q.weight';
  const [hot, warm, ...tail] = sets;
  for (const t of tail) diffs.feeds(t); // ten long-tail sets of ~0.2 copy each: no room left for a copy
  expect(diffs.usage().bytes).toBeGreaterThan(1.6 * copyBytes);
  expect(diffs.feeds(hot)[q].overwrite).toBeDefined();
  // all 11 sets ran within the window (some no longer fit: the budget keeps `sets`), so a copy leaves
  // ceil((copy + 11 sets' non-zeros − budget) / mean set) of them without room, each rebuilt when it comes back:
  // hot needs REBUILD_RUNS runs per such set, not just 4
  const { bytes: nonZeros, sets: kept } = diffs.usage();
  const mean = nonZeros / kept;
  const pushedOut = Math.ceil((copyBytes + 11 * mean - budget) / mean);
  expect(pushedOut).toBeGreaterThan(1);
  const runsNeeded = REBUILD_RUNS * pushedOut;
  for (let i = 2; i < runsNeeded; i++) expect(diffs.feeds(hot)[q].overwrite).toBeDefined();
  expect(diffs.feeds(hot)[q].overwrite).toBeUndefined(); // its runsNeeded-th run: it takes their memory
  expect(stats).toMatchObject({ diffSetsBuilt: 11, diffCopies: 1 });
  expect(diffs.usage().bytes).toBeLessThanOrEqual(budget);
  // the least recently used went, the most recent stayed, and what stayed is at least a quarter of the budget
  expect(diffs.usage().bytes - copyBytes).toBeGreaterThanOrEqual(0.25 * budget);
  const builtBefore = stats.diffSetsBuilt;
  diffs.feeds(tail[tail.length - 1]);
  expect(stats.diffSetsBuilt).toBe(builtBefore);
  diffs.feeds(tail[0]);
  expect(stats.diffSetsBuilt).toBe(builtBefore + 1);
  // A second set that ran 8 times: hot, run often enough to stay worth its copy with every set of the window pushed
  // out, keeps it, and warm ran too few times for the sets its copy would push out.
  for (let i = 0; i < REBUILD_RUNS * 12; i++) diffs.feeds(hot);
  for (let i = 0; i < 8; i++) expect(diffs.feeds(warm)[q].overwrite).toBeDefined();
  expect(stats).toMatchObject({ diffCopies: 1, diffCopiesDropped: 0 });
  expect(diffs.feeds(hot)[q].overwrite).toBeUndefined();
  await engine.close();
});

it('a copy made while memory was free is dropped once the sets that run leave it no room, unless its set ran REBUILD_RUNS times per set it pushes out', async () => {
  const { engine, sets, params, copyBytes } = await lttSets('shed', 80);
  const q = 'w.layers.0.attn.q.weight';
  for (const popular of [false, true]) {
    const stats = { diffSetsBuilt: 0, diffCopies: 0, diffCopiesDropped: 0 };
    const diffs = new DiffWeights(params, Math.floor(2.5 * copyBytes), `dw-shed${popular}`, stats);
    const [a, ...tail] = sets;
    for (let i = 0; i < (popular ? 12 * REBUILD_RUNS : 4); i++) diffs.feeds(a); // a copy from its 4th run: memory is free
    expect(diffs.feeds(a)[q].overwrite).toBeUndefined();
    // eleven more sets of ~0.2 copy each, a run of `a` after each (it stays the most recently used)
    for (const t of tail) {
      diffs.feeds(t);
      diffs.feeds(a);
    }
    expect(stats.diffCopiesDropped).toBe(popular ? 0 : 1);
    expect(diffs.feeds(a)[q].overwrite === undefined).toBe(popular); // back on its non-zeros, or still on its copy
    expect(diffs.usage().bytes).toBeLessThanOrEqual(Math.floor(2.5 * copyBytes));
  }
  await engine.close();
});

it('posts every row group\'s run at once and hands each to onGroup as it finishes, the largest group first, with the rows forward returns', async () => {
  const engine = await Engine.create({ base });
  // Runs started and not yet answered: every group is posted before the first one's outputs come back.
  let inFlight = 0;
  let most = 0;
  const realRun = Session.prototype.run;
  const spy = jest.spyOn(Session.prototype, 'run').mockImplementation(function (this: Session, ...args) {
    most = Math.max(most, ++inFlight);
    return realRun.apply(this, args).finally(() => inFlight--);
  });
  const a = makeAdapterModule({ id: 'task/g', base: info, preset: 'seq_bn', seed: 31 });
  engine.addModule(parseManifest(a.manifest), a.tensors);
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  for (const seed of [32, 33]) {
    const d = makeDiffModule({ id: `task/d${seed}`, base: info, targets, density: 0.2, method: 'lt-sft', seed });
    engine.addModule(parseManifest(d.manifest), d.tensors);
  }
  const comps = ['task/d32@1.0.0', 'task/g@1.0.0', 'task/d33@1.0.0', 'task/g@1.0.0', 'task/g@1.0.0', 'task/d32@1.0.0'];
  const enc = await base.tokenizer.encodeBatch(comps.map((_, i) => `row ${i} of the batch`));
  const plans = await Promise.all(comps.map(async (c) => (await engine.plan(c))[0]));
  const seen: number[][] = [];
  const got = new Map<number, Float32Array>();
  const out = await engine.forward(enc, plans, {
    hidden: true,
    onGroup: (rows, res) => {
      seen.push(rows);
      rows.forEach((r, j) => got.set(r, Float32Array.from(res[j].hidden!)));
    },
  });
  spy.mockRestore();
  expect(most).toBe(3);
  expect(seen).toEqual([[1, 3, 4], [0, 5], [2]]);
  out.forEach((o, r) => expect(got.get(r)).toEqual(Float32Array.from(o.hidden!)));
  // the same rows one group at a time (nothing of one group's run, e.g. a set's overwrite, leaks into another's)
  const texts = comps.map((_, i) => `row ${i} of the batch`);
  for (const rows of seen) {
    const alone = await engine.forward(await base.tokenizer.encodeBatch(rows.map((r) => texts[r])), rows.map((r) => plans[r]), { hidden: true });
    rows.forEach((r, j) => {
      const n = enc.lengths[r] * base.config.hiddenSize;
      const mine = alone[j].hidden!.subarray(0, n);
      const batched = got.get(r)!.subarray(0, n);
      expect(Math.max(...mine.map((v, k) => Math.abs(v - batched[k])))).toBeLessThan(1e-5);
    });
  }
  await engine.close();
});

it('onCoresFree: called once the runs left are single-thread sparse-diff groups (before they finish), never with diff groups on more threads (diffThreads 2, or a group past leftMaxTokens)', async () => {
  const a = makeAdapterModule({ id: 'task/cf', base: info, preset: 'seq_bn', seed: 41 });
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const d = makeDiffModule({ id: 'task/cfd', base: info, targets, density: 0.2, method: 'lt-sft', seed: 42 });
  const comps = ['task/cf@1.0.0', 'task/cfd@1.0.0', 'task/cf@1.0.0'];
  const events = async (diffThreads: number, rows: number[], leftMaxTokens?: number) => {
    const engine = await Engine.create({ base, diffThreads, leftMaxTokens });
    for (const m of [a, d]) engine.addModule(parseManifest(m.manifest), m.tensors);
    const plans = await Promise.all(rows.map(async (r) => (await engine.plan(comps[r]))[0]));
    const sub = await base.tokenizer.encodeBatch(rows.map((r) => `row ${r} here`));
    const seen: string[] = [];
    await engine.forward(sub, plans, { hidden: true, onGroup: (g) => seen.push(`group ${g.map((j) => rows[j]).join(',')}`), onCoresFree: () => seen.push('free') });
    await engine.close();
    return seen;
  };
  expect(await events(1, [0, 1, 2])).toEqual(['group 0,2', 'free', 'group 1']);
  expect(await events(1, [1])).toEqual(['free', 'group 1']); // nothing but a diff group: free at once
  expect(await events(1, [0, 2])).toEqual(['group 0,2', 'free']);
  expect(await events(2, [0, 1, 2])).toEqual(['group 0,2', 'group 1']);
  expect(await events(1, [0, 1, 2], 0)).toEqual(['group 0,2', 'group 1', 'free']); // the diff group runs on every thread: free once it ran
});

it('builds small sparse-diff groups\' sessions on one thread on a small base (diffThreads), the others and larger diff groups (past leftMaxTokens) on `threads`', async () => {
  const d = makeDiffModule({ id: 'task/thr', base: info, targets: baseParamShapes(info).filter((t) => /layer\.0\..*dense\.weight$/.test(t.name)), density: 0.3, method: 'lt-sft', seed: 43 });
  const made: (number | undefined)[] = [];
  const realCreate = Session.create.bind(Session);
  const spy = jest.spyOn(Session, 'create').mockImplementation((model, opts) => {
    made.push(opts?.threads);
    return realCreate(model, opts);
  });
  try {
    for (const [opts, want] of [[{ threads: 2 }, [2, 1]], [{ threads: 2, diffThreads: 2 }, [2, 2]], [{ threads: 2, leftMaxTokens: 2 }, [2, 2]]] as const) {
      made.length = 0;
      const engine = await Engine.create({ base, ...opts });
      engine.addModule(parseManifest(d.manifest), d.tensors);
      await run(engine, 'task/thr@1.0.0');
      expect(made).toEqual(want); // the bare session at create, then the diff group's
      await engine.close();
    }
  } finally {
    spy.mockRestore();
  }
});

it("device 'cuda' without the CUDA provider fails with a hint on how to install it", async () => {
  await expect(Engine.create({ base, device: 'cuda' })).rejects.toThrow(/npm run install:cuda/);
});

it('refuses a module whose tensor shape does not match its config, naming the tensor', async () => {
  const engine = await Engine.create({ base });
  const m = makeAdapterModule({ id: 'task/bad', base: info, preset: 'seq_bn', seed: 6 });
  const w = m.tensors.get('layers.0.output.adapter_down.weight')!;
  m.tensors.set('layers.0.output.adapter_down.weight', { ...w, shape: [w.shape[1], w.shape[0]] });
  expect(() => engine.addModule(parseManifest(m.manifest), m.tensors)).toThrow(ModuleError);
  expect(() => engine.addModule(parseManifest(m.manifest), m.tensors)).toThrow(/layers\.0\.output\.adapter_down\.weight/);
  await engine.close();
});

it('memoises the plans of a composition while the registry generation stands, and re-plans when it moves', async () => {
  const mods = new Map<string, ReturnType<typeof makeAdapterModule>>();
  for (const seed of [7, 8]) mods.set(`task/p${seed}`, makeAdapterModule({ id: `task/p${seed}`, base: info, preset: 'seq_bn', seed }));
  let target = 'task/p7';
  let resolves = 0;
  const resolver = {
    generation: 0,
    async resolve(ref: string) {
      resolves++;
      const m = mods.get(ref === 'task/alias' ? target : ref.split('@')[0])!;
      return { manifest: parseManifest(m.manifest), readFile: async () => (await import('../../modules-store/safetensors')).serializeSafetensors(m.tensors) };
    },
  };
  const engine = await Engine.create({ base, resolver });
  const comp = { stack: ['task/alias'] };
  const first = await engine.plan(comp);
  expect(first[0].adapters[0].key).toBe('task/p7@1.0.0');
  const n = resolves;
  expect(await engine.plan(comp)).toBe(first); // the same plans, no resolution
  expect(resolves).toBe(n);
  target = 'task/p8'; // the tag moves: the registry's generation moves with it
  resolver.generation++;
  const moved = await engine.plan(comp);
  expect(moved[0].adapters[0].key).toBe('task/p8@1.0.0');
  expect(await run(engine, comp)).not.toEqual(await run(engine, 'task/p7@1.0.0'));
  await engine.close();
});

it('splitCompositions runs each composition of a batch as its own group, with the same results as one mixed run', async () => {
  const mixed = await Engine.create({ base, runOverheadTokens: Infinity }); // one run, whatever the measured cost
  const split = await Engine.create({ base, splitCompositions: true });
  const mods = [makeAdapterModule({ id: 'task/s1', base: info, preset: 'seq_bn', seed: 11 }), makeAdapterModule({ id: 'task/s2', base: info, preset: 'seq_bn', config: { ln_after: true }, seed: 12 }), makeLoraModule({ id: 'task/s3', base: info, r: 2, seed: 13 })];
  for (const e of [mixed, split]) for (const m of mods) e.addModule(parseManifest(m.manifest), m.tensors);
  const comps = ['task/s1@1.0.0', 'task/s2@1.0.0', 'task/s1@1.0.0', 'task/s3@1.0.0', null];
  const enc = await base.tokenizer.encodeBatch(['one', 'two words', 'three more words', 'four', 'five']);
  const run = async (e: Engine) => {
    const plans = await Promise.all(comps.map(async (c) => (await e.plan(c))[0]));
    const before = e.stats.runs;
    const out = await e.forward(enc, plans, { hidden: true });
    // real positions only: each group runs as long as its own longest row, so padding lengths differ
    return { out: out.map((o) => Array.from(o.hidden!.subarray(0, o.length * base.config.hiddenSize))), runs: e.stats.runs - before };
  };
  const a = await run(mixed);
  const b = await run(split);
  expect([a.runs, b.runs]).toEqual([1, 4]);
  a.out.forEach((row, i) => {
    expect(b.out[i].length).toBe(row.length);
    row.forEach((x, j) => expect(b.out[i][j]).toBeCloseTo(x, 4));
  });
  await mixed.close();
  await split.close();
});

/**
 * Runs `comps` (one row each, over `texts`) as one batch on an engine without length ranges, after `check(engine,
 * plans)`: expects `runs` onnxruntime runs, and every row's hidden states equal to that row alone on a fresh engine
 * (no mixed session there: each row alone runs on its own uniform graph).
 */
async function expectRunsApart(mods: RefModule[], comps: unknown[], texts: string[], runs: number, check: (engine: Engine, plans: RowPlan[]) => void): Promise<void> {
  const engine = await Engine.create({ base, runOverheadTokens: Infinity });
  const alone = await Engine.create({ base });
  for (const e of [engine, alone]) for (const m of mods) e.addModule(parseManifest(m.manifest), m.tensors);
  const plans = await Promise.all(comps.map(async (c) => (await engine.plan(c))[0]));
  check(engine, plans);
  const enc = await base.tokenizer.encodeBatch(texts);
  const before = engine.stats.runs;
  const out = await engine.forward(enc, plans, { hidden: true });
  expect(engine.stats.runs - before).toBe(runs);
  const D = base.config.hiddenSize;
  for (let i = 0; i < texts.length; i++) {
    const [own] = await alone.forward(await base.tokenizer.encodeBatch([texts[i]]), [(await alone.plan(comps[i]))[0]], { hidden: true });
    for (let k = 0; k < enc.lengths[i] * D; k++) expect(Math.abs(out[i].hidden![k] - own.hidden![k])).toBeLessThan(1e-5);
  }
  await engine.close();
  await alone.close();
}

it('rows whose adapters fall in different rank classes run apart, each slot in its class\'s pool, with the outputs each row has alone', async () => {
  // a MAD-X language adapter 4× wider than the hidden size (rank 64: class 64) under a task adapter of rank 1
  // (class 16); another rank-1 adapter alone in slot 0 must not run in a rank-64 slot
  const mods = [
    makeAdapterModule({ id: 'lang/rc-wide', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 0.25 }, seed: 91 }),
    makeAdapterModule({ id: 'task/rc-task', base: info, preset: 'seq_bn', seed: 92 }),
    makeAdapterModule({ id: 'task/rc-one', base: info, preset: 'seq_bn', seed: 93 }),
    makeLoraModule({ id: 'task/rc-lora', base: info, r: 2, seed: 94 }),
    makeBitfitModule({ id: 'sft/rc-bias', base: info, seed: 90 }),
  ];
  const stack = { stack: ['lang/rc-wide@1.0.0', 'task/rc-task@1.0.0'] };
  const comps: unknown[] = ['sft/rc-bias@1.0.0', stack, 'task/rc-one@1.0.0', 'task/rc-lora@1.0.0', stack, 'task/rc-one@1.0.0'];
  await expectRunsApart(mods, comps, ['one two', 'hello world', 'a b c d e f', 'hello', 'the quick brown fox jumps', 'world world'], 2, (engine, plans) => {
    // the LoRA row and the row of bias-only diffs (no adapters: they fit either run) join the narrower one, beside
    // the rank-1 adapters, not through the rank-64 language slot
    expect(rankGroups([0, 1, 2, 3, 4, 5], plans, base.config.numLayers)).toEqual([[1, 4], [0, 2, 3, 5]]);
    const v = (rows: number[]) => engine.variantFor(rows.map((r) => plans[r]), {});
    expect(v([1, 2]).sites.output!.ranks).toEqual([64, 16]);
    expect(v([1]).sites.output!.ranks).toEqual([64, 16]);
    expect(v([2, 3]).sites.output!.ranks).toEqual([16]);
    expect(joinVariants(v([1]), v([2]))).toBeNull(); // slot 0: class 64 against 16
    expect(joinVariants(v([1]), v([3]))!.sites.output!.ranks).toEqual([64, 16]);
  });
});

it('wide adapters of a mixed slot run in lanes, one per adapter and LANES at most a run (more split the run), with the outputs each row has alone', async () => {
  // language adapters of rank 64 on a hidden size of 16 (class 64: laned), one leaving out layer 1; under task adapters
  // of rank 1 or alone, beside a LoRA row that has no adapter there (in no lane)
  const langs = Array.from({ length: 6 }, (_, i) => makeAdapterModule({ id: `lang/ln${i}`, base: info, preset: 'seq_bn_inv', config: { reduction_factor: 0.25, ...(i === 2 ? { leave_out: [1] } : {}) }, seed: 300 + i }));
  const mods = [...langs, makeAdapterModule({ id: 'task/ln-t', base: info, preset: 'seq_bn', seed: 310 }), makeLoraModule({ id: 'task/ln-lora', base: info, r: 2, seed: 311 })];
  const stack = (i: number) => ({ stack: [`lang/ln${i}@1.0.0`, 'task/ln-t@1.0.0'] });
  const comps: unknown[] = [stack(0), stack(1), 'task/ln-lora@1.0.0', stack(2), `lang/ln3@1.0.0`, stack(0), stack(4), stack(5), stack(2)];
  const texts = comps.map((_, i) => ['hello world', 'a b c d e f', 'the quick brown fox', 'one two three'][i % 4]);
  const fed: string[][] = [];
  const realRun = Session.prototype.run;
  const spy = jest.spyOn(Session.prototype, 'run').mockImplementation(function (this: Session, feeds, ...rest) {
    fed.push(Object.keys(feeds).filter((k) => k.startsWith('ad.output.lane@0.')).map((k) => `${k}:${(feeds[k].data as BigInt64Array).join(',')}`));
    return realRun.call(this, feeds, ...rest);
  });
  try {
    // six languages: the rows of the first four (and the LoRA row) in one run, those of the other two in a second
    await expectRunsApart(mods, comps, texts, 2, (engine, plans) => {
      expect(laneGroups([0, 1, 2, 3, 4, 5, 6, 7, 8], plans, base.config.numLayers, base.config.hiddenSize)).toEqual([[0, 1, 2, 3, 4, 5, 8], [6, 7]]);
      expect(lanedSlot(engine.variantFor(plans.slice(0, 2), {}).sites.output!, 0, base.config.hiddenSize)).toEqual({ biasColumn: true });
    });
  } finally {
    spy.mockRestore();
  }
  // the first run's lanes (its rows 0, 1, 2, 3, 4, 5, 8 at positions 0-6): languages 0, 1, 2, 3 in order of their
  // first row; the LoRA row (position 2) in none
  expect(fed.find((f) => f.length === LANES)).toEqual(['ad.output.lane@0.0:0,5', 'ad.output.lane@0.1:1', 'ad.output.lane@0.2:3,6', 'ad.output.lane@0.3:4']);
});

it('a laned slot with gelu (a ones column for the up bias) and a run of one language match each row alone', async () => {
  const mods = [0, 1].map((i) => makeAdapterModule({ id: `lang/lg${i}`, base: info, preset: 'seq_bn_inv', config: { reduction_factor: 0.25, non_linearity: 'gelu' }, seed: 320 + i }));
  mods.push(makeAdapterModule({ id: 'task/lg-t', base: info, preset: 'seq_bn', config: { non_linearity: 'gelu' }, seed: 322 }));
  const comps: unknown[] = [{ stack: ['lang/lg0@1.0.0', 'task/lg-t@1.0.0'] }, 'lang/lg1@1.0.0', 'lang/lg0@1.0.0'];
  await expectRunsApart(mods, comps, ['hello world', 'a b c d e f', 'one two'], 1, (engine, plans) => {
    expect(lanedSlot(engine.variantFor(plans, {}).sites.output!, 0, base.config.hiddenSize)).toEqual({ biasColumn: false });
  });
  await expectRunsApart(mods, [comps[0], comps[2]], ['hello world', 'one two three'], 1, () => undefined);
});

it('LoRA sets of different rank classes run apart, each in its class\'s pool, with the outputs each row has alone', async () => {
  const mods = [makeLoraModule({ id: 'task/rl-narrow', base: info, r: 2, seed: 99 }), makeLoraModule({ id: 'task/rl-wide', base: info, r: 40, seed: 100 }), makeLoraModule({ id: 'task/rl-other', base: info, r: 4, seed: 101 })];
  const comps = ['task/rl-narrow@1.0.0', 'task/rl-wide@1.0.0', 'task/rl-other@1.0.0', 'task/rl-wide@1.0.0'];
  await expectRunsApart(mods, comps, ['hello world', 'a b c d e f', 'hello', 'the quick brown fox'], 2, (engine, plans) => {
    expect(rankGroups([0, 1, 2, 3], plans, base.config.numLayers)).toEqual([[0, 2], [1, 3]]);
    const v = engine.variantFor([plans[0], plans[2]], {});
    expect(Object.values(v.loraRanks!)).toEqual(v.lora.map(() => 16));
    expect(joinVariants(v, engine.variantFor([plans[1]], {}))).toBeNull(); // class 16 against 64
  });
});

/**
 * Modules whose rows fall in two rank classes, and rows that fit either: `lang/<tag>-wide` (class 64), `task/<tag>-one`
 * (class 16), `task/<tag>-lora` and `sft/<tag>-bias` (no adapters); seeds from `seed` on.
 */
function rankClassModules(tag: string, seed: number) {
  return [
    makeAdapterModule({ id: `lang/${tag}-wide`, base: info, preset: 'seq_bn_inv', config: { reduction_factor: 0.25 }, seed }),
    makeAdapterModule({ id: `task/${tag}-one`, base: info, preset: 'seq_bn', seed: seed + 1 }),
    makeLoraModule({ id: `task/${tag}-lora`, base: info, r: 2, seed: seed + 2 }),
    makeBitfitModule({ id: `sft/${tag}-bias`, base: info, seed: seed + 3 }),
  ];
}

it('a mixed miss grows the most recent session it can join, passing over one of another rank class', async () => {
  const mods = rankClassModules('rj', 95);
  const engine = await Engine.create({ base, runOverheadTokens: Infinity });
  for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
  const batch = async (comps: unknown[]) => {
    const plans = await Promise.all(comps.map(async (c) => (await engine.plan(c))[0]));
    return engine.forward(await base.tokenizer.encodeBatch(comps.map(() => 'hello world')), plans);
  };
  await batch(['task/rj-one@1.0.0', 'task/rj-lora@1.0.0']); // mixed, class 16
  await batch(['lang/rj-wide@1.0.0', 'task/rj-lora@1.0.0']); // mixed, class 64: a session of its own, the latest
  await batch(['task/rj-one@1.0.0', 'sft/rj-bias@1.0.0']); // per-row biases: grows the class-16 session
  const built = engine.stats.sessionsBuilt;
  await batch(['task/rj-lora@1.0.0', 'sft/rj-bias@1.0.0', 'task/rj-one@1.0.0']); // LoRA and biases: that grown session covers it
  expect(engine.stats.sessionsBuilt).toBe(built);
  await engine.close();
});

it('a gated mixed session of one rank class is built with the LoRA targets and per-row biases another class\'s session has: a LoRA or BitFit row in its run builds nothing', async () => {
  const mods = rankClassModules('fx', 101);
  for (const gates of [true, false]) {
    const engine = await Engine.create({ base, runOverheadTokens: Infinity, gateMixedSessions: gates });
    for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
    const batch = async (comps: unknown[]) => {
      const plans = await Promise.all(comps.map(async (c) => (await engine.plan(c))[0]));
      return (await engine.forward(await base.tokenizer.encodeBatch(comps.map(() => 'hello world')), plans, { hidden: true })).map((o) => Float32Array.from(o.hidden!));
    };
    const small = await batch(['task/fx-one@1.0.0', 'task/fx-lora@1.0.0', 'sft/fx-bias@1.0.0']); // class 16, with LoRA and biases
    const wide = { stack: ['lang/fx-wide@1.0.0', 'task/fx-one@1.0.0'] };
    const [alone] = await batch([wide, 'lang/fx-wide@1.0.0']); // class 64: a session of its own
    const built = engine.stats.sessionsBuilt;
    const [w1, l] = await batch([wide, 'task/fx-lora@1.0.0']); // the LoRA row joins the wide run
    const [w2, b] = await batch([wide, 'sft/fx-bias@1.0.0']); // so does the bias row
    expect(engine.stats.sessionsBuilt).toBe(gates ? built : built + 2); // ungated, each grows the wide session as before
    for (const [x, want] of [[w1, alone], [w2, alone], [l, small[1]], [b, small[2]]]) for (let i = 0; i < want.length; i++) expect(Math.abs(x[i] - want[i])).toBeLessThan(1e-5);
    await engine.close();
  }
});

it("groupKey names the run a row joins: the batch's shared one ('') for adapters, LoRA and BitFit, a set's own for an LT-SFT diff (the queue's affinity)", async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const mods = [
    makeAdapterModule({ id: 'task/gk-a', base: info, preset: 'seq_bn', seed: 81 }),
    makeLoraModule({ id: 'task/gk-l', base: info, seed: 82 }),
    makeBitfitModule({ id: 'sft/gk-b', base: info, seed: 83 }),
    makeDiffModule({ id: 'sft/gk-s', base: info, targets, density: 0.05, method: 'lt-sft', seed: 84 }),
    makeDiffModule({ id: 'sft/gk-t', base: info, targets, density: 0.05, method: 'lt-sft', seed: 85 }),
  ];
  for (const split of [false, true]) {
    const engine = await Engine.create({ base, splitCompositions: split });
    for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
    const key = async (comp: unknown) => engine.groupKey((await engine.plan(comp))[0]);
    const keys = await Promise.all(['task/gk-a@1.0.0', 'task/gk-l@1.0.0', 'sft/gk-b@1.0.0', 'sft/gk-s@1.0.0', { stack: ['sft/gk-s@1.0.0', 'task/gk-a@1.0.0'] }, 'sft/gk-t@1.0.0'].map(key));
    if (!split) expect(keys.map((k) => k === '')).toEqual([true, true, true, false, false, false]);
    // the same set, with or without an adapter, is one run; another set is another
    if (!split) expect(keys[3]).toBe(keys[4]);
    expect(new Set(keys.slice(3)).size).toBe(split ? 3 : 2);
    if (split) expect(keys.every((k) => k !== '')).toBe(true); // every composition is a run of its own
    await engine.close();
  }
});

it("runKey names the run a row joins for the queue: a set's own, its adapters' rank classes, or none where any run fits; rows of one name share a run of rankGroups", async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const mods = [
    makeAdapterModule({ id: 'task/rk-a', base: info, preset: 'seq_bn', seed: 71 }),
    makeAdapterModule({ id: 'task/rk-h', base: info, preset: 'double_seq_bn', seed: 72 }), // Houlsby: two sites, the same class
    makeAdapterModule({ id: 'lang/rk-wide', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 0.25 }, seed: 73 }),
    makeLoraModule({ id: 'task/rk-l', base: info, seed: 74 }),
    makeBitfitModule({ id: 'sft/rk-b', base: info, seed: 75 }),
    makeDiffModule({ id: 'sft/rk-s', base: info, targets, density: 0.05, method: 'lt-sft', seed: 76 }),
  ];
  const engine = await Engine.create({ base });
  for (const m of mods) engine.addModule(parseManifest(m.manifest), m.tensors);
  const comps: unknown[] = [
    'task/rk-a@1.0.0', // 0
    { stack: ['lang/rk-wide@1.0.0', 'task/rk-a@1.0.0'] }, // 1
    'task/rk-l@1.0.0', // 2: LoRA alone fits any run
    'task/rk-h@1.0.0', // 3
    'sft/rk-b@1.0.0', // 4: bias-only diffs are per-row biases, any run
    { stack: ['lang/rk-wide@1.0.0', 'task/rk-h@1.0.0'] }, // 5
    'sft/rk-s@1.0.0', // 6: a run of its own
    { stack: ['sft/rk-s@1.0.0', 'task/rk-a@1.0.0'] }, // 7: the same set's run
    'lang/rk-wide@1.0.0', // 8: alone, a wide class of one slot
  ];
  const plans = (await Promise.all(comps.map((c) => engine.plan(c)))).map((p) => p[0]);
  const keys = plans.map((p) => engine.runKey(p, true));
  expect(keys[2]).toBeUndefined();
  expect(keys[4]).toBeUndefined();
  expect(keys[0]).toBe(keys[3]);
  expect(keys[1]).toBe(keys[5]);
  expect(new Set([keys[0], keys[1], keys[6], keys[8]]).size).toBe(4);
  expect(keys[6]).toBe(keys[7]);
  expect(keys[6]).toMatch(/^own:/);
  // without classes, only the runs of their own are named
  expect(plans.map((p) => engine.runKey(p, false) !== undefined)).toEqual([false, false, false, false, false, false, true, true, false]);
  // the engine's own split of the shared rows (no set of their own) agrees: rows of one name are in one run; the
  // task adapters and the stacks are two (the wide language adapter alone fits the stacks' run: names are a hint)
  const shared = [0, 1, 2, 3, 4, 5, 8];
  const runs = rankGroups(shared, plans, base.config.numLayers);
  const runOf = new Map(runs.flatMap((rows, i) => rows.map((r) => [r, i] as const)));
  for (const a of shared) for (const b of shared) if (keys[a] !== undefined && keys[a] === keys[b]) expect([a, b, runOf.get(a)]).toEqual([a, b, runOf.get(b)]);
  expect(runOf.get(0)).not.toBe(runOf.get(1));
  await engine.close();
});

it('a mixed session skips the slots, LoRA targets and invertible adapter a batch does not use (gates), with the same outputs', async () => {
  const mods = [
    makeAdapterModule({ id: 'task/ga', base: info, preset: 'seq_bn', seed: 61 }),
    makeLoraModule({ id: 'task/gl', base: info, r: 2, seed: 62 }),
    makeAdapterModule({ id: 'lang/gx', base: info, preset: 'seq_bn_inv', seed: 63 }),
    makeAdapterModule({ id: 'task/gh1', base: info, preset: 'double_seq_bn', seed: 64 }),
    makeAdapterModule({ id: 'task/gh2', base: info, preset: 'double_seq_bn', seed: 65 }),
    makeBitfitModule({ id: 'task/gb', base: info, seed: 67, scale: 0.05 }),
  ];
  // maxSessions 1: every batch runs on the one mixed session the first batch builds
  const covered = await Engine.create({ base, maxSessions: 1, gateMixedSessions: true });
  const own = await Engine.create({ base });
  for (const e of [covered, own]) for (const m of mods) e.addModule(parseManifest(m.manifest), m.tensors);
  const comps: unknown[] = [
    'task/ga@1.0.0',
    'task/gl@1.0.0',
    { stack: ['lang/gx@1.0.0', 'task/ga@1.0.0'] },
    { stack: ['task/gh1@1.0.0', 'task/gh2@1.0.0'] },
    'task/gh1@1.0.0',
    'task/gb@1.0.0',
    { stack: ['lang/gx@1.0.0', 'task/gl@1.0.0'] },
  ];
  const text = 'hello world again';
  const enc = await base.tokenizer.encodeBatch(comps.map(() => text));
  const plans = await Promise.all(comps.map(async (c) => (await covered.plan(c))[0]));
  const mixed = await covered.forward(enc, plans, { hidden: true });
  const built = covered.stats.sessionsBuilt;
  const cover = covered.variantFor(plans, { hidden: true });
  // what a lone row of each kind opens of that session
  const alone = (c: unknown) => covered.plan(c).then((p) => gateValues(cover, covered.variantFor(p, { hidden: true })));
  expect(await alone('task/ga@1.0.0')).toEqual({ 'gate.output.0': true, 'gate.output.1': false, 'gate.attention.0': false, 'gate.attention.1': false, 'gate.lora.query': false, 'gate.lora.value': false, 'gate.inv': false });
  expect(await alone('task/gl@1.0.0')).toMatchObject({ 'gate.output.0': false, 'gate.lora.query': true, 'gate.lora.value': true, 'gate.inv': false });
  expect(await alone({ stack: ['lang/gx@1.0.0', 'task/ga@1.0.0'] })).toMatchObject({ 'gate.output.1': true, 'gate.attention.0': false, 'gate.inv': true });
  expect(await alone({ stack: ['task/gh1@1.0.0', 'task/gh2@1.0.0'] })).toMatchObject({ 'gate.attention.1': true, 'gate.lora.query': false, 'gate.inv': false });

  const fed: Record<string, unknown>[] = [];
  const realRun = Session.prototype.run;
  const spy = jest.spyOn(Session.prototype, 'run').mockImplementation(function (this: Session, feeds, ...rest) {
    fed.push(Object.fromEntries(Object.entries(feeds).filter(([k]) => k.startsWith('gate.')).map(([k, v]) => [k, v.data[0]])));
    return realRun.call(this, feeds, ...rest);
  });
  try {
    for (let i = 0; i < comps.length; i++) {
      const one = await base.tokenizer.encodeBatch([text]);
      const [onCover] = await covered.forward(one, await covered.plan(comps[i]), { hidden: true });
      let ownOut = onCover;
      for (let k = 0; k <= UNIFORM_BUILD_AFTER; k++) [ownOut] = await own.forward(one, await own.plan(comps[i]), { hidden: true });
      for (const ref of [mixed[i].hidden!, ownOut.hidden!]) {
        let worst = 0;
        for (let j = 0; j < ref.length; j++) worst = Math.max(worst, Math.abs(onCover.hidden![j] - ref[j]));
        expect(worst).toBeLessThan(1e-5);
      }
    }
  } finally {
    spy.mockRestore();
  }
  expect(covered.stats.sessionsBuilt).toBe(built); // every lone row ran on the mixed session
  expect(fed.some((f) => f['gate.output.1'] === 0 && f['gate.output.0'] === 1)).toBe(true); // the lone adapter row skipped slot 1
  expect(fed.some((f) => f['gate.lora.query'] === 1 && f['gate.output.0'] === 0)).toBe(true);
  await covered.close();
  await own.close();
});

it('lengthRuns splits rows into the length ranges that cost least in padded tokens plus a fixed cost per run', () => {
  expect(lengthRuns([12, 45, 18, 30, 25], 8)).toEqual([[0, 2], [4, 3], [1]]);
  expect(lengthRuns([12, 45, 18, 30, 25], 30)).toEqual([[0, 2, 4], [3, 1]]);
  expect(lengthRuns([12, 45, 18, 30, 25], Infinity)).toEqual([[0, 2, 4, 3, 1]]);
  expect(lengthRuns([7, 7, 7, 7], 1)).toEqual([[0, 1, 2, 3]]); // nothing to save
  expect(lengthRuns([5], 1)).toEqual([[0]]);
  expect(lengthRuns([], 1)).toEqual([]);
  // brute force over every split of sorted lengths: the DP finds the cheapest
  const lengths = [3, 40, 9, 22, 23, 5, 60, 41];
  const sorted = [...lengths].sort((a, b) => a - b);
  const cost = (runs: number[][]) => runs.reduce((c, r) => c + 10 + r.length * Math.max(...r.map((i) => lengths[i])), 0);
  let bestBrute = Infinity;
  for (let mask = 0; mask < 1 << (sorted.length - 1); mask++) {
    let c = 0;
    let start = 0;
    for (let i = 1; i <= sorted.length; i++)
      if (i === sorted.length || mask & (1 << (i - 1))) {
        c += 10 + (i - start) * sorted[i - 1];
        start = i;
      }
    bestBrute = Math.min(bestBrute, c);
  }
  const runs = lengthRuns(lengths, 10);
  expect(cost(runs)).toBe(bestBrute);
  expect(runs.flat().sort()).toEqual([...lengths.keys()].sort());
  expect(overheadTokensFrom(20, 8, 132, 104)).toBeCloseTo(20 / (112 / 96) - 8, 6);
  expect(overheadTokensFrom(5, 8, 5, 104)).toBe(Infinity);
  expect(overheadTokensFrom(1000, 8, 1001, 104)).toBe(256);
});

it('a diff group runs whole while it writes a sparse overwrite, and as length ranges once its set has a copy, with the results of one run', async () => {
  const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const d = makeDiffModule({ id: 'sft/len', base: info, targets, density: 0.2, method: 'lt-sft', seed: 73 });
  const split = await Engine.create({ base, runOverheadTokens: 4 });
  const whole = await Engine.create({ base, runOverheadTokens: Infinity });
  for (const e of [split, whole]) e.addModule(parseManifest(d.manifest), d.tensors);
  const long = Array(40).fill('hello world').join(' ');
  const enc = await base.tokenizer.encodeBatch(['hello', long, 'hello world', `${long} again`]);
  const forward = async (e: Engine) => {
    const runs = e.stats.runs;
    const res = await e.forward(enc, await Promise.all(enc.lengths.map(async () => (await e.plan('sft/len@1.0.0'))[0])), { hidden: true });
    return { runs: e.stats.runs - runs, out: res.map((o) => Float32Array.from(o.hidden!.subarray(0, o.length * info.hidden_size))) };
  };
  const ref = await forward(whole);
  const first = await forward(split); // on the overwrite: one run
  expect(first.runs).toBe(1);
  await split.copiesMade();
  expect(split.stats.diffCopies).toBe(1);
  const second = await forward(split); // on the copy: the lengths apart
  expect(second.runs).toBe(2);
  for (const got of [first, second])
    for (let r = 0; r < 4; r++) {
      expect(got.out[r].length).toBe(enc.lengths[r] * info.hidden_size);
      for (let j = 0; j < got.out[r].length; j++) expect(Math.abs(got.out[r][j] - ref.out[r][j])).toBeLessThan(1e-5);
    }
  for (const e of [split, whole]) await e.close();
});

it('a group of rows of different lengths runs as length ranges (runOverheadTokens), with the results of one run; measured on the CPU by default', async () => {
  const a = makeAdapterModule({ id: 'task/len', base: info, preset: 'seq_bn', seed: 71 });
  const split = await Engine.create({ base, runOverheadTokens: 4 });
  const whole = await Engine.create({ base, runOverheadTokens: Infinity });
  const measured = await Engine.create({ base });
  // measured: at least one token (Infinity where the longer row cost no more, as a tiny base's may on a busy machine)
  expect(measured.runOverheadTokens).toBeGreaterThanOrEqual(1);
  for (const e of [split, whole]) e.addModule(parseManifest(a.manifest), a.tensors);
  const long = Array(40).fill('hello world').join(' ');
  const enc = await base.tokenizer.encodeBatch(['hello', long, 'hello world', `${long} again`]);
  const outs: Float32Array[][] = [];
  for (const e of [split, whole]) {
    const runs = e.stats.runs;
    const res = await e.forward(enc, await Promise.all(enc.lengths.map(async () => (await e.plan('task/len@1.0.0'))[0])), { hidden: true });
    outs.push(res.map((o) => Float32Array.from(o.hidden!.subarray(0, o.length * info.hidden_size))));
    expect(e.stats.runs - runs).toBe(e === split ? 2 : 1);
  }
  for (let r = 0; r < 4; r++) {
    expect(outs[0][r].length).toBe(enc.lengths[r] * info.hidden_size);
    for (let j = 0; j < outs[0][r].length; j++) expect(Math.abs(outs[0][r][j] - outs[1][r][j])).toBeLessThan(1e-5);
  }
  // a run on a larger graph costs more: the mixed session's fixed cost is the bare one's scaled by its nodes
  const l = makeLoraModule({ id: 'task/len-l', base: info, r: 2, seed: 72 });
  split.addModule(parseManifest(l.manifest), l.tensors);
  const pa = (await split.plan('task/len@1.0.0'))[0];
  const pl = (await split.plan('task/len-l@1.0.0'))[0];
  const two = await base.tokenizer.encodeBatch(['hello', 'hello world']);
  await split.forward(two, [pa, pl]);
  expect(split.runOverhead([pa, pl])).toBeGreaterThan(1.1 * split.runOverhead([pa, pa]));
  expect(split.runOverhead([pa, pa])).toBeGreaterThanOrEqual(4);
  for (const e of [split, whole, measured]) await e.close();
});
