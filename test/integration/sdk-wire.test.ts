/**
 * The wire contract, checked against a live server (hub + inference over a real socket, as `modhub serve` wires
 * it): every SDK method is called with `validateResponses: true`, so each answer is parsed with its strict zod
 * schema (client-sdk/wire.ts) and any drift — a renamed field, a camelCase leak, a missing or extra key — fails;
 * every /v1 operation in /openapi.json must have been reached through the SDK; the generated document is
 * structurally valid OpenAPI 3.1 and lists every route the app mounts.
 */
import { promises as fsp } from 'node:fs';
import type { Server } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Express } from 'express';
import pino from 'pino';
import client from 'prom-client';
import { ERROR_CODES, ErrorBodySchema, HealthSchema, ModhubClient as CoreClient, NodeModhubClient as ModhubClient, ModhubError, parallel, tarBlob } from '../../client-sdk/node';
import { openMemoryRegistry, type Registry } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { createApp } from '../../server/http/app';
import { inferenceRouter } from '../../server/http/inference-routes';
import { loadBase, type Base } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { Engine } from '../../server/runtime/engine';
import { InferenceService } from '../../server/runtime/inference';
import { fakeFingerprint, makeAdapterModule, makeLoraModule, type BaseInfo } from '../helpers/modules';
import type { RefModule } from '../reference/encoder';

let root: string;
let base: Base;
let engine: Engine;
let registry: Registry;
let app: Express;
let server: Server;
let url: string;
let admin: string;
/** Requests the SDK sent, as "METHOD /path". */
const sent: string[] = [];
/** SDK methods the tests called. */
const called = new Set<string>();

/** Listens on the first free port of this worktree's range (18300-18399). */
async function listenInRange(a: Express): Promise<Server> {
  for (let port = 18300; port < 18400; port++) {
    const s = await new Promise<Server | null>((resolve) => {
      const srv = a.listen(port, '127.0.0.1');
      srv.once('listening', () => resolve(srv));
      srv.once('error', () => resolve(null));
    });
    if (s) return s;
  }
  throw new Error('no free port in 18300-18399');
}

/** An SDK client that checks every answer against its schema and records what it calls and sends. */
function sdk(token?: string): ModhubClient {
  const recordingFetch: typeof fetch = (input, init) => {
    const u = new URL(String(input));
    sent.push(`${(init?.method ?? 'GET').toUpperCase()} ${u.pathname}`);
    return fetch(input, init);
  };
  const c = new ModhubClient({ baseUrl: url, token, validateResponses: true, fetch: recordingFetch });
  return new Proxy(c, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v === 'function' && typeof prop === 'string') {
        called.add(prop);
        return (v as (...a: unknown[]) => unknown).bind(target);
      }
      return v;
    },
  });
}

