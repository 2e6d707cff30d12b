/**
 * `modhub module import` and `modhub module export` in-process: an AdapterHub folder (pytorch_adapter.bin) and a
 * composable-sft folder become modhub packages for a tiny base; export writes the AdapterHub / PEFT files; a
 * re-import of the export gives the same weights; bad flags and unexpressible modules fail with a code.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readModulePackage } from '../../modules-store';
import { resolveBottleneckConfig } from '../../modules-store/kinds/bottleneck';
import { registerModuleCommands } from '../../server/cli/module';
import { loadBase } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { runCommand } from '../helpers/cli';
import { adapterHubFolder, sftFolder } from '../helpers/foreign';
import { makeAdapterModule, makeDiffModule, type BaseInfo } from '../helpers/modules';

let dir: string;
let baseDir: string;
let info: BaseInfo;

async function writeFolder(p: string, files: Map<string, Buffer>): Promise<void> {
  await fsp.mkdir(p, { recursive: true });
  for (const [n, b] of files) await fsp.writeFile(path.join(p, n), b);
}

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-interop-cli-'));
  baseDir = path.join(dir, 'base');
  await createTinyBase({ out: baseDir, family: 'distilbert', layers: 2, hidden: 16, heads: 2, intermediate: 24, seed: 3, maxPositions: 32 });
  const b = await loadBase(baseDir);
  info = { family: 'distilbert', fingerprint: b.fingerprint, hidden_size: 16, num_layers: 2, vocab_size: b.config.vocabSize, intermediate_size: 24 };
}, 60_000);
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('modhub module import / export', () => {
  it('imports an AdapterHub folder, exports it as AdapterHub and re-imports the same weights', async () => {
    const native = makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 4 }, seed: 5 });
    const rc = resolveBottleneckConfig(native.manifest.config as never);
    await writeFolder(path.join(dir, 'ah'), adapterHubFolder(native, 'distilbert', { name: 'de', bin: true, config: { architecture: 'bottleneck', ...rc } }));
    const out = await runCommand(registerModuleCommands, ['module', 'import', path.join(dir, 'ah'), '--id', 'lang/de', '--version', '1.0.0', '--base', baseDir, '--out', path.join(dir, 'pkg'), '--language', 'de']);
    expect(out).toMatch(/imported adapterhub folder as lang\/de@1\.0\.0 \(bottleneck\)/);
    const pkg = await readModulePackage(path.join(dir, 'pkg'));
    expect(pkg.manifest).toMatchObject({ kind: 'bottleneck', language: 'de', base: { family: 'distilbert', fingerprint: info.fingerprint } });
    const ex = await runCommand(registerModuleCommands, ['module', 'export', path.join(dir, 'pkg'), '--format', 'adapterhub', '--out', path.join(dir, 'ah-out')]);
    expect(ex).toMatch(/adapter_config\.json, adapter\.safetensors/);
    // AdapterHub's Adapter accepts only a float scaling (isinstance(scaling, float)): 1.0, never 1
    expect(await fsp.readFile(path.join(dir, 'ah-out', 'adapter_config.json'), 'utf8')).toMatch(/"scaling": 1\.0,\n/);
    await runCommand(registerModuleCommands, ['module', 'import', path.join(dir, 'ah-out'), '--id', 'lang/de', '--version', '1.0.0', '--base', baseDir, '--out', path.join(dir, 'pkg2')]);
    const again = await readModulePackage(path.join(dir, 'pkg2'));
    expect(again.files.get('weights.safetensors')!.equals(pkg.files.get('weights.safetensors')!)).toBe(true);
  });

  it('imports a composable-sft folder as a diff module', async () => {
    const shapes = new Map([['distilbert.transformer.layer.0.ffn.lin2.weight', [16, 24]]]);
    const diff = makeDiffModule({ id: 'sft/de', base: info, targets: [{ name: 'distilbert.transformer.layer.0.ffn.lin2.weight', shape: [16, 24] }], density: 0.1, seed: 6 });
    await writeFolder(path.join(dir, 'sft'), sftFolder(diff, shapes));
    await runCommand(registerModuleCommands, ['module', 'import', path.join(dir, 'sft'), '--id', 'sft/de', '--version', '0.1.0', '--base', baseDir, '--out', path.join(dir, 'sft-pkg')]);
    const pkg = await readModulePackage(path.join(dir, 'sft-pkg'));
    expect(pkg.manifest).toMatchObject({ kind: 'diff', config: { method: 'lt-sft' } });
  });

  it('refuses bad flags and modules without the asked form', async () => {
    await expect(runCommand(registerModuleCommands, ['module', 'export', path.join(dir, 'pkg'), '--format', 'onnx', '--out', path.join(dir, 'x')])).rejects.toThrow(/INVALID_ARGUMENT: '--format' must be one of adapterhub, peft, got 'onnx'/);
    await expect(runCommand(registerModuleCommands, ['module', 'export', path.join(dir, 'pkg'), '--format', 'peft', '--out', path.join(dir, 'x')])).rejects.toThrow(/INVALID_ARGUMENT: lang\/de: kind 'bottleneck' has no PEFT form/);
    await expect(runCommand(registerModuleCommands, ['module', 'import', path.join(dir, 'nope'), '--id', 'a/b', '--version', '1.0.0', '--base', baseDir])).rejects.toThrow(/does not exist/);
    await expect(runCommand(registerModuleCommands, ['module', 'import', baseDir, '--id', 'a/b', '--version', '1.0.0', '--base', baseDir])).rejects.toThrow(/INVALID_PACKAGE: no known format/);
  });
});
