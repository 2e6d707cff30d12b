/**
 * "Try it" (`GET /modules/:ns/:name/try`): texts plus a composition around this module, run in the browser by
 * /assets/try.js against POST /v1/infer (the same endpoint and body the API documents, shown verbatim on the page).
 * This file proposes the compositions that make sense for the module — alone; a language adapter stacked under a
 * task module; two diffs summed; a fusion over its adapters — from the modules that fit the same base.
 */
import type { Manifest, Registry, ResolvedModule } from '../../../../modules-store';
import { html, urlPath, query } from '../html';
import { page } from '../layout';

export interface CompositionOption {
  label: string;
  composition: unknown;
}

/** Up to this many partner modules are offered per kind of composition. */
const MAX_PARTNERS = 8;

/** A sample input for the module's head (fill-mask samples carry the base's mask token). */
export function sampleText(m: Manifest, maskToken = '[MASK]'): string {
  if (m.head?.type === 'masked_lm') return `The capital of France is ${maskToken}.`;
  return m.language === 'de' ? 'Der schnelle braune Fuchs springt über den faulen Hund.' : 'The quick brown fox jumps over the lazy dog.';
}

/** The leaf that names this module: the bare id when the shown version is `latest`, else id@version. */
function selfRef(m: ResolvedModule, isLatest: boolean): string {
  return isLatest ? m.id : `${m.id}@${m.version}`;
}

interface Partner {
  id: string;
  kind: string;
  hasHead: boolean;
  language: string | null;
}

/** How many of the most downloaded modules of the same base are looked at (one catalog read each). */
const PARTNER_POOL = 40;

/**
 * Other modules for the same base, most downloaded first with those in this module's language ahead, each with
 * whether it carries a head (from its latest manifest).
 */
async function partners(registry: Registry, m: ResolvedModule): Promise<Partner[]> {
  const page = await registry.search({ baseFingerprint: m.manifest.base.fingerprint, sort: 'downloads', limit: PARTNER_POOL });
  const lang = m.manifest.language;
  if (lang) page.items.sort((a, b) => Number(b.language === lang) - Number(a.language === lang));
  const out: Partner[] = [];
  for (const it of page.items) {
    if (it.id === m.id) continue;
    try {
      const info = await registry.info(it.namespace, it.name);
      out.push({ id: it.id, kind: it.kind, hasHead: info.manifest.head !== null, language: it.language });
    } catch {
      // removed meanwhile
    }
  }
  return out;
}

/** The compositions offered for this module; the first is the default. */
export async function compositionOptions(registry: Registry, m: ResolvedModule, isLatest: boolean): Promise<CompositionOption[]> {
  const self = selfRef(m, isLatest);
  const man = m.manifest;
  const hasHead = man.head !== null;
  const opts: CompositionOption[] = [];
  if (man.kind === 'fusion') {
    const adapters = (man.config as { adapters: string[] }).adapters;
    opts.push({ label: `fuse ${adapters.join(', ')} with ${self}`, composition: { fuse: adapters, fusion: self } });
  }
  opts.push({ label: `${self} alone`, composition: self });
  if (man.kind === 'fusion') return opts;
  const others = await partners(registry, m);
  const adaptersNoHead = others.filter((p) => p.kind === 'bottleneck' && !p.hasHead);
  const taskModules = others.filter((p) => p.hasHead && (p.kind === 'bottleneck' || p.kind === 'lora'));
  const diffs = others.filter((p) => p.kind === 'diff');
  if (hasHead && man.kind !== 'diff') {
    for (const p of adaptersNoHead.slice(0, MAX_PARTNERS)) opts.push({ label: `stack ${p.id} under ${self}`, composition: { stack: [p.id, self] } });
    for (const p of diffs.filter((d) => !d.hasHead).slice(0, MAX_PARTNERS)) opts.push({ label: `${p.id} (diff) under ${self}`, composition: { stack: [{ sum: [p.id] }, self] } });
  }
  if (!hasHead && man.kind === 'bottleneck') {
    for (const p of taskModules.slice(0, MAX_PARTNERS)) opts.push({ label: `stack ${self} under ${p.id}`, composition: { stack: [self, p.id] } });
  }
  if (man.kind === 'diff') {
    for (const p of diffs.slice(0, MAX_PARTNERS)) opts.push({ label: `sum ${p.id} + ${self}`, composition: { sum: [p.id, self] } });
    if (!hasHead) for (const p of taskModules.slice(0, MAX_PARTNERS)) opts.push({ label: `${self} (diff) under ${p.id}`, composition: { stack: [{ sum: [self] }, p.id] } });
  }
  // A module without a head predicts nothing but an embedding alone: start with its first partner instead.
  if (opts.length > 1 && !hasHead) return [opts[1], opts[0], ...opts.slice(2)];
  return opts;
}

