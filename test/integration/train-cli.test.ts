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
  expect(stdout.join('')).toMatch(/trained topic\/words@0\.1\.0 \(lora, \d+ steps, \d+ trainable parameters\); dev: accuracy/);
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

test('--epochs 0.7 --save-base: the summary says which weights were saved, and the base holds exactly those', async () => {
  const { loadBase } = await import('../../server/model/base');
  const { parseSafetensors } = await import('../../modules-store/safetensors');
  const base = await tinyBase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-cli-savebase-'));
  const text = clsData(64, 1).map((e) => e.text).join('\n') + '\n';
  fs.writeFileSync(path.join(dir, 'train.txt'), text);
  fs.writeFileSync(path.join(dir, 'dev.txt'), clsData(16, 2).map((e) => e.text).join('\n') + '\n');
  const stdout: string[] = [];
  const stderr: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (stdout.push(String(s)), true));
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (stderr.push(String(s)), true));
  const args = ['node', 'modhub', 'train', '--method', 'full', '--task', 'mlm', '--base', base.dir, '--data', path.join(dir, 'train.txt'), '--dev', path.join(dir, 'dev.txt'), '--epochs', '0.7', '--eval-every', '2', '--threads', '1', '--lr', '1e-3'];
  try {
    await program().p.parseAsync([...args, '--out', path.join(dir, 'pkg'), '--save-base', path.join(dir, 'base'), '--keep', 'last']);
  } finally {
    spy.mockRestore();
    errSpy.mockRestore();
  }
  const out = stdout.join('');
  expect(out).toMatch(/\(full, 3 steps, \d+ trainable parameters\); dev: perplexity/);
  expect(out).toContain('saved: last step (3)');
  expect(out).toContain(`wrote base ${path.join(dir, 'base')} (the saved weights: last step (3))`);
  expect(out).toMatch(/dev before training: perplexity/);
  // the end of training evaluated (step 3 is not a multiple of --eval-every 2)
  expect(stderr.join('')).toMatch(/step 3: perplexity/);
  const pkg = await readModulePackage(path.join(dir, 'pkg'));
  expect((pkg.manifest as unknown as { training: Record<string, unknown> }).training).toMatchObject({ steps: 3, saved: 'last', saved_step: 3 });
  const deltas = parseSafetensors(pkg.files.get('weights.safetensors')!).tensors;
  const saved = await loadBase(path.join(dir, 'base'));
  const w0 = base.weights.get('layers.0.ffn_in.weight')!.data;
  const w1 = saved.weights.get('layers.0.ffn_in.weight')!.data;
  const d = deltas.get(base.hfNames.get('layers.0.ffn_in.weight')! + '.dense')!.data as Float32Array;
  let maxErr = 0;
  for (let i = 0; i < w0.length; i++) maxErr = Math.max(maxErr, Math.abs(w0[i] + d[i] - w1[i]));
  expect(maxErr).toBeLessThan(1e-6);
  expect(d.some((x) => x !== 0)).toBe(true);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('two-phase methods mark their phases in the progress output', async () => {
  const base = await tinyBase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-cli-phases-'));
  fs.writeFileSync(path.join(dir, 'train.jsonl'), clsData(32, 1).map((e) => JSON.stringify(e)).join('\n') + '\n');
  const stdout: string[] = [];
  const stderr: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (stdout.push(String(s)), true));
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (stderr.push(String(s)), true));
  try {
    await program().p.parseAsync(['node', 'modhub', 'train', '--method', 'lt-sft', '--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'train.jsonl'), '--out', path.join(dir, 'pkg'), '--epochs', '1', '--nnz', '100', '--threads', '1']);
  } finally {
    spy.mockRestore();
    errSpy.mockRestore();
  }
  const err = stderr.join('');
  expect(err).toMatch(/phase 1\/2: lt-sft: dense training of \d+ eligible parameters, then selection of 100\n/);
  expect(err).toMatch(/phase 2\/2: lt-sft: training only the 100 selected parameters/);
  expect(err.indexOf('phase 1/2')).toBeLessThan(err.indexOf('phase 2/2'));
  expect(stdout.join('')).toMatch(/\(lt-sft, 4 steps, \d+ trainable parameters\)/);
  fs.rmSync(dir, { recursive: true, force: true });
});
