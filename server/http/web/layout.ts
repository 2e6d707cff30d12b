/**
 * The page shell shared by every web page: doctype, title, the stylesheet and scripts (static files only: the
 * Content-Security-Policy forbids inline script and style), a skip link, the navigation, and the main region.
 * Example: `page({ title: 'Search', active: 'search', body: html`...`, scripts: ['copy.js'] })`.
 */
import { html, type SafeHtml } from './html';

export interface PageOptions {
  title: string;
  /** Which navigation entry is the current page. */
  active?: 'search' | 'base' | 'publish';
  body: SafeHtml;
  /** Script files under /assets/ (loaded deferred). */
  scripts?: string[];
}

/** A whole HTML document. */
export function page(o: PageOptions): string {
  const nav = (key: NonNullable<PageOptions['active']>, href: string, label: string) =>
    html`<li><a href="${href}"${o.active === key ? html` aria-current="page"` : ''}>${label}</a></li>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${o.title} · modhub</title>
<link rel="stylesheet" href="/assets/style.css">
${(o.scripts ?? []).map((s) => html`<script src="/assets/${s}" defer></script>\n`)}</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="site-top">
  <a class="brand" href="/">modhub</a>
  <nav aria-label="Main"><ul>${nav('search', '/', 'Modules')}${nav('base', '/base', 'Base')}${nav('publish', '/publish', 'Publish')}</ul></nav>
</header>
<main id="main" tabindex="-1">
${o.body}
</main>
<footer class="foot"><a href="/openapi.json">API (OpenAPI)</a> · <a href="/healthz">health</a></footer>
</body>
</html>
`.value;
}
