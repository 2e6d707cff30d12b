/**
 * The base page (`GET /base[?fingerprint=sha256:...]`): the base this server has loaded (family, dimensions,
 * fingerprint, device), the bases registered on the hub, and the modules that fit the chosen one (same
 * fingerprint), paged like search.
 */
import type { BaseRow, Registry } from '../../../../modules-store';
import { badRequest } from '../../errors';
import { formatTime, html, query, urlPath } from '../html';
import { page } from '../layout';
import { PAGE_SIZE } from './search';

/** What the inference engine reports about its base (absent on a hub-only server). */
export interface ServedBaseInfo {
  family: string;
  fingerprint: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  vocabSize: number;
  maxLength: number;
  device: string;
  maskToken: string;
}

/** The whole base page. */
export async function basePage(registry: Registry, served: ServedBaseInfo | undefined, fingerprint: string | undefined, pageNo: number): Promise<string> {
  if (fingerprint !== undefined && !/^sha256:[0-9a-f]{64}$/.test(fingerprint)) throw badRequest('INVALID_QUERY', `fingerprint must be 'sha256:' and 64 lowercase hex digits, got '${fingerprint}'`);
  const bases = await registry.listBases();
  const chosen = fingerprint ?? served?.fingerprint ?? bases[0]?.fingerprint;
  const fits = chosen ? await registry.search({ baseFingerprint: chosen, sort: 'name', limit: PAGE_SIZE, offset: (pageNo - 1) * PAGE_SIZE }) : undefined;
  const row: (b: BaseRow) => ReturnType<typeof html> = (b) =>
    html`<tr${b.fingerprint === chosen ? html` aria-current="true"` : ''}><td><a class="mono" href="/base${query({ fingerprint: b.fingerprint })}">${b.fingerprint}</a>${served?.fingerprint === b.fingerprint ? html` <span class="badge">served</span>` : ''}</td><td>${b.family}</td><td>${b.hiddenSize}</td><td>${b.numLayers}</td><td>${b.vocabSize}</td><td>${b.description}</td><td>${formatTime(b.createdAt)}</td></tr>`;
  const body = html`
<h1>Base model</h1>
${served
    ? html`<section aria-labelledby="h-served"><h2 id="h-served">Loaded on this server</h2>
<table class="meta">
<tr><th scope="row">family</th><td>${served.family}</td></tr>
<tr><th scope="row">fingerprint</th><td><code class="wrap">${served.fingerprint}</code></td></tr>
<tr><th scope="row">dimensions</th><td>hidden ${served.hiddenSize}, ${served.numLayers} layers, ${served.numHeads} heads, FFN ${served.intermediateSize}, vocab ${served.vocabSize}, up to ${served.maxLength} tokens</td></tr>
<tr><th scope="row">mask token</th><td><code>${served.maskToken}</code></td></tr>
<tr><th scope="row">device</th><td>${served.device}</td></tr>
</table></section>`
    : html`<p class="warn" role="note">This server runs the hub only: no base is loaded for inference.</p>`}
<section aria-labelledby="h-bases"><h2 id="h-bases">Bases registered on this hub</h2>
${bases.length
    ? html`<table class="bases"><thead><tr><th scope="col">fingerprint</th><th scope="col">family</th><th scope="col">hidden</th><th scope="col">layers</th><th scope="col">vocab</th><th scope="col">description</th><th scope="col">registered</th></tr></thead><tbody>${bases.map(row)}</tbody></table>`
    : html`<p>No base is registered yet.</p>`}
</section>
${chosen && fits
    ? html`<section aria-labelledby="h-fit"><h2 id="h-fit">Modules for <code>${chosen.slice(0, 19)}…</code> (${fits.total})</h2>
${fits.items.length ? html`<ul class="plain">${fits.items.map((m) => html`<li><a href="${urlPath('modules', m.namespace, m.name)}">${m.id}</a> <span class="badge kind-${m.kind}">${m.kind}</span> <span class="chip">${m.task}</span>${m.language ? html` <span class="chip">${m.language}</span>` : ''}</li>`)}</ul>` : html`<p>No module fits this base yet.</p>`}
${fits.total > PAGE_SIZE ? html`<nav class="pager" aria-label="Pages">${pageNo > 1 ? html`<a rel="prev" href="/base${query({ fingerprint: chosen, page: pageNo - 1 })}">← Previous</a>` : ''} <span>Page ${pageNo}</span> ${fits.offset + fits.items.length < fits.total ? html`<a rel="next" href="/base${query({ fingerprint: chosen, page: pageNo + 1 })}">Next →</a>` : ''}</nav>` : ''}
<p><a href="/${query({ base: chosen })}">Search among them</a></p></section>`
    : ''}`;
  return page({ title: 'Base', active: 'base', body });
}
