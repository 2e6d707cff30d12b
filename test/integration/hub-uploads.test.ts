/**
 * Uploads in bounded memory and resumable uploads (issue 13, items 1 and 2): a gzip bomb is cut off by the ratio
 * cap with TOO_LARGE and leaves nothing staged; a module sent in chunks through /v1/uploads (out-of-order chunks
 * refused with the offset to resume at, a wrong digest refused without losing the session, a last chunk in the
 * commit) is published and downloads byte for byte; sessions belong to their token.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import pino from 'pino';
import client from 'prom-client';
import request from 'supertest';
import { createGzip, gunzipSync } from 'node:zlib';
import { openMemoryRegistry, unpackArchive, ustarHeader, type Registry } from '../../modules-store';
import { createApp } from '../../server/http/app';
import { makeArchive, makePackageFiles, registerTestBase } from '../helpers/hub';

let reg: Registry;
let app: ReturnType<typeof createApp>;
let writer: string;
let other: string;
const bearer = (t: string): [string, string] => ['Authorization', `Bearer ${t}`];
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

beforeAll(async () => {
  reg = await openMemoryRegistry();
  await registerTestBase(reg);
  writer = (await reg.createToken({ scopes: ['write'] })).token;
  other = (await reg.createToken({ scopes: ['write'] })).token;
  app = createApp({ registry: reg, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
});
afterAll(() => reg.close());

async function stagedLeft(): Promise<string[]> {
  return fsp.readdir(reg.stagingDir).catch(() => []);
}

describe('bounded-memory uploads', () => {
  it('a gzip bomb (weights declared as 1e9 zero bytes, 200 MiB of zeros sent) is refused by the inflation cap and leaves nothing staged', async () => {
    // tar header for a 1e9-byte weights file, then zeros: gzip turns ~1 GB into ~1 MB
    const header = ustarHeader('weights.safetensors', 1e9);
    const z = createGzip({ level: 9 });
    const parts: Buffer[] = [];
    z.on('data', (c: Buffer) => parts.push(c));
    const done = new Promise((r) => z.on('end', r));
    z.write(header);
    const zeros = Buffer.alloc(1 << 20);
    for (let i = 0; i < 200; i++) z.write(zeros); // the stream ends early: the declared 1e9 bytes never arrive
    z.end();
    await done;
    const bomb = Buffer.concat(parts);
    expect(bomb.length).toBeLessThan(2 << 20);
    const res = await request(app).post('/v1/modules').set(...bearer(writer)).set('Content-Type', 'application/gzip').send(bomb);
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ code: 'TOO_LARGE', message: expect.stringMatching(/declares 1000000000 bytes of files, more than 100 times its compressed size/) });
    expect(await stagedLeft()).toEqual([]);
    const multi = await request(app).post('/v1/modules').set(...bearer(writer)).attach('archive', bomb, 'bomb.tar.gz');
    expect(multi.status).toBe(413);
    expect(await stagedLeft()).toEqual([]);
  });
  it('publishes multipart archives, loose files and raw tar.gz from staged files', async () => {
    await request(app).post('/v1/modules').set(...bearer(writer)).attach('archive', makeArchive({ id: 'st/a', version: '1.0.0' }, true), 'a.tar.gz').expect(201);
    const files = makePackageFiles({ id: 'st/b', version: '1.0.0' });
    const loose = request(app).post('/v1/modules').set(...bearer(writer));
    for (const [n, b] of files) loose.attach(n, b, n);
    loose.field(`sha256.weights.safetensors`, sha(files.get('weights.safetensors')!));
    await loose.expect(201);
    const w = await request(app).get('/v1/modules/st/b/versions/1.0.0/files/weights.safetensors').expect(200);
    expect(Buffer.from(w.body as Buffer).equals(files.get('weights.safetensors')!)).toBe(true);
    expect(await stagedLeft()).toEqual([]);
  });
});

describe('resumable uploads (/v1/uploads)', () => {
  it('chunks, a refused out-of-order chunk, a wrong digest, a last chunk in the commit, then a byte-exact download', async () => {
    const archive = makeArchive({ id: 'big/m', version: '1.0.0', seed: 4 }, true);
    const open = await request(app).post('/v1/uploads').set(...bearer(writer)).expect(202);
    const loc = open.headers.location as string;
    expect(loc).toMatch(/^\/v1\/uploads\/up_[0-9a-f]{24}$/);
    expect(open.body).toMatchObject({ offset: 0, max_bytes: reg.maxPackageBytes });
    const cut = [0, 100, 400, archive.length - 50, archive.length];
    const chunk = (i: number) => archive.subarray(cut[i], cut[i + 1]);
    const range = (i: number) => `bytes ${cut[i]}-${cut[i + 1] - 1}/*`;
    await request(app).patch(loc).set(...bearer(writer)).set('Content-Type', 'application/octet-stream').set('Content-Range', range(0)).send(chunk(0)).expect(202);
    // a retried chunk whose answer was lost: refused with where to resume
    const dup = await request(app).patch(loc).set(...bearer(writer)).set('Content-Type', 'application/octet-stream').set('Content-Range', range(0)).send(chunk(0));
    expect(dup.status).toBe(416);
    expect(dup.body.error).toMatchObject({ code: 'UPLOAD_RANGE_MISMATCH', message: expect.stringContaining('send the chunk that starts at 100') });
    const mid = await request(app).patch(loc).set(...bearer(writer)).set('Content-Type', 'application/octet-stream').set('Content-Range', `${cut[1]}-${cut[2] - 1}`).send(chunk(1)).expect(202);
    expect(mid.headers.range).toBe(`0-${cut[2] - 1}`);
    await request(app).patch(loc).set(...bearer(writer)).set('Content-Type', 'application/octet-stream').send(chunk(2)).expect(202);
    expect((await request(app).get(loc).set(...bearer(writer)).expect(200)).body.offset).toBe(cut[3]);
    // sessions are the opening token's
    expect((await request(app).get(loc).set(...bearer(other))).body.error.code).toBe('UPLOAD_NOT_FOUND');
    const wrong = await request(app).put(`${loc}?digest=${sha(Buffer.from('x'))}`).set(...bearer(writer));
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.code).toBe('DIGEST_MISMATCH');
    const done = await request(app).put(`${loc}?digest=${sha(archive)}`).set(...bearer(writer)).set('Content-Type', 'application/octet-stream').set('Content-Range', range(3)).send(chunk(3));
    expect(done.status).toBe(201);
    expect(done.body).toMatchObject({ id: 'big/m', version: '1.0.0' });
    expect((await request(app).get(loc).set(...bearer(writer))).status).toBe(404);
    const got = await request(app).get('/v1/modules/big/m/versions/1.0.0/files/weights.safetensors').buffer(true).parse((res, cb) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => cb(null, Buffer.concat(parts)));
    });
    const want = (await unpackArchive(gunzipSync(archive), { maxFileBytes: 1 << 30, maxTotalBytes: 1 << 30 })).get('weights.safetensors')!;
    expect(Buffer.from(got.body as Buffer).equals(want)).toBe(true);
    expect(await stagedLeft()).toEqual([]);
  });
  it('cancel, limits and bad headers', async () => {
    const loc = (await request(app).post('/v1/uploads').set(...bearer(writer)).expect(202)).headers.location as string;
    const bad = await request(app).patch(loc).set(...bearer(writer)).set('Content-Type', 'application/octet-stream').set('Content-Range', 'bytes 5-1/*').send(Buffer.alloc(1));
    expect(bad.body.error.code).toBe('INVALID_REQUEST');
    await request(app).delete(loc).set(...bearer(writer)).expect(204);
    expect((await request(app).patch(loc).set(...bearer(writer)).send(Buffer.alloc(1))).body.error.code).toBe('UPLOAD_NOT_FOUND');
    expect((await request(app).post('/v1/uploads')).status).toBe(401);
    const small = await openMemoryRegistry({ limits: { maxWeightsBytes: 1000, maxManifestBytes: 1000, maxCardBytes: 1000 } });
    try {
      const t = (await small.createToken({ scopes: ['write'] })).token;
      const a2 = createApp({ registry: small, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
      const l2 = (await request(a2).post('/v1/uploads').set(...bearer(t)).expect(202)).headers.location as string;
      const big = await request(a2).patch(l2).set(...bearer(t)).set('Content-Type', 'application/octet-stream').send(Buffer.alloc(small.maxPackageBytes + 1));
      expect(big.status).toBe(413);
      expect((await request(a2).get(l2).set(...bearer(t))).body.offset).toBe(0);
    } finally {
      await small.close();
    }
  });
});
