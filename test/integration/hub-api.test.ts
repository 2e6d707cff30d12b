/** Every hub endpoint and its error paths, through supertest on createApp() (no listen). */
import express, { type Express } from 'express';
import pino from 'pino';
import client from 'prom-client';
import request from 'supertest';
import { openMemoryRegistry, packArchive, sha256Digest, unpackArchive, type Registry } from '../../modules-store';
import { createApp } from '../../server/http/app';
import { makeArchive, makePackageFiles, publishModule, registerTestBase, TEST_BASE } from '../helpers/hub';

let reg: Registry;
let app: Express;
let admin: string;
let writer: string; // write, namespace 'lang' only
let reader: string;
const silent = pino({ level: 'silent' });

beforeEach(async () => {
  reg = await openMemoryRegistry();
  await registerTestBase(reg);
  admin = (await reg.createToken({ scopes: ['admin'] })).token;
  writer = (await reg.createToken({ scopes: ['write'], namespace: 'lang' })).token;
  reader = (await reg.createToken({ scopes: ['read'] })).token;
  app = createApp({ registry: reg, logger: silent, metrics: new client.Registry() });
});
afterEach(() => reg.close());

const auth = (t: string): [string, string] => ['Authorization', `Bearer ${t}`];
function errorOf(res: request.Response): { code: string; message: string } {
  expect(res.body).toHaveProperty('error.code');
  expect(res.body).toHaveProperty('error.message');
  return res.body.error as { code: string; message: string };
}
async function binary(req: request.Test): Promise<request.Response> {
  return req.buffer(true).parse((res, cb) => {
    const parts: Buffer[] = [];
    res.on('data', (c: Buffer) => parts.push(c));
    res.on('end', () => cb(null, Buffer.concat(parts)));
  });
}

