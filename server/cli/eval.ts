/**
 * `modhub eval`: evaluates a composition of modules on a labelled file with a local base — accuracy and
 * macro-F1 (classification), token F1 (token_classification), perplexity (mlm) — with modules from local
 * package folders (`--module`) and/or pulled from a hub (`--hub`). Batches and MLM masks are the trainer's, so
 * the figure for a trained module equals the dev metric its training printed.
 * Example:
 *   modhub eval --task classification --base ./base --data test.jsonl --module ./sft-de ./topic --compose '{"stack": ["sft/de", "task/topic"]}'
 *   modhub eval --task mlm --base ./base --data de.txt --hub http://127.0.0.1:8080 --compose lang/de --json
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Option, type Command } from 'commander';
import { NodeModhubClient as ModhubClient } from '../../client-sdk/node';
import { readModulePackage } from '../../modules-store';
import type { Manifest } from '../../modules-store/manifest';
import { loadBase } from '../model/base';
import { Engine, type ModuleResolver } from '../runtime/engine';
import { readPlainText, readTextClassification, readTokenTagging } from '../train/data';
import { evaluateComposition } from '../train/engine-eval';
import { TASKS, type Example, type Task } from '../train/types';

interface EvalFlags {
  task: Task;
  base: string;
  data: string;
  module?: string[];
  compose?: string;
  hub?: string;
  token?: string;
  batchSize: string;
  maxLength: string;
  seed: string;
  mlmProbability: string;
  threads?: string;
  json?: boolean;
}

type Pkg = { manifest: Manifest; readFile(name: string): Promise<Buffer> };

function num(name: string, v: string, integer = false): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) throw new RangeError(`'--${name}' must be a non-negative ${integer ? 'integer' : 'number'}, got '${v}'`);
  return n;
}

/** A composition given as JSON, or as a plain module ref. */
function parseCompose(s: string): unknown {
  const t = s.trim();
  if (!t.startsWith('{') && !t.startsWith('"')) return t;
  try {
    return JSON.parse(t);
  } catch (e) {
    throw new TypeError(`'--compose' is not valid JSON: ${(e as Error).message}`);
  }
}

/** Local folders answer refs by `id`, `id@version` or their folder path; anything else is pulled from the hub. */
async function resolver(dirs: string[], hub: ModhubClient | null): Promise<{ resolver: ModuleResolver; local: Pkg[]; cleanup: () => void }> {
  const local: Pkg[] = [];
  const byRef = new Map<string, Pkg>();
  for (const dir of dirs) {
    const pkg = await readModulePackage(dir);
    const p: Pkg = { manifest: pkg.manifest, readFile: async (name) => pkg.files.get(name) ?? Promise.reject(new RangeError(`module folder '${dir}' has no '${name}'`)) };
    local.push(p);
    for (const ref of [pkg.manifest.id, `${pkg.manifest.id}@${pkg.manifest.version}`, dir, path.resolve(dir)]) byRef.set(ref, p);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-eval-'));
  let pulled = 0;
  return {
    local,
    cleanup: () => fs.rmSync(tmp, { recursive: true, force: true }),
    resolver: {
      async resolve(ref) {
        const hit = byRef.get(ref);
        if (hit) return hit;
        if (!hub) throw new RangeError(`module '${ref}' is not among the --module folders (${dirs.length ? dirs.join(', ') : 'none given'}); give its folder or --hub to pull it`);
        const out = path.join(tmp, String(pulled++));
        await hub.pull(ref, out);
        const pkg = await readModulePackage(out);
        const p: Pkg = { manifest: pkg.manifest, readFile: async (name) => pkg.files.get(name)! };
        byRef.set(ref, p);
        return p;
      },
    },
  };
}

async function readData(task: Task, file: string): Promise<Example[]> {
  if (task === 'classification') return (await readTextClassification(file)).examples;
  if (task === 'token_classification') return (await readTokenTagging(file)).sentences;
  return readPlainText(file);
}

/** Adds `modhub eval` to `program`. */
export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate a composition of modules on a labelled file (accuracy, macro-F1, token F1, perplexity)')
    .addOption(new Option('--task <task>', 'what the data holds and which metrics').choices([...TASKS]).makeOptionMandatory())
    .requiredOption('--base <dir>', 'base model folder')
    .requiredOption('--data <file>', 'labelled data: JSONL/CSV/TSV (classification), CoNLL/JSONL (token_classification), plain text (mlm)')
    .option('--module <dirs...>', 'local module package folders (refs: their id, id@version or folder)')
    .option('--compose <composition>', 'a module ref or a JSON composition (default: the --module folders stacked in order; none: the bare base)')
    .addOption(new Option('--hub <url>', 'pull modules the --module folders do not hold from this hub').env('MODHUB_HUB'))
    .addOption(new Option('--token <token>', 'hub token').env('MODHUB_TOKEN'))
    .option('--batch-size <n>', 'batch size (with --seed it decides the MLM masks, as in training)', '16')
    .option('--max-length <n>', 'maximum tokens per example', '128')
    .option('--seed <n>', 'seed of the MLM masks (the trainer\'s dev evaluation uses the training seed)', '0')
    .option('--mlm-probability <p>', 'masked-LM masking probability', '0.15')
    .option('--threads <n>', 'onnxruntime threads (default: all cores)')
    .option('--json', 'print the result as JSON')
    .action(async (f: EvalFlags) => {
      const dirs = f.module ?? [];
      const examples = await readData(f.task, f.data);
      const base = await loadBase(f.base);
      const hub = f.hub ? new ModhubClient({ baseUrl: f.hub, token: f.token }) : null;
      const r = await resolver(dirs, hub);
      const composition = f.compose ? parseCompose(f.compose) : r.local.length ? { stack: r.local.map((p) => `${p.manifest.id}@${p.manifest.version}`) } : null;
      const engine = await Engine.create({ base, resolver: r.resolver, threads: f.threads ? num('threads', f.threads, true) : undefined });
      try {
        const res = await evaluateComposition({
          engine,
          composition,
          task: f.task,
          examples,
          batchSize: num('batch-size', f.batchSize, true) || 16,
          maxLength: num('max-length', f.maxLength, true),
          seed: num('seed', f.seed, true),
          mlmProbability: num('mlm-probability', f.mlmProbability),
        });
        if (f.json) {
          process.stdout.write(`${JSON.stringify({ task: f.task, data: f.data, composition, ...res }, null, 2)}\n`);
          return;
        }
        const m = Object.entries(res.metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(', ');
        process.stdout.write(`${res.modules.length ? res.modules.join(' + ') : 'base'} on ${res.examples} examples (${f.task}): ${m}\n`);
      } finally {
        await engine.close();
        r.cleanup();
      }
    });
}
