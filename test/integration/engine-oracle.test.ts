/**
 * The engine (one onnxruntime session per variant, modules as per-row pool data) against the independent
 * plain-loop reference (test/reference/encoder.ts) on tiny random bases of each family: every module kind,
 * every composition block, and mixed batches where each row runs a different composition.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createTinyBase } from '../../server/model/tiny';
import { loadBase, type Base } from '../../server/model/base';
import { Engine, type RowOutput } from '../../server/runtime/engine';
import { Session } from '../../server/runtime/session';
import { parseSafetensors, serializeSafetensors } from '../../modules-store/safetensors';
import { parseManifest } from '../../modules-store/manifest';
import { referenceForward, type RefComposition, type RefModule, type RefOutputs } from '../reference/encoder';
import { baseParamShapes, mulberry32, makeAdapterModule, makeBitfitModule, makeDiffModule, makeFusionModule, makeIa3Module, makeLoraModule, type BaseInfo } from '../helpers/modules';
import { EMPTY_PLAN, type RowPlan } from '../../server/model/composition';

const TEXTS = ['the quick brown fox', 'Der schnelle braune Fuchs springt über den faulen Hund', 'hello world', 'a test of tokenization and more words here'];

interface Fixture {
  base: Base;
  engine: Engine;
  info: BaseInfo;
  hfWeights: Map<string, import('../../modules-store/safetensors').Tensor>;
  rawConfig: Record<string, unknown>;
  modules: Map<string, RefModule>;
}

const SPARSE_DIFF_FAMILIES = new Set(['roberta', 'distilbert']);

async function fixture(family: 'bert' | 'roberta' | 'xlm-roberta' | 'distilbert'): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `modhub-oracle-${family}-`));
  await createTinyBase({ out: dir, family, layers: 2, hidden: 16, heads: 2, intermediate: 24, seed: 7, maxPositions: 64 });
  const base = await loadBase(dir);
  // Two families with a diff cache too small to materialise a set's encoder matrices (14 KB here; a set is
  // materialised only within half the budget): their diff rows run as sparse overwrites of the base, the other
  // two families' as materialised θ₀+Σδ, and every diff test below checks both ways against the reference.
  // runOverheadTokens: Infinity keeps each batch's run count fixed (the tests count runs); length runs have their own test
  const engine = await Engine.create({ base, runOverheadTokens: Infinity, ...(SPARSE_DIFF_FAMILIES.has(family) ? { diffCacheBytes: 24 * 1024 } : {}) });
  const rawConfig = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const hfWeights = parseSafetensors(fs.readFileSync(path.join(dir, 'model.safetensors'))).tensors;
  const info: BaseInfo = {
    family,
    fingerprint: base.fingerprint,
    hidden_size: base.config.hiddenSize,
    num_layers: base.config.numLayers,
    vocab_size: base.config.vocabSize,
    intermediate_size: base.config.intermediateSize,
  };
  return { base, engine, info, hfWeights, rawConfig, modules: new Map() };
}

function add(f: Fixture, m: RefModule): string {
  f.engine.addModule(parseManifest(m.manifest), m.tensors);
  const ref = `${m.manifest.id}@${m.manifest.version}`;
  f.modules.set(ref, m);
  return ref;
}

type Comp = unknown;
function toRef(f: Fixture, c: Comp): RefComposition {
  if (typeof c === 'string') return f.modules.get(c)!;
  const o = c as Record<string, unknown>;
  if ('fuse' in o) return { fuse: (o.fuse as Comp[]).map((x) => toRef(f, x)), fusion: f.modules.get(o.fusion as string)! };
  if ('average' in o) return { average: (o.average as Comp[]).map((x) => toRef(f, x)), weights: o.weights as number[] | undefined, normalize_weights: o.normalize_weights as boolean | undefined };
  const k = Object.keys(o)[0];
  return { [k]: (o[k] as Comp[]).map((x) => toRef(f, x)) } as RefComposition;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    // relative error; near zero an absolute floor of 2e-7 (the values are O(1): 1e-7 is below float32's
    // resolution there, and failed on a hidden value of -7.6e-4 off by 1.9e-7 when the tiny vocabulary changed)
    const err = Math.abs(actual[i] - expected[i]) / (2e-3 + Math.abs(expected[i]));
    if (err > worst) {
      worst = err;
      at = i;
    }
  }
  if (worst > 1e-4) throw new Error(`${what}: max relative error ${worst.toExponential(2)} at ${at} (engine ${actual[at]}, reference ${expected[at]})`);
}

/** Rows' token arrays without padding, as the reference takes them. */
async function encode(f: Fixture, texts: string[]) {
  const enc = await f.base.tokenizer.encodeBatch(texts);
  const T = enc.length;
  const rows = (a: Int32Array) => Array.from({ length: enc.batch }, (_, b) => Array.from(a.subarray(b * T, (b + 1) * T)));
  return { enc, ids: rows(enc.inputIds), mask: rows(enc.attentionMask), types: rows(enc.tokenTypeIds), T };
}

