/**
 * Where a mixed batch's time goes, engine only (no HTTP, no tokenizer in the timing): batches of B rows (default 24)
 * drawn by Zipf(1) over 1000 modules of the bench:serve kinds (seq_bn adapter, LoRA r=8 q/v, MAD-X stack
 * [lang seq_bn_inv, task seq_bn], sparse diff: BitFit or LT-SFT 1%), each timed against the same rows all on the
 * rank-0 adapter (the N=1 configuration), in one process, 3 interleaved rounds (best of 3 reported):
 *   uniform, uniLora, uniStack, uniBitfit, uniLtsft   every row on one module of that kind (the kinds' own cost)
 *   zipf                                              the mixed batches as drawn
 *   zipfNoDiff / zipfNoLtsft / zipfAdaptersOnly       the same with diff / LT-SFT / non-adapter rows on rank 0
 *   stacks / stacksOneLang                            every row a MAD-X stack of its own task adapter, over the ten
 *                                                     languages / all over one: what the per-row language slot costs
 *   queue                                             a stream of QROWS Zipf rows, QWAIT waiting at once, formed into
 *                                                     batches by run (serve --batch-by-run) and by length and diff set (the default),
 *                                                     QROUNDS rounds (default 3), the order alternating
 * `runs/batch` counts onnxruntime runs (each distinct LT-SFT set is its own "weights as inputs" group).
 * With zipf and zipfNoLtsft it also prints what each LT-SFT row costs over the row put in its place, and the ratio
 * those rows alone leave the Zipf batches (every other row at the uniform cost).
 *
 *   npm run build:bench && node dist-bench/bench/mixed-batches.js          (env: B, BATCHES, L, H, MINW, SPANW, ONLY, LANG_RF, QROWS, QWAIT, QROUNDS)
 *   L=4 H=256 (default) is bench:serve's small base; MINW/SPANW set the sentence lengths in words; LANG_RF the
 *   language adapters' reduction factor (default 2, the archived MAD-X adapters'; 16 before the rank classes).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { parseManifest } from '../modules-store/manifest';
import type { RowPlan } from '../server/model/composition';
import { loadBase } from '../server/model/base';
import { initModule } from '../server/model/module-init';
import { Rng } from '../server/model/random';
import { createTinyBase } from '../server/model/tiny';
import { Engine } from '../server/runtime/engine';
import { formBatch } from '../server/runtime/queue';
import { baseParamShapes, makeBitfitModule, makeDiffModule, type BaseInfo } from '../test/helpers/modules';
import { zipf } from './zipf';

const env = (k: string, def: number) => (process.env[k] === undefined ? def : Number(process.env[k]));
const N = 1000;
const B = env('B', 24);
const BATCHES = env('BATCHES', 30);
const LAYERS = env('L', 4);
const HIDDEN = env('H', 256);
const MIN_WORDS = env('MINW', 10);
const SPAN_WORDS = env('SPANW', 30);
const ONLY = process.env.ONLY?.split(',');
/** The queue scenario: rows in its stream, and rows waiting at once (a closed loop of that many clients). */
const QUEUE_ROWS = env('QROWS', 640);
const QUEUE_WAITING = env('QWAIT', 64);
const QUEUE_ROUNDS = env('QROUNDS', 3);

