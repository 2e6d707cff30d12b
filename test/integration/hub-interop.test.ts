/**
 * The hub and foreign formats over HTTP (supertest on the app): an AdapterHub folder (raw tar body) and a PEFT
 * folder (multipart tar.gz) are accepted by the upload with `?id=&version=`, and the HF-compatible paths serve
 * modules back under the virtual revisions `adapterhub` / `peft` (and their commits), as adapters.load_adapter
 * and peft.PeftModel.from_pretrained request them with HF_ENDPOINT pointed at the hub.
 */
import pino from 'pino';
import client from 'prom-client';
import request from 'supertest';
import { openMemoryRegistry, packArchive, parseSafetensors, type Registry } from '../../modules-store';
import { convertForeign } from '../../modules-store/interop';
import type { BaseRef } from '../../modules-store/manifest';
import { createApp } from '../../server/http/app';
import { adapterHubFolder, peftFolder } from '../helpers/foreign';
import { registerTestBase, TEST_BASE } from '../helpers/hub';
import { makeAdapterModule, makeIa3Module, makeLoraModule } from '../helpers/modules';

let reg: Registry;
let app: ReturnType<typeof createApp>;
let admin: string;
const info = { ...TEST_BASE };
const bn = makeAdapterModule({ id: 'nat/bn', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 2, labels: ['neg', 'pos'] }, seed: 1 });
const ahFiles = adapterHubFolder(bn, 'bert', {
  name: 'sst2',
  config: { architecture: 'bottleneck', mh_adapter: false, output_adapter: true, reduction_factor: 2, non_linearity: 'relu', original_ln_before: true, original_ln_after: true, ln_before: false, ln_after: false, residual_before_ln: true, adapter_residual_before_ln: false, is_parallel: false, scaling: 1.0, use_gating: false, leave_out: [], inv_adapter: null },
});
const lora = makeLoraModule({ id: 'nat/lora', base: info, r: 2, lora_alpha: 4, target_modules: ['query', 'value'], head: { type: 'token_classification', num_labels: 3 }, seed: 2 });
const peftFiles = peftFolder(lora, 'bert', { config: { peft_type: 'LORA', task_type: 'TOKEN_CLS', r: 2, lora_alpha: 4, target_modules: ['query', 'value'], bias: 'none', modules_to_save: ['classifier'] } });

beforeAll(async () => {
  reg = await openMemoryRegistry();
  await registerTestBase(reg);
  admin = (await reg.createToken({ scopes: ['admin'] })).token;
  app = createApp({ registry: reg, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
});
afterAll(async () => {
  await reg.close();
});

describe('foreign uploads', () => {
  it('accepts an AdapterHub folder as a raw tar body', async () => {
    const res = await request(app).post('/v1/modules?id=task/sst2&version=1.0.0').set('Authorization', `Bearer ${admin}`).set('Content-Type', 'application/x-tar').send(packArchive(ahFiles));
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ id: 'task/sst2', version: '1.0.0' });
    const v = await request(app).get('/v1/modules/task/sst2/versions/1.0.0');
    expect(v.status).toBe(200);
    const m = await reg.resolve('task/sst2@1.0.0');
    expect(m.manifest).toMatchObject({ kind: 'bottleneck', head: { type: 'classification', num_labels: 2 }, labels: ['neg', 'pos'], base: { fingerprint: TEST_BASE.fingerprint } });
    const w = parseSafetensors(await m.readFile('weights.safetensors')).tensors;
    expect(Array.from(w.get('layers.0.output.adapter_down.weight')!.data as Float32Array)).toEqual(Array.from(bn.tensors.get('layers.0.output.adapter_down.weight')!.data as Float32Array));
  });

  it('accepts a PEFT folder as a multipart tar.gz, with an explicit base', async () => {
    const res = await request(app)
      .post(`/v1/modules?id=task/ner&version=2.0.0&base=${encodeURIComponent(TEST_BASE.fingerprint)}`)
      .set('Authorization', `Bearer ${admin}`)
      .attach('archive', packArchive(peftFiles, true), { filename: 'peft.tar.gz', contentType: 'application/gzip' });
    expect(res.status).toBe(201);
    const m = await reg.resolve('task/ner@2.0.0');
    expect(m.manifest).toMatchObject({ kind: 'lora', config: { r: 2, lora_alpha: 4, target_modules: ['query', 'value'] }, head: { type: 'token_classification', num_labels: 3 } });
  });

  it('accepts AdapterHub IA³ on the FFN although the registered base does not state its FFN size', async () => {
    const ia3 = makeIa3Module({ id: 'nat/ia3', base: { ...info, intermediate_size: 20 }, target_modules: ['key', 'value', 'ffn_in'], seed: 3 });
    const files = adapterHubFolder(ia3, 'bert', { name: 'ia3', config: { architecture: 'lora', selfattn_lora: true, intermediate_lora: true, output_lora: false, attn_matrices: ['k', 'v'], r: 1, alpha: 1, composition_mode: 'scale', init_weights: 'ia3' } });
    const res = await request(app).post('/v1/modules?id=task/ia3&version=1.0.0&task=nli').set('Authorization', `Bearer ${admin}`).set('Content-Type', 'application/gzip').send(packArchive(files, true));
    expect(res.status).toBe(201);
    const m = await reg.resolve('task/ia3@1.0.0');
    expect(m.manifest).toMatchObject({ kind: 'ia3', task: 'nli', config: { target_modules: ['key', 'value', 'ffn_in'] } });
    expect(parseSafetensors(await m.readFile('weights.safetensors')).tensors.get('layers.1.ffn_in.ia3_l')!.shape).toEqual([20, 1]);
  });

  it('answers foreign uploads it cannot take with a code and what to fix', async () => {
    const noVersion = await request(app).post('/v1/modules?id=task/x').set('Authorization', `Bearer ${admin}`).set('Content-Type', 'application/x-tar').send(packArchive(ahFiles));
    expect(noVersion.status).toBe(400);
    expect(noVersion.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/needs 'version'/) });
    const unknownBase = await request(app).post(`/v1/modules?id=task/x&version=1.0.0&base=sha256:${'cd'.repeat(32)}`).set('Authorization', `Bearer ${admin}`).set('Content-Type', 'application/x-tar').send(packArchive(ahFiles));
    expect(unknownBase.status).toBe(422);
    expect(unknownBase.body.error.code).toBe('UNKNOWN_BASE');
    const gated = new Map(ahFiles);
    const cfg = JSON.parse(gated.get('adapter_config.json')!.toString());
    cfg.config.use_gating = true;
    gated.set('adapter_config.json', Buffer.from(JSON.stringify(cfg)));
    const refused = await request(app).post('/v1/modules?id=task/x&version=1.0.0').set('Authorization', `Bearer ${admin}`).set('Content-Type', 'application/x-tar').send(packArchive(gated));
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'INVALID_PACKAGE', message: expect.stringMatching(/config\.use_gating = true/) });
    const noId = await request(app).post('/v1/modules').set('Authorization', `Bearer ${admin}`).set('Content-Type', 'application/x-tar').send(packArchive(ahFiles));
    expect(noId.status).toBe(422);
    expect(noId.body.error).toMatchObject({ code: 'INVALID_PACKAGE', message: expect.stringMatching(/AdapterHub \/ PEFT \/ composable-sft folder: upload it with \?id=ns\/name&version=X/) });
    const anonymous = await request(app).post('/v1/modules?id=task/x&version=1.0.0').set('Content-Type', 'application/x-tar').send(packArchive(ahFiles));
    expect(anonymous.status).toBe(401);
  });
});