function slice3(t: { data: ArrayLike<number>; shape: number[] }, b: number): Float64Array {
  const per = t.shape.slice(1).reduce((x, y) => x * y, 1);
  return Float64Array.from(Array.prototype.slice.call(t.data, b * per, (b + 1) * per));
}

/** Compares each row of an engine batch (row i runs comps[i]) with the reference run of that row alone. */
async function check(f: Fixture, comps: Comp[], texts: string[], opts: { mlm?: boolean } = {}): Promise<void> {
  const { enc, ids, mask, types, T } = await encode(f, texts);
  const plans: RowPlan[] = [];
  const branchOf: { row: number; branch: number }[] = [];
  for (let i = 0; i < comps.length; i++) {
    const p = await f.engine.plan(comps[i]);
    expect(p.length).toBe(1);
    plans.push(p[0]);
    branchOf.push({ row: i, branch: 0 });
  }
  const out = await f.engine.forward(enc, plans, { hidden: true, mlm: opts.mlm });
  for (let i = 0; i < comps.length; i++) {
    const ref = reference(f, [ids[i]], [mask[i]], [types[i]], comps[i], opts.mlm ? ['hidden', 'mlm'] : ['hidden']);
    expect(out[i].head === null).toBe(ref.headType === undefined);
    compareRow(out[i], ref, T, f.base.config.hiddenSize, `row ${i} ${JSON.stringify(comps[i])}`, mask[i]);
  }
}

/** The reference's outputs, with the head's when the composition has one. */
function reference(f: Fixture, ids: number[][], mask: number[][], types: number[][], comp: Comp, outputs: ('hidden' | 'mlm')[]) {
  const args = { config: f.rawConfig, weights: f.hfWeights, inputIds: ids, attentionMask: mask, tokenTypeIds: types, composition: comp === null ? undefined : toRef(f, comp) };
  try {
    return referenceForward({ ...args, outputs: [...outputs, 'head'] });
  } catch (e) {
    if (!/no module in the composition has a head/.test((e as Error).message)) throw e;
    return referenceForward({ ...args, outputs });
  }
}

function compareRow(o: RowOutput, ref: RefOutputs, T: number, D: number, what: string, mask: number[]): void {
  // Only real tokens are comparable (padding positions are don't-care in both).
  const real = mask.reduce((a, b) => a + b, 0);
  const h = slice3(ref.hidden as never, 0);
  expectClose(o.hidden!.subarray(0, real * D), h.subarray(0, real * D), `${what} hidden`);
  if (ref.headType === 'classification') expectClose(o.clsLogits!, slice3(ref.head as never, 0), `${what} classification logits`);
  if (ref.headType === 'token_classification') {
    const C = (ref.head as { shape: number[] }).shape[2];
    expectClose(o.tokLogits!.subarray(0, real * C), slice3(ref.head as never, 0).subarray(0, real * C), `${what} token logits`);
  }
  if (ref.mlm) {
    if (!o.mlmLogits) throw new Error(`${what}: the engine returned no masked-LM logits`);
    const V = (ref.mlm as { shape: number[] }).shape[2];
    expectClose(o.mlmLogits!.subarray(0, real * V), slice3(ref.mlm as never, 0).subarray(0, real * V), `${what} mlm logits`);
  }
  void T;
}

