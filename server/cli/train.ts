/**
 * `modhub train`: trains a module on a base and writes a module package (module.json, weights.safetensors,
 * README.md) the hub accepts; `--push` publishes it. Shows a progress bar (loss, step/s, tokens/s, ETA) on a
 * terminal and prints the final dev evaluation.
 * Example:
 *   modhub train --method seq_bn --task classification --base ./base --data train.jsonl --dev dev.jsonl \
 *     --id topic/news --out ./topic-news
 */
import * as cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { writeModulePackage, readModulePackage, parseSafetensors } from '../../modules-store';
import { NodeModhubClient as ModhubClient } from '../../client-sdk/node';
import { hubSettings } from './config';
import { loadBase } from '../model/base';
import { readTextClassification, readTokenTagging, readPlainText } from '../train/data';
import { saveTrainedBase } from '../train/save-base';
import { train, METHODS, METHOD_DEFAULTS, TASKS, type Method, type Task, type Progress } from '../train/trainer';

interface TrainFlags {
  method: Method;
  task: Task;
  base: string;
  data: string;
  dev?: string;
  out: string;
  id?: string;
  version: string;
  language?: string;
  stackOn?: string[];
  fuse?: string[];
  epochs: string;
  batchSize: string;
  gradAccum: string;
  lr?: string;
  weightDecay: string;
  warmupRatio: string;
  maxGradNorm: string;
  maxLength: string;
  seed: string;
  evalEvery?: string;
  patience?: string;
  reductionFactor?: string;
  r?: string;
  alpha?: string;
  targets?: string;
  density?: string;
  nnz?: string;
  checkpoint?: string;
  threads?: string;
  push?: string;
  saveBase?: string;
  token?: string;
  json?: boolean;
  format?: string;
}

function num(name: string, v: string, integer = false): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) throw new RangeError(`'--${name}' must be a non-negative ${integer ? 'integer' : 'number'}, got '${v}'`);
  return n;
}

function methodHelp(): string {
  return METHODS.map((m) => `  ${m.padEnd(14)} lr ${String(METHOD_DEFAULTS[m].lr).padEnd(6)} ${METHOD_DEFAULTS[m].what}`).join('\n');
}

