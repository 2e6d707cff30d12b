/**
 * The SDK's transport against a real HTTP server on a socket: retries on 429 / 503 honouring Retry-After (capped
 * by maxDelayMs), the server's code after the last retry, TIMEOUT, ABORTED, and upload progress that counts the
 * bytes the server received. Plus Retry-After parsing and the composition builder's checks.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { average, fuse, ModhubClient, ModhubError, parallel, retryAfterMs, stack, sum } from '../../client-sdk';

const PORTS = Array.from({ length: 20 }, (_, i) => 19100 + i);
let server: http.Server;
let url: string;
const hits = new Map<string, number>();
let uploaded = 0;
const hanging: http.ServerResponse[] = [];

beforeAll(async () => {
  const handler: http.RequestListener = (req, res) => {
    const n = (hits.get(req.url!) ?? 0) + 1;
    hits.set(req.url!, n);
    const busy = (status: number, retryAfter: string) =>
      res.writeHead(status, { 'Content-Type': 'application/json', 'Retry-After': retryAfter, 'X-Request-Id': `r${n}` }).end(JSON.stringify({ error: { code: status === 429 ? 'TOO_MANY' : 'SERVER_BUSY', message: 'busy', request_id: `r${n}` } }));
    if (req.url === '/v1/base' && n <= 2) return busy(503, '0');
    if (req.url === '/v1/bases' && n <= 1) return busy(429, '3600');
    if (req.url === '/v1/whoami') return busy(503, '0');
    if (req.url === '/v1/tokens') return void hanging.push(res);
    if (req.url === '/v1/modules' && req.method === 'POST') {
      req.on('data', (c: Buffer) => (uploaded += c.length));
      req.on('end', () => res.writeHead(201, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id: 'a/b', version: '1.0.0', digest: `sha256:${'0'.repeat(64)}`, size: uploaded, files: [] })));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(req.url === '/v1/bases' ? { bases: [] } : { ok: n }));
  };
  for (const port of PORTS) {
    const s = await new Promise<http.Server | null>((resolve) => {
      const srv = http.createServer(handler).listen(port, '127.0.0.1');
      srv.once('listening', () => resolve(srv));
      srv.once('error', () => resolve(null));
    });
    if (s) {
      server = s;
      break;
    }
  }
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const r of hanging) r.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('SDK transport', () => {
  it('retries 503 answers and then succeeds', async () => {
    expect(await new ModhubClient({ baseUrl: url }).servedBase()).toEqual({ ok: 3 });
    expect(hits.get('/v1/base')).toBe(3);
  });

  it("honours Retry-After but never waits longer than 'maxDelayMs' (429 too)", async () => {
    expect(await new ModhubClient({ baseUrl: url, retry: { maxDelayMs: 20 } }).listBases()).toEqual([]);
    expect(hits.get('/v1/bases')).toBe(2);
  });

  it("gives up after 'retries' with the server's code, status and request id", async () => {
    const e = await new ModhubClient({ baseUrl: url, retry: { retries: 2 } }).whoami().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModhubError);
    expect(e).toMatchObject({ code: 'SERVER_BUSY', status: 503, requestId: 'r3' });
    expect(hits.get('/v1/whoami')).toBe(3);
  });

  it('ends a call that takes too long with TIMEOUT, and an aborted one with ABORTED', async () => {
    await expect(new ModhubClient({ baseUrl: url, timeoutMs: 100 }).listTokens()).rejects.toMatchObject({ code: 'TIMEOUT', status: 0, message: expect.stringContaining("raise 'timeoutMs'") });
    const ctl = new AbortController();
    const p = new ModhubClient({ baseUrl: url }).listTokens({ signal: ctl.signal });
    setTimeout(() => ctl.abort(), 50);
    await expect(p).rejects.toMatchObject({ code: 'ABORTED', status: 0 });
    await expect(new ModhubClient({ baseUrl: url }).listTokens({ signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('reports upload progress up to the bytes the server received', async () => {
    const seen: { loaded: number; total: number }[] = [];
    const weights = new Uint8Array(300_000).map((_, i) => i % 251);
    await new ModhubClient({ baseUrl: url }).publish({ files: { 'module.json': new TextEncoder().encode('{}'), 'weights.safetensors': weights } }, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[seen.length - 1]).toEqual({ loaded: uploaded, total: uploaded });
    expect(uploaded).toBeGreaterThan(weights.length);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });

  it('refuses bad options by name', () => {
    expect(() => new ModhubClient({ baseUrl: '' })).toThrow(/'baseUrl' is required/);
    expect(() => new ModhubClient({ baseUrl: url, retry: { retries: -1 } })).toThrow(/'retries' must be a non-negative number, got -1/);
  });
});

describe('composition builder', () => {
  it("produces the server's JSON", () => {
    expect(parallel(stack('lang/de', 'task/topic'), sum('sft/de', 'sft/topic'), fuse('fusion/f', 'a/x', 'a/y@1.0.0'))).toEqual({
      parallel: [{ stack: ['lang/de', 'task/topic'] }, { sum: ['sft/de', 'sft/topic'] }, { fuse: ['a/x', 'a/y@1.0.0'], fusion: 'fusion/f' }],
    });
    expect(average(['a/x', 'a/y'], { weights: [0.25, 0.75], normalizeWeights: false })).toEqual({ average: ['a/x', 'a/y'], weights: [0.25, 0.75], normalize_weights: false });
  });

  it('names what is wrong', () => {
    expect(() => stack()).toThrow(/'stack' needs at least one module or block, got none/);
    expect(() => sum('lang de')).toThrow(/'sum': 'lang de' is not a module reference/);
    expect(() => fuse('nofusion', 'a/x')).toThrow(/'fuse': the fusion module 'nofusion' is not a module reference/);
    expect(() => average(['a/x', 'a/y'], { weights: [1] })).toThrow(/'average': 'weights' needs one number per child \(2\), got 1/);
  });
});