describe.each(['bert', 'roberta', 'xlm-roberta', 'distilbert'] as const)('engine vs reference (%s)', (family) => {
  let f: Fixture;
  const refs: Record<string, string> = {};
  beforeAll(async () => {
    f = await fixture(family);
    const b = f.info;
    refs.pfeiffer = add(f, makeAdapterModule({ id: 'task/pfeiffer', base: b, preset: 'seq_bn', config: { reduction_factor: 4 }, head: { type: 'classification', num_labels: 3 }, seed: 1 }));
    refs.houlsby = add(f, makeAdapterModule({ id: 'task/houlsby', base: b, preset: 'double_seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 2, layers: 1 }, seed: 2 }));
    refs.parallel = add(f, makeAdapterModule({ id: 'task/parallel', base: b, preset: 'par_bn', head: { type: 'token_classification', num_labels: 4 }, seed: 3 }));
    refs.bapna = add(f, makeAdapterModule({ id: 'task/bapna', base: b, preset: 'seq_bn', config: { reduction_factor: 4, ln_before: true, ln_after: true, non_linearity: 'gelu', original_ln_before: false, residual_before_ln: false, leave_out: [1] }, seed: 4 }));
    refs.lang = add(f, makeAdapterModule({ id: 'lang/de', base: b, preset: 'seq_bn_inv', config: { reduction_factor: 2, non_linearity: 'gelu' }, seed: 5 }));
    refs.langMlm = add(f, makeAdapterModule({ id: 'lang/it', base: b, preset: 'double_seq_bn_inv', config: { reduction_factor: 4 }, head: { type: 'masked_lm' }, seed: 14 }));
    refs.lang2 = add(f, makeAdapterModule({ id: 'lang/fr', base: b, preset: 'seq_bn', config: { reduction_factor: 2, non_linearity: 'tanh' }, seed: 6 }));
    refs.lora = add(f, makeLoraModule({ id: 'task/lora', base: b, r: 4, lora_alpha: 8, target_modules: ['query', 'value', 'ffn_in', 'ffn_out', 'key', 'attn_output'], head: { type: 'classification', num_labels: 3 }, seed: 7 }));
    const shapes = baseParamShapes(b, { maxPositions: f.base.config.maxPositions, typeVocab: f.base.config.typeVocabSize });
    refs.sftLang = add(f, makeDiffModule({ id: 'sft/lang', base: b, targets: shapes, density: 0.05, method: 'lt-sft', seed: 8 }));
    refs.sftTask = add(f, makeDiffModule({ id: 'sft/task', base: b, targets: shapes.filter((s) => !/embeddings/.test(s.name)), density: 0.1, method: 'lt-sft', head: { type: 'classification', num_labels: 2 }, seed: 9 }));
    refs.bitfit = add(f, makeBitfitModule({ id: 'task/bitfit', base: b, head: { type: 'classification', num_labels: 2 }, seed: 10 }));
    refs.bitfitNoLn = add(f, makeBitfitModule({ id: 'task/bitfit-noln', base: b, layerNormBiases: false, seed: 17 }));
    refs.bitfitLn = add(f, makeBitfitModule({ id: 'task/bitfit-ln', base: b, seed: 18 }));
    refs.fa = add(f, makeAdapterModule({ id: 'fuse/a', base: b, preset: 'seq_bn', config: { reduction_factor: 4 }, seed: 11 }));
    refs.fb = add(f, makeAdapterModule({ id: 'fuse/b', base: b, preset: 'seq_bn', config: { reduction_factor: 8 }, seed: 12 }));
    refs.fusion = add(f, makeFusionModule({ id: 'fuse/ab', base: b, adapters: ['fuse/a', 'fuse/b'], head: { type: 'classification', num_labels: 2 }, seed: 13 }));
    refs.ia3 = add(f, makeIa3Module({ id: 'task/ia3', base: b, target_modules: ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'], head: { type: 'classification', num_labels: 3 }, scale: 0.3, seed: 15 }));
    refs.ia3Peft = add(f, makeIa3Module({ id: 'lang/ia3-peft', base: b, target_modules: ['key', 'value', 'ffn_out'], leave_out: [0], scale: 0.3, seed: 16 }));
    refs.ia3Hub = add(f, makeIa3Module({ id: 'lang/ia3-hub', base: b, scale: 0.3, seed: 17 }));
    // What `train --method full --task mlm` writes: differences on the MLM head (dense, LayerNorm, decoder bias) and
    // the word embeddings the decoder is tied to. Names and shapes come from the checkpoint itself.
    const mlmTargets = [...f.hfWeights].filter(([n]) => /^(cls\.predictions\.|lm_head\.|vocab_(transform|layer_norm|projector)\.)|embeddings\.word_embeddings\.weight$/.test(n)).map(([name, t]) => ({ name, shape: t.shape }));
    refs.sftMlm = add(f, makeDiffModule({ id: 'sft/mlm', base: b, targets: mlmTargets, density: 0.3, scale: 0.02, method: 'full', seed: 15 }));
    refs.fullMlm = add(f, makeDiffModule({ id: 'full/mlm', base: b, targets: mlmTargets.filter((t) => !/embeddings/.test(t.name)), dense: true, scale: 0.02, method: 'full', seed: 16 }));
    refs.lnAfter = add(f, makeAdapterModule({ id: 'task/ln-after', base: b, preset: 'seq_bn', config: { reduction_factor: 4, ln_after: true }, seed: 21 }));
    refs.lnBefore = add(f, makeAdapterModule({ id: 'task/ln-before', base: b, preset: 'seq_bn', config: { reduction_factor: 2, ln_before: true }, seed: 18 }));
    refs.par = add(f, makeAdapterModule({ id: 'task/par', base: b, preset: 'par_bn', config: { reduction_factor: 4 }, seed: 19 }));
    refs.parLn = add(f, makeAdapterModule({ id: 'task/par-ln', base: b, preset: 'par_bn', config: { reduction_factor: 2, ln_before: true, ln_after: true }, seed: 20 }));
    // language adapters wider than the hidden size (rank 64 on 16: their slot runs in lanes, encoder-graph.ts lanedSlot)
    for (let i = 0; i < 5; i++) refs[`wide${i}`] = add(f, makeAdapterModule({ id: `lang/wide${i}`, base: b, preset: 'seq_bn_inv', config: { reduction_factor: 0.25 }, seed: 30 + i }));
  });
  afterAll(async () => {
    await f.engine.close();
  });

  it('bare base equals the reference', async () => {
    await check(f, [null, null], TEXTS.slice(0, 2));
  });
  it.each(['pfeiffer', 'houlsby', 'parallel', 'bapna', 'lang', 'lora', 'sftLang', 'sftTask', 'bitfit'])('single module %s', async (name) => {
    await check(f, [refs[name], refs[name]], TEXTS.slice(0, 2));
  });
  it('invertible adapters with masked-LM output (base MLM head and a module MLM head)', async () => {
    await check(f, [refs.lang, null, refs.langMlm, { stack: [refs.langMlm, refs.pfeiffer] }], TEXTS, { mlm: true });
  });
  it('invertible adapter shared by every row of a batch (full-width GEMM path), with masked-LM output', async () => {
    await check(f, [refs.lang, refs.lang], TEXTS.slice(0, 2), { mlm: true });
    await check(f, [{ stack: [refs.langMlm, refs.pfeiffer] }], TEXTS.slice(0, 1), { mlm: true });
  });
  it('diffs on the MLM head reach masked-LM output (sparse and dense, alone and under an adapter)', async () => {
    await check(f, [refs.sftMlm, null, { stack: [{ sum: [refs.sftMlm, refs.fullMlm] }, refs.pfeiffer] }, refs.fullMlm], TEXTS, { mlm: true });
  });
  it('stack of 2 and of 3', async () => {
    await check(f, [{ stack: [refs.lang, refs.pfeiffer] }, { stack: [refs.lang, refs.lang2, refs.houlsby] }], TEXTS.slice(0, 2));
  });
  // Issue 10, bug 1: with every row on the same stack the carried path runs on flattened [B*T, D] rows, where a
  // per-row [B,1,1] switch broadcast to [B, B*T, D] (onnxruntime Reshape error at batch >= 2).
  it('stack whose adapters differ in ln_before / ln_after, the same on every row (batch 2 and 3) and mixed', async () => {
    await check(f, [{ stack: [refs.fa, refs.lnAfter] }, { stack: [refs.fa, refs.lnAfter] }], TEXTS.slice(0, 2));
    await check(f, [{ stack: [refs.lnBefore, refs.fa, refs.lnAfter] }, { stack: [refs.lnBefore, refs.fa, refs.lnAfter] }, { stack: [refs.lnBefore, refs.fa, refs.lnAfter] }], TEXTS.slice(0, 3));
    await check(f, [{ stack: [refs.fa, refs.lnAfter] }, { stack: [refs.lnAfter, refs.fa] }, refs.lnBefore], TEXTS.slice(0, 3));
  });
  // Issue 10, bug 4: AdapterHub's ParallelAdapter.pre_forward hands the sub-layer input on as the hidden state and
  // post_forward adds the sub-layer output back, so in Stack(seq_bn, par_bn) the seq_bn output is discarded and
  // in Stack(par_bn, seq_bn) the seq_bn adapter sees the parallel adapter's output without the sub-layer output.
  it('par_bn inside a stack follows AdapterHub (first, last, with its own LayerNorms; uniform and mixed batches)', async () => {
    for (const comp of [{ stack: [refs.fa, refs.par] }, { stack: [refs.par, refs.fa] }, { stack: [refs.lnAfter, refs.parLn] }, { stack: [refs.parLn, refs.par] }]) {
      await check(f, [comp, comp], TEXTS.slice(0, 2));
    }
    await check(f, [{ stack: [refs.fa, refs.par] }, { stack: [refs.par, refs.fa] }, refs.par, { stack: [refs.parLn, refs.lnBefore] }], TEXTS);
  });
  // Issue 10, bug 5: only fingerprint and dimensions were compared.
  it("refuses a module whose base.family is not the base's family", () => {
    const other = family === 'bert' ? 'roberta' : 'bert';
    const m = makeAdapterModule({ id: 'task/other-family', base: { ...f.info, family: other }, preset: 'seq_bn', seed: 22 });
    expect(() => f.engine.addModule(parseManifest(m.manifest), m.tensors)).toThrow(new RegExp(`trained for a ${other} base, but this server runs a ${family} base`));
  });
  it('wide language adapters run in lanes: five languages (two runs) and a diff group over two of them (LayerNorms changed by the diff)', async () => {
    const wide = (i: number) => ({ stack: [refs[`wide${i}`], refs.pfeiffer] });
    const comps: Comp[] = [wide(0), wide(1), refs.wide2, wide(3), wide(4), wide(0), refs.lora, { stack: [{ sum: [refs.sftLang] }, refs.wide1, refs.pfeiffer] }, { stack: [{ sum: [refs.sftLang] }, refs.wide3] }];
    const runs = f.engine.stats.runs;
    await check(f, comps, comps.map((_, i) => TEXTS[i % TEXTS.length]));
    expect(f.engine.stats.runs - runs).toBe(3); // languages 0-3 with the LoRA row, language 4, the diff group
  });
  it('random batches of wide and narrow adapters, with AdapterHub switches as people leave them and drawn at random (lanes and per-row slots, seeded)', async () => {
    // Wide adapters (rank 32 or 64 on a hidden size of 16) and narrow ones; rows stack them in either order, two wide
    // ones together, or run one alone, beside LoRA, BitFit and bare rows. The first batches' adapters keep seq_bn's
    // switches (one activation for the wide ones): their wide slots run in lanes. The later batches' switches are
    // drawn at random (adapter LayerNorms, residuals after the LayerNorm, scaling, activations): per-row slots.
    // On an engine of its own: the fixture's sessions, grown by the tests before, would cover these batches with
    // graphs whose switches are per row, where no slot is laned.
    const own: Fixture = { ...f, engine: await Engine.create({ base: f.base, runOverheadTokens: Infinity }), modules: new Map() };
    for (const r of [refs.lora, refs.bitfit]) add(own, f.modules.get(r)!);
    const rnd = mulberry32(4242 + family.length);
    const pick = <T,>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
    const b = f.info;
    const leaveOut = () => (rnd() < 0.3 ? { leave_out: [Math.floor(rnd() * b.num_layers)] } : {});
    const plain = (id: string, wide: boolean, act: string, seed: number): string =>
      add(own, makeAdapterModule({ id, base: b, preset: wide ? pick(['seq_bn_inv', 'seq_bn']) : 'seq_bn', config: { reduction_factor: wide ? pick([0.25, 0.5]) : pick([2, 4]), non_linearity: act, ...leaveOut() }, seed }));
    const drawn = (id: string, wide: boolean, seed: number): string => {
      const originalLnBefore = rnd() < 0.5;
      const config: Record<string, unknown> = {
        reduction_factor: wide ? pick([0.25, 0.5]) : pick([2, 4]),
        non_linearity: pick(['relu', 'gelu', 'swish', 'tanh']),
        original_ln_before: originalLnBefore,
        original_ln_after: rnd() < 0.7,
        residual_before_ln: originalLnBefore && rnd() < 0.3 ? 'post_add' : rnd() < 0.6,
        adapter_residual_before_ln: rnd() < 0.3,
        ln_before: rnd() < 0.15,
        ln_after: rnd() < 0.15,
        scaling: pick([1, 0.5, 2]),
        ...leaveOut(),
      };
      return add(own, makeAdapterModule({ id, base: b, preset: pick(wide ? ['seq_bn_inv', 'double_seq_bn_inv', 'seq_bn'] : ['seq_bn', 'double_seq_bn']), config, seed }));
    };
    const wideAct = pick(['relu', 'gelu', 'swish', 'tanh']);
    const sets = [
      { wide: Array.from({ length: 5 }, (_, i) => plain(`lang/plain${i}`, true, wideAct, 400 + i)), narrow: Array.from({ length: 3 }, (_, i) => plain(`task/plain${i}`, false, pick(['relu', 'gelu']), 410 + i)) },
      { wide: Array.from({ length: 5 }, (_, i) => drawn(`lang/drawn${i}`, true, 420 + i)), narrow: Array.from({ length: 3 }, (_, i) => drawn(`task/drawn${i}`, false, 430 + i)) },
    ];
    const row = ({ wide, narrow }: (typeof sets)[number]): Comp => {
      const k = rnd();
      if (k < 0.3) return { stack: [pick(wide), pick(narrow)] };
      if (k < 0.4) return { stack: [pick(narrow), pick(wide)] };
      if (k < 0.5) return { stack: [pick(wide), pick(wide)] };
      if (k < 0.7) return pick(wide);
      if (k < 0.85) return pick(narrow);
      return pick([refs.lora, refs.bitfit, null]);
    };
    const laned: boolean[] = [];
    const realRun = Session.prototype.run;
    const spy = jest.spyOn(Session.prototype, 'run').mockImplementation(function (this: Session, feeds, ...rest) {
      laned.push(Object.keys(feeds).some((k) => k.includes('.lane@')));
      return realRun.call(this, feeds, ...rest);
    });
    try {
      for (const [i, set] of sets.entries())
        for (let batch = 0; batch < 3; batch++) {
          const at = laned.length;
          const comps = [{ stack: [set.wide[batch], set.narrow[0]] }, ...Array.from({ length: 7 }, () => row(set))];
          await check(own, comps, comps.map((_, r) => TEXTS[(r + batch) % TEXTS.length]));
          if (i === 0) expect(laned.slice(at)).toContain(true);
        }
    } finally {
      spy.mockRestore();
      await own.engine.close();
    }
  });
  it('sum of two diffs, and adapter + diff', async () => {
    await check(f, [{ sum: [refs.sftLang, refs.sftTask] }, { stack: [{ sum: [refs.sftLang] }, refs.pfeiffer] }], TEXTS.slice(0, 2));
  });
  it('fusion of two adapters', async () => {
    await check(f, [{ fuse: [refs.fa, refs.fb], fusion: refs.fusion }, { stack: [refs.lang, { fuse: [refs.fa, refs.fb], fusion: refs.fusion }] }], TEXTS.slice(0, 2));
  });
  it('average of two adapters', async () => {
    await check(f, [{ average: [refs.fa, refs.fb], weights: [0.7, 0.3] }, { average: [refs.fa, refs.fb] }], TEXTS.slice(0, 2));
  });
  it('IA³ alone and stacked with IA³, adapters, LoRA and diffs (every row the same: direct feeds)', async () => {
    await check(f, [refs.ia3, refs.ia3], TEXTS.slice(0, 2));
    await check(f, [{ stack: [refs.ia3Peft, refs.ia3] }, { stack: [refs.ia3Peft, refs.ia3] }], TEXTS.slice(0, 2));
    await check(f, [{ stack: [refs.lang, refs.ia3Hub, refs.pfeiffer] }], TEXTS.slice(0, 1));
    await check(f, [{ stack: [refs.ia3Hub, refs.lora] }], TEXTS.slice(1, 2));
    await check(f, [{ stack: [{ sum: [refs.sftLang] }, refs.ia3Peft, refs.houlsby] }], TEXTS.slice(2, 3));
  });
  it('a mixed batch with IA³ rows (per-row vectors) and a row without modules, which equals the bare base', async () => {
    const comps: Comp[] = [null, refs.ia3, { stack: [refs.ia3Peft, refs.ia3] }, { stack: [refs.ia3Hub, refs.lora] }, { stack: [refs.lang, refs.ia3Hub, refs.pfeiffer] }, refs.pfeiffer];
    const texts = comps.map((_, i) => TEXTS[i % TEXTS.length]);
    await check(f, comps, texts);
    const { enc } = await encode(f, texts);
    const mixed = await f.engine.forward(enc, await Promise.all(comps.map(async (c) => (await f.engine.plan(c))[0])), { hidden: true });
    const bare = await f.engine.forward(enc, comps.map(() => EMPTY_PLAN), { hidden: true });
    let worst = 0;
    mixed[0].hidden!.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - bare[0].hidden![i]))));
    expect(worst).toBeLessThan(1e-6);
  });
  it('refuses IA³ where it makes no sense', async () => {
    await expect(f.engine.plan({ sum: [refs.sftLang, refs.ia3Hub] })).rejects.toThrow(/IA³ module, which scales activations: put it in a stack/);
    await expect(f.engine.plan({ average: [refs.fa, refs.ia3Hub] })).rejects.toThrow(/'lang\/ia3-hub@1\.0\.0' \(ia3\) is not a bottleneck adapter/);
  });
  it('refuses average weights that overflow float32, before or after normalising', async () => {
    await expect(f.engine.plan({ average: [refs.fa, refs.fb], weights: [1e308, 1] })).rejects.toThrow(/numbers between -1000 and 1000/);
    await expect(f.engine.plan({ average: [refs.fa, refs.fb], weights: [1, -0.999999] })).rejects.toThrow(/normalising makes one .*sum must not be that close to 0/);
  });
  it('parallel gives one output per branch, equal to each branch alone', async () => {
    const { enc, ids, mask, types } = await encode(f, TEXTS.slice(0, 1));
    const plans = await f.engine.plan({ parallel: [refs.pfeiffer, refs.lora] });
    expect(plans).toHaveLength(2);
    const both = { ...enc, batch: 2, inputIds: rep(enc.inputIds), attentionMask: rep(enc.attentionMask), tokenTypeIds: rep(enc.tokenTypeIds), positionIds: rep(enc.positionIds), lengths: [enc.lengths[0], enc.lengths[0]] };
    const out = await f.engine.forward(both, plans, { hidden: true });
    const ref = reference(f, ids, mask, types, { parallel: [refs.pfeiffer, refs.lora] }, ['hidden']);
    expect(ref.branches).toHaveLength(2);
    compareRow(out[0], ref.branches![0], enc.length, f.base.config.hiddenSize, 'parallel branch 0', mask[0]);
    compareRow(out[1], ref.branches![1], enc.length, f.base.config.hiddenSize, 'parallel branch 1', mask[0]);
  });
  // Bias-only diffs (BitFit) join the batch's own run as per-row bias vectors; a LayerNorm shift under a bottleneck
  // adapter would change the adapter's input, so that row keeps its own "weights as inputs" group.
  it('bias-only diffs run per row in the batch\'s own run, mixed with adapters, LoRA and other rows', async () => {
    const comps: Comp[] = [null, refs.bitfit, refs.pfeiffer, { stack: [{ sum: [refs.bitfitNoLn] }, refs.pfeiffer] }, { stack: [{ sum: [refs.bitfitLn] }, refs.lora] }, { stack: [{ sum: [refs.bitfitLn] }, refs.pfeiffer] }];
    const runs = f.engine.stats.runs;
    await check(f, comps, comps.map((_, i) => TEXTS[i % TEXTS.length]));
    expect(f.engine.stats.runs - runs).toBe(2);
  });
  // Mixed batches needing different features (a stack or not, LoRA or not, per-row biases or not, ...) run on one
  // session whose graph covers them all (session-cache.ts): rows missing a feature get its identity slot.
  it('mixed batches needing different features share one covering session, every row equal to the reference', async () => {
    const all: Comp[] = [refs.pfeiffer, refs.lora, { stack: [refs.lang, refs.houlsby] }, refs.bitfit, refs.parallel, refs.bapna, null, { stack: [refs.lang, refs.lang2, refs.pfeiffer] }];
    const subsets: Comp[][] = [
      [refs.pfeiffer, refs.lora],
      [{ stack: [refs.lang, refs.pfeiffer] }, null],
      [refs.bitfit, refs.houlsby, refs.pfeiffer],
      [refs.lora, refs.parallel],
      [refs.lang2, refs.bapna],
      [refs.bitfit, null],
      [refs.houlsby, refs.houlsby, refs.lora],
    ];
    // Each batch the envelope does not cover yet grows it (switches on in one batch and off in another become
    // per-row); once it covers the traffic, nothing more is built.
    const built0 = f.engine.stats.sessionsBuilt;
    for (const comps of [...subsets, all]) await check(f, comps, comps.map((_, i) => TEXTS[(i + 1) % TEXTS.length]));
    const built = f.engine.stats.sessionsBuilt;
    expect(built - built0).toBeLessThanOrEqual(6);
    for (const comps of [...subsets].reverse()) await check(f, comps, comps.map((_, i) => TEXTS[(i + 2) % TEXTS.length]));
    expect(f.engine.stats.sessionsBuilt).toBe(built);
  });
  it('a mixed batch of 10 rows, each with a different composition, equals each row run alone', async () => {
    const comps: Comp[] = [
      null,
      refs.pfeiffer,
      refs.houlsby,
      { stack: [refs.lang, refs.pfeiffer] },
      refs.lora,
      { stack: [refs.lang, refs.lora] },
      refs.bapna,
      { sum: [refs.sftLang, refs.sftTask] },
      { stack: [{ sum: [refs.sftLang] }, refs.houlsby] },
      { fuse: [refs.fa, refs.fb], fusion: refs.fusion },
    ];
    const texts = comps.map((_, i) => TEXTS[i % TEXTS.length]);
    await check(f, comps, texts);
  });
});

// Issue 10, bug 3: a base checkpoint without an MLM head serves masked-LM output from a module's own masked_lm head
// (it failed with "the base checkpoint has no 'mlm.dense.weight' and the composition's modules bring none").
describe('masked-LM output on a base without an MLM head', () => {
  let f: Fixture;
  let lang: string;
  let task: string;
  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-oracle-nomlm-'));
    await createTinyBase({ out: dir, family: 'bert', layers: 2, hidden: 16, heads: 2, intermediate: 24, seed: 9, maxPositions: 64 });
    const file = path.join(dir, 'model.safetensors');
    const all = parseSafetensors(fs.readFileSync(file)).tensors;
    const kept = new Map([...all].filter(([n]) => !n.startsWith('cls.predictions.')));
    expect(kept.size).toBeLessThan(all.size);
    fs.writeFileSync(file, serializeSafetensors(kept));
    const base = await loadBase(dir);
    const engine = await Engine.create({ base });
    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: 16, num_layers: 2, vocab_size: base.config.vocabSize, intermediate_size: 24 };
    f = { base, engine, info, hfWeights: kept, rawConfig: JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), modules: new Map() };
    lang = add(f, makeAdapterModule({ id: 'lang/it', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, head: { type: 'masked_lm' }, seed: 3 }));
    task = add(f, makeAdapterModule({ id: 'task/topic', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, head: { type: 'classification', num_labels: 2 }, seed: 4 }));
  });
  afterAll(async () => {
    await f.engine.close();
  });
  it("uses the module's masked_lm head, alone and under a task adapter with a classification head", async () => {
    await check(f, [lang, { stack: [lang, task] }, { stack: [task, lang] }], TEXTS.slice(0, 3), { mlm: true });
  });
  it('refuses masked-LM output when neither the base nor a module brings an MLM head, saying what to add', async () => {
    const { enc } = await encode(f, TEXTS.slice(0, 1));
    await expect(f.engine.forward(enc, await f.engine.plan(task), { mlm: true })).rejects.toThrow(/base checkpoint has none .*no module with a masked_lm head/);
  });
});

function rep(a: Int32Array): Int32Array {
  const o = new Int32Array(a.length * 2);
  o.set(a, 0);
  o.set(a, a.length);
  return o;
}
