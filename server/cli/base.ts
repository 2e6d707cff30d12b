/**
 * `modhub base ...` commands: create a tiny random base (HF layout), import a Hugging Face checkpoint folder, and
 * describe a base folder.
 * Example: `modhub base tiny --out ./base --family roberta --layers 2 --hidden 64 && modhub base info ./base`;
 * `modhub base import ./bert-base-uncased --out ./bases/bert-base` (config.json + model.safetensors or sharded
 * model-0000x-of-0000y.safetensors with model.safetensors.index.json + tokenizer.json).
 */
import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { importBase, loadBase, parameterCount } from '../model/base';
import { FAMILIES, type Family } from '../model/config';
import { createTinyBase } from '../model/tiny';
import * as fs from 'fs';
import { usage } from './errors';

function intOption(name: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw usage(`'--${name}' must be an integer, got '${v}'`);
    return n;
  };
}

/** Adds `base tiny` and `base info` to `program`. */
export function registerBaseCommands(program: Command): void {
  const base = program.command('base').description('create and inspect base models (HF layout folders)');

  base
    .command('tiny')
    .description('write a tiny random base (config.json, model.safetensors, tokenizer.json) for tests and demos')
    .requiredOption('--out <dir>', 'output folder')
    .option('--family <family>', `one of ${FAMILIES.join(', ')}`, 'bert')
    .option('--layers <n>', 'number of layers', intOption('layers'), 2)
    .option('--hidden <n>', 'hidden size', intOption('hidden'), 32)
    .option('--heads <n>', 'attention heads', intOption('heads'), 4)
    .option('--intermediate <n>', 'FFN size (default 4 * hidden)', intOption('intermediate'))
    .option('--vocab-size <n>', 'upper bound on the vocabulary (default: every trained token)', intOption('vocab-size'))
    .option('--max-positions <n>', 'max_position_embeddings', intOption('max-positions'), 128)
    .option('--seed <n>', 'random seed', intOption('seed'), 0)
    .option('--corpus <file>', 'training text for the vocabulary, one sentence per line (default: built-in multilingual sentences)')
    .option('--json', 'print the summary as JSON')
    .action(async (o: { out: string; family: string; layers: number; hidden: number; heads: number; intermediate?: number; vocabSize?: number; maxPositions: number; seed: number; corpus?: string; json?: boolean }) => {
      if (!(FAMILIES as readonly string[]).includes(o.family)) throw usage(`'--family' must be one of ${FAMILIES.join(', ')}, got '${o.family}'`);
      let corpus: string[] | undefined;
      if (o.corpus) {
        corpus = fs.readFileSync(o.corpus, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
        if (corpus.length === 0) throw usage(`'--corpus' file ${o.corpus} has no non-empty lines`);
      }
      const r = await createTinyBase({
        out: o.out,
        family: o.family as Family,
        layers: o.layers,
        hidden: o.hidden,
        heads: o.heads,
        intermediate: o.intermediate,
        vocabSize: o.vocabSize,
        maxPositions: o.maxPositions,
        seed: o.seed,
        corpus,
      });
      const c = r.config;
      if (o.json) {
        const summary = { dir: r.dir, family: c.family, layers: c.numLayers, hidden_size: c.hiddenSize, heads: c.numHeads, intermediate_size: c.intermediateSize, vocab_size: c.vocabSize, parameters: r.parameters };
        process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        return;
      }
      process.stdout.write(`wrote ${c.family} base to ${r.dir}: L=${c.numLayers} D=${c.hiddenSize} H=${c.numHeads} F=${c.intermediateSize} V=${c.vocabSize}, ${r.parameters} parameters\n`);
    });

  base
    .command('import')
    .description('import a Hugging Face checkpoint folder (safetensors, single or sharded; F32/F16/BF16) into a clean F32 (or --dtype f16) base folder')
    .argument('<src>', 'checkpoint folder: config.json, model.safetensors (or model.safetensors.index.json + shards), tokenizer.json')
    .requiredOption('--out <dir>', 'output base folder (new or empty)')
    .option('--force', 'write into a non-empty --out folder, replacing its base files')
    .addOption(new Option('--dtype <dtype>', 'precision of the written weights: f16 halves the folder (rounded once; the fingerprint is the rounded weights\'), e.g. to ship a base').choices(['f32', 'f16']).default('f32'))
    .option('--json', 'print the summary as JSON')
    .action(async (src: string, o: { out: string; force?: boolean; dtype: 'f32' | 'f16'; json?: boolean }) => {
      const bar = process.stderr.isTTY && !o.json ? new cliProgress.SingleBar({ format: 'reading weights [{bar}] {value}/{total} {file}', stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
      let started = false;
      let r;
      try {
        r = await importBase(src, o.out, {
          force: o.force,
          dtype: o.dtype === 'f16' ? 'F16' : 'F32',
          onProgress: (e) => {
            if (!bar) return;
            if (!started) bar.start(e.total, e.done, { file: e.file });
            started = true;
            bar.update(e.done, { file: e.file });
          },
        });
      } finally {
        if (started) bar?.stop();
      }
      const c = r.config;
      const summary = {
        dir: r.dir,
        family: c.family,
        layers: c.numLayers,
        hidden_size: c.hiddenSize,
        heads: c.numHeads,
        intermediate_size: c.intermediateSize,
        vocab_size: c.vocabSize,
        max_positions: c.maxPositions,
        parameters: r.parameters,
        fingerprint: r.fingerprint,
        sources: r.sources,
        source_dtypes: r.dtypes,
        tensors: r.tensors,
        dropped: r.dropped,
        bytes: r.bytes,
        notes: r.notes,
      };
      if (o.json) {
        process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        return;
      }
      const lines = [
        `imported ${c.family} base into ${r.dir}`,
        `  family        ${c.family}`,
        `  dims          L=${c.numLayers} D=${c.hiddenSize} H=${c.numHeads} F=${c.intermediateSize} V=${c.vocabSize} P=${c.maxPositions}`,
        `  parameters    ${r.parameters} (${r.tensors} tensors, F32, ${(r.bytes / 2 ** 20).toFixed(1)} MiB)`,
        `  read          ${r.sources.join(', ')} (${Object.entries(r.dtypes).map(([d, n]) => `${n} ${d}`).join(', ')})`,
        `  fingerprint   ${r.fingerprint}`,
        ...r.notes.map((n) => `  note: ${n}`),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });

  base
    .command('info')
    .description('print family, dimensions, parameter count and fingerprint of a base folder')
    .argument('<dir>', 'base folder (config.json, model.safetensors, tokenizer.json)')
    .option('--json', 'print JSON')
    .action(async (dir: string, o: { json?: boolean }) => {
      const b = await loadBase(dir);
      const c = b.config;
      const info = {
        dir,
        family: c.family,
        layers: c.numLayers,
        hidden_size: c.hiddenSize,
        heads: c.numHeads,
        intermediate_size: c.intermediateSize,
        vocab_size: c.vocabSize,
        tokenizer_vocab_size: b.tokenizer.vocabSize,
        max_positions: c.maxPositions,
        type_vocab_size: c.typeVocabSize,
        hidden_act: c.hiddenAct,
        parameters: parameterCount(b.weights),
        mlm_head: b.weights.has('mlm.dense.weight'),
        pooler: b.weights.has('pooler.dense.weight'),
        fingerprint: b.fingerprint,
      };
      if (o.json) {
        process.stdout.write(JSON.stringify(info, null, 2) + '\n');
        return;
      }
      const width = Math.max(...Object.keys(info).map((k) => k.length));
      for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(width)}  ${String(v)}\n`);
    });
}
