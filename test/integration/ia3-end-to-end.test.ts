/**
 * IA³ end to end: `modhub module init --kind ia3` writes a valid package that equals the base; `modhub train
 * --method ia3` writes a trained one; a module trained with the API is published over HTTP, served (same
 * predictions as the trainer's own graph), composed over HTTP with a bottleneck adapter, a LoRA and another
 * IA³ module (each answer equal to the engine's direct run of that composition, and different from the
 * module alone), and refused inside `sum` with a message that says to stack it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import request from 'supertest';
import pino from 'pino';
import type { Express } from 'express';
import { createApp } from '../../server/http/app';
import { inferenceRouter } from '../../server/http/inference-routes';
import type { Base } from '../../server/model/base';
import { Engine } from '../../server/runtime/engine';
import { InferenceService } from '../../server/runtime/inference';
import { openMemoryRegistry, packArchive, readModulePackage, writeModulePackage, type Registry } from '../../modules-store';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../../modules-store/safetensors';
import { registerModuleCommands } from '../../server/cli/module';
import { registerTrainCommands } from '../../server/cli/train';
import { train } from '../../server/train/trainer';
import { runCommand } from '../helpers/cli';
import { clsData, tinyBase } from '../helpers/train-fixtures';
import { makeAdapterModule, makeIa3Module, makeLoraModule, type BaseInfo } from '../helpers/modules';

let base: Base;
let engine: Engine;
let registry: Registry;
let app: Express;
let token: string;
let info: BaseInfo;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-ia3-e2e-'));

async function publish(files: Map<string, Buffer>): Promise<void> {
  const res = await request(app).post('/v1/modules').set('Authorization', `Bearer ${token}`).attach('archive', packArchive(files, false), { filename: 'm.tar', contentType: 'application/x-tar' });
  if (res.status !== 201 && res.status !== 200) throw new Error(`publish: ${res.status} ${JSON.stringify(res.body)}`);
}
const filesOf = (manifest: unknown, tensors: Map<string, Tensor>) => new Map([['module.json', Buffer.from(JSON.stringify(manifest))], ['weights.safetensors', serializeSafetensors(tensors)]]);
const infer = (body: unknown) => request(app).post('/v1/infer').send(body as object);

function softmax(x: ArrayLike<number>): number[] {
  const a = Array.from(x);
  const z = a.map((v) => Math.exp(v - Math.max(...a)));
  const s = z.reduce((p, q) => p + q, 0);
  return z.map((v) => v / s);
}

beforeAll(async () => {
  base = await tinyBase();
  engine = await Engine.create({ base, threads: 1 });
  registry = await openMemoryRegistry({ allowUnknownBases: true });
  const c = base.config;
  await registry.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize });
  engine.setResolver(registry);
  token = (await registry.createToken({ scopes: ['write'] })).token;
  const logger = pino({ level: 'silent' });
  const service = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 5 });
  app = createApp({ registry, logger, routers: [{ path: '/v1', router: inferenceRouter({ service, auth: { anonymousRead: true }, logger }) }] });
  info = { family: c.family as BaseInfo['family'], fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
});

afterAll(async () => {
  await engine.close();
  await registry.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('modhub module init --kind ia3 writes a valid package of ones that the engine serves as the base', async () => {
  const out = path.join(tmp, 'fresh');
  const said = await runCommand(registerModuleCommands, ['module', 'init', '--base', base.dir, '--kind', 'ia3', '--targets', 'key,value,ffn_out', '--id', 'test/fresh', '--out', out]);
  expect(said).toMatch(/wrote test\/fresh@0\.1\.0 \(ia3, 6 tensors\)/);
  const pkg = await readModulePackage(out);
  expect(pkg.manifest.kind === 'ia3' && pkg.manifest.config.target_modules).toEqual(['key', 'value', 'ffn_out']);
  const tensors = parseSafetensors(pkg.files.get('weights.safetensors')!).tensors;
  expect(tensors.get('layers.1.ffn_out.ia3_l')!.shape).toEqual([1, base.config.intermediateSize]);
  for (const t of tensors.values()) expect(Array.from(t.data as Float32Array).every((x) => x === 1)).toBe(true);
  await publish(pkg.files);
  const a = await infer({ inputs: [{ text: 'the red apple' }], composition: 'test/fresh', task: 'embedding' });
  const b = await infer({ inputs: [{ text: 'the red apple' }], task: 'embedding' });
  expect(a.status).toBe(200);
  expect(a.body.results).toEqual(b.body.results);
  await expect(runCommand(registerModuleCommands, ['module', 'init', '--base', base.dir, '--kind', 'ia3', '--targets', 'k,v', '--id', 'test/bad', '--out', path.join(tmp, 'bad')])).rejects.toThrow(/invalid ia3 config: config\.target_modules\.0/);
});

test('modhub train --method ia3 writes a trained package', async () => {
  const write = (f: string, n: number, seed: number) => fs.writeFileSync(path.join(tmp, f), clsData(n, seed).map((e) => JSON.stringify(e)).join('\n') + '\n');
  write('train.jsonl', 48, 1);
  write('dev.jsonl', 16, 2);
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  let said: string;
  try {
    said = await runCommand(registerTrainCommands, ['train', '--method', 'ia3', '--task', 'classification', '--base', base.dir, '--data', path.join(tmp, 'train.jsonl'), '--dev', path.join(tmp, 'dev.jsonl'), '--out', path.join(tmp, 'cli-pkg'), '--id', 'topic/ia3', '--epochs', '1', '--threads', '1']);
  } finally {
    errSpy.mockRestore();
  }
  expect(said).toMatch(/trained topic\/ia3@0\.1\.0 \(ia3, \d+ steps\)/);
  const pkg = await readModulePackage(path.join(tmp, 'cli-pkg'));
  expect(pkg.manifest.kind).toBe('ia3');
  const moved = [...parseSafetensors(pkg.files.get('weights.safetensors')!).tensors.values()].some((t) => t.shape.length === 2 && t.shape.includes(1) && Array.from(t.data as Float32Array).some((x) => x !== 1));
  expect(moved).toBe(true);
});

test('train → publish → serve → compose with other modules over HTTP', async () => {
  const dev = clsData(12, 2);
  const res = await train({ base, method: 'ia3', task: 'classification', train: clsData(96, 1), dev, epochs: 2, batchSize: 16, lr: 3e-2, seed: 0, threads: 1, id: 'task/ia3' });
  const dir = path.join(tmp, 'trained');
  const written = await writeModulePackage(dir, res.manifest, res.tensors);
  await publish(written.files);
  const mine = await res.predict(dev);
  await res.release();

  // served = trained
  const served = await infer({ inputs: dev.map((d) => ({ text: d.text })), composition: 'task/ia3', top_k: 3 });
  expect(served.status).toBe(200);
  expect(served.body.modules[0]).toEqual(['task/ia3@0.1.0']);
  served.body.results.forEach((r: { branches: { label: string; score: number }[] }, i: number) => {
    const p = softmax(mine[i]);
    const best = p.indexOf(Math.max(...p));
    expect(r.branches[0].label).toBe(res.manifest.labels[best]);
    expect(r.branches[0].score).toBeCloseTo(p[best], 4);
  });

  // compose with a bottleneck adapter, a LoRA and a second IA³ module
  const adapter = makeAdapterModule({ id: 'lang/xx', base: info, preset: 'seq_bn', config: { reduction_factor: 4 }, seed: 11 });
  await publish(filesOf(adapter.manifest, adapter.tensors));
  const lora = makeLoraModule({ id: 'task/lo', base: info, r: 2, target_modules: ['value', 'ffn_out'], seed: 12 });
  await publish(filesOf(lora.manifest, lora.tensors));
  const other = makeIa3Module({ id: 'lang/ia3', base: info, target_modules: ['value', 'ffn_out'], seed: 13, scale: 0.3 });
  await publish(filesOf(other.manifest, other.tensors));
  const text = [{ text: dev[0].text }];
  const embedding = async (comp: unknown) => {
    const r = await infer({ inputs: text, composition: comp, task: 'embedding' });
    expect({ comp, status: r.status }).toEqual({ comp, status: 200 });
    return r.body.results[0].branches[0].embedding as number[];
  };
  /** The engine's own run of `comp`, mean-pooled over the tokens as the embedding task does. */
  const direct = async (comp: unknown) => {
    const enc = await base.tokenizer.encodeBatch([dev[0].text]);
    const [o] = await engine.forward(enc, await engine.plan(comp), { hidden: true });
    const D = base.config.hiddenSize;
    const out = new Array(D).fill(0);
    for (let t = 0; t < o.length; t++) for (let d = 0; d < D; d++) out[d] += o.hidden![t * D + d] / o.length;
    return out;
  };
  const maxDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
  const alone = await embedding('task/ia3');
  for (const comp of [{ stack: ['lang/xx', 'task/ia3'] }, { stack: [{ sum: ['task/lo'] }, 'task/ia3'] }, { stack: ['lang/ia3', 'task/ia3'] }]) {
    const got = await embedding(comp);
    expect({ comp, differsFromAlone: maxDiff(got, alone) > 1e-4 }).toEqual({ comp, differsFromAlone: true });
    expect({ comp, matchesEngine: maxDiff(got, await direct(comp)) < 1e-5 }).toEqual({ comp, matchesEngine: true });
  }

  // refused where it makes no sense
  const bad = await infer({ inputs: text, composition: { sum: ['task/ia3', 'task/lo'] } });
  expect(bad.status).toBe(400);
  expect(bad.body.error.code).toBe('INVALID_COMPOSITION');
  expect(bad.body.error.message).toMatch(/IA³ module, which scales activations: put it in a stack/);
});