/** Kind of the module at popularity rank i, as bench:serve cycles them. */
const kindOf = (i: number) => (['adapter', 'lora', 'stack', 'diff'] as const)[i % 4];

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-mixed-'));
  await createTinyBase({ out: dir, family: 'bert', layers: LAYERS, hidden: HIDDEN, heads: HIDDEN / 64, seed: 0 });
  const base = await loadBase(dir);
  const engine = await Engine.create({ base, worker: true });
  const c = base.config;
  const info: BaseInfo = { family: c.family, fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
  const sftTargets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
  const labels = ['a', 'b', 'c'];
  const head = { type: 'classification' as const, num_labels: 3, labels };
  for (let k = 0; k < 10; k++) {
    const m = initModule(base, { kind: 'bottleneck', id: `b/lang${k}`, version: '1.0.0', config: { preset: 'seq_bn_inv', reduction_factor: env('LANG_RF', 2) }, seed: 900 + k });
    engine.addModule(m.manifest, m.tensors);
  }
  // Zipf(1) batches over N ranks
  const pick = zipf(N, 1, new Rng(7));
  const batches = Array.from({ length: BATCHES }, () => Array.from({ length: B }, pick));
  // the queue scenario's stream of requests: a module by Zipf(1) and a sentence length each
  const queueOn = !ONLY || ONLY.includes('queue');
  const stream = Array.from({ length: queueOn ? QUEUE_ROWS : 0 }, (_, k) => ({ id: pick(), words: MIN_WORDS + ((k * 17 + 5) % SPAN_WORDS) }));
  const used = new Set([0, 1, 2, 3, 7, ...batches.flat(), ...stream.map((r) => r.id)]);
  for (const i of used) {
    const id = `b/m${i}`;
    const kind = kindOf(i);
    if (kind === 'diff') {
      const m = i % 8 === 3 ? makeBitfitModule({ id, base: info, head, seed: 1000 + i, scale: 0.02 }) : makeDiffModule({ id, base: info, targets: sftTargets, density: 0.01, method: 'lt-sft', head, seed: 1000 + i, scale: 0.02 });
      engine.addModule(parseManifest(m.manifest), m.tensors);
    } else {
      const m =
        kind === 'lora'
          ? initModule(base, { kind: 'lora', id, version: '1.0.0', config: { r: 8, lora_alpha: 16, target_modules: ['query', 'value'] }, head: { type: 'classification', labels }, seed: 1000 + i })
          : initModule(base, { kind: 'bottleneck', id, version: '1.0.0', config: { preset: 'seq_bn', reduction_factor: 16 }, head: { type: 'classification', labels }, seed: 1000 + i });
      engine.addModule(m.manifest, m.tensors);
    }
  }
  const plans = new Map<number, RowPlan>();
  for (const i of used) plans.set(i, (await engine.plan(kindOf(i) === 'stack' ? { stack: [`b/lang${i % 10}@1.0.0`, `b/m${i}@1.0.0`] } : `b/m${i}@1.0.0`))[0]);
  // rows of their own MAD-X stacks (distinct task adapters), over the ten languages (keys -1-j) or one (-1001-j)
  const stackTasks = [...used].filter((i) => kindOf(i) === 'stack').sort((a, b) => a - b);
  for (let j = 0; j < B; j++) {
    const task = `b/m${stackTasks[j % stackTasks.length]}@1.0.0`;
    plans.set(-1 - j, (await engine.plan({ stack: [`b/lang${j % 10}@1.0.0`, task] }))[0]);
    plans.set(-1001 - j, (await engine.plan({ stack: ['b/lang0@1.0.0', task] }))[0]);
  }
  const words = 'the quick brown fox jumps over lazy dog while a cat sleeps on warm mat near old house'.split(' ');
  const text = (n: number) => Array.from({ length: n }, (_, k) => words[(k * 7 + n) % words.length]).join(' ');
  const enc = await base.tokenizer.encodeBatch(Array.from({ length: B }, (_, j) => text(MIN_WORDS + ((j * 13) % SPAN_WORDS))));
  const scenarios: Record<string, (b: number[]) => number[]> = {
    uniform: (b) => b.map(() => 0),
    uniLora: (b) => b.map(() => 1),
    uniStack: (b) => b.map(() => 2),
    uniBitfit: (b) => b.map(() => 3),
    uniLtsft: (b) => b.map(() => 7),
    zipf: (b) => b,
    zipfNoDiff: (b) => b.map((i) => (kindOf(i) === 'diff' ? 0 : i)),
    zipfNoLtsft: (b) => b.map((i) => (kindOf(i) === 'diff' && i % 8 === 7 ? 0 : i)),
    zipfAdaptersOnly: (b) => b.map((i) => (kindOf(i) === 'adapter' ? i : 0)),
    stacks: (b) => b.map((_, j) => -1 - j),
    stacksOneLang: (b) => b.map((_, j) => -1001 - j),
  };
  const names = Object.keys(scenarios).filter((n) => !ONLY || ONLY.includes(n));
  const forward = (f: (b: number[]) => number[], b: number[]) => engine.forward(enc, f(b).map((i) => plans.get(i)!));
  for (const n of names) for (const b of batches) await forward(scenarios[n], b); // warm: sessions, pools, θ₀+δ
  await engine.copiesMade(); // the worker makes copies between runs
  const ms: Record<string, number[]> = {};
  const runs: Record<string, number> = {};
  for (let round = 0; round < 3; round++)
    for (const n of names) {
      const r0 = engine.stats.runs;
      const t0 = performance.now();
      for (const b of batches) await forward(scenarios[n], b);
      (ms[n] ??= []).push((performance.now() - t0) / batches.length);
      runs[n] = (engine.stats.runs - r0) / batches.length;
    }
  const ref = ms.uniform ? Math.min(...ms.uniform) : NaN;
  if (queueOn) await queueScenario(engine, base, stream, plans);
  console.log(`base ${LAYERS}L/${HIDDEN}H, ${B} rows x ${BATCHES} batches, T=${enc.length}; ratio = uniform rank-0 adapter time / scenario time`);
  for (const n of names) {
    const best = Math.min(...ms[n]);
    console.log(`${n.padEnd(18)} ms/batch ${ms[n].map((x) => x.toFixed(1)).join(' ')}  best ${best.toFixed(1)}  ratio ${(ref / best).toFixed(3)}  runs/batch ${runs[n].toFixed(2)}`);
  }
  if (ms.uniform && ms.zipf && ms.zipfNoLtsft) console.log(ltsftBound(batches, Math.min(...ms.uniform), Math.min(...ms.zipf), Math.min(...ms.zipfNoLtsft)));
  await engine.close();
}

