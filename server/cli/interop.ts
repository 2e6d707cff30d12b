/**
 * `modhub module import` / `modhub module export`: AdapterHub, PEFT and composable-sft folders in, AdapterHub and
 * PEFT folders out (modules-store/interop). Import needs the base the module was trained on (for its fingerprint
 * and dimensions); export reads a local package folder / archive, or pulls `ns/name[@version]` from a hub.
 * Example: `modhub module import ./my-adapterhub-adapter --id task/sst2 --version 1.0.0 --base ./bases/bert-base`;
 *          `modhub module export task/sst2@1.0.0 --format peft --out ./sst2-peft --hub http://127.0.0.1:8080`.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { clientOf } from './hub-options';
import { DEFAULT_PACKAGE_LIMITS, parseSafetensors, readModulePackage, unpackArchive, validatePackage, WEIGHTS_FILE, type ModulePackage } from '../../modules-store';
import { convertForeign, detectFormat, EXPORT_FORMATS, exportModule, FOREIGN_FILES, isExportFormat } from '../../modules-store/interop';
import { loadBase } from '../model/base';
import { usage } from './errors';

/** A foreign folder's files (the names the readers know), or the entries of a tar / tar.gz of it. */
async function foreignFiles(p: string): Promise<Map<string, Buffer>> {
  const st = await fsp.stat(p).catch(() => null);
  if (!st) throw usage(`'${p}' does not exist`);
  if (!st.isDirectory()) {
    const l = DEFAULT_PACKAGE_LIMITS;
    return unpackArchive(await fsp.readFile(p), { maxFileBytes: l.maxWeightsBytes, maxTotalBytes: 2 * l.maxWeightsBytes });
  }
  const files = new Map<string, Buffer>();
  for (const name of FOREIGN_FILES) {
    const f = path.join(p, name);
    const fst = await fsp.lstat(f).catch(() => null);
    if (fst?.isFile()) files.set(name, await fsp.readFile(f));
  }
  return files;
}

async function packageOf(ref: string, o: { hub?: string; token?: string }): Promise<ModulePackage> {
  if (await fsp.stat(ref).catch(() => null)) return readModulePackage(ref);
  // The hub and token as every hub command finds them (flag > env > `modhub login`).
  const bytes = await clientOf(o).downloadArchive(ref);
  return validatePackage(await unpackArchive(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { maxFileBytes: 1 << 30, maxTotalBytes: 1 << 31 }));
}

/** Adds `import` and `export` to the `module` command group. */
export function registerInteropCommands(mod: Command): void {
  mod
    .command('import')
    .description('convert an AdapterHub (adapter, head, AdapterFusion), PEFT or composable-sft folder (or .tar / .tar.gz) into a modhub package')
    .argument('<path>', 'foreign folder or archive')
    .requiredOption('--id <ns/name>', 'module id')
    .requiredOption('--version <semver>', 'module version')
    .requiredOption('--base <dir>', 'the base model folder the adapter was trained on')
    .option('--out <dir>', 'output folder (default: ./<name>-<version>)')
    .option('--task <name>', 'task name (default: from the head)')
    .option('--language <code>', 'language code')
    .option('--adapters <ids>', 'AdapterFusion: module ids of the fused adapters, comma-separated, in the file\'s order (default <namespace>/<name>)')
    .action(async (p: string, f: { id: string; version: string; base: string; out?: string; task?: string; language?: string; adapters?: string }) => {
      const files = await foreignFiles(p);
      const format = detectFormat(files);
      const base = await loadBase(f.base);
      const c = base.config;
      const pkg = convertForeign(files, {
        id: f.id,
        version: f.version,
        task: f.task,
        language: f.language,
        adapters: f.adapters?.split(',').map((x) => x.trim()),
        base: { family: c.family, fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize },
      });
      const out = f.out ?? `./${f.id.split('/')[1]}-${f.version}`;
      await fsp.mkdir(out, { recursive: true });
      for (const [name, bytes] of pkg.files) await fsp.writeFile(path.join(out, name), bytes);
      process.stdout.write(`imported ${format} folder as ${pkg.manifest.id}@${pkg.manifest.version} (${pkg.manifest.kind}${pkg.manifest.head ? ` + ${pkg.manifest.head.type} head` : ''}) into ${out}\n`);
    });

  mod
    .command('export')
    .description('write a module as an AdapterHub or PEFT folder (the files adapters.load_adapter / peft.PeftModel.from_pretrained read)')
    .argument('<ref>', 'package folder / archive, or ns/name[@version] on the hub')
    .requiredOption('--format <format>', EXPORT_FORMATS.join(' | '))
    .requiredOption('--out <dir>', 'output folder')
    .addOption(new Option('--hub <url>', 'hub URL (when <ref> is a module id)').env('MODHUB_HUB'))
    .addOption(new Option('--token <token>', 'bearer token').env('MODHUB_TOKEN'))
    .action(async (ref: string, f: { format: string; out: string; hub?: string; token?: string }) => {
      if (!isExportFormat(f.format)) throw usage(`'--format' must be one of ${EXPORT_FORMATS.join(', ')}, got '${f.format}'`);
      const pkg = await packageOf(ref, f);
      const files = exportModule(pkg.manifest, parseSafetensors(pkg.files.get(WEIGHTS_FILE)!).tensors, f.format);
      await fsp.mkdir(f.out, { recursive: true });
      for (const [name, bytes] of files) await fsp.writeFile(path.join(f.out, name), bytes);
      process.stdout.write(`exported ${pkg.manifest.id}@${pkg.manifest.version} as ${f.format} into ${f.out}: ${[...files.keys()].join(', ')}\n`);
    });
}
