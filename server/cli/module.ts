/**
 * `modhub module init`: writes a fresh, untrained module package (module.json, weights.safetensors, README.md)
 * for a base — the starting point of training, or a placeholder to try compositions end to end.
 * Example: `modhub module init --base ./base --kind bottleneck --preset seq_bn_inv --id lang/de --out ./lang-de`.
 */
import type { Command } from 'commander';
import { writeModulePackage, type ManifestInput } from '../../modules-store';
import { MODULE_KINDS, type ModuleKind } from '../../modules-store/kinds';
import { loadBase } from '../model/base';
import { initModule } from '../model/module-init';
import { registerInteropCommands } from './interop';
import { usage } from './errors';

interface InitFlags {
  base: string;
  kind: string;
  id: string;
  version: string;
  out: string;
  preset?: string;
  reductionFactor?: string;
  r?: string;
  alpha?: string;
  targets?: string;
  adapters?: string;
  head?: string;
  labels?: string;
  language?: string;
  task?: string;
  seed: string;
  json?: boolean;
}

/** Kinds a fresh package can be written for (diffs come from training base parameters). */
const INIT_KINDS = MODULE_KINDS.filter((k): k is Exclude<ModuleKind, 'diff'> => k !== 'diff');

function num(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw usage(`'--${name}' must be a positive number, got '${v}'`);
  return n;
}

export function registerModuleCommands(program: Command): void {
  const mod = program.command('module').description('create module packages');
  mod
    .command('init')
    .description('write an untrained module package for a base (AdapterHub / PEFT initialisation)')
    .requiredOption('--base <dir>', 'base model folder')
    .requiredOption('--kind <kind>', INIT_KINDS.join(' | '))
    .requiredOption('--id <ns/name>', 'module id')
    .requiredOption('--out <dir>', 'output folder')
    .option('--version <semver>', 'module version', '0.1.0')
    .option('--preset <name>', 'bottleneck preset: seq_bn, double_seq_bn, par_bn, seq_bn_inv, double_seq_bn_inv', 'seq_bn')
    .option('--reduction-factor <n>', 'bottleneck reduction factor (preset default otherwise)')
    .option('--r <n>', 'LoRA rank (default 8)')
    .option('--alpha <n>', 'LoRA alpha (default 8)')
    .option('--targets <list>', 'LoRA / IA³ targets, comma-separated: query,key,value,attn_output,ffn_in,ffn_out (default LoRA query,value; IA³ key,value,ffn_in)')
    .option('--adapters <list>', 'fusion: ids of the fused adapters, comma-separated')
    .option('--head <type>', 'classification | token_classification | masked_lm')
    .option('--labels <list>', 'head labels, comma-separated')
    .option('--language <code>', 'language code for the manifest')
    .option('--task <name>', 'task name for the manifest')
    .option('--seed <n>', 'random seed', '0')
    .option('--json', 'print the written manifest and files as JSON')
    .action(async (f: InitFlags) => {
      const kind = INIT_KINDS.find((k) => k === f.kind);
      if (!kind) throw usage(`'--kind' must be one of ${INIT_KINDS.join(', ')}, got '${f.kind}' (diffs come from training)`);
      const base = await loadBase(f.base);
      const config: Record<string, unknown> = {};
      if (kind === 'bottleneck') {
        config.preset = f.preset;
        if (f.reductionFactor) config.reduction_factor = num('reduction-factor', f.reductionFactor);
      } else if (kind === 'lora') {
        if (f.r) config.r = num('r', f.r);
        if (f.alpha) config.lora_alpha = num('alpha', f.alpha);
        if (f.targets) config.target_modules = f.targets.split(',').map((s) => s.trim());
      } else if (kind === 'ia3') {
        if (f.targets) config.target_modules = f.targets.split(',').map((s) => s.trim());
      } else {
        if (!f.adapters) throw usage("'--adapters' is required for a fusion module");
        config.adapters = f.adapters.split(',').map((s) => s.trim());
      }
      const headTypes = ['classification', 'token_classification', 'masked_lm'];
      if (f.head && !headTypes.includes(f.head)) throw usage(`'--head' must be one of ${headTypes.join(', ')}, got '${f.head}'`);
      const labels = f.labels ? f.labels.split(',').map((s) => s.trim()) : undefined;
      const m = initModule(base, {
        kind,
        id: f.id,
        version: f.version,
        config,
        head: f.head ? { type: f.head as 'classification', labels } : undefined,
        language: f.language,
        task: f.task,
        seed: num('seed', String(Number(f.seed) + 1)) - 1,
      });
      const pkg = await writeModulePackage(f.out, m.manifest as ManifestInput, m.tensors);
      if (f.json) {
        process.stdout.write(`${JSON.stringify({ out: f.out, files: [...pkg.files.keys()], tensors: m.tensors.size, manifest: m.manifest }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`wrote ${m.manifest.id}@${m.manifest.version} (${m.manifest.kind}, ${m.tensors.size} tensors) to ${f.out}: ${[...pkg.files.keys()].join(', ')}\n`);
    });
  registerInteropCommands(mod);
}