function filesOf(m: RefModule): Record<string, Uint8Array> {
  return { 'module.json': Buffer.from(JSON.stringify(m.manifest)), 'weights.safetensors': serializeSafetensors(m.tensors) };
}

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-wire-'));
  await createTinyBase({ out: path.join(root, 'base'), family: 'bert', layers: 2, hidden: 16, heads: 2, seed: 3 });
  base = await loadBase(path.join(root, 'base'));
  engine = await Engine.create({ base });
  registry = await openMemoryRegistry();
  const c = base.config;
  await registry.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize });
  engine.setResolver(registry);
  admin = (await registry.createToken({ scopes: ['admin'] })).token;
  const logger = pino({ level: 'silent' });
  const metrics = new client.Registry();
  const service = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 2 });
  app = createApp({ registry, logger, metrics, routers: [{ path: '/v1', router: inferenceRouter({ service, auth: { anonymousRead: true }, logger, metrics }) }] });
  server = await listenInRange(app);
  const addr = server.address() as { port: number };
  url = `http://127.0.0.1:${addr.port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await engine.close();
  await registry.close();
  await fsp.rm(root, { recursive: true, force: true });
});

describe('every SDK method against a live server, each answer checked against its wire schema', () => {
  it('hub: tokens, bases, publish, search, info, versions, downloads, tags, yank, delete', async () => {
    const hub = sdk(admin);
    const anon = sdk();
    expect((await hub.whoami())?.scopes).toEqual(['admin']);
    expect(await anon.whoami()).toBeNull();

    const other = { fingerprint: fakeFingerprint('other'), family: 'roberta', hidden_size: 32, num_layers: 4, vocab_size: 100, description: 'another base' };
    expect(await hub.registerBase(other)).toMatchObject({ ...other, created_at: expect.any(String) });
    expect((await hub.listBases()).map((b) => b.fingerprint).sort()).toEqual([base.fingerprint, other.fingerprint].sort());

    const t = await hub.createToken({ scopes: ['write'], namespace: 'task', description: 'ci' });
    expect(t).toMatchObject({ scopes: ['write'], namespace: 'task', description: 'ci', token: expect.stringMatching(/^mh_/) });
    expect((await hub.listTokens()).map((x) => x.id)).toContain(t.id);
    await hub.revokeToken(t.id);
    expect((await hub.listTokens()).map((x) => x.id)).not.toContain(t.id);

    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: base.config.hiddenSize, num_layers: base.config.numLayers, vocab_size: base.config.vocabSize, intermediate_size: base.config.intermediateSize };
    const topic = makeAdapterModule({ id: 'task/topic', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 3, labels: ['sport', 'politics', 'tech'] }, seed: 2 });
    const ner = makeLoraModule({ id: 'task/ner', base: info, r: 2, head: { type: 'token_classification', num_labels: 2, labels: ['O', 'B-PER'] }, seed: 3 });
    const mlm = makeAdapterModule({ id: 'lang/mlm', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, head: { type: 'masked_lm' }, seed: 31 });
    const published = await hub.publish({ files: filesOf(topic) });
    expect(published).toMatchObject({ id: 'task/topic', version: '1.0.0' });
    await hub.publish({ files: filesOf(ner) });
    await hub.publish({ files: filesOf(mlm) });
    const v2 = makeAdapterModule({ id: 'task/topic', version: '1.1.0', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 3, labels: ['sport', 'politics', 'tech'] }, seed: 4 });
    const dir = path.join(root, 'pkg');
    await fsp.mkdir(dir);
    for (const [n, b] of Object.entries(filesOf(v2))) await fsp.writeFile(path.join(dir, n), b);
    await hub.publish(dir);

    const page = await anon.search({ namespace: 'task', sort: 'name', limit: 1 });
    expect(page).toMatchObject({ total: 2, limit: 1, offset: 0, items: [{ id: 'task/ner', base_fingerprint: base.fingerprint }] });
    const m = await anon.info('task/topic');
    expect(m.versions.map((v) => v.version)).toEqual(['1.1.0', '1.0.0']);
    expect(m.tags).toEqual({ latest: '1.1.0' });
    const v = await anon.version('task/topic@1.0.0');
    expect(v).toMatchObject({ id: 'task/topic', version: '1.0.0', yank_reason: null, manifest: { id: 'task/topic', kind: 'bottleneck' } });
    expect(Buffer.from((await anon.downloadArchive('task/topic@1.0.0')).subarray(0, 11)).toString()).toBe('module.json');
    expect(Buffer.from(await anon.downloadFile('task/topic@1.0.0', 'module.json')).toString()).toContain('"task/topic"');
    expect((await anon.pull('task/topic@1.0.0', path.join(root, 'pulled'))).version).toBe('1.0.0');
    await anon.downloadToFile('task/topic@1.0.0', 'module.json', path.join(root, 'one.json'));
    expect(JSON.parse(await fsp.readFile(path.join(root, 'one.json'), 'utf8'))).toMatchObject({ id: 'task/topic', version: '1.0.0' });

    expect(await hub.setTag('task/topic', 'stable', '1.0.0')).toEqual({ latest: '1.1.0', stable: '1.0.0' });
    expect(await hub.removeTag('task/topic', 'stable')).toEqual({ latest: '1.1.0' });
    expect(await hub.yank('task/topic@1.1.0', { reason: 'bad split' })).toEqual({ id: 'task/topic', version: '1.1.0', yanked: true });
    expect((await anon.info('task/topic')).versions[0]).toMatchObject({ version: '1.1.0', yanked: true, yank_reason: 'bad split' });
    expect(await hub.yank('task/topic@1.1.0', { yanked: false })).toEqual({ id: 'task/topic', version: '1.1.0', yanked: false });
    await hub.delete('task/topic@1.1.0');
    expect((await anon.info('task/topic')).versions.map((x) => x.version)).toEqual(['1.0.0']);
  });

  it('resumable uploads: open, status, chunks, commit, cancel', async () => {
    const hub = sdk(admin);
    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: base.config.hiddenSize, num_layers: base.config.numLayers, vocab_size: base.config.vocabSize, intermediate_size: base.config.intermediateSize };
    const m = makeAdapterModule({ id: 'task/chunked', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, seed: 9 });
    const s = await hub.openUpload();
    expect(s).toMatchObject({ id: expect.stringMatching(/^up_/), offset: 0, max_bytes: registry.maxPackageBytes, created_at: expect.any(String) });
    expect(await hub.uploadStatus(s.id)).toEqual(s);
    await hub.cancelUpload(s.id);
    // resumeFrom asks the session (GET) first; the files go as one tar in chunks, the commit answers a PublishResult
    const open = await hub.openUpload();
    const tar = tarBlob(filesOf(m));
    const published = await hub.uploadResumable(tar, { resumeFrom: open.id, chunkBytes: 1024, allowUnknownBase: false });
    expect(published).toMatchObject({ id: 'task/chunked', version: '1.0.0' });
    expect((await hub.version('task/chunked@1.0.0')).files.map((f) => f.name).sort()).toEqual(['README.md', 'module.json', 'weights.safetensors']);
  });

  it('inference: every prediction type, the served base, and the module delete that follows', async () => {
    const anon = sdk();
    const served = await anon.servedBase();
    expect(served).toMatchObject({ fingerprint: base.fingerprint, hidden_size: base.config.hiddenSize, max_length: base.config.maxSequenceLength });
    const par = await anon.infer({ inputs: [{ text: 'hello world' }], composition: { parallel: ['task/topic', 'task/ner', 'lang/mlm'] }, top_k: 2 });
    expect(par.results[0].branches.map((b) => b.type)).toEqual(['classification', 'token_classification', 'embedding']);
    expect(par.modules).toEqual([['task/topic@1.0.0'], ['task/ner@1.0.0'], ['lang/mlm@1.0.0']]);
    const fill = await anon.infer({ inputs: [{ text: `hello ${base.tokenizer.maskToken}` }], task: 'fill_mask', top_k: 3 });
    expect(fill.results[0].branches[0]).toMatchObject({ type: 'fill_mask', masks: [{ candidates: expect.any(Array) }] });
    const emb = await anon.infer({ inputs: [{ text: 'a', text_pair: 'b' }], task: 'embedding', max_length: 8 });
    expect(emb.results[0].branches[0]).toMatchObject({ type: 'embedding' });
    // The typed calls: one prediction per input, of the kind asked for, or UNEXPECTED_PREDICTION.
    const cls = await anon.classify(['hello', 'a second text'], { composition: 'task/topic', top_k: 2 });
    expect(cls.map((p) => [p.type, p.scores.length])).toEqual([['classification', 2], ['classification', 2]]);
    expect((await anon.tagTokens(['hello world'], { composition: 'task/ner' }))[0].tokens.length).toBeGreaterThan(0);
    expect((await anon.fillMask([`hello ${base.tokenizer.maskToken}`], { top_k: 3 }))[0].masks[0].candidates).toHaveLength(3);
    expect((await anon.embed(['a', 'b']))[1]).toHaveLength(base.config.hiddenSize);
    await expect(anon.classify(['hello'], { composition: parallel('task/ner') })).rejects.toMatchObject({ code: 'UNEXPECTED_PREDICTION', message: expect.stringContaining('task/ner@1.0.0 answered token_classification') });
    await sdk(admin).delete('lang/mlm');
    await expect(anon.info('lang/mlm')).rejects.toMatchObject({ status: 404, code: 'MODULE_NOT_FOUND' });
  });

  it('errors: the body matches the Error schema, the code is in the table, the SDK keeps the request id', async () => {
    const res = await fetch(`${url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ text: 'x' }], max_length: 100000 }) });
    expect(res.status).toBe(400);
    const body = ErrorBodySchema.parse(await res.json());
    expect(body.error).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/^'max_length' must be an integer from \d+ to \d+/), request_id: res.headers.get('x-request-id') });
    const bad = await fetch(`${url}/v1/bases`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, body: JSON.stringify({ fingerprint: 'x', family: 'bert', hiddenSize: 8 }) });
    const badBody = ErrorBodySchema.parse(await bad.json());
    expect(badBody.error.code).toBe('INVALID_BODY');
    // snake_case in error messages too: the field is named as the client must send it.
    expect(badBody.error.message).toMatch(/hidden_size/);
    expect(badBody.error.message).toMatch(/Unrecognized key: "hiddenSize"/);
    expect(HealthSchema.parse(await (await fetch(`${url}/healthz`)).json())).toEqual({ status: 'ok' });
    const err = await sdk().version('task/none@1.0.0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModhubError);
    expect(err).toMatchObject({ status: 404, code: 'MODULE_NOT_FOUND', requestId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(ERROR_CODES[(err as ModhubError).code as keyof typeof ERROR_CODES].status).toBe(404);
  });

  it('a drifted answer fails validation (the check can fail)', async () => {
    const drifted: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const body = (await res.json()) as { bases: Record<string, unknown>[] };
      body.bases = body.bases.map(({ hidden_size, ...rest }) => ({ ...rest, hiddenSize: hidden_size }));
      return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
    };
    const c = new ModhubClient({ baseUrl: url, validateResponses: true, fetch: drifted });
    await expect(c.listBases()).rejects.toMatchObject({ code: 'INVALID_RESPONSE', message: expect.stringMatching(/bases\.0\.hidden_size.*|bases\.0: Unrecognized key/) });
  });

  it('every public SDK method was called, and every /v1 operation was reached through the SDK', async () => {
    const internal = new Set(['constructor', 'request', 'json', 'parse', 'versionPath', 'download']);
    const methods = [...new Set([...Object.getOwnPropertyNames(CoreClient.prototype), ...Object.getOwnPropertyNames(ModhubClient.prototype)])].filter((n) => !internal.has(n));
    expect(methods.filter((n) => !called.has(n))).toEqual([]);
    const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const ops = Object.entries(doc.paths)
      .filter(([p]) => p.startsWith('/v1/'))
      .flatMap(([p, item]) => Object.keys(item).map((m) => ({ m: m.toUpperCase(), p, re: new RegExp(`^${p.replace(/\{\w+\}/g, '[^/]+')}$`) })));
    expect(ops.length).toBeGreaterThan(18);
    const unreached = ops.filter((o) => !sent.some((s) => s.startsWith(`${o.m} `) && o.re.test(s.slice(o.m.length + 1)))).map((o) => `${o.m} ${o.p}`);
    expect(unreached).toEqual([]);
  });
});

