/**
 * The web pages in a real browser: Debian's chromium driven by playwright-core against createApp() listening on a
 * real socket, with a tiny base, the inference engine, and tiny modules published in the test. Search finds a
 * module, the module page renders its card, "Try it" shows what the API answers for the very request it shows,
 * XSS payloads in a card, a description and labels stay inert (no script runs, no dialog, no CSP violation),
 * and publishing shows validation errors inline with the token kept out of the URL.
 * Set MODHUB_SCREENSHOTS=1 to (re)write docs/screenshots/*.png (search, module, try-it, base, publish).
 * Skips — loudly — only when /usr/bin/chromium is absent (`apt-get install -y chromium`).
 */
import * as fs from 'fs';
import type { Server } from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import pino from 'pino';
import client from 'prom-client';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { openMemoryRegistry, packArchive, type Registry } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { createApp } from '../../server/http/app';
import { inferenceRouter } from '../../server/http/inference-routes';
import { loadBase, type Base } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { Engine } from '../../server/runtime/engine';
import { InferenceService } from '../../server/runtime/inference';
import { makeAdapterModule, makeDiffModule, makeLoraModule, baseParamShapes, type BaseInfo } from '../helpers/modules';
import type { RefModule } from '../reference/modules';

// Page-side callbacks (page.evaluate) run in the browser; these names exist there, not in Node's types.
declare const document: any, window: any, navigator: any, sessionStorage: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) {
  // eslint-disable-next-line no-console
  console.warn(
    `\n${'!'.repeat(100)}\n!!! SKIPPING the web pages' BROWSER tests: ${CHROMIUM} is missing. Install it: apt-get install -y chromium\n${'!'.repeat(100)}\n`,
  );
}
const describeBrowser = HAVE_CHROMIUM ? describe : describe.skip;
const PORTS = Array.from({ length: 20 }, (_, i) => 18640 + i);
const SHOTS = process.env.MODHUB_SCREENSHOTS === '1' ? path.resolve(__dirname, '..', '..', 'docs', 'screenshots') : null;

const CARD = [
  '---',
  'license: apache-2.0',
  'language: [de]',
  'tags: [topic, news]',
  '---',
  '# German news topics',
  '',
  'A **bottleneck adapter** (Pfeiffer, reduction factor 2) with a two-layer classification head that sorts',
  'short German news snippets into *sport*, *politics* and *tech*. Stack it over `lang/de` for German input.',
  '',
  '## Evaluation',
  '',
  '| split | accuracy | macro F1 |',
  '|---|---|---|',
  '| dev | 0.91 | 0.90 |',
  '| test | 0.89 | 0.88 |',
  '',
  '## Usage',
  '',
  '```sh',
  'modhub infer "Bayern gewinnt das Derby" --compose \'{"stack": ["lang/de", "task/topic"]}\'',
  '```',
].join('\n');
const XSS_CARD = [
  '# Not a card',
  '',
  '<script>window.__xss = "card-script"; alert("card-script")</script>',
  '',
  '<img src="/nope.png" alt="x" onerror="window.__xss = \'card-img\'; alert(\'card-img\')">',
  '',
  '<a href="javascript:window.__xss=\'card-link\'" id="evil-link" onclick="window.__xss=\'card-click\'">a link</a>',
  '',
  '<iframe src="javascript:parent.__xss=\'frame\'"></iframe><svg onload="window.__xss=\'svg\'"></svg>',
].join('\n');
const EVIL = '"><img src=x onerror="window.__xss=\'desc\';alert(1)"><script>window.__xss="desc-script"</script>';

let base: Base;
let engine: Engine;
let registry: Registry;
let server: Server;
let origin: string;
let writeToken: string;
let context: BrowserContext;
let userDataDir: string;

function archiveOf(m: RefModule, card?: string): Buffer {
  const files = new Map([
    ['module.json', Buffer.from(JSON.stringify(m.manifest))],
    ['weights.safetensors', serializeSafetensors(m.tensors)],
  ]);
  if (card) files.set('README.md', Buffer.from(card));
  return packArchive(files, false);
}

