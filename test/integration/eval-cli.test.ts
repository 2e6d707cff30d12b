/**
 * `modhub eval` in-process: a trained module evaluated from its package folder gives the dev metric its training
 * reported (accuracy / macro-F1, token F1, perplexity — same batches and MLM masks); a composition pulled from a
 * hub gives the same figure; `--json`; clear errors for a head that does not fit the task.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import client from 'prom-client';
import { NodeModhubClient as ModhubClient } from '../../client-sdk/node';
import { writeModulePackage } from '../../modules-store/package';
import { registerEvalCommand } from '../../server/cli/eval';
import { registerAuthCommands } from '../../server/cli/auth';
import { createHubServer } from '../../server/http/app';
import { train, type TrainResult } from '../../server/train/trainer';
import { runCommand } from '../helpers/cli';
import { clsData, mlmData, pretrainedTinyBase, tokData } from '../helpers/train-fixtures';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-eval-'));
const evalCli = (...args: string[]) => runCommand(registerEvalCommand, ['eval', ...args]);
const jsonl = (file: string, rows: unknown[]) => fs.writeFileSync(path.join(dir, file), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let cls: TrainResult;
beforeAll(async () => {
  const base = await pretrainedTinyBase();
  const dev = clsData(40, 2);
  jsonl('cls-dev.jsonl', dev);
  cls = await train({ base, method: 'seq_bn', task: 'classification', train: clsData(96, 1), dev, maxSteps: 2, evalEvery: 2, batchSize: 16, lr: 1e-3, seed: 0, threads: 1, id: 'task/topic' });
  await cls.release();
  await writeModulePackage(path.join(dir, 'topic'), cls.manifest, cls.tensors);
});

test('classification: eval of the package = the trainer\'s dev accuracy and macro-F1; --json', async () => {
  const base = await pretrainedTinyBase();
  const out = await evalCli('--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'cls-dev.jsonl'), '--module', path.join(dir, 'topic'), '--threads', '1');
  expect(out).toMatch(/^task\/topic@0\.1\.0 on 40 examples \(classification\): accuracy [\d.]+, macro_f1 [\d.]+\n$/);
  const j = JSON.parse(await evalCli('--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'cls-dev.jsonl'), '--module', path.join(dir, 'topic'), '--compose', 'task/topic', '--json'));
  console.log(`eval: accuracy ${j.metrics.accuracy}, macro_f1 ${j.metrics.macro_f1}; trainer dev: ${JSON.stringify(cls.metrics)}`);
  expect(j.metrics.accuracy).toBeCloseTo(cls.metrics.accuracy, 10);
  expect(j.metrics.macro_f1).toBeCloseTo(cls.metrics.macro_f1, 10);
  expect(j.modules).toEqual(['task/topic@0.1.0']);
  expect(j.examples).toBe(40);
});

test('token classification and perplexity equal the trainer\'s dev figures', async () => {
  const base = await pretrainedTinyBase();
  const tdev = tokData(40, 2);
  jsonl('tok-dev.jsonl', tdev);
  const tok = await train({ base, method: 'lora', task: 'token_classification', train: tokData(96, 1), dev: tdev, epochs: 2, batchSize: 16, lr: 1e-2, seed: 0, threads: 1, id: 'task/tags' });
  await tok.release();
  await writeModulePackage(path.join(dir, 'tags'), tok.manifest, tok.tensors);
  const t = JSON.parse(await evalCli('--task', 'token_classification', '--base', base.dir, '--data', path.join(dir, 'tok-dev.jsonl'), '--module', path.join(dir, 'tags'), '--json'));
  console.log(`eval token F1 ${t.metrics.f1}; trainer dev ${tok.metrics.f1}`);
  expect(t.metrics.f1).toBeCloseTo(tok.metrics.f1, 10);

  const mdev = mlmData(48, 2);
  fs.writeFileSync(path.join(dir, 'lang-dev.txt'), mdev.map((e) => e.text).join('\n') + '\n');
  const lang = await train({ base, method: 'seq_bn_inv', task: 'mlm', train: mlmData(96, 1), dev: mdev, epochs: 1, batchSize: 16, lr: 2e-3, seed: 0, threads: 1, id: 'lang/xx' });
  await lang.release();
  await writeModulePackage(path.join(dir, 'lang'), lang.manifest, lang.tensors);
  const m = JSON.parse(await evalCli('--task', 'mlm', '--base', base.dir, '--data', path.join(dir, 'lang-dev.txt'), '--module', path.join(dir, 'lang'), '--json'));
  const bare = JSON.parse(await evalCli('--task', 'mlm', '--base', base.dir, '--data', path.join(dir, 'lang-dev.txt'), '--json'));
  console.log(`eval perplexity: bare base ${bare.metrics.perplexity.toFixed(4)} (trainer before: ${lang.before!.perplexity.toFixed(4)}), language adapter ${m.metrics.perplexity.toFixed(4)} (trainer: ${lang.metrics.perplexity.toFixed(4)})`);
  expect(Math.abs(m.metrics.perplexity / lang.metrics.perplexity - 1)).toBeLessThan(1e-4);
  // the untrained adapter the trainer started from is close to, not exactly, the identity
  expect(Math.abs(bare.metrics.perplexity / lang.before!.perplexity - 1)).toBeLessThan(1e-2);
  expect(m.metrics.perplexity).toBeLessThan(bare.metrics.perplexity);
  expect(bare.modules).toEqual([]);
});

test('a composition pulled from a hub gives the same figure; errors say what to fix', async () => {
  const base = await pretrainedTinyBase();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-eval-hub-'));
  const hub = await createHubServer({ dataDir, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  const b = cls.manifest.base;
  await hub.registry.registerBase({ family: b.family, fingerprint: b.fingerprint, hidden_size: b.hidden_size, num_layers: b.num_layers, vocab_size: b.vocab_size });
  const server = await new Promise<Server>((resolve) => {
    const s = hub.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const token = JSON.parse(await runCommand(registerAuthCommands, ['token', 'create', '--scope', 'admin', '--data', dataDir, '--json'])).token;
    await new ModhubClient({ baseUrl: url, token }).publish(path.join(dir, 'topic'), {});
    const j = JSON.parse(await evalCli('--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'cls-dev.jsonl'), '--hub', url, '--token', token, '--compose', 'task/topic', '--json'));
    expect(j.metrics.accuracy).toBeCloseTo(cls.metrics.accuracy, 10);
    await expect(evalCli('--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'cls-dev.jsonl'), '--compose', 'task/none')).rejects.toThrow(/not among the --module folders .*--hub to pull it/);
    await expect(evalCli('--task', 'token_classification', '--base', base.dir, '--data', path.join(dir, 'tok-dev.jsonl'), '--module', path.join(dir, 'topic'))).rejects.toThrow(/needs a composition whose head is a token_classification head; this one has a classification head/);
    jsonl('other.jsonl', [{ text: 'the cat', label: 'vehicle' }]);
    await expect(evalCli('--task', 'classification', '--base', base.dir, '--data', path.join(dir, 'other.jsonl'), '--module', path.join(dir, 'topic'))).rejects.toThrow(/labels the head does not know: vehicle/);
  } finally {
    await new Promise((r) => server.close(r));
    await hub.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
