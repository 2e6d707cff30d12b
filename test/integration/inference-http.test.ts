/**
 * Inference through the real HTTP app: modules uploaded to the hub are servable on the next request, concurrent
 * requests with different compositions are batched together and answer as if run alone, and every bad input
 * gets a 4xx with a code. One test goes over a real socket.
 */
import { runCommand } from '../helpers/cli';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import request from 'supertest';
import { Readable } from 'stream';
import pino from 'pino';
import client from 'prom-client';
import type { Express } from 'express';
import { createApp } from '../../server/http/app';
import { inferenceRouter } from '../../server/http/inference-routes';
import { loadBase, type Base } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { Engine } from '../../server/runtime/engine';
import { InferenceService } from '../../server/runtime/inference';
import { openMemoryRegistry, packArchive, type Registry } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { makeAdapterModule, makeDiffModule, makeLoraModule, baseParamShapes, fakeFingerprint, type BaseInfo } from '../helpers/modules';
import type { RefModule } from '../reference/encoder';
import { ModhubClient } from '../../client-sdk';
import { registerInferCommand } from '../../server/cli/infer';

let base: Base;
let engine: Engine;
let registry: Registry;
let service: InferenceService;
let app: Express;
let info: BaseInfo;
let writeToken: string;

function archiveOf(m: RefModule): Buffer {
  return packArchive(new Map([
    ['module.json', Buffer.from(JSON.stringify(m.manifest))],
    ['weights.safetensors', serializeSafetensors(m.tensors)],
  ]), false);
}

async function publish(m: RefModule): Promise<void> {
  const res = await request(app).post('/v1/modules').set('Authorization', `Bearer ${writeToken}`).attach('archive', archiveOf(m), { filename: 'm.tar', contentType: 'application/x-tar' });
  if (res.status !== 201 && res.status !== 200) throw new Error(`publish ${m.manifest.id}: ${res.status} ${JSON.stringify(res.body)}`);
}

const infer = (body: unknown) => request(app).post('/v1/infer').send(body as object);

beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-infer-'));
  await createTinyBase({ out: dir, family: 'bert', layers: 2, hidden: 16, heads: 2, seed: 3 });
  base = await loadBase(dir);
  engine = await Engine.create({ base });
  registry = await openMemoryRegistry({ allowUnknownBases: true });
  const c = base.config;
  await registry.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize });
  engine.setResolver(registry);
  writeToken = (await registry.createToken({ scopes: ['write'] })).token;
  service = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 20 });
  await service.warmUp();
  const logger = pino({ level: 'silent' });
  app = createApp({ registry, logger, routers: [{ path: '/v1', router: inferenceRouter({ service, auth: { anonymousRead: true }, logger }) }] });
  info = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
  await publish(makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, seed: 1 }));
  await publish(makeAdapterModule({ id: 'task/topic', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 3, labels: ['sport', 'politics', 'tech'] }, seed: 2 }));
  await publish(makeLoraModule({ id: 'task/ner', base: info, r: 2, head: { type: 'token_classification', num_labels: 2, labels: ['O', 'B-PER'] }, seed: 3 }));
  const shapes = baseParamShapes(info, { maxPositions: c.maxPositions });
  await publish(makeDiffModule({ id: 'sft/de', base: info, targets: shapes, density: 0.05, seed: 4 }));
});

afterAll(async () => {
  await engine.close();
  await registry.close();
});

