/**
 * The search page (`GET /`): the filters the API has (free text, kind, task, language, base, namespace), sorting,
 * pagination, and one result card per module with kind, task, language, size, downloads and last update. A plain
 * GET form: works without JavaScript, and every state is a shareable URL.
 * Example: `/?q=topic&kind=bottleneck&language=de&sort=recent&page=2`.
 */
import { MODULE_KINDS, type BaseRow, type Registry, type SearchPage, type SearchSort } from '../../../../modules-store';
import { badRequest } from '../../errors';
import { formatBytes, formatTime, html, query, urlPath, type SafeHtml } from '../html';
import { page } from '../layout';

export const PAGE_SIZE = 20;
const SORTS: Record<SearchSort, string> = { downloads: 'Most downloaded', recent: 'Recently updated', name: 'Name' };

export interface SearchForm {
  q?: string;
  kind?: string;
  task?: string;
  language?: string;
  base?: string;
  namespace?: string;
  sort: SearchSort;
  page: number;
}

/** Reads and checks the search form from the query string (400 with what to fix when a value is malformed). */
export function readSearchForm(q: Record<string, unknown>): SearchForm {
  const str = (name: string): string | undefined => {
    const v = q[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw badRequest('INVALID_QUERY', `query parameter '${name}' must be given once, as a string`);
    const t = v.trim();
    if (t.length > 256) throw badRequest('INVALID_QUERY', `query parameter '${name}' must be at most 256 characters`);
    return t === '' ? undefined : t;
  };
  const sort = (str('sort') ?? 'downloads') as SearchSort;
  if (!(sort in SORTS)) throw badRequest('INVALID_QUERY', `sort must be one of ${Object.keys(SORTS).join(', ')}, got '${sort}'`);
  const kind = str('kind');
  if (kind !== undefined && !(MODULE_KINDS as readonly string[]).includes(kind)) throw badRequest('INVALID_QUERY', `kind must be one of ${MODULE_KINDS.join(', ')}, got '${kind}'`);
  const p = str('page') ?? '1';
  if (!/^\d{1,7}$/.test(p) || Number(p) < 1) throw badRequest('INVALID_QUERY', `page must be a positive integer, got '${p}'`);
  return { q: str('q'), kind, task: str('task'), language: str('language'), base: str('base'), namespace: str('namespace'), sort, page: Number(p) };
}

/** Runs the search the API runs, for one page of the form. */
export async function runSearch(registry: Registry, f: SearchForm): Promise<SearchPage> {
  return registry.search({
    q: f.q,
    kind: f.kind,
    task: f.task,
    language: f.language,
    baseFingerprint: f.base,
    namespace: f.namespace,
    sort: f.sort,
    limit: PAGE_SIZE,
    offset: (f.page - 1) * PAGE_SIZE,
  });
}

/** Sizes of the versions `latest` points at, by module id (missing when a module vanished meanwhile). */
async function latestSizes(registry: Registry, ids: { namespace: string; name: string; id: string }[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  await Promise.all(
    ids.map(async (m) => {
      try {
        const info = await registry.info(m.namespace, m.name);
        const v = info.versions.find((x) => x.version === info.tags.latest) ?? info.versions[0];
        out.set(m.id, v.size);
      } catch {
        // deleted between the search and this read: the card shows no size
      }
    }),
  );
  return out;
}

function textField(name: keyof SearchForm, label: string, value: string | undefined, placeholder = ''): SafeHtml {
  return html`<div class="field"><label for="f-${name}">${label}</label><input id="f-${name}" name="${name}" type="text" value="${value ?? ''}" placeholder="${placeholder}" maxlength="256"></div>`;
}

/** The whole search page. */
export async function searchPage(registry: Registry, f: SearchForm): Promise<string> {
  const [result, bases] = await Promise.all([runSearch(registry, f), registry.listBases()]);
  const sizes = await latestSizes(registry, result.items);
  const state = { q: f.q, kind: f.kind, task: f.task, language: f.language, base: f.base, namespace: f.namespace, sort: f.sort === 'downloads' ? undefined : f.sort };
  const lastPage = Math.max(1, Math.ceil(result.total / PAGE_SIZE));
  const from = result.total === 0 ? 0 : result.offset + 1;
  const to = result.offset + result.items.length;
  const baseLabel = (b: BaseRow) => `${b.family} · ${b.hiddenSize}×${b.numLayers} · ${b.fingerprint.slice(7, 19)}…`;
  const form = html`
<form class="search" method="get" action="/" role="search" aria-label="Search modules">
  <div class="field grow"><label for="f-q">Search</label><input id="f-q" name="q" type="search" value="${f.q ?? ''}" placeholder="name or description" maxlength="256"></div>
  <div class="field"><label for="f-kind">Kind</label><select id="f-kind" name="kind"><option value="">any</option>${MODULE_KINDS.map((k) => html`<option value="${k}"${f.kind === k ? html` selected` : ''}>${k}</option>`)}</select></div>
  ${textField('task', 'Task', f.task, 'e.g. topic-classification')}
  ${textField('language', 'Language', f.language, 'e.g. de')}
  <div class="field"><label for="f-base">Base</label><select id="f-base" name="base"><option value="">any</option>${bases.map((b) => html`<option value="${b.fingerprint}"${f.base === b.fingerprint ? html` selected` : ''}>${baseLabel(b)}</option>`)}${f.base && !bases.some((b) => b.fingerprint === f.base) ? html`<option value="${f.base}" selected>${f.base}</option>` : ''}</select></div>
  ${textField('namespace', 'Namespace', f.namespace)}
  <div class="field"><label for="f-sort">Sort</label><select id="f-sort" name="sort">${(Object.keys(SORTS) as SearchSort[]).map((s) => html`<option value="${s}"${f.sort === s ? html` selected` : ''}>${SORTS[s]}</option>`)}</select></div>
  <div class="field actions"><button type="submit">Search</button> <a href="/">Reset</a></div>
</form>`;
  const cards = result.items.map(
    (m) => html`
<li class="card">
  <h2><a href="${urlPath('modules', m.namespace, m.name)}">${m.id}</a></h2>
  <p class="desc">${m.description || 'No description.'}</p>
  <dl class="facts">
    <div><dt>kind</dt><dd><span class="badge kind-${m.kind}">${m.kind}</span></dd></div>
    <div><dt>task</dt><dd>${m.task}</dd></div>
    <div><dt>language</dt><dd>${m.language ?? '—'}</dd></div>
    <div><dt>size</dt><dd>${sizes.has(m.id) ? formatBytes(sizes.get(m.id)!) : '—'}</dd></div>
    <div><dt>downloads</dt><dd>${m.downloads}</dd></div>
    <div><dt>updated</dt><dd><time datetime="${m.updatedAt}">${formatTime(m.updatedAt)}</time></dd></div>
  </dl>
</li>`,
  );
  const pager = html`
<nav class="pager" aria-label="Pages">
  ${f.page > 1 ? html`<a rel="prev" href="/${query({ ...state, page: f.page - 1 === 1 ? undefined : f.page - 1 })}">← Previous</a>` : html`<span aria-disabled="true">← Previous</span>`}
  <span>Page ${f.page} of ${lastPage}</span>
  ${to < result.total ? html`<a rel="next" href="/${query({ ...state, page: f.page + 1 })}">Next →</a>` : html`<span aria-disabled="true">Next →</span>`}
</nav>`;
  const body = html`
<h1>Modules</h1>
${form}
<p class="count" role="status">${result.total === 0 ? 'No module matches.' : `${from}–${to} of ${result.total} module${result.total === 1 ? '' : 's'}`}</p>
<ul class="results">${cards}</ul>
${result.total > PAGE_SIZE || f.page > 1 ? pager : ''}`;
  return page({ title: f.q ? `“${f.q}”` : 'Modules', active: 'search', body });
}
