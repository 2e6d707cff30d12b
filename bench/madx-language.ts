/**
 * Issue 17 benchmark: MAD-X language adapters on real multilingual text, trained as before the fix (a fresh
 * random MLM head trained with the adapter) and as MAD-X trains them (the base's own pretrained MLM head,
 * frozen; what `modhub train --method seq_bn_inv --task mlm` does now): held-out perplexity of each language
 * under the bare base and under its language adapter. A language adapter must lower its language's perplexity.
 *
 * Data: Debian's package descriptions and their translations (bench/debian-text.ts); held-out packages appear
 * in no pretraining or adapter text, in any language.
 * Base: a tiny BERT (vocabulary trained on the pretraining text, 2 layers × 64) MLM-pretrained from scratch with
 * our own trainer on all four languages.
 *
 *   npm run build:bench && node dist-bench/bench/madx-language.js [--threads N] [--json FILE]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadBase } from '../server/model/base';
import { initModule } from '../server/model/module-init';
import { createTinyBase } from '../server/model/tiny';
import { runPhase } from '../server/train/loop';
import { strategyOf } from '../server/train/methods';
import { saveTrainedBase } from '../server/train/save-base';
import { train, type MlmExample } from '../server/train/trainer';
import { bucket, descriptions, heldOut } from './debian-text';

const argv = process.argv.slice(2);
const argOf = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
const THREADS = Number(argOf('--threads') ?? 1);
const JSON_OUT = argOf('--json');
const LANGS = ['en', 'de', 'fr', 'it'];
const SIZES = { pretrain: 2500, adapter: 1200, heldOut: 300 };

async function main() {
  const t0 = Date.now();
  const byLang = new Map(LANGS.map((l) => [l, descriptions(l)]));
  // held-out: packages in bucket < 10 (in no training text of any language); the rest in a fixed order
  const data = new Map<string, { pretrain: MlmExample[]; adapter: MlmExample[]; heldOut: MlmExample[] }>();
  for (const [l, d] of byLang) {
    const pkgs = [...d.keys()].sort();
    const held = pkgs.filter(heldOut).slice(0, SIZES.heldOut);
    const rest = pkgs.filter((p) => !heldOut(p)).sort((a, b) => bucket(a) - bucket(b) || (a < b ? -1 : 1));
    const text = (ps: string[]) => ps.map((p) => ({ text: d.get(p)! }));
    data.set(l, { heldOut: text(held), pretrain: text(rest.slice(0, SIZES.pretrain)), adapter: text(rest.slice(SIZES.pretrain, SIZES.pretrain + SIZES.adapter)) });
    console.log(`${l}: ${d.size} descriptions; pretrain ${SIZES.pretrain}, adapter ${SIZES.adapter}, held-out ${held.length}`);
  }
  const pretrainText = LANGS.flatMap((l) => data.get(l)!.pretrain);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-madx-bench-'));
  await createTinyBase({ out: path.join(dir, 'random'), layers: 2, hidden: 64, heads: 4, corpus: pretrainText.map((e) => e.text), vocabSize: 6000, seed: 0 });
  const random = await loadBase(path.join(dir, 'random'));
  const pre = await train({ base: random, method: 'full', task: 'mlm', train: pretrainText, dev: LANGS.flatMap((l) => data.get(l)!.heldOut.slice(0, 50)), epochs: 3, batchSize: 32, lr: 2e-3, maxLength: 64, seed: 0, threads: THREADS });
  await pre.release();
  saveTrainedBase(random, pre.tensors, path.join(dir, 'base'));
  const base = await loadBase(path.join(dir, 'base'));
  console.log(`pretrained: ${pre.steps} steps, dev perplexity ${pre.before!.perplexity.toFixed(1)} -> ${pre.metrics.perplexity.toFixed(1)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);

  const common = { method: 'seq_bn_inv' as const, task: 'mlm' as const, epochs: 2, batchSize: 16, lr: 1e-3, maxLength: 64, seed: 0, threads: THREADS, keep: 'last' as const };
  const rows: { lang: string; bare: number; before: number; after: number }[] = [];
  for (const l of LANGS) {
    const { adapter, heldOut } = data.get(l)!;
    const o = { ...common, base, train: adapter, dev: heldOut, id: `lang/${l}`, language: l };
    // after the fix: what the trainer does now (no head of its own; the base's head, frozen)
    const after = await train(o);
    await after.release();
    // before the fix: a fresh masked-LM head initialised with the adapter and trained with it
    const strategy = strategyOf('seq_bn_inv');
    const ctx = { o, base, task: 'mlm' as const, labels: [], id: `lang/${l}`, seed: 0 };
    const init = initModule(base, { kind: 'bottleneck', id: ctx.id, config: { ...strategy.defaults.config }, head: { type: 'masked_lm' }, task: 'mlm', seed: 0 });
    const beforeFix = await runPhase(ctx, { modules: [{ manifest: init.manifest, tensors: init.tensors, trainable: true }], trainableBase: [] }, { lr: common.lr, what: 'fresh head' });
    await beforeFix.release();
    rows.push({ lang: l, bare: after.before!.perplexity, before: beforeFix.metrics.perplexity, after: after.metrics.perplexity });
    console.log(`${l}: bare base ${after.before!.perplexity.toFixed(1)}; adapter with a fresh head ${beforeFix.metrics.perplexity.toFixed(1)}; adapter under the base's head ${after.metrics.perplexity.toFixed(1)} (${after.steps} steps)`);
  }
  console.log('\n| language | bare base | before the fix (fresh head) | after (base head, frozen) |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.lang} | ${r.bare.toFixed(1)} | ${r.before.toFixed(1)} | ${r.after.toFixed(1)} |`);
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ rows, pretrain: { steps: pre.steps, perplexity: pre.metrics.perplexity } }, null, 2));
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