async function publish(m: RefModule, card?: string): Promise<void> {
  const form = new FormData();
  form.append('archive', new Blob([archiveOf(m, card)]), 'm.tar');
  const res = await fetch(`${origin}/v1/modules`, { method: 'POST', headers: { Authorization: `Bearer ${writeToken}` }, body: form });
  if (res.status !== 201) throw new Error(`publish ${m.manifest.id}: ${res.status} ${await res.text()}`);
}

async function listen(app: ReturnType<typeof createApp>): Promise<Server> {
  for (const port of PORTS) {
    const s = await new Promise<Server | null>((resolve) => {
      const srv = app.listen(port, '127.0.0.1');
      srv.once('listening', () => resolve(srv));
      srv.once('error', () => resolve(null));
    });
    if (s) return s;
  }
  throw new Error(`no free port in ${PORTS[0]}-${PORTS[PORTS.length - 1]}`);
}

interface Watch {
  dialogs: string[];
  cspViolations: string[];
  pageErrors: string[];
}

/** A new page that records dialogs (and dismisses them), CSP violations and uncaught errors. */
async function newPage(): Promise<{ page: Page; watch: Watch }> {
  const page = await context.newPage();
  const watch: Watch = { dialogs: [], cspViolations: [], pageErrors: [] };
  page.on('dialog', (d) => {
    watch.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) watch.cspViolations.push(m.text());
  });
  page.on('pageerror', (e) => watch.pageErrors.push(e.message));
  return { page, watch };
}

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