/** Adds `modhub train` to `program`. */
export function registerTrainCommands(program: Command): void {
  program
    .command('train')
    .description('train a module (adapter, LoRA, sparse diff, full fine-tune) and write a module package')
    .addOption(new Option('--method <method>', 'training method').choices([...METHODS]).makeOptionMandatory())
    .addOption(new Option('--task <task>', 'objective').choices([...TASKS]).makeOptionMandatory())
    .requiredOption('--base <dir>', 'base model folder')
    .requiredOption('--data <file>', 'training data: JSONL/CSV/TSV (text[,text_pair],label), CoNLL/JSONL (tokens), plain text (mlm)')
    .option('--format <format>', 'format of --data and --dev when the extension does not tell: jsonl, csv, tsv (classification); conll, jsonl (token_classification)')
    .option('--dev <file>', 'dev data (same format) for periodic evaluation and best-checkpoint selection')
    .requiredOption('--out <dir>', 'output module package folder')
    .option('--id <ns/name>', 'module id (default local/<method>-<task>)')
    .option('--version <semver>', 'module version', '0.1.0')
    .option('--language <code>', 'language code (MAD-X language adapters)')
    .option('--stack-on <dirs...>', 'frozen adapter packages stacked below (MAD-X: the language adapter)')
    .option('--fuse <dirs...>', 'fusion: the adapter packages to fuse, in order')
    .option('--epochs <n>', 'epochs', '3')
    .option('--batch-size <n>', 'batch size', '16')
    .option('--grad-accum <n>', 'gradient accumulation steps', '1')
    .option('--lr <x>', 'peak learning rate (default per method, see below)')
    .option('--weight-decay <x>', 'AdamW decoupled weight decay (not on biases / LayerNorms)', '0.01')
    .option('--warmup-ratio <x>', 'linear warmup fraction, then linear decay', '0.06')
    .option('--max-grad-norm <x>', 'global-norm gradient clipping (0 = off)', '1.0')
    .option('--max-length <n>', 'maximum tokens per example', '128')
    .option('--seed <n>', 'random seed (runs are reproducible)', '0')
    .option('--eval-every <n>', 'evaluate every n optimiser steps (default: each epoch)')
    .option('--patience <n>', 'early stopping after n evaluations without improvement')
    .option('--reduction-factor <n>', 'adapters: hidden / bottleneck size (preset default)')
    .option('--r <n>', 'LoRA rank (8)')
    .option('--alpha <n>', 'LoRA alpha (8)')
    .option('--targets <list>', 'LoRA targets: query,key,value,attn_output,ffn_in,ffn_out (query,value)')
    .option('--density <x>', 'diff-pruning / lt-sft: fraction of base parameters kept (0.005 / 0.01)')
    .option('--nnz <n>', 'diff-pruning / lt-sft: exact number of parameters kept')
    .option('--checkpoint <dir>', 'resumable checkpoints (resumes when the folder holds one)')
    .option('--threads <n>', 'onnxruntime threads (default: all cores)')
    .option('--push <hub>', 'publish the package to this hub URL when done')
    .option('--save-base <dir>', "method 'full': also write θ₀ + δ as a new base folder (MLM pretraining of a base)")
    .addOption(new Option('--token <token>', 'hub token for --push').env('MODHUB_TOKEN'))
    .option('--json', 'print the result (id, version, steps, dev metrics, files written, publish answer) as JSON')
    .addHelpText('after', `\nMethods and their default learning rates:\n${methodHelp()}\n\nTasks: classification (accuracy, macro-F1), token_classification (token F1), mlm (perplexity).`)
    .action(async (f: TrainFlags) => {
      const base = await loadBase(f.base);
      let labels: string[] | undefined;
      let trainSet: Parameters<typeof train>[0]['train'];
      let dev: Parameters<typeof train>[0]['train'] | undefined;
      // The readers name their option 'format'; the user typed '--format'.
      const flagTerms = (e: unknown): never => {
        if (e instanceof RangeError) throw new RangeError(e.message.replace(/'format'/g, "'--format'"));
        throw e;
      };
      if (f.format !== undefined && f.task === 'mlm') throw new RangeError("'--format' applies to classification and token_classification data; mlm reads plain text");
      if (f.task === 'classification') {
        const format = f.format as 'jsonl' | 'csv' | 'tsv' | undefined;
        const d = await readTextClassification(f.data, { format }).catch(flagTerms);
        labels = d.labels.labels;
        trainSet = d.examples;
        if (f.dev) dev = (await readTextClassification(f.dev, { labels, format }).catch(flagTerms)).examples;
      } else if (f.task === 'token_classification') {
        const format = f.format as 'conll' | 'jsonl' | undefined;
        const d = await readTokenTagging(f.data, { format }).catch(flagTerms);
        labels = d.labels.labels;
        trainSet = d.sentences;
        if (f.dev) dev = (await readTokenTagging(f.dev, { labels, format }).catch(flagTerms)).sentences;
      } else {
        trainSet = await readPlainText(f.data);
        if (f.dev) dev = await readPlainText(f.dev);
      }
      const config: Record<string, unknown> = {};
      if (f.reductionFactor) config.reduction_factor = num('reduction-factor', f.reductionFactor);
      if (f.r) config.r = num('r', f.r, true);
      if (f.alpha) config.lora_alpha = num('alpha', f.alpha);
      if (f.targets) config.target_modules = f.targets.split(',').map((s) => s.trim());
      const stackOn = [];
      for (const dir of f.stackOn ?? []) {
        const pkg = await readModulePackage(dir);
        stackOn.push({ manifest: pkg.manifest, tensors: parseSafetensors(pkg.files.get('weights.safetensors')!).tensors });
      }

      const fuse = [];
      for (const dir of f.fuse ?? []) {
        const pkg = await readModulePackage(dir);
        fuse.push({ manifest: pkg.manifest, tensors: parseSafetensors(pkg.files.get('weights.safetensors')!).tensors });
      }
      const tty = process.stderr.isTTY;
      const bar = tty
        ? new cliProgress.SingleBar({ format: ' train [{bar}] {value}/{total} steps | loss {loss} | {sps} step/s | {tps} tok/s | ETA {eta_formatted}', stream: process.stderr }, cliProgress.Presets.shades_classic)
        : null;
      let started = false;
      const onProgress = (p: Progress) => {
        const s = p.elapsedMs / 1000;
        const payload = { loss: p.loss.toFixed(4), sps: (p.step / s).toFixed(2), tps: Math.round(p.tokens / s) };
        if (bar) {
          if (!started) {
            bar.start(p.totalSteps, 0, payload);
            started = true;
          }
          bar.update(p.step, payload);
        }
        if (p.eval) {
          const line = `step ${p.step}: ${Object.entries(p.eval).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`;
          process.stderr.write(bar ? `\n${line}\n` : `${line}\n`);
        } else if (!bar && p.step % 50 === 0) process.stderr.write(`step ${p.step}/${p.totalSteps} loss ${payload.loss} ${payload.sps} step/s ${payload.tps} tok/s\n`);
      };
      const res = await train({
        base,
        method: f.method,
        task: f.task,
        train: trainSet,
        dev,
        labels,
        config,
        stackOn,
        fuse,
        id: f.id,
        version: f.version,
        language: f.language,
        epochs: num('epochs', f.epochs),
        batchSize: num('batch-size', f.batchSize, true),
        gradAccum: num('grad-accum', f.gradAccum, true),
        lr: f.lr !== undefined ? num('lr', f.lr) : undefined,
        weightDecay: num('weight-decay', f.weightDecay),
        warmupRatio: num('warmup-ratio', f.warmupRatio),
        maxGradNorm: num('max-grad-norm', f.maxGradNorm),
        maxLength: num('max-length', f.maxLength, true),
        seed: num('seed', f.seed, true),
        evalEvery: f.evalEvery ? num('eval-every', f.evalEvery, true) : undefined,
        patience: f.patience ? num('patience', f.patience, true) : undefined,
        density: f.density ? num('density', f.density) : undefined,
        nnz: f.nnz ? num('nnz', f.nnz, true) : undefined,
        checkpointDir: f.checkpoint,
        threads: f.threads ? num('threads', f.threads, true) : undefined,
        onProgress,
      });
      bar?.stop();
      await res.release();
      await writeModulePackage(f.out, res.manifest, res.tensors);
      if (f.saveBase) {
        if (f.method !== 'full') throw new RangeError("'--save-base' needs '--method full'");
        saveTrainedBase(base, res.tensors, f.saveBase);
        if (!f.json) process.stdout.write(`wrote base ${f.saveBase}\n`);
      }
      const m = Object.entries(res.metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ');
      if (!f.json) process.stdout.write(`trained ${res.manifest.id}@${res.manifest.version} (${f.method}, ${res.steps} steps)${m ? `; dev: ${m}` : ''}\nwrote ${f.out}\n`);
      let published: unknown = null;
      if (f.push) {
        const s = hubSettings({ hub: f.push, token: f.token });
        const r = await new ModhubClient({ baseUrl: s.hub, token: s.token }).publish(f.out, {});
        published = r;
        if (!f.json) process.stdout.write(`published ${r.id}@${r.version} to ${s.hub}\n`);
      }
      if (f.json) {
        const result = { id: res.manifest.id, version: res.manifest.version, method: f.method, steps: res.steps, metrics: res.metrics, out: f.out, base_out: f.saveBase ?? null, published };
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      }
    });
}