/**
 * What the LT-SFT rows of the Zipf batches cost, and the ratio they leave even if mixing cost nothing: an LT-SFT row
 * is a run of its own (one diff set per run), so its extra over the rank-0 row that `zipfNoLtsft` puts in its place
 * is (zipf − zipfNoLtsft) / its rows a batch, and with every other row at the uniform cost the best a Zipf batch can
 * do is uniform / (uniform + rows × extra).
 */
function ltsftBound(batches: number[][], uniform: number, zipfMs: number, noLtsftMs: number): string {
  const rows = batches.flat().filter((i) => kindOf(i) === 'diff' && i % 8 === 7).length / batches.length;
  const extra = (zipfMs - noLtsftMs) / rows;
  const perRow = uniform / batches[0].length;
  return `LT-SFT rows: ${rows.toFixed(2)} a batch, each +${extra.toFixed(1)} ms over a rank-0 row (a uniform row ${perRow.toFixed(1)} ms: ${((perRow + extra) / perRow).toFixed(2)}x); with every other row at the uniform cost the Zipf batch would run at ${(uniform / (uniform + rows * extra)).toFixed(3)}`;
}

/**
 * Batch formation (queue.ts formBatch) on the same stream of rows, QWAIT of them waiting at once as in a closed
 * loop: batches taken by the run their rows join (Engine.runKey, serve --batch-by-run) against by length and
 * sparse-diff set only (serve's default); each formed batch runs as one engine.forward, QROUNDS interleaved rounds.
 */
async function queueScenario(engine: Engine, base: Awaited<ReturnType<typeof loadBase>>, stream: { id: number; words: number }[], plans: Map<number, RowPlan>): Promise<void> {
  const words = 'the quick brown fox jumps over lazy dog while a cat sleeps on warm mat near old house'.split(' ');
  const text = (n: number, k: number) => Array.from({ length: n }, (_, i) => words[(i * 7 + n + k) % words.length]).join(' ');
  const rows = await Promise.all(stream.map(async (r, k) => ({ ...r, text: text(r.words, k), tokens: (await base.tokenizer.encodeBatch([text(r.words, k)])).lengths[0] })));
  const form = (byRun: boolean) => {
    const entries = rows.map((r, k) => ({ job: { tokens: r.tokens, group: '', run: engine.runKey(plans.get(r.id)!, byRun) }, enqueued: k, r }));
    let next = Math.min(QUEUE_WAITING, entries.length);
    let waiting = entries.slice(0, next);
    const out: (typeof rows)[] = [];
    while (waiting.length) {
      const b = formBatch(waiting, { maxBatchRows: 32, maxBatchTokens: 8192 });
      const taken = new Set(b);
      waiting = waiting.filter((e) => !taken.has(e)).concat(entries.slice(next, next + b.length));
      next = Math.min(entries.length, next + b.length);
      out.push(b.map((e) => e.r));
    }
    return Promise.all(out.map(async (b) => ({ enc: await base.tokenizer.encodeBatch(b.map((r) => r.text)), plans: b.map((r) => plans.get(r.id)!) })));
  };
  const policies = { byRun: await form(true), byLength: await form(false) };
  for (const p of Object.values(policies)) for (const b of p) await engine.forward(b.enc, b.plans); // warm
  await engine.copiesMade();
  const ms: Record<string, number[]> = {};
  const runs: Record<string, number> = {};
  const padded: Record<string, number> = {};
  for (let round = 0; round < QUEUE_ROUNDS; round++)
    for (const [name, p] of round % 2 ? Object.entries(policies).reverse() : Object.entries(policies)) {
      const r0 = engine.stats.runs;
      const p0 = engine.stats.paddedTokens;
      const t0 = performance.now();
      for (const b of p) await engine.forward(b.enc, b.plans);
      (ms[name] ??= []).push((performance.now() - t0) / rows.length);
      runs[name] = engine.stats.runs - r0;
      padded[name] = engine.stats.paddedTokens - p0;
    }
  // the engine's own cost model (length-runs.ts): a run costs its fixed part plus its padded tokens
  const model = (name: string) => runs[name] * engine.runOverheadTokens + padded[name];
  const real = rows.reduce((a, r) => a + r.tokens, 0);
  console.log(`queue: ${rows.length} rows (${real} tokens), ${QUEUE_WAITING} waiting at once, batches of <= 32; ms per row per round; cost = runs x ${engine.runOverheadTokens.toFixed(1)} + padded tokens (the engine's model)`);
  for (const [name, p] of Object.entries(policies)) console.log(`  ${name.padEnd(9)} batches ${p.length}  runs/batch ${(runs[name] / p.length).toFixed(2)}  padded tokens ${padded[name]}  cost ${model(name).toFixed(0)}  ms/row ${ms[name].map((x) => x.toFixed(2)).join(' ')}`);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const pairs = ms.byRun.map((x, i) => ms.byLength[i] / x);
  console.log(`  byLength / byRun: cost ${(model('byLength') / model('byRun')).toFixed(3)}, ms per round ${pairs.map((x) => x.toFixed(3)).join(' ')} (median ${median(pairs).toFixed(3)})`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
