/**
 * The SDK in a real browser: client-sdk/index.ts bundled by esbuild for the browser (zod inside, no Node
 * built-ins) and driven in Debian's chromium (playwright-core) on a page of another origin than the server, which
 * allows that origin (CORS, server/http/cors.ts). The page searches, classifies through a stack composition built
 * with the builder, downloads a file (sha256 checked with Web Crypto via the exposed ETag) and gets a typed error
 * with the server's code and request id; a page on an origin the server does not allow cannot read anything.
 * Skips — loudly — only when /usr/bin/chromium is absent (`apt-get install -y chromium`).
 */
import * as fs from 'fs';
import * as http from 'http';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import client from 'prom-client';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openMemoryRegistry, packArchive, type Registry } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { createApp } from '../../server/http/app';
import { inferenceRouter } from '../../server/http/inference-routes';
import { loadBase } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { Engine } from '../../server/runtime/engine';
import { InferenceService } from '../../server/runtime/inference';
import { makeAdapterModule, type BaseInfo } from '../helpers/modules';
import type { RefModule } from '../reference/modules';

// Page-side callbacks (page.evaluate) run in the browser; this name exists there, not in Node's types.
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) {
  // eslint-disable-next-line no-console
  console.warn(`\n${'!'.repeat(100)}\n!!! SKIPPING the SDK's BROWSER test: ${CHROMIUM} is missing. Install it: apt-get install -y chromium\n${'!'.repeat(100)}\n`);
}
const describeBrowser = HAVE_CHROMIUM ? describe : describe.skip;
const PORTS = Array.from({ length: 20 }, (_, i) => 19160 + i);
/**
 * The pages come from a static server of their own on 127.0.0.1, opened as http://localhost:<port>: another origin
 * than the API's (http://127.0.0.1:<port>), a secure context (Web Crypto), and both on loopback (Chromium's local
 * network access checks refuse a page it cannot place there, e.g. one answered by route interception).
 */
let pageOrigin: string;
let otherOrigin: string;
const statics: Server[] = [];

let engine: Engine;
let registry: Registry;
let server: Server;
let hub: string;
let browser: Browser;
let bundle: string;

async function listen(app: ReturnType<typeof createApp> | http.RequestListener): Promise<Server> {
  for (const port of PORTS) {
    const s = await new Promise<Server | null>((resolve) => {
      const srv = http.createServer(app).listen(port, '127.0.0.1');
      srv.once('listening', () => resolve(srv));
      srv.once('error', () => resolve(null));
    });
    if (s) return s;
  }
  throw new Error(`no free port in ${PORTS[0]}-${PORTS[PORTS.length - 1]}`);
}

/** A static server for the page: the bundle at /sdk.mjs, and a page that loads it as `window.sdk`. */
const staticSite: http.RequestListener = (req, res) => {
  if (req.url === '/sdk.mjs') {
    res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(bundle);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>sdk</title><script type="module">import * as sdk from "/sdk.mjs"; window.sdk = sdk;</script>');
};

async function staticOrigin(): Promise<string> {
  const s = await listen(staticSite);
  statics.push(s);
  return `http://localhost:${(s.address() as AddressInfo).port}`;
}

/** A page on `origin` that has loaded the bundle as `window.sdk`. */
async function sdkPage(origin: string): Promise<Page> {
  const page = await browser.newPage();
  page.on('console', (m) => process.env.MODHUB_DEBUG && process.stderr.write(`[page] ${m.text()}\n`));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.sdk !== undefined);
  return page;
}