describe('/openapi.json', () => {
  type Json = Record<string, unknown>;
  let doc: Json;
  beforeAll(async () => {
    doc = (await (await fetch(`${url}/openapi.json`)).json()) as Json;
  });

  it('is structurally valid OpenAPI 3.1: operations, parameters, responses, resolvable refs', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    const components = doc.components as { schemas: Record<string, Json>; securitySchemes: Record<string, Json> };
    const paths = doc.paths as Record<string, Record<string, Json>>;
    const problems: string[] = [];
    const opIds = new Set<string>();
    const methods = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);
    for (const [p, item] of Object.entries(paths)) {
      if (!p.startsWith('/')) problems.push(`${p}: path must start with /`);
      const templated = [...p.matchAll(/\{(\w+)\}/g)].map((x) => x[1]).sort();
      for (const [m, op] of Object.entries(item)) {
        const where = `${m.toUpperCase()} ${p}`;
        if (!methods.has(m)) problems.push(`${where}: not an HTTP method`);
        if (typeof op.summary !== 'string' || !op.summary) problems.push(`${where}: no summary`);
        if (typeof op.operationId !== 'string' || opIds.has(op.operationId)) problems.push(`${where}: operationId missing or repeated`);
        opIds.add(op.operationId as string);
        const params = (op.parameters ?? []) as Json[];
        const inPath = params.filter((x) => x.in === 'path');
        if (JSON.stringify(inPath.map((x) => x.name).sort()) !== JSON.stringify(templated)) problems.push(`${where}: path parameters ${JSON.stringify(inPath.map((x) => x.name))} do not match the template`);
        for (const x of params) {
          if (!['path', 'query', 'header', 'cookie'].includes(x.in as string) || typeof x.name !== 'string' || !x.schema) problems.push(`${where}: malformed parameter ${JSON.stringify(x)}`);
          if (x.in === 'path' && x.required !== true) problems.push(`${where}: path parameter ${String(x.name)} must be required`);
        }
        const responses = op.responses as Record<string, Json> | undefined;
        if (!responses || Object.keys(responses).length === 0) problems.push(`${where}: no responses`);
        for (const [status, r] of Object.entries(responses ?? {})) {
          if (!/^[1-5]\d\d$/.test(status)) problems.push(`${where}: bad status ${status}`);
          if (typeof r.description !== 'string') problems.push(`${where} ${status}: no description`);
        }
        for (const s of (op.security ?? []) as Json[]) for (const k of Object.keys(s)) if (!components.securitySchemes[k]) problems.push(`${where}: unknown security scheme ${k}`);
      }
    }
    // Every $ref anywhere points at an existing component; every component is a JSON Schema object.
    const visit = (x: unknown, at: string): void => {
      if (Array.isArray(x)) x.forEach((y, i) => visit(y, `${at}[${i}]`));
      else if (x && typeof x === 'object') {
        for (const [k, v] of Object.entries(x)) {
          if (k === '$ref') {
            const m = /^#\/components\/schemas\/(\w+)$/.exec(String(v));
            if (!m || !components.schemas[m[1]]) problems.push(`${at}: unresolvable $ref ${String(v)}`);
          } else visit(v, `${at}.${k}`);
        }
      }
    };
    visit(doc, '#');
    for (const [name, s] of Object.entries(components.schemas)) {
      if (!s || typeof s !== 'object' || Array.isArray(s)) problems.push(`components.schemas.${name}: not an object`);
      if ('$schema' in s || '$id' in s) problems.push(`components.schemas.${name}: carries $schema/$id`);
    }
    expect(problems).toEqual([]);
    // Answers are generated from the wire schemas: snake_case, strict.
    expect(components.schemas.ModuleSummary).toMatchObject({ additionalProperties: false, required: expect.arrayContaining(['base_fingerprint', 'created_at', 'updated_at']) });
    expect(JSON.stringify(components.schemas)).not.toMatch(/"(baseFingerprint|createdAt|yankReason|hiddenSize)"/);
  });

  it('lists every route the app mounts, with its method', () => {
    interface Layer { route?: { path: string; methods: Record<string, boolean> }; handle?: { stack?: Layer[] }; rawPath?: string }
    const routes: string[] = [];
    const walk = (stack: Layer[], prefix: string): void => {
      for (const layer of stack) {
        if (layer.route) {
          const p = (prefix + layer.route.path).replace(/[:*](\w+)/g, '{$1}');
          for (const m of Object.keys(layer.route.methods)) if (m !== '_all') routes.push(`${m} ${p}`);
        } else if (layer.handle?.stack) {
          walk(layer.handle.stack, prefix + (layer.rawPath && layer.rawPath !== '/' ? layer.rawPath : ''));
        }
      }
    };
    walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
    expect(routes.length).toBeGreaterThan(28);
    expect(routes).toEqual(expect.arrayContaining(['post /v1/infer', 'get /v1/base', 'get /healthz', 'get /{ns}/{name}/resolve/{rev}/{file}']));
    const paths = doc.paths as Record<string, Record<string, unknown>>;
    const missing = routes.filter((r) => {
      const [m, p] = r.split(' ');
      return !paths[p]?.[m];
    });
    expect(missing).toEqual([]);
    // ... and documents nothing that is not mounted.
    const documented = Object.entries(paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m} ${p}`));
    expect(documented.filter((d) => !routes.includes(d))).toEqual([]);
  });
});
