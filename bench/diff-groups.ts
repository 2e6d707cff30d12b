/**
 * A diff group's run with its base weights multiplied on the right (x · Wᵀ, MLAS repacks each input weight on every
 * call) or on the left ((W · xᵀ)ᵀ, it packs the group's tokens instead), side by side: engines of BERT-base shape
 * (random weights, worker sessions as `serve` runs them) with `leftMaxTokens` 0 (always right), ∞ (always left)
 * and the default, running the brief's composition {"sum": [language LT-SFT, task LT-SFT]} (1% of the encoder's
 * Linear weights each, a classification head) on groups of 1 to 4 rows, after the set got its copy (θ₀+Σδ); and the
 * default once more with a diff budget too small for a copy, so that the set runs as a sparse overwrite (its
 * non-zeros written into the base's arrays for each run and undone after it). The bare base (prepacked weights) runs
 * the same rows for reference. Interleaved rounds, median ms per run.
 *
 *   npm run build:bench && node dist-bench/bench/diff-groups.js [--shape small|bert-base] [--rounds R]     (~6 min at BERT-base, 7 rounds)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { parseManifest } from '../modules-store/manifest';
import { EMPTY_PLAN, type RowPlan } from '../server/model/composition';
import { loadBase } from '../server/model/base';
import { createTinyBase } from '../server/model/tiny';
import { Engine } from '../server/runtime/engine';
import { baseParamShapes, makeDiffModule, type BaseInfo } from '../test/helpers/modules';

const argv = process.argv.slice(2);
const arg = (k: string) => (argv.indexOf(k) >= 0 ? argv[argv.indexOf(k) + 1] : undefined);
const SHAPE = arg('--shape') ?? 'bert-base';
if (SHAPE !== 'small' && SHAPE !== 'bert-base') throw new RangeError(`'--shape' must be small or bert-base, got '${SHAPE}'`);
const ROUNDS = Number(arg('--rounds') ?? 7);
const RUNS = 5;
/** Groups: rows × words per row (a word is about a token here). */
const GROUPS: [number, number][] = [
  [1, 12],
  [1, 22],
  [2, 12],
  [1, 40],
  [4, 8],
  [2, 30],
  [1, 60],
  [4, 22],
  [1, 126],
  [8, 22],
];

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-diff-groups-'));
  try {
    const dims = SHAPE === 'bert-base' ? { layers: 12, hidden: 768, heads: 12 } : { layers: 4, hidden: 256, heads: 4 };
    await createTinyBase({ out: dir, family: 'bert', ...dims, seed: 0 });
    const base = await loadBase(dir);
    const c = base.config;
    const info: BaseInfo = { family: c.family, fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
    const targets = baseParamShapes(info).filter((t) => /encoder\.layer\.\d+\..*\.weight$/.test(t.name) && t.shape.length === 2);
    const head = { type: 'classification' as const, num_labels: 3, labels: ['a', 'b', 'c'] };
    const mods = [
      makeDiffModule({ id: 'sft/lang', base: info, targets, density: 0.01, method: 'lt-sft', seed: 1, scale: 0.02 }),
      makeDiffModule({ id: 'sft/task', base: info, targets, density: 0.01, method: 'lt-sft', head, seed: 2, scale: 0.02 }),
    ];
    // [name, leftMaxTokens, diff budget]: 2 GB holds the set's copy; 64 MB only its non-zeros (a copy is 340 MB at BERT-base)
    const configs: [string, number, number][] = [
      ['right (leftMaxTokens 0)', 0, 2 ** 31],
      ['left (leftMaxTokens ∞)', Infinity, 2 ** 31],
      ['default (left up to 128 tokens)', 128, 2 ** 31],
      ['default, sparse overwrite (no copy)', 128, SHAPE === 'bert-base' ? 64 * 2 ** 20 : 4 * 2 ** 20],
    ];
    const engines = await Promise.all(configs.map(([, n, bytes]) => Engine.create({ base, leftMaxTokens: n, diffCacheBytes: bytes })));
    const plans: RowPlan[] = [];
    for (const e of engines) {
      for (const m of mods) e.addModule(parseManifest(m.manifest), m.tensors);
      plans.push((await e.plan({ sum: ['sft/lang@1.0.0', 'sft/task@1.0.0'] }))[0]);
    }
    const words = 'the quick brown fox jumps over a lazy dog while the old cat sleeps'.split(' ');
    const text = (n: number, k: number) => Array.from({ length: n }, (_, i) => words[(i * 5 + k) % words.length]).join(' ');
    const batches = await Promise.all(GROUPS.map(([rows, n]) => base.tokenizer.encodeBatch(Array.from({ length: rows }, (_, k) => text(n, k)))));
    // warm: sessions of both kinds, and enough runs for the set's copy
    for (const [k, e] of engines.entries()) for (const enc of batches) for (let i = 0; i < 6; i++) await e.forward(enc, Array(enc.batch).fill(plans[k]));
    for (const enc of batches) await engines[0].forward(enc, Array(enc.batch).fill(EMPTY_PLAN));
    for (const e of engines) await e.copiesMade(); // the worker makes copies between runs
    const ms = new Map<string, number[]>();
    const time = async (key: string, f: () => Promise<unknown>) => {
      const t0 = performance.now();
      for (let i = 0; i < RUNS; i++) await f();
      (ms.get(key) ?? ms.set(key, []).get(key)!).push((performance.now() - t0) / RUNS);
    };
    for (let r = 0; r < ROUNDS; r++)
      for (const [g, enc] of batches.entries()) {
        await time(`bare ${g}`, () => engines[0].forward(enc, Array(enc.batch).fill(EMPTY_PLAN)));
        for (const [k, e] of engines.entries()) await time(`${k} ${g}`, () => e.forward(enc, Array(enc.batch).fill(plans[k])));
      }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(`base ${dims.layers}L/${dims.hidden}H, {"sum": [LT-SFT 1%, LT-SFT 1% + head]} on its copy (the last column: on its sparse overwrite), ${ROUNDS} rounds x ${RUNS} runs, median ms per run (ratio: bare / config)`);
    console.log(['group (rows x tokens)', 'bare', ...configs.map(([n]) => n)].join(' | '));
    for (const [g, enc] of batches.entries()) {
      const bare = med(ms.get(`bare ${g}`)!);
      const cells = engines.map((_, k) => {
        const m = med(ms.get(`${k} ${g}`)!);
        return `${m.toFixed(1)} (${(bare / m).toFixed(2)})`;
      });
      console.log([`${enc.batch} x ${enc.length} = ${enc.batch * enc.length}`, bare.toFixed(1), ...cells].join(' | '));
    }
    console.log(`copies made: ${engines.map((e) => e.stats.diffCopies).join(" / ")}`);
    for (const e of engines) await e.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
