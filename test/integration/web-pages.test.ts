/**
 * The web pages through supertest on createApp() (a hub without an engine): search with filters and pages, the
 * module page (card sanitised, metadata, versions with yanked marked, files with sha256), 404 and 400 pages in
 * HTML, escaping of every user string, the Content-Security-Policy, and the static assets.
 */
import type { Express } from 'express';
import pino from 'pino';
import client from 'prom-client';
import request from 'supertest';
import { openMemoryRegistry, packArchive, type Registry } from '../../modules-store';
import { createApp } from '../../server/http/app';
import { CONTENT_SECURITY_POLICY } from '../../server/http/web';
import { escapeHtml, html } from '../../server/http/web/html';
import { renderCard } from '../../server/http/web/markdown';
import { compositionOptions } from '../../server/http/web/pages/try';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { makePackageFiles, registerTestBase, TEST_BASE, type MakeOptions } from '../helpers/hub';
import { makeAdapterModule } from '../helpers/modules';

const XSS_CARD = [
  '---',
  'license: apache-2.0',
  'tags: [demo]',
  '---',
  '# Topic classifier',
  '',
  'Classifies **news** into topics.',
  '',
  '<script>alert("card-script")</script>',
  '',
  '<img src="x" onerror="alert(\'card-img\')">',
  '',
  '[click me](javascript:alert(1)) and [docs](https://example.org/docs)',
  '',
  '<a href="#" onclick="alert(2)">handler</a> <iframe src="https://example.org"></iframe> <style>body{display:none}</style>',
  '',
  '| metric | value |',
  '|---|---|',
  '| accuracy | 0.91 |',
  '',
  '```python',
  'print("<b>not bold</b>")',
  '```',
].join('\n');

let reg: Registry;
let app: Express;
let admin: string;

async function publish(o: MakeOptions & { id: string }, card?: string): Promise<void> {
  const archive = packArchive(makePackageFiles({ version: '1.0.0', ...o }, card));
  const res = await request(app).post('/v1/modules').set('Authorization', `Bearer ${admin}`).attach('archive', archive, { filename: 'm.tar', contentType: 'application/x-tar' });
  if (res.status !== 201) throw new Error(`publish ${o.id}: ${res.status} ${JSON.stringify(res.body)}`);
}