describe('HF-compatible virtual revisions', () => {
  it('serves a bottleneck module as the AdapterHub files load_adapter asks for, at `adapterhub` and at its commit', async () => {
    const info = await request(app).get('/api/models/task/sst2/revision/adapterhub');
    expect(info.status).toBe(200);
    expect(info.body.siblings.map((s: { rfilename: string }) => s.rfilename).sort()).toEqual(['adapter.safetensors', 'adapter_config.json', 'head_config.json', 'model_head.safetensors']);
    const sha = info.body.sha as string;
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    const cfg = await request(app).get('/task/sst2/resolve/adapterhub/adapter_config.json');
    expect(cfg.status).toBe(200);
    expect(cfg.headers['x-repo-commit']).toBe(sha);
    expect(JSON.parse(cfg.text)).toMatchObject({ name: 'sst2', model_type: 'bert', config: { architecture: 'bottleneck', output_adapter: true, reduction_factor: 2 } });
    // snapshot_download re-requests by the commit it got from the model info
    const byCommit = await request(app).get(`/task/sst2/resolve/${sha}/adapter.safetensors`).buffer(true).parse((res, cb) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => cb(null, Buffer.concat(chunks)));
    });
    expect(byCommit.status).toBe(200);
    const w = parseSafetensors(byCommit.body as Buffer).tensors;
    expect(w.has('bert.encoder.layer.1.output.adapters.sst2.adapter_up.weight')).toBe(true);
    const head = await request(app).head('/task/sst2/resolve/adapterhub-1.0.0/model_head.safetensors');
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
    // importing what the hub serves gives back the published weights
    const files = new Map<string, Buffer>();
    for (const n of ['adapter_config.json', 'adapter.safetensors', 'head_config.json', 'model_head.safetensors']) {
      const r = await request(app).get(`/task/sst2/resolve/adapterhub/${n}`).buffer(true).parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });
      files.set(n, r.body as Buffer);
    }
    const back = convertForeign(files, { id: 'task/sst2', version: '1.0.0', base: TEST_BASE as BaseRef });
    expect(back.files.get('weights.safetensors')!.equals(await (await reg.resolve('task/sst2@1.0.0')).readFile('weights.safetensors'))).toBe(true);
  });

  it('serves a LoRA module as the PEFT files PeftModel.from_pretrained asks for, and 404s a form a module lacks', async () => {
    const cfg = await request(app).get('/task/ner/resolve/peft/adapter_config.json');
    expect(cfg.status).toBe(200);
    expect(JSON.parse(cfg.text)).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, modules_to_save: ['classifier'], task_type: 'TOKEN_CLS' });
    const exists = await request(app).head('/task/ner/resolve/peft/adapter_model.safetensors');
    expect(exists.status).toBe(200);
    const missing = await request(app).head('/task/ner/resolve/peft/adapter_model.bin');
    expect(missing.status).toBe(404);
    expect(missing.headers['x-error-code']).toBe('EntryNotFound');
    const none = await request(app).get('/task/sst2/resolve/peft/adapter_config.json');
    expect(none.status).toBe(404);
    expect(none.body.error).toMatch(/has no peft form: .*kind 'bottleneck' has no PEFT form/);
    // the package itself is still served at ordinary revisions
    const plain = await request(app).get('/task/ner/resolve/main/module.json');
    expect(plain.status).toBe(200);
  });
});
