/**
 * The module page (`GET /modules/:ns/:name[?version=x]`): the model card (README.md, sanitised; generated from the
 * manifest when the package has none), manifest metadata, versions with their tags (yanked ones marked), the
 * files with sizes and sha256, download counts, and copyable snippets. Data comes from the registry calls the
 * JSON API makes (info, resolve), not from HTTP.
 */
import { generateCard, type ModuleInfo, type Registry, type ResolvedModule } from '../../../../modules-store';
import { notFound } from '../../errors';
import { formatBytes, formatTime, html, query, urlPath, type SafeHtml } from '../html';
import { page } from '../layout';
import { renderCard } from '../markdown';
import { snippetsFor } from '../snippets';
import { defaultComposition, sampleText } from './try';

export interface ModuleView {
  info: ModuleInfo;
  /** The version shown. */
  m: ResolvedModule;
}

/** Loads a module and the version to show: `version` when given (yanked ones too), else `latest`, else the highest. */
export async function loadModule(registry: Registry, namespace: string, name: string, version?: string): Promise<ModuleView> {
  const info = await registry.info(namespace, name);
  const want = version ?? info.tags.latest ?? info.versions[0].version;
  if (!info.versions.some((v) => v.version === want)) {
    throw notFound('VERSION_NOT_FOUND', `${info.id} has no version '${want}' (versions: ${info.versions.map((v) => v.version).join(', ')})`);
  }
  return { info, m: await registry.resolve(`${info.id}@${want}`) };
}

function metaRows(m: ResolvedModule): SafeHtml {
  const man = m.manifest;
  const row = (k: string, v: SafeHtml | string | number | undefined | null) => (v === undefined || v === null || v === '' ? '' : html`<tr><th scope="row">${k}</th><td>${v}</td></tr>`);
  const metrics = man.metrics && Object.keys(man.metrics).length ? Object.entries(man.metrics).map(([k, v]) => `${k} = ${v}`).join(', ') : undefined;
  return html`<table class="meta">
${row('kind', html`<span class="badge kind-${man.kind}">${man.kind}</span>`)}
${row('task', man.task)}
${row('language', man.language)}
${row('head', man.head ? `${man.head.type}${'num_labels' in man.head ? ` (${man.head.num_labels} labels)` : ''}` : 'none')}
${row('labels', man.labels.length ? html`<ul class="labels">${man.labels.slice(0, 50).map((l) => html`<li>${l}</li>`)}${man.labels.length > 50 ? html`<li>… ${man.labels.length - 50} more</li>` : ''}</ul>` : undefined)}
${row('base', html`${man.base.family}, hidden ${man.base.hidden_size}, ${man.base.num_layers} layers, vocab ${man.base.vocab_size}<br><a class="mono wrap" href="/base${query({ fingerprint: man.base.fingerprint })}">${man.base.fingerprint}</a>`)}
${row('config', html`<code class="wrap">${JSON.stringify(man.config)}</code>`)}
${row('metrics', metrics)}
${row('license', man.license)}
${row('format', `v${man.format_version}`)}
</table>`;
}

function versionsTable(view: ModuleView): SafeHtml {
  const { info, m } = view;
  const tagsOf = (v: string) => Object.entries(info.tags).filter(([, x]) => x === v).map(([t]) => t);
  return html`<table class="versions">
<caption class="sr-only">Versions</caption>
<thead><tr><th scope="col">version</th><th scope="col">tags</th><th scope="col">published</th><th scope="col">size</th><th scope="col">downloads</th><th scope="col">status</th></tr></thead>
<tbody>${info.versions.map(
    (v) => html`<tr${v.yanked ? html` class="yanked"` : ''}${v.version === m.version ? html` aria-current="true"` : ''}>
<td><a href="${urlPath('modules', m.namespace, m.name)}${query({ version: v.version })}">${v.version}</a></td>
<td>${tagsOf(v.version).map((t) => html`<span class="tag">${t}</span> `)}</td>
<td><time datetime="${v.createdAt}">${formatTime(v.createdAt)}</time></td>
<td>${formatBytes(v.size)}</td>
<td>${v.downloads}</td>
<td>${v.yanked ? html`<span class="badge yanked-badge">yanked</span>${v.yankReason ? html` <span class="reason">${v.yankReason}</span>` : ''}` : 'live'}</td>
</tr>`,
  )}</tbody></table>`;
}

