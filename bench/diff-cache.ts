/**
 * Which sparse-diff sets get a dense copy (θ₀+Σδ) under memory pressure: bench:serve's traffic replayed through
 * the engine's own DiffWeights, no onnxruntime. 1000 modules by Zipf(1) popularity, rank i an LT-SFT set (1% of the
 * encoder's Linear weights) when i % 8 = 7 as in bench:serve (125 sets); batches of 32 rows; each distinct set of
 * a batch is one diff-group run, fed in order. The base is tiny, so that a copy and a set's non-zeros keep
 * BERT-base's proportions (a copy 340 MB, non-zeros 10.2 MB as the worker holds them: 3%), and the budgets are given in copies: serve's
 * `--diff-memory-mb` 1000 / 2048 / 6000 at BERT-base hold 2.9 / 6.0 / 17.6 copies.
 *
 * Printed per budget: copies made and sets (re)built per 1000 diff-group runs, the share of runs fed a copy, and
 * what that costs per run with the costs measured at BERT-base on the 2-core VM (README, Performance): a run on a
 * copy 38 ms, on an overwrite 56 ms (+ two write passes over 850k non-zeros; 91 ms while the worker read them back
 * on every run, before its first run kept what it read), making a copy 130 ms and building a
 * set's non-zeros 7 ms of main thread. What the bench sees comes from the feeds alone (a feed with an overwrite,
 * a new array of indices), so the same file replays an older DiffWeights for an A/B. It replays the rule for copies
 * made on the calling thread (from a set's 4th run while memory is free); serve's worker starts a set's copy after
 * its first run while memory is free, and under pressure both rules are the same.
 *
 *   npm run build:bench && node dist-bench/bench/diff-cache.js          (about 20 s)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseManifest } from '../modules-store/manifest';
import { loadBase } from '../server/model/base';
import { Rng } from '../server/model/random';
import { createTinyBase } from '../server/model/tiny';
import { BaseParams } from '../server/runtime/base-params';
import { DiffWeights } from '../server/runtime/diff-weights';
import { Engine } from '../server/runtime/engine';
import { baseParamShapes, makeDiffModule, type BaseInfo } from '../test/helpers/modules';
import { zipf } from './zipf';

const N = 1000;
const ROWS = 32;
const BATCHES = 6000;
const BUDGETS: [string, number][] = [
  ['1000 MB', 1000 / 340],
  ['2048 MB', 2048 / 340],
  ['6000 MB', 6000 / 340],
];
/** Measured at BERT-base (ms): a run on a copy, on an overwrite, making a copy, building a set's non-zeros. */
const COST = { copy: 38, overwrite: 56, copyMade: 130, built: 7 };

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-diff-cache-'));
  try {
    await createTinyBase({ out: dir, family: 'bert', layers: 2, hidden: 64, heads: 1, seed: 0 });
    const base = await loadBase(dir);
    const c = base.config;
    const info: BaseInfo = { family: c.family, fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
    const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
    const engine = await Engine.create({ base, worker: false });
    const ranks = Array.from({ length: N }, (_, i) => i).filter((i) => i % 8 === 7);
    const sets = new Map<number, Awaited<ReturnType<Engine['plan']>>[0]['diffs']>();
    for (const i of ranks) {
      const m = makeDiffModule({ id: `sft/m${i}`, base: info, targets, density: 0.01, method: 'lt-sft', seed: 100 + i });
      engine.addModule(parseManifest(m.manifest), m.tensors);
      sets.set(i, (await engine.plan(`sft/m${i}@1.0.0`))[0].diffs);
    }
    const params = new BaseParams(base);
    const linear = [...params.entries()].filter(([n]) => /^layers\.\d+\.(attn\.[qkvo]|ffn_in|ffn_out)\.weight$/.test(n));
    const copyBytes = linear.reduce((a, [, p]) => a + p.data.byteLength, 0);
    const probe = `w.${linear[0][0]}`;

    // the traffic: each batch's distinct LT-SFT sets in order of first appearance
    const pick = zipf(N, 1, new Rng(11));
    const runs: number[] = [];
    for (let b = 0; b < BATCHES; b++) {
      const seen = new Set<number>();
      for (let r = 0; r < ROWS; r++) {
        const i = pick();
        if (i % 8 === 7) seen.add(i);
      }
      runs.push(...seen);
    }

    console.log(`diff-group runs replayed: ${runs.length} (${(runs.length / BATCHES).toFixed(2)} per batch of ${ROWS} rows), ${ranks.length} LT-SFT sets; a copy = ${copyBytes} B here (340 MB at BERT-base)`);
    console.log('budget (BERT-base)  copies  copies/1000 runs  sets built/1000 runs  runs on a copy  modelled ms/run');
    for (const [name, copies] of BUDGETS) {
      const diffs = new DiffWeights(params, Math.floor(copies * copyBytes), `dc${name}`);
      const lastIndices = new Map<number, Int32Array>();
      const dense = new Map<number, boolean>();
      let made = 0;
      let built = 0;
      let onCopy = 0;
      for (const i of runs) {
        const f = diffs.feeds(sets.get(i)!)[probe];
        if (f.overwrite) {
          if (lastIndices.get(i) !== f.overwrite.indices) built++; // a build converts the indices afresh
          lastIndices.set(i, f.overwrite.indices);
          dense.set(i, false);
        } else {
          onCopy++;
          if (!dense.get(i)) made++;
          dense.set(i, true);
        }
      }
      const per = (x: number) => (1000 * x) / runs.length;
      const ms = (onCopy * COST.copy + (runs.length - onCopy) * COST.overwrite + made * COST.copyMade + built * COST.built) / runs.length;
      console.log(`${name.padEnd(19)} ${copies.toFixed(1).padStart(6)}  ${per(made).toFixed(1).padStart(16)}  ${per(built).toFixed(0).padStart(20)}  ${((100 * onCopy) / runs.length).toFixed(0).padStart(13)}%  ${ms.toFixed(1).padStart(15)}`);
    }
    await engine.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