beforeAll(async () => {
  reg = await openMemoryRegistry();
  await registerTestBase(reg);
  admin = (await reg.createToken({ scopes: ['admin'] })).token;
  app = createApp({ registry: reg, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  await publish({ id: 'task/topic', description: 'News topics <b>bold</b>', labels: ['sport', 'politics', 'tech'] }, XSS_CARD);
  await publish({ id: 'task/topic', version: '1.1.0', description: 'News topics v1.1', labels: ['sport', 'politics', 'tech'] }, XSS_CARD);
  // a head-less language adapter (the tiny-package helper always adds a head)
  const de = makeAdapterModule({ id: 'lang/de', base: TEST_BASE, preset: 'seq_bn_inv', config: { reduction_factor: 2 }, seed: 1, task: 'language-adapter', language: 'de' });
  de.manifest.description = 'German language adapter';
  const deArchive = packArchive(new Map([['module.json', Buffer.from(JSON.stringify(de.manifest))], ['weights.safetensors', serializeSafetensors(de.tensors)]]));
  const deRes = await request(app).post('/v1/modules').set('Authorization', `Bearer ${admin}`).attach('archive', deArchive, { filename: 'm.tar', contentType: 'application/x-tar' });
  if (deRes.status !== 201) throw new Error(`publish lang/de: ${deRes.status} ${JSON.stringify(deRes.body)}`);
  await publish({ id: 'task/lora-ner', kind: 'lora', task: 'ner', language: 'en', head: { type: 'token_classification', num_labels: 2 }, labels: ['O', 'B-PER'] });
  await publish({ id: 'evil/x', description: '"><img src=x onerror=alert(1)><script>alert(1)</script>', labels: ['<script>alert("label")</script>', '"><svg onload=alert(1)>', 'ok'] });
  for (let i = 0; i < 23; i++) await publish({ id: `bulk/m${String(i).padStart(2, '0')}`, task: 'bulk-task', language: 'fr', description: `bulk module ${i}` });
  await reg.yank('task', 'topic', '1.1.0', true, 'broken <labels>');
});
afterAll(() => reg.close());

/** The text between the first `<tag ...>` opening `marker` and its matching close (coarse: the card article). */
function article(page: string): string {
  const start = page.indexOf('<article class="card-body"');
  expect(start).toBeGreaterThan(-1);
  return page.slice(start, page.indexOf('</article>', start));
}

describe('html helpers', () => {
  it('escapes every interpolated string, and nests templates without double escaping', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&\``)).toBe('&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;');
    const inner = html`<b>${'<i>'}</b>`;
    expect(html`<p title="${'"q"'}">${inner}${['<', 1, null, false]}</p>`.value).toBe('<p title="&quot;q&quot;"><b>&lt;i&gt;</b>&lt;1</p>');
  });
  it('renders Markdown cards and strips scripts, handlers, javascript: links, iframes and styles', () => {
    const { data, html: out } = renderCard(XSS_CARD);
    expect(data).toEqual({ license: 'apache-2.0', tags: ['demo'] });
    expect(renderCard('use lang/de@1.0.0 or <me@example.org>').html.value).toBe('<p>use lang/de@1.0.0 or <a href="mailto:me@example.org" rel="nofollow noopener noreferrer">me@example.org</a></p>\n');
    expect(out.value).toContain('<h1>Topic classifier</h1>');
    expect(out.value).toContain('<strong>news</strong>');
    expect(out.value).toMatch(/<table>[\s\S]*<td>accuracy<\/td>/);
    expect(out.value).toContain('<code class="language-python">print("&lt;b&gt;not bold&lt;/b&gt;")');
    expect(out.value).toContain('<a href="https://example.org/docs" rel="nofollow noopener noreferrer">docs</a>');
    expect(out.value).not.toMatch(/<script|onerror|onclick|javascript:|<iframe|<style|card-script/i);
  });
});