describeBrowser('web pages in chromium', () => {
  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-web-'));
    await createTinyBase({ out: dir, family: 'bert', layers: 2, hidden: 16, heads: 2, seed: 3 });
    base = await loadBase(dir);
    engine = await Engine.create({ base });
    registry = await openMemoryRegistry();
    const c = base.config;
    await registry.registerBase({ fingerprint: base.fingerprint, family: c.family, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, description: 'tiny test base' });
    engine.setResolver(registry);
    writeToken = (await registry.createToken({ scopes: ['write'] })).token;
    const service = new InferenceService(engine, { maxBatchRows: 32, maxWaitMs: 2 });
    const logger = pino({ level: 'silent' });
    const auth = { anonymousRead: true };
    const app = createApp({ registry, logger, metrics: new client.Registry(), auth, routers: [{ path: '/v1', router: inferenceRouter({ service, auth, logger }) }], inference: service });
    server = await listen(app);
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
    const de = makeAdapterModule({ id: 'lang/de', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, seed: 1, language: 'de', task: 'language-adapter' });
    de.manifest.description = 'German language adapter (MAD-X, invertible)';
    await publish(de);
    const topic = makeAdapterModule({ id: 'task/topic', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 3, labels: ['sport', 'politics', 'tech'] }, seed: 2, task: 'topic-classification', language: 'de' });
    topic.manifest.description = 'German news topics: sport, politics, tech';
    await publish(topic, CARD);
    const ner = makeLoraModule({ id: 'task/ner', base: info, r: 2, head: { type: 'token_classification', num_labels: 2, labels: ['O', 'B-PER'] }, seed: 3, task: 'ner', language: 'en' });
    ner.manifest.description = 'Person names (LoRA)';
    await publish(ner);
    const mlm = makeAdapterModule({ id: 'task/mlm', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'masked_lm' }, seed: 7, task: 'mlm', language: 'en' });
    mlm.manifest.description = 'Masked-LM head for fill-mask';
    await publish(mlm);
    const shapes = baseParamShapes(info, { maxPositions: c.maxPositions });
    const sftDe = makeDiffModule({ id: 'sft/de', base: info, targets: shapes, density: 0.05, seed: 4, language: 'de', task: 'language-sft' });
    sftDe.manifest.description = 'German language SFT (LT-SFT, 5% of the weights)';
    await publish(sftDe);
    const sftTopic = makeDiffModule({ id: 'sft/topic', base: info, targets: shapes, density: 0.05, seed: 6, task: 'topic-sft' });
    sftTopic.manifest.description = 'Topic task SFT, to sum with a language SFT';
    await publish(sftTopic);

    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1200, height: 860 },
    });
  });

  afterAll(async () => {
    await context?.close();
    if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await engine?.close();
    await registry?.close();
  });

  it('search finds a module by text and filters, with a CSP header on the page', async () => {
    const { page, watch } = await newPage();
    const res = await page.goto(`${origin}/`);
    expect(res!.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.getByLabel('Search', { exact: true }).fill('topic');
    await page.getByLabel('Kind').selectOption('bottleneck');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/q=topic/);
    const cards = page.locator('.results .card h2 a');
    await expect(cards.allTextContents()).resolves.toEqual(['task/topic']);
    await page.goto(`${origin}/?language=de`);
    const ids = await page.locator('.results .card h2 a').allTextContents();
    expect(ids.sort()).toEqual(['lang/de', 'sft/de', 'task/topic']);
    await page.goto(`${origin}/`);
    await shot(page, 'search');
    await page.goto(`${origin}/base`);
    await shot(page, 'base');
    expect(watch).toEqual({ dialogs: [], cspViolations: [], pageErrors: [] });
    await page.close();
  });

  it('the module page renders the card, metadata, files and copyable snippets', async () => {
    const { page, watch } = await newPage();
    await page.goto(`${origin}/`);
    await page.getByRole('link', { name: 'task/topic' }).click();
    await page.waitForURL(`${origin}/modules/task/topic`);
    const card = page.locator('article.card-body');
    await expect(card.locator('h1').textContent()).resolves.toBe('German news topics');
    await expect(card.locator('table td').first().textContent()).resolves.toBe('dev');
    await expect(card.locator('strong').first().textContent()).resolves.toBe('bottleneck adapter');
    await expect(page.locator('table.files code.sha').first().textContent()).resolves.toMatch(/^[0-9a-f]{64}$/);
    await expect(page.locator('#code-cli').textContent()).resolves.toContain('modhub pull task/topic@1.0.0');
    await shot(page, 'module');
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    await page.locator('button.copy[data-copy="code-curl"]').click();
    await page.locator('button.copy[data-copy="code-curl"]', { hasText: 'Copied' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expect(copied).toBe(await page.locator('#code-curl').textContent());
    expect(copied).toContain(`curl -fLO '${origin}/v1/modules/task/topic/versions/1.0.0/archive'`);
    expect(watch).toEqual({ dialogs: [], cspViolations: [], pageErrors: [] });
    await page.close();
  });

  it('"Try it" shows the prediction the API gives for the exact request it displays (stacked composition)', async () => {
    const { page, watch } = await newPage();
    await page.goto(`${origin}/modules/task/topic`);
    await page.getByRole('link', { name: 'Try it' }).click();
    await page.waitForURL(`${origin}/modules/task/topic/try`);
    await page.getByLabel(/^Texts/).fill('Bayern gewinnt das Derby\nDie Regierung plant ein neues Gesetz');
    await page.getByLabel('Composition', { exact: true }).selectOption({ label: 'stack lang/de under task/topic' });
    await expect(page.getByLabel(/^Composition JSON/).inputValue()).resolves.toBe('{"stack":["lang/de","task/topic"]}');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('#t-out .result').nth(1).waitFor();
    const shown = JSON.parse((await page.locator('#t-request').textContent())!);
    expect(shown).toEqual({ inputs: [{ text: 'Bayern gewinnt das Derby' }, { text: 'Die Regierung plant ein neues Gesetz' }], composition: { stack: ['lang/de', 'task/topic'] }, top_k: 3 });
    const api = (await (await fetch(`${origin}/v1/infer`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(shown) })).json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    for (let i = 0; i < 2; i++) {
      const p = api.results[i].branches[0];
      const r = page.locator('#t-out .result').nth(i);
      await expect(r.locator('.pred-label').textContent()).resolves.toBe(p.label);
      await expect(r.locator('.pred-score').textContent()).resolves.toBe(p.score.toFixed(4));
      await expect(r.locator('.score-label').allTextContents()).resolves.toEqual(p.scores.map((s: { label: string }) => s.label));
      await expect(r.locator('.score-value').allTextContents()).resolves.toEqual(p.scores.map((s: { score: number }) => s.score.toFixed(4)));
      await expect(r.locator('.branch').textContent()).resolves.toBe('Modules: lang/de@1.0.0 + task/topic@1.0.0');
    }
    await expect(page.locator('#t-curl').textContent()).resolves.toContain(`curl -s '${origin}/v1/infer'`);
    await shot(page, 'try-it');
    expect(watch).toEqual({ dialogs: [], cspViolations: [], pageErrors: [] });
    await page.close();
  });

  it('"Try it" highlights token-classification entities, sums two diffs, and shows API errors inline', async () => {
    const { page, watch } = await newPage();
    await page.goto(`${origin}/modules/task/ner/try`);
    const text = 'hello world again';
    await page.getByLabel(/^Texts/).fill(text);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('#t-out table.tokens').waitFor();
    const body = JSON.parse((await page.locator('#t-request').textContent())!);
    const api = (await (await fetch(`${origin}/v1/infer`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })).json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    const toks = api.results[0].branches[0].tokens as { token: string; label: string; start: number; end: number }[];
    expect(await page.locator('#t-out table.tokens tr').count()).toBe(toks.length + 1);
    const entities = toks.filter((t) => t.label !== 'O').map((t) => text.slice(t.start, t.end) + t.label);
    // the seeded head tags some tokens and not others, so both the marks and the plain text are exercised
    expect(entities.length).toBeGreaterThan(0);
    expect(entities.length).toBeLessThan(toks.length);
    await expect(page.locator('#t-out mark.entity').allTextContents()).resolves.toEqual(entities);
    // fill-mask candidates for a masked-LM module (its sample text carries the base's mask token)
    await page.goto(`${origin}/modules/task/mlm/try`);
    await expect(page.getByLabel(/^Texts/).inputValue()).resolves.toContain(base.tokenizer.maskToken);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('#t-out ol.candidates li').first().waitFor();
    const mlmBody = JSON.parse((await page.locator('#t-request').textContent())!);
    expect(mlmBody.task).toBe('fill_mask');
    const mlmApi = (await (await fetch(`${origin}/v1/infer`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(mlmBody) })).json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    const cands = mlmApi.results[0].branches[0].masks[0].candidates as { token: string; score: number }[];
    expect(cands.length).toBe(3);
    await expect(page.locator('#t-out .cand-token').allTextContents()).resolves.toEqual(cands.map((x) => x.token));
    await expect(page.locator('#t-out .cand-score').allTextContents()).resolves.toEqual(cands.map((x) => x.score.toFixed(4)));
    // two diffs summed (the page proposes it on a diff module's page)
    await page.goto(`${origin}/modules/sft/topic/try`);
    await page.getByLabel('Composition', { exact: true }).selectOption({ label: 'sum sft/de + sft/topic' });
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('#t-out .pred-embedding').waitFor();
    await expect(page.locator('#t-out .branch').textContent()).resolves.toBe('Modules: sft/de@1.0.0 + sft/topic@1.0.0');
    // a composition the engine refuses: the API's error, inline
    await page.getByLabel(/^Composition JSON/).fill('{"stack": ["nobody/nothing"]}');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('#t-error:not([hidden])').waitFor();
    await expect(page.locator('#t-error').textContent()).resolves.toMatch(/^MODULE_NOT_FOUND: .*nobody\/nothing/);
    expect(watch).toEqual({ dialogs: [], cspViolations: [], pageErrors: [] });
    await page.close();
  });

  it('XSS in a description, a card and labels (also in predictions) stays inert', async () => {
    const c = base.config;
    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize };
    const labels = ['<img src=x onerror="window.__xss=\'label\'">', '<script>window.__xss="label-script"</script>'];
    const evil = makeAdapterModule({ id: 'evil/x', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 2, labels }, seed: 5, task: 'xss' });
    evil.manifest.description = EVIL;
    await publish(evil, XSS_CARD);
    const { page, watch } = await newPage();
    await page.goto(`${origin}/?q=evil`);
    await expect(page.locator('.results .card .desc').textContent()).resolves.toBe(EVIL);
    await page.goto(`${origin}/modules/evil/x`);
    await expect(page.locator('.module-head .desc').textContent()).resolves.toBe(EVIL);
    const card = page.locator('article.card-body');
    await expect(card.locator('h1').textContent()).resolves.toBe('Not a card');
    // no script element, handler attribute, frame or javascript: link survived the sanitiser
    expect(await card.locator('script, iframe, svg, [onerror], [onclick], [onload]').count()).toBe(0);
    const href = await card.locator('a', { hasText: 'a link' }).getAttribute('href');
    expect(href ?? '').not.toMatch(/javascript:/i);
    await card.locator('a', { hasText: 'a link' }).click();
    await page.waitForTimeout(200);
    expect(await page.evaluate(() => (window as unknown as { __xss?: string }).__xss)).toBeUndefined();
    await page.goto(`${origin}/modules/evil/x/try`);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator('#t-out .pred-label').waitFor();
    const shownLabels = await page.locator('#t-out .score-label').allTextContents();
    expect(shownLabels.sort()).toEqual([...labels].sort());
    await page.waitForTimeout(300);
    expect(await page.evaluate(() => (window as unknown as { __xss?: string }).__xss)).toBeUndefined();
    expect(await page.locator('main img, main script').count()).toBe(0);
    expect(watch).toEqual({ dialogs: [], cspViolations: [], pageErrors: [] });
    await page.close();
  });

  it('publishing shows validation errors inline, keeps the token out of the URL, and links the new module', async () => {
    const { page, watch } = await newPage();
    await page.goto(`${origin}/publish`);
    await page.getByRole('button', { name: 'Publish' }).click();
    await expect(page.locator('#p-errors').textContent()).resolves.toContain('Type a token with write scope.');
    await page.getByLabel(/^Token/).fill(writeToken);
    const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: base.config.hiddenSize, num_layers: base.config.numLayers, vocab_size: base.config.vocabSize };
    const good = makeAdapterModule({ id: 'lang/fr', base: info, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, seed: 9, language: 'fr' });
    const bad = makeAdapterModule({ id: 'lang/xx', base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, seed: 9 });
    (bad.manifest as unknown as Record<string, unknown>).version = 'one';
    await page.locator('#p-files').setInputFiles([
      { name: 'module.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(bad.manifest)) },
      { name: 'weights.safetensors', mimeType: 'application/octet-stream', buffer: serializeSafetensors(bad.tensors) },
    ]);
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.locator('#p-errors:not([hidden]) li').first().waitFor();
    await expect(page.locator('#p-errors .error-title').textContent()).resolves.toContain('INVALID_MANIFEST');
    await expect(page.locator('#p-errors').textContent()).resolves.toContain('version');
    await page.locator('#p-files').setInputFiles([{ name: 'lang-fr.tar', mimeType: 'application/x-tar', buffer: archiveOf(good) }]);
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.locator('#p-result a').waitFor();
    await expect(page.locator('#p-result a').textContent()).resolves.toBe('lang/fr@1.0.0');
    expect(page.url()).toBe(`${origin}/publish`);
    expect(await page.evaluate(() => sessionStorage.getItem('modhub.token'))).toBe(writeToken);
    expect((await registry.info('lang', 'fr')).versions[0].version).toBe('1.0.0');
    await page.locator('#p-result a').click();
    await page.waitForURL(`${origin}/modules/lang/fr?version=1.0.0`);
    expect(watch).toEqual({ dialogs: [], cspViolations: [], pageErrors: [] });
    await page.close();
  });

  it('is keyboard-usable: the skip link comes first and every form control has a label', async () => {
    const { page } = await newPage();
    for (const p of ['/', '/modules/task/topic/try', '/publish', '/base']) {
      await page.goto(`${origin}${p}`);
      await page.keyboard.press('Tab');
      await expect(page.evaluate(() => document.activeElement?.textContent)).resolves.toBe('Skip to content');
      const unlabelled = await page.evaluate(() =>
        Array.from(document.querySelectorAll('input, select, textarea') as ArrayLike<any>) // eslint-disable-line @typescript-eslint/no-explicit-any
          .filter((e) => !e.labels?.length && !e.getAttribute('aria-label'))
          .map((e) => e.id || e.outerHTML),
      );
      expect(unlabelled).toEqual([]);
    }
    await page.goto(`${origin}/base`);
    await expect(page.locator('main').textContent()).resolves.toContain(base.fingerprint);
    await page.goto(`${origin}/publish`);
    await shot(page, 'publish');
    await page.close();
  });
});
