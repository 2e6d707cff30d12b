/**
 * Issue 17 benchmark: zero-shot cross-lingual transfer on real text, MAD-X and LT-SFT, as the trainer trains
 * them before and after the fixes. Task: a Debian package's Section (games, sound, graphics, science, fonts)
 * from its description; task modules are trained on English only and evaluated on held-out packages in en, de,
 * fr, it (bench/debian-text.ts: held-out packages are in no training text of any language).
 *   MAD-X  language adapters (seq_bn_inv, MLM); a task adapter (seq_bn) trained stacked on the English one;
 *          zero-shot = target-language adapter + task adapter. Before: language adapters with a fresh MLM head.
 *   LT-SFT language SFTs (MLM; composable-sft's selection defaults); a task SFT; zero-shot = target-language SFT
 *          + task SFT (diffs summed). Before: the task SFT trained without the English SFT (the old silent no-op
 *          of --stack-on); after: trained with it applied.
 * Rows also give each task module alone (no language module) and the majority class.
 *
 *   npm run build:bench && node dist-bench/bench/crosslingual-transfer.js [--threads N] [--base DIR] [--json FILE]
 *   --base DIR  reuse (or create there) the pretrained base instead of a temporary one
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadBase, type Base } from '../server/model/base';
import { initModule } from '../server/model/module-init';
import { createTinyBase } from '../server/model/tiny';
import { Engine } from '../server/runtime/engine';
import { evaluateComposition } from '../server/train/engine-eval';
import { runPhase } from '../server/train/loop';
import { saveTrainedBase } from '../server/train/save-base';
import { train, type ClsExample, type GivenModule, type MlmExample, type TrainResult } from '../server/train/trainer';
import { descriptions, heldOut, sections } from './debian-text';

const argv = process.argv.slice(2);
const argOf = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
const THREADS = Number(argOf('--threads') ?? 1);
const JSON_OUT = argOf('--json');
const LANGS = ['en', 'de', 'fr', 'it'];
const CLASSES = ['games', 'sound', 'graphics', 'science', 'fonts'];
const SIZES = { pretrain: 2500, language: 1200, taskPerClass: 250, testPerClass: 60 };
const MLM = { epochs: 2, batchSize: 16, lr: 1e-3, maxLength: 64, seed: 0, threads: THREADS, keep: 'last' as const };
const TASK = { epochs: 3, batchSize: 16, lr: 1e-3, maxLength: 64, seed: 0, threads: THREADS, keep: 'last' as const };
// adapters on a frozen tiny base need a larger step than the sparse fine-tunes (at 1e-3 they stay near the majority class)
const ADAPTER_TASK = { ...TASK, epochs: 6, lr: 1e-2 };

const given = (r: TrainResult): GivenModule => ({ manifest: r.manifest, tensors: r.tensors });

async function pretrainedBase(byLang: Map<string, Map<string, string>>, dir: string): Promise<Base> {
  if (fs.existsSync(path.join(dir, 'base', 'model.safetensors'))) return loadBase(path.join(dir, 'base'));
  const text: MlmExample[] = [];
  for (const d of byLang.values()) text.push(...[...d.keys()].sort().filter((p) => !heldOut(p)).slice(0, SIZES.pretrain).map((p) => ({ text: d.get(p)! })));
  await createTinyBase({ out: path.join(dir, 'random'), layers: 2, hidden: 64, heads: 4, corpus: text.map((e) => e.text), vocabSize: 6000, seed: 0 });
  const random = await loadBase(path.join(dir, 'random'));
  const pre = await train({ base: random, method: 'full', task: 'mlm', train: text, epochs: 3, batchSize: 32, lr: 2e-3, maxLength: 64, seed: 0, threads: THREADS });
  await pre.release();
  saveTrainedBase(random, pre.tensors, path.join(dir, 'base'));
  return loadBase(path.join(dir, 'base'));
}

async function main() {
  const t0 = Date.now();
  const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0)} s] ${s}`);
  const byLang = new Map(LANGS.map((l) => [l, descriptions(l)]));
  const section = sections();
  const dir = argOf('--base') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-xling-'));
  const base = await pretrainedBase(byLang, dir);
  log('base ready');

  // language text: packages after the pretraining ones (not held out); task data: English, by Section
  const langText = new Map(LANGS.map((l) => {
    const d = byLang.get(l)!;
    const pkgs = [...d.keys()].sort().filter((p) => !heldOut(p)).slice(SIZES.pretrain, SIZES.pretrain + SIZES.language);
    return [l, pkgs.map((p) => ({ text: d.get(p)! }))];
  }));
  const en = byLang.get('en')!;
  const taskTrain: ClsExample[] = CLASSES.flatMap((c) => [...en.keys()].sort().filter((p) => !heldOut(p) && section.get(p) === c).slice(0, SIZES.taskPerClass).map((p) => ({ text: en.get(p)!, label: c })));
  const test = new Map(LANGS.map((l) => {
    const d = byLang.get(l)!;
    return [l, CLASSES.flatMap((c) => [...d.keys()].sort().filter((p) => heldOut(p) && section.get(p) === c).slice(0, SIZES.testPerClass).map((p) => ({ text: d.get(p)!, label: c })))];
  }));
  log(`task: ${taskTrain.length} English training examples; test ${LANGS.map((l) => `${l} ${test.get(l)!.length}`).join(', ')}`);

  // language modules
  const madxAfter = new Map<string, TrainResult>();
  const madxBefore = new Map<string, TrainResult>();
  const sft = new Map<string, TrainResult>();
  for (const l of LANGS) {
    const o = { ...MLM, base, method: 'seq_bn_inv' as const, task: 'mlm' as const, train: langText.get(l)!, id: `lang/${l}`, language: l };
    madxAfter.set(l, await train(o));
    const init = initModule(base, { kind: 'bottleneck', id: `lang-old/${l}`, config: { preset: 'seq_bn_inv', non_linearity: 'gelu', reduction_factor: 2 }, head: { type: 'masked_lm' }, task: 'mlm', seed: 0 });
    madxBefore.set(l, await runPhase({ o, base, task: 'mlm', labels: [], id: `lang-old/${l}`, seed: 0 }, { modules: [{ manifest: init.manifest, tensors: init.tensors, trainable: true }], trainableBase: [] }, { lr: MLM.lr, what: 'fresh head' }));
    sft.set(l, await train({ ...o, method: 'lt-sft', id: `sft/${l}` }));
    for (const r of [madxAfter.get(l)!, madxBefore.get(l)!, sft.get(l)!]) await r.release();
    log(`language modules ${l}`);
  }

  // task modules on English
  const taskMadxAfter = await train({ ...ADAPTER_TASK, base, method: 'seq_bn', task: 'classification', train: taskTrain, stackOn: [given(madxAfter.get('en')!)], id: 'task/section' });
  const taskMadxBefore = await train({ ...ADAPTER_TASK, base, method: 'seq_bn', task: 'classification', train: taskTrain, stackOn: [given(madxBefore.get('en')!)], id: 'task-old/section' });
  const taskSftAfter = await train({ ...TASK, base, method: 'lt-sft', task: 'classification', train: taskTrain, stackOn: [given(sft.get('en')!)], id: 'sft-task/section' });
  const taskSftBefore = await train({ ...TASK, base, method: 'lt-sft', task: 'classification', train: taskTrain, id: 'sft-task-old/section' });
  for (const r of [taskMadxAfter, taskMadxBefore, taskSftAfter, taskSftBefore]) await r.release();
  log('task modules');

  const engine = await Engine.create({ base, threads: THREADS });
  const key = (r: TrainResult) => engine.addModule(r.manifest, r.tensors).key;
  const acc = async (stack: TrainResult[], l: string) => {
    const r = await evaluateComposition({ engine, composition: { stack: stack.map(key) }, task: 'classification', examples: test.get(l)!, maxLength: 64 });
    return `${(100 * r.metrics.accuracy).toFixed(1)} / ${(100 * r.metrics.macro_f1).toFixed(1)}`;
  };
  const rows: [string, (l: string) => Promise<string>][] = [
    ['majority class', async (l) => `${(100 * Math.max(...CLASSES.map((c) => test.get(l)!.filter((e) => e.label === c).length)) / test.get(l)!.length).toFixed(1)} / —`],
    ['MAD-X after: task adapter alone', (l) => acc([taskMadxAfter], l)],
    ['MAD-X after: target-language adapter + task adapter', (l) => acc([madxAfter.get(l)!, taskMadxAfter], l)],
    ['MAD-X before (fresh-head language adapters): stacked', (l) => acc([madxBefore.get(l)!, taskMadxBefore], l)],
    ['LT-SFT after: task SFT alone', (l) => acc([taskSftAfter], l)],
    ['LT-SFT after: target-language SFT + task SFT (trained on the en SFT)', (l) => acc([sft.get(l)!, taskSftAfter], l)],
    ['LT-SFT before: target-language SFT + task SFT (trained without it)', (l) => acc([sft.get(l)!, taskSftBefore], l)],
  ];
  const table: Record<string, Record<string, string>> = {};
  console.log(`\naccuracy / macro-F1 (%) on held-out packages\n| | ${LANGS.join(' | ')} |\n|---|${LANGS.map(() => '---').join('|')}|`);
  for (const [name, f] of rows) {
    table[name] = {};
    for (const l of LANGS) table[name][l] = await f(l);
    console.log(`| ${name} | ${LANGS.map((l) => table[name][l]).join(' | ')} |`);
  }
  await engine.close();
  log('done');
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify(table, null, 2));
  if (!argOf('--base')) fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