function filesTable(m: ResolvedModule): SafeHtml {
  return html`<table class="files">
<caption class="sr-only">Files of ${m.version}</caption>
<thead><tr><th scope="col">file</th><th scope="col">size</th><th scope="col">sha256</th></tr></thead>
<tbody>${m.files.map(
    (f) => html`<tr><td><a href="${urlPath('v1', 'modules', m.namespace, m.name, 'versions', m.version, 'files', f.name)}" download>${f.name}</a></td><td>${formatBytes(f.size)}</td><td><code class="sha">${f.digest.replace(/^sha256:/, '')}</code></td></tr>`,
  )}</tbody></table>
<p><a class="button" href="${urlPath('v1', 'modules', m.namespace, m.name, 'versions', m.version, 'archive')}" download>Download ${m.version} (tar)</a></p>`;
}

/** The whole module page. `origin` is the hub as the browser reached it (for the snippets). */
export async function modulePage(registry: Registry, view: ModuleView, origin: string, maskToken?: string): Promise<string> {
  const { info, m } = view;
  const hasCard = m.files.some((f) => f.name === 'README.md');
  const cardText = hasCard ? (await m.readFile('README.md')).toString('utf8') : generateCard(m.manifest);
  const card = renderCard(cardText);
  const vInfo = info.versions.find((v) => v.version === m.version)!;
  const composition = await defaultComposition(registry, m, view.info.tags.latest === m.version);
  const snippets = snippetsFor({ origin, manifest: m.manifest, version: m.version, composition, sample: sampleText(m.manifest, maskToken) });
  const tryHref = `${urlPath('modules', m.namespace, m.name, 'try')}${query({ version: view.info.tags.latest === m.version ? undefined : m.version })}`;
  const body = html`
<div class="module-head">
  <h1><span class="ns">${m.namespace}/</span>${m.name} <span class="ver">@${m.version}</span></h1>
  <p class="desc">${m.manifest.description || 'No description.'}</p>
  <p class="chips"><span class="badge kind-${m.manifest.kind}">${m.manifest.kind}</span> <span class="chip">${m.manifest.task}</span>${m.manifest.language ? html` <span class="chip">${m.manifest.language}</span>` : ''} <span class="chip">${info.downloads} downloads (${vInfo.downloads} of this version)</span> <span class="chip">updated ${formatTime(info.updatedAt)}</span></p>
  ${m.yanked ? html`<p class="warn" role="note">Version ${m.version} is yanked${vInfo.yankReason ? html`: ${vInfo.yankReason}` : ''}. Tags no longer resolve to it; name it exactly to fetch it.</p>` : ''}
  <p><a class="button primary" href="${tryHref}">Try it</a></p>
</div>
<div class="cols">
  <article class="card-body" aria-label="Model card">${card.html}</article>
  <aside>
    <section aria-labelledby="h-meta"><h2 id="h-meta">Metadata</h2>${metaRows(m)}</section>
    <section aria-labelledby="h-files"><h2 id="h-files">Files</h2>${filesTable(m)}</section>
  </aside>
</div>
<section aria-labelledby="h-versions"><h2 id="h-versions">Versions</h2>${versionsTable(view)}</section>
<section aria-labelledby="h-use"><h2 id="h-use">Use it</h2>
${snippets.map(
    (s) => html`<div class="snippet"><div class="snippet-head"><h3 id="s-${s.id}">${s.title}</h3><button type="button" class="copy" data-copy="code-${s.id}" aria-describedby="s-${s.id}">Copy</button></div><pre><code id="code-${s.id}" class="language-${s.language}">${s.code}</code></pre></div>`,
  )}
</section>`;
  return page({ title: `${m.id}@${m.version}`, active: 'search', body, scripts: ['copy.js'] });
}