describeBrowser('the SDK bundled for the browser, in chromium', () => {
  beforeAll(async () => {
    const esbuild = await import('esbuild');
    const built = await esbuild.build({ entryPoints: [path.resolve(__dirname, '..', '..', 'client-sdk', 'index.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'silent' });
    bundle = built.outputFiles[0].text;

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-sdk-browser-'));
    await createTinyBase({ out: dir, family: 'bert', layers: 2, hidden: 16, heads: 2, seed: 3 });
    const base = await loadBase(dir);
    engine = await Engine.create({ base });
    registry = await openMemoryRegistry();
    const c = base.config;
    await registry.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, description: 'tiny test base' });
    engine.setResolver(registry);
    const service = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 2 });
    const logger = pino({ level: 'silent' });
    const auth = { anonymousRead: true };
    pageOrigin = await staticOrigin();
    otherOrigin = await staticOrigin();
    const app = createApp({ registry, logger, metrics: new client.Registry(), auth, routers: [{ path: '/v1', router: inferenceRouter({ service, auth, logger }) }], inference: service, corsOrigins: [pageOrigin] });
    server = await listen(app);
    hub = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
    const publish = async (m: RefModule) => {
      const archive = packArchive(new Map([['module.json', Buffer.from(JSON.stringify(m.manifest))], ['weights.safetensors', serializeSafetensors(m.tensors)]]), false);
      await registry.publish({ archive });
    };
    await publish(makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, seed: 1, language: 'de', task: 'language-adapter' }));
    await publish(makeAdapterModule({ id: 'task/topic', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 3, labels: ['sport', 'politics', 'tech'] }, seed: 2, task: 'topic-classification', language: 'de' }));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    for (const s of statics) await new Promise<void>((resolve) => s.close(() => resolve()));
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await engine?.close();
    await registry?.close();
  });

  it('the bundle has no Node built-ins', () => {
    expect(bundle).not.toMatch(/from\s*["']node:|require\(["']node:/);
  });

  it('searches, classifies through stack(lang/de, task/topic), downloads a verified file, and gets a typed error', async () => {
    const page = await sdkPage(pageOrigin);
    const r = await page.evaluate(async (hubUrl: string) => {
      const { ModhubClient, ModhubError, stack } = window.sdk;
      const c = new ModhubClient({ baseUrl: hubUrl });
      const found = await c.search({ q: 'topic' });
      const preds = await c.classify(['Bayern gewinnt das Derby', 'Die Regierung plant ein Gesetz'], { composition: stack('lang/de', 'task/topic'), top_k: 3 });
      const manifest = JSON.parse(new TextDecoder().decode(await c.downloadFile('task/topic@1.0.0', 'module.json')));
      let error: unknown = null;
      try {
        await c.classify(['x'], { composition: stack('lang/de', 'task/nope') });
      } catch (e: any) { // eslint-disable-line @typescript-eslint/no-explicit-any
        error = { typed: e instanceof ModhubError, name: e.name, code: e.code, status: e.status, requestId: e.requestId, message: e.message };
      }
      return { ids: found.items.map((m: { id: string }) => m.id), preds, manifestId: manifest.id, error, secure: window.isSecureContext };
    }, hub);
    expect(r.secure).toBe(true);
    expect(r.ids).toEqual(['task/topic']);
    expect(r.preds).toHaveLength(2);
    for (const p of r.preds) {
      expect(p).toMatchObject({ type: 'classification', label: expect.stringMatching(/^(sport|politics|tech)$/) });
      expect(p.scores).toHaveLength(3);
    }
    expect(r.manifestId).toBe('task/topic');
    expect(r.error).toEqual({ typed: true, name: 'ModhubError', code: 'MODULE_NOT_FOUND', status: 404, requestId: expect.stringMatching(/\S/), message: expect.stringContaining('task/nope') });
    await page.close();
  });

  it('a page on an origin the server does not allow cannot read the API (NETWORK_ERROR)', async () => {
    const page = await sdkPage(otherOrigin);
    const code = await page.evaluate(async (hubUrl: string) => {
      try {
        await new window.sdk.ModhubClient({ baseUrl: hubUrl, retry: { retries: 0 } }).search();
        return 'read it';
      } catch (e: any) { // eslint-disable-line @typescript-eslint/no-explicit-any
        return e.code;
      }
    }, hub);
    expect(code).toBe('NETWORK_ERROR');
    await page.close();
  });
});
