/** CORS (server/http/cors.ts): off by default; for a configured origin, preflights pass with the SDK's headers and answers expose what it reads. */
import pino from 'pino';
import client from 'prom-client';
import request from 'supertest';
import { openMemoryRegistry, type Registry } from '../../modules-store';
import { createApp } from '../../server/http/app';
import { corsFor } from '../../server/http/cors';

let registry: Registry;
beforeAll(async () => {
  registry = await openMemoryRegistry();
});
afterAll(async () => {
  await registry.close();
});

const app = (corsOrigins?: string[]) => createApp({ registry, logger: pino({ level: 'silent' }), metrics: new client.Registry(), corsOrigins });

describe('CORS', () => {
  it('is off unless origins are configured', async () => {
    const res = await request(app()).get('/v1/modules').set('Origin', 'https://app.example');
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('answers a preflight for an allowed origin with the headers the SDK sends, and exposes the ones it reads', async () => {
    const a = app(['https://app.example']);
    const pre = await request(a).options('/v1/modules').set('Origin', 'https://app.example').set('Access-Control-Request-Method', 'POST').set('Access-Control-Request-Headers', 'authorization,content-type,range');
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(pre.headers['access-control-allow-headers']).toMatch(/Authorization.*Content-Type.*Range/);
    const res = await request(a).get('/v1/modules/no/such').set('Origin', 'https://app.example');
    expect(res.status).toBe(404);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(res.headers['access-control-expose-headers']).toMatch(/X-Request-Id.*Retry-After.*ETag/);
  });

  it('does not allow other origins, and refuses a malformed origin setting', async () => {
    const res = await request(app(['https://app.example'])).get('/v1/modules').set('Origin', 'https://evil.example');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(() => corsFor(['https://app.example/path'])).toThrow(/scheme:\/\/host\[:port\] without a path, got 'https:\/\/app.example\/path'/);
  });
});
