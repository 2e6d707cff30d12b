/**
 * The publishing page (`GET /publish`): a token field (kept in this tab's sessionStorage by /assets/token.js,
 * never put in a URL and never sent to the server except as the Authorization header of the upload), a drop zone
 * for an archive (.tar / .tar.gz) or the package files, and an inline list of validation errors. The upload itself
 * is /assets/publish.js calling POST /v1/modules, the API endpoint.
 */
import { html } from '../html';
import { page } from '../layout';

/** The whole publishing page. `maxBytes` is the registry's package limit. */
export function publishPage(maxBytes: number): string {
  const body = html`
<h1>Publish a module</h1>
<p>Upload a package: one archive (<code>.tar</code> or <code>.tar.gz</code> holding <code>module.json</code>, <code>weights.safetensors</code> and optionally <code>README.md</code>), or those files themselves. The hub checks the package before storing anything and lists every problem here.</p>
<form id="publish-form" class="publish" method="post" action="/publish" enctype="multipart/form-data" novalidate data-max-bytes="${maxBytes}">
  <div class="field wide"><label for="p-token">Token <span class="hint">(write scope; kept in this browser tab only)</span></label>
  <input id="p-token" type="password" autocomplete="off" spellcheck="false" placeholder="mh_…" aria-describedby="p-token-state">
  <span id="p-token-state" class="hint"></span> <button type="button" id="p-forget">Forget token</button></div>
  <div class="field wide"><label for="p-files">Package files</label>
  <div id="p-drop" class="drop" tabindex="-1"><p>Drop an archive or the package files here, or choose them:</p>
  <input id="p-files" type="file" multiple accept=".tar,.tgz,.gz,.json,.safetensors,.md"></div>
  <ul id="p-chosen" class="plain" aria-live="polite"></ul></div>
  <div class="field wide check"><input id="p-unknown" type="checkbox"> <label for="p-unknown">Allow a base this hub has not registered (admin tokens only)</label></div>
  <div class="field actions"><button type="submit" id="p-submit" class="primary">Publish</button></div>
</form>
<div id="p-result" aria-live="polite"></div>
<div id="p-errors" class="error" role="alert" hidden></div>`;
  return page({ title: 'Publish', active: 'publish', body, scripts: ['token.js', 'publish.js'] });
}
