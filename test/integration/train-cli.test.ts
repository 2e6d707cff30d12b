/**
 * `modhub train` end to end through commander: --help lists methods with defaults; a run on a JSONL file writes a
 * valid module package with dev metrics in its manifest.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { registerTrainCommands } from '../../server/cli/train';
import { readModulePackage } from '../../modules-store/package';
import { tinyBase, clsData } from '../helpers/train-fixtures';

function program(): { p: Command; out: string[] } {
  const out: string[] = [];
  const p = new Command().exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => out.push(s) });
  registerTrainCommands(p);
  return { p, out };
}

test('--help lists methods and defaults', async () => {
  const { p, out } = program();
  await expect(p.parseAsync(['node', 'modhub', 'train', '--help'])).rejects.toThrow();
  const text = out.join('');
  for (const m of ['seq_bn', 'double_seq_bn', 'lora', 'bitfit', 'diff-pruning', 'lt-sft', 'full', '--grad-accum']) expect(text).toContain(m);
  expect(text).toMatch(/lora\s+lr 0\.0005/);
});

test('train a LoRA classifier from JSONL and write a package', async () => {
  const base = await tinyBase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-cli-train-'));
  const write = (f: string, n: number, seed: number) => fs.writeFileSync(path.join(dir, f), clsData(n, seed).map((e) => JSON.stringify(e)).join('\n') + '\n');
  write('train.jsonl', 64, 1);
  write('dev.jsonl', 16, 2);
  const { p } = program();
  const stdout: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (stdout.push(String(s)), true));
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await p.parseAsync(['node', 'modhub', 'train', '--method', 'lora', '--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'train.jsonl'), '--dev', path.join(dir, 'dev.jsonl'), '--out', path.join(dir, 'pkg'), '--id', 'topic/words', '--epochs', '1', '--threads', '1', '--lr', '1e-2']);
  } finally {
    spy.mockRestore();
    errSpy.mockRestore();
  }
  expect(stdout.join('')).toMatch(/trained topic\/words@0\.1\.0 \(lora, \d+ steps\); dev: accuracy/);
  const pkg = await readModulePackage(path.join(dir, 'pkg'));
  expect(pkg.manifest.kind).toBe('lora');
  expect(pkg.manifest.labels).toEqual(['animal', 'food', 'place']);
  expect(pkg.manifest.metrics).toHaveProperty('accuracy');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('flags that cannot apply to the method are errors before anything loads', async () => {
  const run = (extra: string[]) => program().p.parseAsync(['node', 'modhub', 'train', '--task', 'classification', '--base', '/nonexistent', '--data', '/nonexistent', '--out', '/tmp/x', ...extra]);
  await expect(run(['--method', 'seq_bn', '--r', '4'])).rejects.toThrow(/'--r' applies to --method lora, not 'seq_bn'/);
  await expect(run(['--method', 'lora', '--reduction-factor', '4'])).rejects.toThrow(/'--reduction-factor' applies to --method seq_bn/);
  await expect(run(['--method', 'lora', '--save-base', '/tmp/b'])).rejects.toThrow(/'--save-base' applies to --method full/);
  await expect(run(['--method', 'lora', '--fuse', '/tmp/a'])).rejects.toThrow(/'--fuse' applies to --method fusion/);
  await expect(run(['--method', 'lora', '--patience', '2'])).rejects.toThrow(/'--patience' needs '--dev'/);
  await expect(run(['--method', 'lt-sft', '--nnz', '2', '--density', '0.1'])).rejects.toThrow(/not both/);
});