describe('search page', () => {
  it('lists modules as cards with kind, task, language, size, downloads and updated', async () => {
    const res = await request(app).get('/?q=topic');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toContain('<a href="/modules/task/topic">task/topic</a>');
    expect(res.text).toContain('1–1 of 1 module');
    expect(res.text).toMatch(/<dt>kind<\/dt><dd><span class="badge kind-bottleneck">bottleneck<\/span>/);
    expect(res.text).toMatch(/<dt>size<\/dt><dd>\d+(\.\d)? (B|KiB)<\/dd>/);
    expect(res.text).toContain('<dt>downloads</dt><dd>0</dd>');
    expect(res.text).toMatch(/<dt>updated<\/dt><dd><time datetime="20/);
  });
  it('filters by kind, task, language, namespace and base, and keeps the form filled', async () => {
    const lora = await request(app).get('/?kind=lora');
    expect(lora.text).toContain('task/lora-ner');
    expect(lora.text).not.toContain('task/topic</a>');
    expect(lora.text).toContain('<option value="lora" selected>');
    const de = await request(app).get('/?language=de&task=language-adapter&namespace=lang');
    expect(de.text).toContain('1–1 of 1 module');
    expect(de.text).toContain('lang/de</a>');
    const none = await request(app).get(`/?base=sha256:${'cd'.repeat(32)}`);
    expect(none.text).toContain('No module matches.');
  });
  it('pages through results with links that keep the filters', async () => {
    const p1 = await request(app).get('/?namespace=bulk&sort=name');
    expect(p1.text).toContain('1–20 of 23 modules');
    expect(p1.text).toContain('href="/?namespace=bulk&amp;sort=name&amp;page=2"');
    const p2 = await request(app).get('/?namespace=bulk&sort=name&page=2');
    expect(p2.text).toContain('21–23 of 23 modules');
    expect(p2.text).toContain('bulk/m22</a>');
    expect(p2.text).not.toContain('bulk/m00</a>');
    expect(p2.text).toContain('rel="prev" href="/?namespace=bulk&amp;sort=name"');
  });
  it('answers malformed filters with an HTML 400 that says what to fix', async () => {
    for (const [q, msg] of [['sort=best', 'sort must be one of downloads, recent, name'], ['kind=adapter', 'kind must be one of'], ['page=0', 'page must be a positive integer']]) {
      const res = await request(app).get(`/?${q}`);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).toContain('INVALID_QUERY');
      expect(res.text).toContain(msg);
    }
    const esc = await request(app).get('/?sort=%3Cscript%3Ealert(1)%3C/script%3E');
    expect(esc.status).toBe(400);
    expect(esc.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(esc.text).not.toContain('<script>alert');
  });
});

describe('module page', () => {
  it('renders the card sanitised, metadata, versions with tags and yanked marked, files with sha256, snippets', async () => {
    const res = await request(app).get('/modules/task/topic');
    expect(res.status).toBe(200);
    const art = article(res.text);
    expect(art).toContain('<h1>Topic classifier</h1>');
    expect(art).not.toMatch(/<script|onerror|onclick|javascript:|<iframe|<style/i);
    // latest skips the yanked 1.1.0
    expect(res.text).toContain('<span class="ver">@1.0.0</span>');
    expect(res.text).toMatch(/<tr class="yanked">\s*<td><a href="\/modules\/task\/topic\?version=1.1.0">1.1.0<\/a><\/td>/);
    expect(res.text).toContain('<span class="badge yanked-badge">yanked</span> <span class="reason">broken &lt;labels&gt;</span>');
    expect(res.text).toMatch(/<span class="tag">latest<\/span>/);
    const info = await reg.info('task', 'topic');
    const v = info.versions.find((x) => x.version === '1.0.0')!;
    for (const f of v.files) {
      expect(res.text).toContain(`<code class="sha">${f.digest.slice(7)}</code>`);
      expect(res.text).toContain(`href="/v1/modules/task/topic/versions/1.0.0/files/${f.name}"`);
    }
    for (const id of ['code-curl', 'code-cli', 'code-ts', 'code-python']) expect(res.text).toContain(`id="${id}"`);
    expect(res.text).toContain('modhub pull task/topic@1.0.0 --out ./task-topic');
    expect(res.text).toContain('<script src="/assets/copy.js" defer></script>');
  });
  it('shows a yanked version on request with a warning, and a PEFT snippet for LoRA modules', async () => {
    const y = await request(app).get('/modules/task/topic?version=1.1.0');
    expect(y.status).toBe(200);
    expect(y.text).toContain('Version 1.1.0 is yanked: broken &lt;labels&gt;.');
    const lora = await request(app).get('/modules/task/lora-ner');
    expect(lora.text).toContain('id="code-peft"');
    expect(lora.text).toContain('LoraConfig(r=2, lora_alpha=4, target_modules=[&quot;attention.self.query&quot;,&quot;attention.self.value&quot;])');
    const bn = await request(app).get('/modules/lang/de');
    expect(bn.text).not.toContain('id="code-peft"');
  });
  it('generates a card from the manifest when the package has none', async () => {
    const res = await request(app).get('/modules/lang/de');
    expect(article(res.text)).toContain('<h1>lang/de@1.0.0</h1>');
  });
  it('escapes module descriptions and labels everywhere they appear', async () => {
    for (const path of ['/modules/evil/x', '/?q=img', '/modules/evil/x/try']) {
      const res = await request(app).get(path);
      expect(res.status).toBe(200);
      expect(res.text).not.toMatch(/<img src=x|<script>alert|<svg onload/);
    }
    const res = await request(app).get('/modules/evil/x');
    expect(res.text).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(res.text).toContain('<li>&lt;script&gt;alert(&quot;label&quot;)&lt;/script&gt;</li>');
  });
  it('answers unknown modules and versions with an HTML 404, bad names with a 400', async () => {
    const nf = await request(app).get('/modules/nobody/nothing');
    expect(nf.status).toBe(404);
    expect(nf.headers['content-type']).toMatch(/^text\/html/);
    expect(nf.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    expect(nf.text).toContain('MODULE_NOT_FOUND');
    expect(nf.text).toContain('module nobody/nothing does not exist');
    const nv = await request(app).get('/modules/task/topic?version=9.9.9%3Cb%3E');
    expect(nv.status).toBe(404);
    expect(nv.text).toContain("task/topic has no version &#39;9.9.9&lt;b&gt;&#39;");
    const bad = await request(app).get('/modules/Bad%3Cx%3E/name');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('INVALID_NAME');
    expect(bad.text).toContain('Bad&lt;x&gt;');
    const tryNf = await request(app).get('/modules/nobody/nothing/try');
    expect(tryNf.status).toBe(404);
  });
});

describe('other pages, headers and assets', () => {
  it('serves every page with a strict CSP and no inline script or style', async () => {
    for (const path of ['/', '/modules/task/topic', '/modules/task/topic/try', '/base', '/publish']) {
      const res = await request(app).get(path);
      expect(res.status).toBe(200);
      expect(res.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.text).not.toMatch(/<script(?![^>]*\ssrc="\/assets\/[a-z]+\.js")/);
      expect(res.text).not.toMatch(/\sstyle=|<style|\son[a-z]+=/i);
    }
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
    expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe');
  });
  it('says on "Try it" when the server runs no engine instead of showing a form that cannot work', async () => {
    const res = await request(app).get('/modules/task/topic/try');
    expect(res.text).toContain('This server runs the hub only');
    expect(res.text).not.toContain('id="try-form"');
  });
  it('proposes compositions from the modules of the same base: a language adapter under a task module, and the reverse', async () => {
    const topic = await compositionOptions(reg, await reg.resolve('task/topic'), true);
    expect(topic[0]).toEqual({ label: 'task/topic alone', composition: 'task/topic' });
    expect(topic).toContainEqual({ label: 'stack lang/de under task/topic', composition: { stack: ['lang/de', 'task/topic'] } });
    const pinned = await compositionOptions(reg, await reg.resolve('task/topic@1.0.0'), false);
    expect(pinned[0].composition).toBe('task/topic@1.0.0');
    // a head-less adapter predicts nothing alone: its first proposal puts a task module over it
    const de = await compositionOptions(reg, await reg.resolve('lang/de'), true);
    expect(de[0].composition).toEqual({ stack: ['lang/de', expect.any(String)] });
    expect(de).toContainEqual({ label: 'lang/de alone', composition: 'lang/de' });
  });
  it('lists registered bases and the modules that fit one on the base page', async () => {
    const res = await request(app).get('/base');
    expect(res.text).toContain('This server runs the hub only');
    expect(res.text).toContain(`sha256:${'ab'.repeat(32)}`);
    expect(res.text).toContain('Modules for');
    expect(res.text).toContain('bulk/m00</a>');
    const bad = await request(app).get('/base?fingerprint=nope');
    expect(bad.status).toBe(400);
  });
  it('has a publish form whose token field is never submitted with the form', async () => {
    const res = await request(app).get('/publish');
    expect(res.text).toMatch(/<input id="p-token" type="password" autocomplete="off"/);
    expect(res.text).not.toMatch(/<input id="p-token"[^>]*\sname=/);
    expect(res.text).toContain('method="post"');
  });
  it('serves the assets with their types and 404s unknown ones, leaving API errors JSON', async () => {
    const css = await request(app).get('/assets/style.css');
    expect(css.status).toBe(200);
    expect(css.headers['content-type']).toMatch(/^text\/css/);
    const js = await request(app).get('/assets/try.js');
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.text).not.toContain('innerHTML');
    expect((await request(app).get('/assets/nope.js')).status).toBe(404);
    const traversal = await request(app).get('/assets/%2e%2e/package.json');
    expect([400, 403, 404]).toContain(traversal.status); // refused (send's 403 maps to INVALID_REQUEST 400)
    expect(traversal.text).not.toContain('"devDependencies"');
    const api = await request(app).get('/v1/nope');
    expect(api.status).toBe(404);
    expect(api.headers['content-type']).toMatch(/json/);
  });
});