/** The composition the snippets and the page start with. */
export async function defaultComposition(registry: Registry, m: ResolvedModule, isLatest: boolean): Promise<unknown> {
  return (await compositionOptions(registry, m, isLatest))[0].composition;
}

export interface TryContext {
  /** False when this server runs no inference engine (a hub-only deployment). */
  inference: boolean;
  maskToken?: string;
  /** The served base's fingerprint, to warn when the module is for another base. */
  servedFingerprint?: string;
}

/** The whole "Try it" page. */
export async function tryPage(registry: Registry, m: ResolvedModule, isLatest: boolean, ctx: TryContext): Promise<string> {
  const man = m.manifest;
  const options = await compositionOptions(registry, m, isLatest);
  const task = man.head?.type === 'masked_lm' ? 'fill_mask' : man.head ? 'auto' : 'embedding';
  const back = `${urlPath('modules', m.namespace, m.name)}${query({ version: isLatest ? undefined : m.version })}`;
  const otherBase = ctx.servedFingerprint !== undefined && ctx.servedFingerprint !== man.base.fingerprint;
  const body = html`
<p class="crumbs"><a href="${back}">← ${m.id}@${m.version}</a></p>
<h1>Try ${m.id}</h1>
${!ctx.inference
    ? html`<p class="warn" role="note">This server runs the hub only (no inference engine), so modules cannot be tried here. Start it with <code>modhub serve</code> to try them.</p>`
    : html`
${otherBase ? html`<p class="warn" role="note">This module was made for base <code>${man.base.fingerprint}</code>; this server runs <code>${ctx.servedFingerprint}</code>, so the request below will be refused.</p>` : ''}
<form id="try-form" class="try" data-default-task="${task}" novalidate>
  <div class="field wide"><label for="t-texts">Texts <span class="hint">(one per line${ctx.maskToken && task === 'fill_mask' ? html`; mark the masked word with <code>${ctx.maskToken}</code>` : ''})</span></label>
  <textarea id="t-texts" rows="3" required>${sampleText(man, ctx.maskToken)}</textarea></div>
  <div class="field wide"><label for="t-preset">Composition</label>
  <select id="t-preset">${options.map((o, i) => html`<option value="${JSON.stringify(o.composition)}"${i === 0 ? html` selected` : ''}>${o.label}</option>`)}</select></div>
  <div class="field wide"><label for="t-comp">Composition JSON <span class="hint">(AdapterHub blocks: stack, sum, fuse, parallel; edit freely)</span></label>
  <textarea id="t-comp" class="mono" rows="2" spellcheck="false">${JSON.stringify(options[0].composition)}</textarea></div>
  <div class="field"><label for="t-task">Output</label><select id="t-task">
    <option value="auto"${task === 'auto' ? html` selected` : ''}>the head's prediction</option>
    <option value="fill_mask"${task === 'fill_mask' ? html` selected` : ''}>fill-mask candidates</option>
    <option value="embedding"${task === 'embedding' ? html` selected` : ''}>embedding</option>
  </select></div>
  <div class="field"><label for="t-topk">Top k</label><input id="t-topk" type="number" min="1" max="50" value="3"></div>
  <div class="field actions"><button type="submit" id="t-run" class="primary">Run</button></div>
</form>
<p id="t-error" class="error" role="alert" hidden></p>
<section aria-labelledby="h-out"><h2 id="h-out">Predictions</h2><div id="t-out" aria-live="polite"><p class="hint">Run the form to see predictions.</p></div></section>
<section aria-labelledby="h-req"><h2 id="h-req">Request</h2>
<p class="hint">The exact JSON sent to <code>POST /v1/infer</code>:</p>
<div class="snippet"><div class="snippet-head"><h3 id="s-req">JSON body</h3><button type="button" class="copy" data-copy="t-request" aria-describedby="s-req">Copy</button></div><pre><code id="t-request"></code></pre></div>
<div class="snippet"><div class="snippet-head"><h3 id="s-curl">curl</h3><button type="button" class="copy" data-copy="t-curl" aria-describedby="s-curl">Copy</button></div><pre><code id="t-curl"></code></pre></div>
</section>`}`;
  return page({ title: `Try ${m.id}`, active: 'search', body, scripts: ctx.inference ? ['copy.js', 'token.js', 'try.js'] : [] });
}