describe('service endpoints', () => {
  it('serves /healthz, /openapi.json covering the hub paths, and /metrics counting requests', async () => {
    expect((await request(app).get('/healthz')).body).toEqual({ status: 'ok' });
    const doc = (await request(app).get('/openapi.json')).body;
    expect(doc.openapi).toBe('3.1.0');
    for (const p of ['/v1/modules', '/v1/modules/{ns}/{name}', '/v1/modules/{ns}/{name}/versions/{rev}/archive', '/v1/modules/{ns}/{name}/tags/{tag}', '/v1/tokens', '/{ns}/{name}/resolve/{rev}/{file}']) {
      expect(doc.paths).toHaveProperty([p]);
    }
    await request(app).get('/v1/modules');
    const m = await request(app).get('/metrics');
    expect(m.text).toMatch(/modhub_http_requests_total\{method="GET",route="\/v1\/modules",status="200"\} 1/);
    expect(m.text).toContain('modhub_http_request_duration_seconds_bucket');
  });
  it('documents every hub and HF route with its method in /openapi.json', async () => {
    const { hubRouter } = await import('../../server/http/hub-routes');
    const { hfRouter } = await import('../../server/http/hf-routes');
    const doc = (await request(app).get('/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    const deps = { registry: reg, auth: {}, logger: silent };
    const routes: [string, string][] = [];
    for (const [prefix, router] of [['/v1', hubRouter(deps)], ['', hfRouter(deps)]] as const) {
      for (const layer of router.stack as { route?: { path: string; methods: Record<string, boolean> } }[]) {
        if (!layer.route) continue;
        const p = (prefix + layer.route.path).replace(/[:*](\w+)/g, '{$1}');
        for (const m of Object.keys(layer.route.methods)) routes.push([p, m]);
      }
    }
    expect(routes.length).toBeGreaterThan(15);
    const missing = routes.filter(([p, m]) => !doc.paths[p]?.[m]).map(([p, m]) => `${m.toUpperCase()} ${p}`);
    expect(missing).toEqual([]);
  });
  it('answers unknown routes with a 404 error body', async () => {
    const res = await request(app).get('/v2/nothing');
    expect(res.status).toBe(404);
    expect(errorOf(res).code).toBe('ROUTE_NOT_FOUND');
  });
});

describe('POST /v1/modules', () => {
  it('accepts a multipart tar, a multipart tar.gz, loose files and a raw tar body', async () => {
    const a = await publishModule(app, 'lang/de', '1.0.0', writer);
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({ id: 'lang/de', version: '1.0.0', digest: expect.stringMatching(/^sha256:/) });
    expect(a.headers.location).toBe('/v1/modules/lang/de/versions/1.0.0');
    const gz = await request(app).post('/v1/modules').set(...auth(writer)).attach('archive', makeArchive({ id: 'lang/de', version: '1.0.1' }, true), 'm.tar.gz');
    expect(gz.status).toBe(201);
    const files = makePackageFiles({ id: 'lang/de', version: '1.0.2' }, '---\nlicense: mit\n---\n# card');
    let req = request(app).post('/v1/modules').set(...auth(writer));
    for (const [n, b] of files) req = req.attach(n, b, n);
    req = req.field('sha256.weights.safetensors', sha256Digest(files.get('weights.safetensors')!));
    expect((await req).status).toBe(201);
    const raw = await request(app).post('/v1/modules').set(...auth(writer)).set('Content-Type', 'application/x-tar').send(makeArchive({ id: 'lang/de', version: '1.0.3' }));
    expect(raw.status).toBe(201);
    expect((await reg.info('lang', 'de')).versions.map((v) => v.version)).toEqual(['1.0.3', '1.0.2', '1.0.1', '1.0.0']);
  });
  it('checks a client-sent sha256', async () => {
    const archive = makeArchive({ id: 'lang/de', version: '1.0.0' });
    const bad = await request(app).post('/v1/modules').set(...auth(writer)).field('sha256', '0'.repeat(64)).attach('archive', archive, 'm.tar');
    expect(bad.status).toBe(400);
    expect(errorOf(bad)).toMatchObject({ code: 'DIGEST_MISMATCH', message: expect.stringContaining('was declared') });
    const rawBad = await request(app).post('/v1/modules').set(...auth(writer)).set('Content-Type', 'application/x-tar').set('X-Content-Sha256', 'nothex').send(archive);
    expect(errorOf(rawBad).code).toBe('INVALID_ARGUMENT');
    const good = await request(app).post('/v1/modules').set(...auth(writer)).field('sha256', sha256Digest(archive)).attach('archive', archive, 'm.tar');
    expect(good.status).toBe(201);
  });
  it.each([
    ['no token', undefined, 401, 'UNAUTHORIZED'],
    ['a read token', 'reader', 403, 'FORBIDDEN'],
    ['an unknown token', 'bogus', 401, 'UNAUTHORIZED'],
  ])('refuses %s', async (_n, who, status, code) => {
    const token = who === 'reader' ? reader : who === 'bogus' ? 'mh_bogus' : undefined;
    const res = await publishModule(app, 'lang/de', '1.0.0', token);
    expect(res.status).toBe(status);
    expect(errorOf(res).code).toBe(code);
    expect(await reg.blobs.list()).toEqual([]);
  });
  it('refuses a namespace the token may not write, before storing anything', async () => {
    const res = await publishModule(app, 'task/topic', '1.0.0', writer);
    expect(res.status).toBe(403);
    expect(errorOf(res).message).toMatch(/namespace 'lang' only, not 'task'/);
    expect(await reg.blobs.list()).toEqual([]);
  });
  it('refuses a malformed Authorization header', async () => {
    const res = await request(app).get('/v1/modules').set('Authorization', 'Basic abc');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('Bearer');
  });
  it('maps bad input to 400/409/413/415/422 with codes and messages', async () => {
    const post = () => request(app).post('/v1/modules').set(...auth(admin));
    const cases: [request.Test, number, string, RegExp?][] = [
      [post().set('Content-Type', 'text/plain').send('hello'), 415, 'UNSUPPORTED_MEDIA_TYPE', /multipart\/form-data/],
      [post().field('sha256', 'x'), 400, 'INVALID_MULTIPART', /no files/],
      [post().attach('evil', Buffer.from('x'), 'evil'), 400, 'UNEXPECTED_FIELD', /'evil'/],
      [post().field('comment', 'x').attach('archive', makeArchive(), 'a.tar'), 400, 'UNEXPECTED_FIELD', /'comment'/],
      [post().attach('archive', Buffer.from('not a tar'.repeat(100)), 'a.tar'), 422, 'INVALID_ARCHIVE'],
      [post().attach('archive', packArchive(new Map([['module.json', Buffer.from('{')]])), 'a.tar'), 422, 'INVALID_MANIFEST', /not valid JSON/],
      [post().attach('archive', makeArchive({ extra: { format_version: 2 } }), 'a.tar'), 422, 'UNSUPPORTED_FORMAT_VERSION', /upgrade modhub/],
      [post().attach('archive', makeArchive({ version: '1.0' }), 'a.tar'), 422, 'INVALID_MANIFEST', /version/],
      [post().attach('archive', makeArchive({ base: { fingerprint: `sha256:${'0'.repeat(64)}` } }), 'a.tar'), 422, 'UNKNOWN_BASE'],
      [post().attach('archive', makeArchive({ base: { hidden_size: 16 } }), 'a.tar'), 422, 'BASE_MISMATCH'],
      [post().attach('archive', makeArchive(), 'a.tar').attach('module.json', Buffer.from('{}'), 'module.json'), 400, 'INVALID_MULTIPART', /not both/],
      [post().set('Content-Type', 'multipart/form-data; boundary=xyz').send('--xyz\r\nbroken'), 400, 'INVALID_MULTIPART'],
    ];
    for (const [req, status, code, re] of cases) {
      const res = await req;
      expect({ status: res.status, code: errorOf(res).code }).toEqual({ status, code });
      if (re) expect(errorOf(res).message).toMatch(re);
    }
    const weights = makePackageFiles();
    weights.set('weights.safetensors', Buffer.alloc(64));
    const w = await post().attach('archive', packArchive(weights), 'a.tar');
    expect(errorOf(w).code).toBe('INVALID_WEIGHTS');
    expect(await reg.blobs.list()).toEqual([]);
    expect((await reg.search()).total).toBe(0);
  });
  it('refuses traversal and links inside archives', async () => {
    const tar = await import('tar-stream');
    const p = tar.pack();
    p.entry({ name: '../../module.json' }, 'x');
    p.entry({ name: 'weights.safetensors', type: 'symlink', linkname: '/etc/passwd' });
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p) chunks.push(c as Buffer);
    const res = await request(app).post('/v1/modules').set(...auth(admin)).attach('archive', Buffer.concat(chunks), 'a.tar');
    expect(res.status).toBe(422);
    expect(errorOf(res)).toMatchObject({ code: 'INVALID_ARCHIVE', message: expect.stringContaining("'..'") });
  });
  it('409 on republish, leaving the stored version untouched', async () => {
    await publishModule(app, 'lang/de', '1.0.0', writer).expect(201);
    const before = (await request(app).get('/v1/modules/lang/de/versions/1.0.0')).body;
    const again = await publishModule(app, 'lang/de', '1.0.0', writer, { description: 'sneaky change' });
    expect(again.status).toBe(409);
    expect(errorOf(again).code).toBe('VERSION_EXISTS');
    expect((await request(app).get('/v1/modules/lang/de/versions/1.0.0')).body).toEqual(before);
  });
  it('413 over the configured size limit', async () => {
    const small = await openMemoryRegistry({ limits: { maxWeightsBytes: 300, maxManifestBytes: 4096, maxCardBytes: 4096 } });
    await registerTestBase(small);
    const t = (await small.createToken({ scopes: ['admin'] })).token;
    const sapp = createApp({ registry: small, logger: silent, metrics: new client.Registry() });
    const big = makeArchive({ weightsBytes: 200_000 });
    const res = await request(sapp).post('/v1/modules').set(...auth(t)).attach('archive', big, 'a.tar');
    expect(res.status).toBe(413);
    expect(errorOf(res).code).toBe('TOO_LARGE');
    const raw = await request(sapp).post('/v1/modules').set(...auth(t)).set('Content-Type', 'application/x-tar').send(big);
    expect(raw.status).toBe(413);
    await small.close();
  });
  it('allow_unknown_base needs an admin', async () => {
    const other = { base: { fingerprint: `sha256:${'1'.repeat(64)}` } };
    const w = await request(app).post('/v1/modules').set(...auth(writer)).field('allow_unknown_base', 'true').attach('archive', makeArchive({ id: 'lang/x', ...other }), 'a.tar');
    expect(w.status).toBe(403);
    const a = await request(app).post('/v1/modules').set(...auth(admin)).field('allow_unknown_base', 'true').attach('archive', makeArchive({ id: 'lang/x', ...other }), 'a.tar');
    expect(a.status).toBe(201);
  });
});

describe('search and info', () => {
  beforeEach(async () => {
    await publishModule(app, 'lang/de', '1.0.0', admin, { kind: 'bottleneck', task: 'mlm', language: 'de', description: 'German MAD-X adapter' }).expect(201);
    await publishModule(app, 'lang/fr', '1.0.0', admin, { kind: 'bottleneck', task: 'mlm', language: 'fr', description: 'French' }).expect(201);
    await publishModule(app, 'task/topic', '1.0.0', admin, { kind: 'lora', task: 'topic-classification', language: 'en' }).expect(201);
    await publishModule(app, 'task/ner', '1.0.0', admin, { kind: 'diff', task: 'ner', language: 'en', head: { type: 'token_classification', num_labels: 3 } }).expect(201);
  });
  it('filters, sorts and paginates', async () => {
    const ids = (res: request.Response): string[] => (res.body.items as { id: string }[]).map((m) => m.id);
    expect(ids(await request(app).get('/v1/modules?sort=name'))).toEqual(['lang/de', 'lang/fr', 'task/ner', 'task/topic']);
    expect(ids(await request(app).get('/v1/modules?kind=lora'))).toEqual(['task/topic']);
    expect(ids(await request(app).get('/v1/modules?task=mlm&language=fr'))).toEqual(['lang/fr']);
    expect(ids(await request(app).get('/v1/modules?namespace=task&sort=name'))).toEqual(['task/ner', 'task/topic']);
    expect(ids(await request(app).get('/v1/modules?q=german'))).toEqual(['lang/de']);
    expect(ids(await request(app).get(`/v1/modules?base=${TEST_BASE.fingerprint}&sort=name`))).toHaveLength(4);
    expect(ids(await request(app).get('/v1/modules?sort=recent'))[0]).toBe('task/ner');
    await binary(request(app).get('/v1/modules/task/topic/versions/1.0.0/archive')).then((r) => expect(r.status).toBe(200));
    expect(ids(await request(app).get('/v1/modules?sort=downloads'))[0]).toBe('task/topic');
    const p1 = await request(app).get('/v1/modules?sort=name&limit=3');
    expect(p1.body).toMatchObject({ total: 4, limit: 3, offset: 0 });
    expect(p1.headers.link).toMatch(/offset=3.*rel="next"/);
    const p2 = await request(app).get('/v1/modules?sort=name&limit=3&offset=3');
    expect(ids(p2)).toEqual(['task/topic']);
    expect(p2.headers.link).toBeUndefined();
  });
  it('refuses bad query parameters', async () => {
    for (const q of ['sort=stars', 'limit=0', 'limit=101', 'limit=abc', 'limit=0x10', 'limit=1e1', 'offset=-1', 'q=a&q=b', 'page=2', 'baseFingerprint=x']) {
      const res = await request(app).get(`/v1/modules?${q}`);
      expect({ q, status: res.status, code: errorOf(res).code }).toEqual({ q, status: 400, code: 'INVALID_QUERY' });
    }
  });
  it('returns module info with versions and tags, and 404/400 for missing or malformed names', async () => {
    await publishModule(app, 'lang/de', '1.1.0', admin).expect(201);
    const info = await request(app).get('/v1/modules/lang/de');
    expect(info.body).toMatchObject({ id: 'lang/de', tags: { latest: '1.1.0' }, manifest: { version: '1.1.0' } });
    expect(info.body.versions.map((v: { version: string }) => v.version)).toEqual(['1.1.0', '1.0.0']);
    const v = await request(app).get('/v1/modules/lang/de/versions/latest');
    expect(v.body).toMatchObject({ id: 'lang/de', version: '1.1.0', manifest: { kind: 'bottleneck' } });
    expect(errorOf(await request(app).get('/v1/modules/lang/xx').expect(404)).code).toBe('MODULE_NOT_FOUND');
    expect(errorOf(await request(app).get('/v1/modules/lang/de/versions/9.9.9').expect(404)).code).toBe('VERSION_NOT_FOUND');
    expect(errorOf(await request(app).get('/v1/modules/Lang/De').expect(400)).code).toBe('INVALID_NAME');
    expect(errorOf(await request(app).get('/v1/modules/lang/..%2F..').expect(400)).code).toBe('INVALID_NAME');
  });
});

describe('downloads', () => {
  beforeEach(async () => {
    await publishModule(app, 'lang/de', '1.0.0', admin).expect(201);
  });
  it('serves the archive with ETag and Content-Length; it unpacks to the package', async () => {
    const res = await binary(request(app).get('/v1/modules/lang/de/versions/1.0.0/archive'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-tar');
    expect(Number(res.headers['content-length'])).toBe((res.body as Buffer).length);
    expect(res.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
    const files = await unpackArchive(res.body as Buffer, { maxFileBytes: 1e7, maxTotalBytes: 1e7 });
    expect([...files.keys()]).toEqual(['module.json', 'weights.safetensors', 'README.md']);
    expect(files.get('weights.safetensors')!.equals(makePackageFiles({ id: 'lang/de' }).get('weights.safetensors')!)).toBe(true);
    const again = await request(app).get('/v1/modules/lang/de/versions/latest/archive').set('If-None-Match', res.headers.etag);
    expect(again.status).toBe(304);
    const whole = res.body as Buffer;
    const part = await binary(request(app).get('/v1/modules/lang/de/versions/1.0.0/archive').set('Range', 'bytes=500-1600'));
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 500-1600/${whole.length}`);
    expect((part.body as Buffer).equals(whole.subarray(500, 1601))).toBe(true);
  });
  it('serves single files with Range, suffix ranges, HEAD, 416 and 404', async () => {
    const weights = makePackageFiles({ id: 'lang/de' }).get('weights.safetensors')!;
    const url = '/v1/modules/lang/de/versions/1.0.0/files/weights.safetensors';
    const full = await binary(request(app).get(url));
    expect((full.body as Buffer).equals(weights)).toBe(true);
    expect(full.headers.etag).toBe(`"${sha256Digest(weights).slice(7)}"`);
    expect(full.headers['accept-ranges']).toBe('bytes');
    const tail = await binary(request(app).get(url).set('Range', 'bytes=-10'));
    expect(tail.status).toBe(206);
    expect((tail.body as Buffer).equals(weights.subarray(weights.length - 10))).toBe(true);
    const open = await binary(request(app).get(url).set('Range', 'bytes=8-'));
    expect((open.body as Buffer).equals(weights.subarray(8))).toBe(true);
    const head = await request(app).head(url);
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBe(weights.length);
    const bad = await request(app).get(url).set('Range', `bytes=${weights.length}-`);
    expect(bad.status).toBe(416);
    expect(bad.headers['content-range']).toBe(`bytes */${weights.length}`);
    expect(errorOf(bad).code).toBe('RANGE_NOT_SATISFIABLE');
    const stale = await binary(request(app).get(url).set('Range', 'bytes=0-3').set('If-Range', '"other"'));
    expect(stale.status).toBe(200);
    const card = await request(app).get('/v1/modules/lang/de/versions/1.0.0/files/README.md');
    expect(card.text).toMatch(/^---\n/);
    const missing = await request(app).get('/v1/modules/lang/de/versions/1.0.0/files/secret.txt');
    expect(missing.status).toBe(404);
    expect(errorOf(missing)).toMatchObject({ code: 'FILE_NOT_FOUND', message: expect.stringContaining('module.json') });
  });
  it('counts whole downloads only', async () => {
    await binary(request(app).get('/v1/modules/lang/de/versions/1.0.0/archive'));
    await binary(request(app).get('/v1/modules/lang/de/versions/1.0.0/files/weights.safetensors'));
    await binary(request(app).get('/v1/modules/lang/de/versions/1.0.0/files/weights.safetensors').set('Range', 'bytes=0-0'));
    await request(app).head('/v1/modules/lang/de/versions/1.0.0/archive');
    await request(app).get('/v1/modules/lang/de/versions/1.0.0/files/module.json');
    // counting happens after the response finished: wait until the two counted downloads land, then a bit more
    for (let i = 0; i < 100 && (await reg.info('lang', 'de')).downloads < 2; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    const info = (await request(app).get('/v1/modules/lang/de')).body;
    expect(info.downloads).toBe(2);
    expect(info.versions[0].downloads).toBe(2);
  });
});

describe('tags, yank, delete', () => {
  beforeEach(async () => {
    await publishModule(app, 'lang/de', '1.0.0', admin).expect(201);
    await publishModule(app, 'lang/de', '1.1.0', admin).expect(201);
  });
  it('sets and removes tags with write access to the namespace', async () => {
    const set = await request(app).put('/v1/modules/lang/de/tags/stable').set(...auth(writer)).send({ version: '1.0.0' });
    expect(set.status).toBe(200);
    expect(set.body.tags).toEqual({ stable: '1.0.0', latest: '1.1.0' });
    expect((await request(app).get('/v1/modules/lang/de/versions/stable')).body.version).toBe('1.0.0');
    await request(app).put('/v1/modules/lang/de/tags/latest').set(...auth(writer)).send({ version: '1.0.0' }).expect(200);
    expect((await request(app).get('/v1/modules/lang/de/versions/latest')).body.version).toBe('1.0.0');
    expect((await request(app).delete('/v1/modules/lang/de/tags/latest').set(...auth(writer))).body.tags.latest).toBe('1.1.0');
    expect((await request(app).delete('/v1/modules/lang/de/tags/stable').set(...auth(writer))).body.tags).toEqual({ latest: '1.1.0' });
    expect(errorOf(await request(app).delete('/v1/modules/lang/de/tags/stable').set(...auth(writer)).expect(404)).code).toBe('TAG_NOT_FOUND');
    expect(errorOf(await request(app).put('/v1/modules/lang/de/tags/x').set(...auth(writer)).send({ version: '7.0.0' }).expect(404)).code).toBe('VERSION_NOT_FOUND');
    expect(errorOf(await request(app).put('/v1/modules/lang/de/tags/x').set(...auth(writer)).send({}).expect(400)).code).toBe('INVALID_BODY');
    expect(errorOf(await request(app).put('/v1/modules/lang/de/tags/x').set(...auth(writer)).set('Content-Type', 'application/json').send('{oops').expect(400)).code).toBe('INVALID_JSON');
    expect(errorOf(await request(app).put('/v1/modules/lang/de/tags/2.0.0').set(...auth(writer)).send({ version: '1.0.0' }).expect(400)).code).toBe('INVALID_NAME');
    expect((await request(app).put('/v1/modules/lang/de/tags/x').send({ version: '1.0.0' })).status).toBe(401);
    expect((await request(app).put('/v1/modules/lang/de/tags/x').set(...auth(reader)).send({ version: '1.0.0' })).status).toBe(403);
  });
  it('yanks and unyanks', async () => {
    const y = await request(app).post('/v1/modules/lang/de/versions/1.1.0/yank').set(...auth(writer)).send({ reason: 'broken' });
    expect(y.body).toEqual({ id: 'lang/de', version: '1.1.0', yanked: true });
    expect((await request(app).get('/v1/modules/lang/de/versions/latest')).body.version).toBe('1.0.0');
    expect((await binary(request(app).get('/v1/modules/lang/de/versions/1.1.0/archive'))).status).toBe(200);
    expect((await request(app).get('/v1/modules/lang/de')).body.versions[0]).toMatchObject({ version: '1.1.0', yanked: true, yank_reason: 'broken' });
    await request(app).post('/v1/modules/lang/de/versions/1.1.0/yank').set(...auth(writer)).send({ yanked: false }).expect(200);
    expect((await request(app).get('/v1/modules/lang/de/versions/latest')).body.version).toBe('1.1.0');
    expect(errorOf(await request(app).post('/v1/modules/lang/de/versions/1.1.0/yank').set(...auth(writer)).send({ yanked: 'yes' }).expect(400)).code).toBe('INVALID_BODY');
    expect(errorOf(await request(app).post('/v1/modules/lang/de/versions/3.0.0/yank').set(...auth(writer)).expect(404)).code).toBe('VERSION_NOT_FOUND');
  });
  it('deletes versions and modules with an admin token only', async () => {
    expect((await request(app).delete('/v1/modules/lang/de/versions/1.1.0').set(...auth(writer))).status).toBe(403);
    await request(app).delete('/v1/modules/lang/de/versions/1.1.0').set(...auth(admin)).expect(204);
    expect((await request(app).get('/v1/modules/lang/de')).body.versions).toHaveLength(1);
    expect(errorOf(await request(app).delete('/v1/modules/lang/de/versions/1.1.0').set(...auth(admin)).expect(404)).code).toBe('VERSION_NOT_FOUND');
    await request(app).delete('/v1/modules/lang/de').set(...auth(admin)).expect(204);
    expect((await request(app).get('/v1/modules/lang/de')).status).toBe(404);
    expect(await reg.blobs.list()).toEqual([]);
    const again = await publishModule(app, 'lang/de', '1.0.0', admin);
    expect(again.status).toBe(409);
    expect(errorOf(again).message).toMatch(/deleted; version numbers are never reused/);
    expect(await reg.blobs.list()).toEqual([]);
    await publishModule(app, 'lang/de', '1.2.0', admin).expect(201);
  });
});

describe('tokens and bases over HTTP', () => {
  it('creates, lists and revokes tokens (admin only)', async () => {
    expect((await request(app).post('/v1/tokens').set(...auth(writer)).send({ scopes: ['read'] })).status).toBe(403);
    const c = await request(app).post('/v1/tokens').set(...auth(admin)).send({ scopes: ['write'], namespace: 'task', description: 'ci' });
    expect(c.status).toBe(201);
    expect(c.body).toEqual({ token: expect.stringMatching(/^mh_/), id: expect.any(String), scopes: ['write'], namespace: 'task', description: 'ci', created_at: expect.any(String) });
    await publishModule(app, 'task/topic', '1.0.0', c.body.token).expect(201);
    const list = await request(app).get('/v1/tokens').set(...auth(admin));
    expect(list.body.tokens).toHaveLength(4);
    expect(JSON.stringify(list.body)).not.toContain(c.body.token);
    expect((await request(app).get('/v1/whoami').set(...auth(c.body.token))).body.token.id).toBe(c.body.id);
    await request(app).delete(`/v1/tokens/${c.body.id}`).set(...auth(admin)).expect(204);
    expect((await publishModule(app, 'task/topic', '1.0.1', c.body.token)).status).toBe(401);
    expect(errorOf(await request(app).post('/v1/tokens').set(...auth(admin)).send({ scopes: ['root'] }).expect(400)).code).toBe('INVALID_BODY');
    expect(errorOf(await request(app).post('/v1/tokens').set(...auth(admin)).send({ scopes: ['read'], namespace: 'Bad NS' }).expect(400)).code).toBe('INVALID_NAME');
    expect(errorOf(await request(app).delete('/v1/tokens/tok_nope').set(...auth(admin)).expect(404)).code).toBe('TOKEN_NOT_FOUND');
  });
  it('registers bases (admin) so modules against them are accepted', async () => {
    const fp = `sha256:${'5'.repeat(64)}`;
    expect((await request(app).post('/v1/bases').set(...auth(writer)).send({ ...TEST_BASE, fingerprint: fp })).status).toBe(403);
    expect((await publishModule(app, 'lang/y', '1.0.0', writer, { base: { fingerprint: fp } })).status).toBe(422);
    const created = await request(app).post('/v1/bases').set(...auth(admin)).send({ ...TEST_BASE, fingerprint: fp }).expect(201);
    // Answered in the same snake_case it was sent in (catalog rows are mapped, not passed through).
    expect(created.body).toEqual({ fingerprint: fp, family: 'bert', hidden_size: 8, num_layers: 2, vocab_size: 32, description: '', created_at: expect.any(String) });
    expect((await publishModule(app, 'lang/y', '1.0.0', writer, { base: { fingerprint: fp } })).status).toBe(201);
    expect((await request(app).get('/v1/bases')).body.bases).toHaveLength(2);
    expect(errorOf(await request(app).post('/v1/bases').set(...auth(admin)).send({ family: 'bert' }).expect(400)).code).toBe('INVALID_BODY');
    const camel = errorOf(await request(app).post('/v1/bases').set(...auth(admin)).send({ ...TEST_BASE, fingerprint: fp, hiddenSize: 8 }).expect(400));
    expect(camel).toMatchObject({ code: 'INVALID_BODY', message: expect.stringContaining('Unrecognized key: "hiddenSize"') });
    expect(errorOf(await request(app).post('/v1/bases').set(...auth(admin)).send({ ...TEST_BASE, fingerprint: fp, hidden_size: 0 }).expect(400)).message).toMatch(/^request body is invalid: hidden_size: /);
  });
});

describe('hostile input', () => {
  it('answers garbage with 4xx error bodies and keeps serving', async () => {
    await publishModule(app, 'lang/de', '1.0.0', admin).expect(201);
    const reqs: request.Test[] = [
      request(app).get('/v1/modules/%E0%A4%A/x'),
      request(app).get('/lang/de/resolve/%ZZ/module.json'),
      request(app).get('/v1/modules/lang/de/versions/1.0.0/files/weights.safetensors').set('Range', 'bytes=abc'),
      request(app).get('/v1/modules/lang/de/versions/1.0.0/files/weights.safetensors').set('Range', 'bytes=5-2'),
      request(app).get('/v1/modules?limit=1&limit=2'),
      request(app).get('/v1/modules?q=%00abc'),
      request(app).get(`/v1/modules?q=${'x'.repeat(300)}`),
      request(app).get('/api/models?search=a%00bc'),
      request(app).put('/v1/modules/lang/de/tags/x').set(...auth(admin)).set('Content-Type', 'application/json').send('x'.repeat(100_000)),
      request(app).post('/v1/tokens').set(...auth(admin)).set('Content-Type', 'application/json').send('[1,2,3]'),
      request(app).post('/v1/modules').set(...auth(admin)).set('Content-Type', 'application/gzip').send(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0])),
      request(app).post('/v1/modules').set(...auth(admin)).set('Content-Type', 'application/x-tar').send(Buffer.alloc(0)),
      request(app).get('/v1/modules/lang/de/versions/..%2F..%2Fetc/files/passwd'),
      request(app).get('/lang/de/resolve/1.0.0/..%2F..%2Fcatalog.sqlite'),
      request(app).get('/v1/modules').set('Authorization', `Bearer ${'x'.repeat(5000)}`),
    ];
    for (const [i, r] of reqs.entries()) {
      const res = await r;
      expect({ i, client4xx: res.status >= 400 && res.status < 500, code: typeof res.headers['x-modhub-error-code'] }).toEqual({ i, client4xx: true, code: 'string' });
    }
    await request(app).get('/healthz').expect(200);
    expect((await reg.info('lang', 'de')).versions).toHaveLength(1);
  });
});

describe('configuration and extension', () => {
  it('anonymous reads can be turned off', async () => {
    const closed = createApp({ registry: reg, auth: { anonymousRead: false }, logger: silent, metrics: new client.Registry() });
    expect(errorOf(await request(closed).get('/v1/modules').expect(401)).code).toBe('UNAUTHORIZED');
    expect((await request(closed).get('/lang/de/resolve/main/module.json')).status).toBe(401);
    await request(closed).get('/v1/modules').set(...auth(reader)).expect(200);
    await request(closed).get('/healthz').expect(200);
  });
  it('mounts extra routers before the error handler; unexpected errors are masked as 500', async () => {
    const extra = express.Router();
    extra.get('/boom', () => {
      throw new Error('secret internals');
    });
    extra.get('/ok', (_req, res) => {
      res.json({ ok: true });
    });
    const logged: unknown[] = [];
    const logger = pino({ level: 'error' }, { write: (s: string) => logged.push(JSON.parse(s)) });
    const a2 = createApp({ registry: reg, logger, metrics: new client.Registry(), routers: [{ path: '/v1/engine', router: extra }] });
    expect((await request(a2).get('/v1/engine/ok')).body).toEqual({ ok: true });
    const boom = await request(a2).get('/v1/engine/boom');
    expect(boom.status).toBe(500);
    const id = boom.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(boom.body).toEqual({ error: { code: 'INTERNAL', message: `internal server error (request id ${id}; the server log has the details)`, request_id: id } });
    expect(JSON.stringify(boom.body)).not.toContain('secret');
    // The log line has the stack and the same request id, so a user's report finds it.
    expect(logged).toContainEqual(expect.objectContaining({ request_id: id, msg: 'unexpected error', err: expect.objectContaining({ message: 'secret internals' }) }));
    // A caller's own request id is kept (and a malformed one replaced).
    const mine = await request(a2).get('/v1/engine/boom').set('X-Request-Id', 'trace-42');
    expect([mine.headers['x-request-id'], mine.body.error.request_id]).toEqual(['trace-42', 'trace-42']);
    const bad = await request(a2).get('/v1/engine/boom').set('X-Request-Id', 'no spaces allowed');
    expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // Plain TypeErrors / RangeErrors are bugs, not bad input: 500 too.
    extra.get('/range', () => {
      throw new RangeError("'x' must be positive");
    });
    expect((await request(a2).get('/v1/engine/range')).status).toBe(500);
  });
});