describe('POST /v1/infer', () => {
  it('answers a stacked composition with labelled scores that match the engine run directly', async () => {
    const comp = { stack: ['lang/de', 'task/topic'] };
    const res = await infer({ inputs: [{ text: 'Der Hund schläft' }], composition: comp, top_k: 3 });
    expect(res.status).toBe(200);
    const p = res.body.results[0].branches[0];
    expect(p.type).toBe('classification');
    expect(p.scores.map((s: { label: string }) => s.label).sort()).toEqual(['politics', 'sport', 'tech']);
    expect(res.body.modules[0]).toEqual(['lang/de@1.0.0', 'task/topic@1.0.0']);
    const plans = await engine.plan(comp);
    const enc = await base.tokenizer.encodeBatch(['Der Hund schläft']);
    const [o] = await engine.forward(enc, plans);
    const logits = Array.from(o.clsLogits!);
    const z = logits.map((x) => Math.exp(x - Math.max(...logits)));
    const probs = z.map((x) => x / z.reduce((a, b) => a + b, 0));
    const best = probs.indexOf(Math.max(...probs));
    expect(p.label).toBe(['sport', 'politics', 'tech'][best]);
    expect(p.score).toBeCloseTo(probs[best], 5);
  });

  it('returns token labels with character offsets into the input', async () => {
    const text = 'hello world again';
    const res = await infer({ inputs: [{ text }], composition: 'task/ner' });
    expect(res.status).toBe(200);
    const toks = res.body.results[0].branches[0].tokens as { token: string; start: number; end: number; label: string }[];
    expect(toks.length).toBeGreaterThan(0);
    for (const t of toks) {
      expect(['O', 'B-PER']).toContain(t.label);
      expect(text.slice(t.start, t.end).toLowerCase()).toBe(t.token.replace(/^##/, ''));
    }
  });

  it('groups token labels into word-level entities with each aggregation strategy, spans taken from the input', async () => {
    const text = 'hello wonderful world again and again';
    const isWordStart = (i: number) => i === 0 || text[i - 1] === ' ';
    const isWordEnd = (i: number) => i === text.length || text[i] === ' ';
    for (const aggregation_strategy of ['none', 'simple', 'first', 'average', 'max']) {
      const res = await infer({ inputs: [{ text }], composition: 'task/ner', aggregation_strategy });
      expect(res.status).toBe(200);
      const p = res.body.results[0].branches[0];
      expect(p.aggregation_strategy).toBe(aggregation_strategy);
      const toks = p.tokens as { label: string; score: number; start: number; end: number }[];
      const ents = p.entities as { entity?: string; entity_group?: string; word: string; start: number; end: number; score: number }[];
      expect(ents.length).toBeGreaterThan(0);
      for (const e of ents) {
        expect(e.word).toBe(text.slice(e.start, e.end));
        expect(e.score).toBeGreaterThan(0);
        expect(e.score).toBeLessThanOrEqual(1);
      }
      if (aggregation_strategy === 'none') {
        // one entity per non-O token, in order
        expect(ents.map((e) => [e.entity, e.start, e.end])).toEqual(toks.filter((t) => t.label !== 'O').map((t) => [t.label, t.start, t.end]));
      } else {
        for (const e of ents) expect(e.entity_group).toBe('PER');
        // word-level strategies never split a word
        if (aggregation_strategy !== 'simple') for (const e of ents) expect([isWordStart(e.start), isWordEnd(e.end)]).toEqual([true, true]);
      }
    }
    const bad = await infer({ inputs: [{ text }], composition: 'task/ner', aggregation_strategy: 'longest' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/aggregation_strategy/);
  });

  it('pools embeddings as asked (cls, mean, max) with optional L2 normalisation, from the engine\'s hidden states', async () => {
    const text = 'pool these tokens';
    const enc = await base.tokenizer.encodeBatch([text]);
    const [o] = await engine.forward(enc, await engine.plan('lang/de'), { hidden: true });
    const D = base.config.hiddenSize;
    const T = enc.lengths[0];
    const rows = Array.from({ length: T }, (_, t) => Array.from(o.hidden!.subarray(t * D, (t + 1) * D)));
    const expected = {
      cls: rows[0],
      mean: rows[0].map((_, d) => rows.reduce((a, r) => a + r[d], 0) / T),
      max: rows[0].map((_, d) => Math.max(...rows.map((r) => r[d]))),
    };
    for (const pooling of ['cls', 'mean', 'max'] as const) {
      for (const normalize of [false, true]) {
        const res = await infer({ inputs: [{ text }], composition: 'lang/de', task: 'embedding', pooling, normalize });
        expect(res.status).toBe(200);
        const p = res.body.results[0].branches[0];
        expect([p.pooling, p.normalized]).toEqual([pooling, normalize]);
        const norm = Math.hypot(...expected[pooling]);
        const want = normalize ? expected[pooling].map((x) => x / norm) : expected[pooling];
        (p.embedding as number[]).forEach((x, d) => expect(x).toBeCloseTo(want[d], 4));
        if (normalize) expect(Math.hypot(...p.embedding)).toBeCloseTo(1, 5);
      }
    }
  });

  it('batches concurrent requests with different compositions, each answering as if alone', async () => {
    const comps: unknown[] = [null, 'task/topic', { stack: ['lang/de', 'task/topic'] }, { stack: [{ sum: ['sft/de'] }, 'task/topic'] }, { parallel: ['task/topic', 'task/ner'] }];
    const texts = ['one two three', 'the fox', 'Der schnelle Fuchs', 'hello world', 'a b c'];
    const alone: { results: unknown }[] = [];
    for (let i = 0; i < comps.length; i++) alone.push((await infer({ inputs: [{ text: texts[i] }], composition: comps[i] })).body);
    const before = service.stats.batches;
    const together = await Promise.all(comps.map((c, i) => infer({ inputs: [{ text: texts[i] }], composition: c })));
    // The diff row runs in its own group; all others share one run.
    expect(service.stats.batches - before).toBeLessThan(comps.length);
    together.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(JSON.stringify(round(r.body.results))).toBe(JSON.stringify(round(alone[i].results)));
    });
    expect(together[4].body.results[0].branches.map((b: { type: string }) => b.type)).toEqual(['classification', 'token_classification']);
  });

  it('serves a newly uploaded version on the next request, and exact versions stay reachable', async () => {
    await publish(makeAdapterModule({ id: 'task/fresh', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 2 }, seed: 5 }));
    const r1 = await infer({ inputs: [{ text: 'x' }], composition: 'task/fresh' });
    expect(r1.body.modules[0]).toEqual(['task/fresh@1.0.0']);
    await publish(makeAdapterModule({ id: 'task/fresh', version: '1.1.0', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 2 }, seed: 6 }));
    const r2 = await infer({ inputs: [{ text: 'x' }], composition: 'task/fresh' });
    expect(r2.body.modules[0]).toEqual(['task/fresh@1.1.0']);
    const r3 = await infer({ inputs: [{ text: 'x' }], composition: 'task/fresh@1.0.0' });
    expect(r3.body.modules[0]).toEqual(['task/fresh@1.0.0']);
    expect(r3.body.results[0].branches[0].scores).toEqual(r1.body.results[0].branches[0].scores);
  });

  it('follows moved tags and stops serving a deleted version on the next request', async () => {
    const admin = (await registry.createToken({ scopes: ['admin'] })).token;
    await publish(makeAdapterModule({ id: 'task/moving', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 2 }, seed: 21 }));
    await publish(makeAdapterModule({ id: 'task/moving', version: '2.0.0', base: info, preset: 'seq_bn', head: { type: 'classification', num_labels: 2 }, seed: 22 }));
    expect((await infer({ inputs: [{ text: 'x' }], composition: 'task/moving' })).body.modules[0]).toEqual(['task/moving@2.0.0']);
    const tag = await request(app).put('/v1/modules/task/moving/tags/latest').set('Authorization', `Bearer ${admin}`).send({ version: '1.0.0' });
    expect(tag.status).toBeLessThan(300);
    expect((await infer({ inputs: [{ text: 'x' }], composition: 'task/moving' })).body.modules[0]).toEqual(['task/moving@1.0.0']);
    await infer({ inputs: [{ text: 'x' }], composition: 'task/moving@2.0.0' });
    const del = await request(app).delete('/v1/modules/task/moving/versions/2.0.0').set('Authorization', `Bearer ${admin}`);
    expect(del.status).toBeLessThan(300);
    const gone = await infer({ inputs: [{ text: 'x' }], composition: 'task/moving@2.0.0' });
    expect(gone.status).toBe(404);
  });

  it('answers parallel branches of different kinds: a classification head and an embedding (MLM-headed module)', async () => {
    await publish(makeAdapterModule({ id: 'lang/mlm', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, head: { type: 'masked_lm' }, seed: 31 }));
    const res = await infer({ inputs: [{ text: 'hello world' }], composition: { parallel: [{ stack: ['lang/de', 'task/topic'] }, 'lang/mlm'] }, top_k: 2 });
    expect(res.status).toBe(200);
    expect(res.body.results[0].branches.map((b: { type: string }) => b.type)).toEqual(['classification', 'embedding']);
    expect(res.body.results[0].branches[1].embedding).toHaveLength(base.config.hiddenSize);
    const fill = await infer({ inputs: [{ text: `hello ${base.tokenizer.maskToken}` }], composition: 'lang/mlm', task: 'fill_mask' });
    expect(fill.status).toBe(200);
    expect(fill.body.results[0].branches[0].type).toBe('fill_mask');
  });

  // Issue 10, bug 2: [task/topic, lang/en] answered with a bare embedding (the MLM head of lang/en displaced the topic
  // head) and [task/topic, task/sentiment] silently used one of the two heads.
  it('keeps a prediction head next to an MLM head, refuses two competing heads with 422 naming them, and "head" chooses', async () => {
    await publish(makeAdapterModule({ id: 'lang/en', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, head: { type: 'masked_lm' }, seed: 41 }));
    await publish(makeAdapterModule({ id: 'task/sentiment', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 2, labels: ['negative', 'positive'] }, seed: 42 }));
    const labelsOf = (res: request.Response) => res.body.results[0].branches[0].scores.map((x: { label: string }) => x.label).sort();
    const mixed = await infer({ inputs: [{ text: 'hello world' }], composition: { stack: ['task/topic', 'lang/en'] } });
    expect(mixed.status).toBe(200);
    expect(mixed.body.results[0].branches[0].type).toBe('classification');
    expect(labelsOf(mixed)).toEqual(['politics', 'sport', 'tech']);
    const two = await infer({ inputs: [{ text: 'hello world' }], composition: { stack: ['task/topic', 'task/sentiment'] } });
    expect(two.status).toBe(422);
    expect(two.body.error.code).toBe('INVALID_HEAD');
    expect(two.body.error.message).toMatch(/'task\/topic@1\.0\.0' \(classification\), 'task\/sentiment@1\.0\.0' \(classification\)/);
    expect(two.body.error.message).toMatch(/AdapterHub would use the last one \('task\/sentiment@1\.0\.0'\)/);
    expect(two.body.error.message).toMatch(/"head": "task\/topic" or "head": "task\/sentiment"/);
    for (const [head, labels] of [['task/topic', ['politics', 'sport', 'tech']], ['task/sentiment@1.0.0', ['negative', 'positive']]] as const) {
      const res = await infer({ inputs: [{ text: 'hello world' }], composition: { stack: ['task/topic', 'task/sentiment'] }, head });
      expect(res.status).toBe(200);
      expect(labelsOf(res)).toEqual(labels);
    }
    // The chosen head is the one the engine computes for that module alone in the same stack position.
    const [chosen] = await engine.plan({ stack: ['task/topic', 'task/sentiment'] }, { head: 'task/topic' });
    expect(chosen.head!.key).toBe('task/topic@1.0.0');
    for (const [head, msg] of [['lang/de', /'lang\/de' brings no head; modules of the composition with a head: 'task\/topic'/], ['task/ner', /'task\/ner' is not a module of the composition/]] as const) {
      const res = await infer({ inputs: [{ text: 'x' }], composition: { stack: ['lang/de', 'task/topic'] }, head });
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe('INVALID_HEAD');
      expect(res.body.error.message).toMatch(msg);
    }
  });

  it('fills masks with the base MLM head', async () => {
    const res = await infer({ inputs: [{ text: `the ${base.tokenizer.maskToken} dog` }], task: 'fill_mask', top_k: 3 });
    expect(res.status).toBe(200);
    const m = res.body.results[0].branches[0].masks;
    expect(m).toHaveLength(1);
    expect(m[0].candidates).toHaveLength(3);
  });

  it.each([
    [{}, 400, 'INVALID_BODY'],
    [{ inputs: [] }, 400, 'INVALID_BODY'],
    [{ inputs: [{ text: 'x' }], composition: { stack: [] } }, 400, 'INVALID_COMPOSITION'],
    [{ inputs: [{ text: 'x' }], composition: { sum: ['task/topic'] } }, 400, 'INVALID_COMPOSITION'],
    [{ inputs: [{ text: 'x' }], composition: { stack: ['task/topic'], extra: 1 } }, 400, 'INVALID_COMPOSITION'],
    [{ inputs: [{ text: 'x' }], composition: 'Not A Ref' }, 400, 'INVALID_COMPOSITION'],
    [{ inputs: [{ text: 'x' }], composition: 'task/missing' }, 404, 'MODULE_NOT_FOUND'],
    [{ inputs: [{ text: 'x' }], composition: 'task/topic@9.9.9' }, 404, 'VERSION_NOT_FOUND'],
    [{ inputs: [{ text: 'no mask here' }], task: 'fill_mask' }, 400, 'INVALID_INPUT'],
    [{ inputs: [{ text: 'x' }], task: 'translate' }, 400, 'INVALID_BODY'],
    [{ inputs: [{ text: 'x', text_pair: 'y' }, { text: 'z' }] }, 400, 'INVALID_INPUT'],
    [{ inputs: [{ text: 'x' }], max_length: 100_000 }, 400, 'INVALID_INPUT'],
    [{ inputs: [{ text: 'x', text_pair: 'y' }], max_length: 3 }, 400, 'INVALID_INPUT'],
    [{ inputs: [{ text: 'x' }], top_k: 0 }, 400, 'INVALID_BODY'],
    [{ inputs: [{ text: 'x', lang: 'de' }] }, 400, 'INVALID_BODY'],
  ])('refuses %j with %i %s', async (body, status, code) => {
    const res = await infer(body);
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(res.body.error.message.length).toBeGreaterThan(10);
    // Messages name fields as the client sends them (snake_case), and carry the request id.
    expect(res.body.error.message).not.toMatch(/maxLength|topK|textPair/);
    expect(res.body.error.request_id).toBe(res.headers['x-request-id']);
  });

  it("names 'max_length' with the base's limit", async () => {
    const res = await infer({ inputs: [{ text: 'x' }], max_length: 100_000 });
    expect(res.body.error.message).toBe(`'max_length' must be an integer from 3 to ${base.config.maxSequenceLength} (this base's position table), got 100000`);
  });

  it('refuses a module trained for another base with 422 INCOMPATIBLE_BASE', async () => {
    const other = { ...info, fingerprint: fakeFingerprint('another-base') };
    await publish(makeAdapterModule({ id: 'task/alien', base: other, preset: 'seq_bn', seed: 9 }));
    const res = await infer({ inputs: [{ text: 'x' }], composition: 'task/alien' });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('INCOMPATIBLE_BASE');
    // the server keeps serving
    expect((await infer({ inputs: [{ text: 'x' }], composition: 'task/topic' })).status).toBe(200);
  });

  it('refuses a request larger than the whole queue with 413 REQUEST_TOO_LARGE, and reports batch metrics', async () => {
    const metrics = new client.Registry();
    const small = new InferenceService(engine, { maxQueueRows: 2, metrics });
    await small.warmUp();
    const logger = pino({ level: 'silent' });
    const app2 = createApp({ registry, logger, metrics, routers: [{ path: '/v1', router: inferenceRouter({ service: small, auth: { anonymousRead: true }, logger }) }] });
    const big = await request(app2).post('/v1/infer').send({ inputs: [{ text: 'a' }, { text: 'b' }, { text: 'c' }] });
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('REQUEST_TOO_LARGE');
    expect(big.body.error.message).toMatch(/3 rows .* more than the server queues at once \(2 rows/);
    const ok = await request(app2).post('/v1/infer').send({ inputs: [{ text: 'a' }, { text: 'b' }], composition: 'task/topic' });
    expect(ok.status).toBe(200);
    const text = (await request(app2).get('/metrics')).text;
    expect(text).toMatch(/modhub_infer_batch_rows_sum 2/);
    expect(text).toMatch(/modhub_infer_batch_padding_ratio_count 1/);
    // the engine against its budgets, read at scrape time
    const value = (t: string, name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(t)?.[1]);
    const mem = engine.memory();
    expect(value(text, 'modhub_engine_modules_loaded')).toBe(mem.modules.count);
    expect(mem.modules.count).toBeGreaterThanOrEqual(1);
    expect(value(text, 'modhub_engine_module_bytes')).toBe(mem.modules.bytes);
    expect(mem.modules.bytes).toBeGreaterThan(0);
    expect(value(text, 'modhub_engine_module_budget_bytes')).toBe(2 ** 31);
    expect(value(text, 'modhub_engine_pool_budget_bytes')).toBe(2 ** 30);
    expect(value(text, 'modhub_engine_diff_budget_bytes')).toBe(2 ** 31);
    expect(value(text, 'modhub_engine_module_loads_total')).toBe(engine.stats.moduleLoads);
    for (const [name, stat] of [['diff_sets_built', 'diffSetsBuilt'], ['diff_copies', 'diffCopies'], ['diff_copies_dropped', 'diffCopiesDropped'], ['slot_folds', 'slotFolds']] as const)
      expect(value(text, `modhub_engine_${name}_total`)).toBe(engine.stats[stat]);
    const runs = value(text, 'modhub_engine_runs_total');
    expect(runs).toBe(engine.stats.runs);
    await request(app2).post('/v1/infer').send({ inputs: [{ text: 'a' }], composition: 'task/topic' });
    expect(value((await request(app2).get('/metrics')).text, 'modhub_engine_runs_total')).toBe(runs + 1);
  });

  it('answers over a real socket', async () => {
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ text: 'hi' }], composition: 'task/topic' }) });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { branches: { type: string }[] }[] };
      expect(body.results[0].branches[0].type).toBe('classification');
      const baseInfo = (await (await fetch(`http://127.0.0.1:${port}/v1/base`)).json()) as { fingerprint: string };
      expect(baseInfo.fingerprint).toBe(base.fingerprint);
      // The SDK over the same socket: results, and server error codes surfaced as ModhubError.
      const sdk = new ModhubClient({ baseUrl: `http://127.0.0.1:${port}` });
      expect((await sdk.servedBase()).fingerprint).toBe(base.fingerprint);
      const viaSdk = await sdk.infer({ inputs: [{ text: 'hi' }], composition: { parallel: ['task/topic', 'task/ner'] } });
      expect(viaSdk.results[0].branches.map((p) => p.type)).toEqual(['classification', 'token_classification']);
      await expect(sdk.infer({ inputs: [{ text: 'hi' }], composition: 'task/missing' })).rejects.toMatchObject({ status: 404, code: 'MODULE_NOT_FOUND' });
      // The CLI over the same socket.
      const url = `http://127.0.0.1:${port}`;
      const out = await cli('infer', '--hub', url, '--compose', '{"stack": ["lang/de", "task/topic"]}', 'one text', 'another text');
      expect(out.trim().split('\n')).toHaveLength(2);
      expect(out).toMatch(/^"one text" -> (sport|politics|tech) \(0\.\d{3}\)$/m);
      await expect(cli('infer', '--hub', url, '--compose', 'task/missing', 'x')).rejects.toThrow(/^MODULE_NOT_FOUND: /);
      await expect(cli('infer', '--hub', url, '--compose', '{"stack": [', 'x')).rejects.toThrow(/--compose' is not valid JSON/);
      // --max-length truncates every input to that many tokens (specials included)
      const long = 'one two three four five six seven eight';
      const whole = JSON.parse(await cli('infer', '--hub', url, '--compose', 'task/ner', '--json', long));
      const cut = JSON.parse(await cli('infer', '--hub', url, '--compose', 'task/ner', '--json', '--max-length', '4', long));
      expect(whole.results[0].branches[0].tokens.length).toBeGreaterThan(4);
      expect(cut.results[0].branches[0].tokens.length).toBeLessThanOrEqual(2);
      await expect(cli('infer', '--hub', url, '--max-length', '0', 'x')).rejects.toThrow(/'--max-length' must be a whole number from 2 to 1000000, got '0'/);
    } finally {
      server.close();
    }
  });

  it('the infer command: --pair takes one value per text and leaves the texts alone; texts from --file or stdin; flags named in errors', async () => {
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const stdin = Object.getOwnPropertyDescriptor(process, 'stdin')!;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-infer-cli-'));
    try {
      const sdk = new ModhubClient({ baseUrl: url });
      const want = await sdk.infer({ inputs: [{ text: 'one', text_pair: 'p1' }, { text: 'two', text_pair: 'p2' }], composition: 'task/topic' });
      const json = (args: string[]) => cli('infer', '--hub', url, '--compose', 'task/topic', '--json', ...args).then((o) => JSON.parse(o).results as unknown);
      expect(await json(['--pair', 'p1', 'one', '--pair', 'p2', 'two'])).toEqual(want.results);
      expect(await json(['one', 'two', '--pair', 'p1', '--pair', 'p2'])).toEqual(want.results);
      const file = path.join(dir, 'texts.txt');
      fs.writeFileSync(file, 'one\tp1\n\ntwo\tp2\n');
      expect(await json(['--file', file])).toEqual(want.results);
      Object.defineProperty(process, 'stdin', { value: Readable.from(['one\tp1\n', 'two\tp2\n']), configurable: true });
      expect(await json(['-'])).toEqual(want.results);
      Object.defineProperty(process, 'stdin', { value: Readable.from(['one\n']), configurable: true });
      expect(await cli('infer', '--hub', url, '--compose', 'task/topic', '--file', '-')).toMatch(/^"one" -> (sport|politics|tech) /);
      await expect(cli('infer', '--hub', url, '--pair', 'p1', 'one', 'two')).rejects.toThrow(/^INVALID_ARGUMENT: '--pair' needs one value per text \(2\), got 1$/);
      await expect(cli('infer', '--hub', url, '--top-k', '0', 'x')).rejects.toThrow(/^INVALID_ARGUMENT: '--top-k' must be a whole number from 1 to 1000, got '0'$/);
      await expect(cli('infer', '--hub', url, '--max-length', '100000', 'x')).rejects.toThrow(/^INVALID_INPUT: '--max-length' must be/);
      await expect(cli('infer', '--hub', url)).rejects.toThrow(/^INVALID_ARGUMENT: give texts as arguments, '-' to read them from stdin, or '--file <path>'$/);
      await expect(cli('infer', '--hub', url, '--file', path.join(dir, 'none.txt'))).rejects.toThrow(/^ENOENT: /);
    } finally {
      Object.defineProperty(process, 'stdin', stdin);
      fs.rmSync(dir, { recursive: true, force: true });
      server.close();
    }
  });
});

/** Runs the `infer` command in-process; returns stdout, or rejects with what the top-level handler would print. */
async function cli(...args: string[]): Promise<string> {
  return runCommand(registerInferCommand, args);
}

function round(x: unknown): unknown {
  if (typeof x === 'number') return Math.round(x * 1e5) / 1e5;
  if (Array.isArray(x)) return x.map(round);
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, round(v)]));
  return x;
}
