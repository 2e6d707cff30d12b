// Publishing: the token from the field (kept in sessionStorage by token.js), files from the picker or a drop,
// POST /v1/modules with the token in the Authorization header, and the hub's validation errors shown inline.
'use strict';
(function () {
  var form = document.getElementById('publish-form');
  if (!form) return;
  var $ = function (id) { return document.getElementById(id); };
  var tokenIn = $('p-token'), tokenState = $('p-token-state'), forget = $('p-forget');
  var input = $('p-files'), drop = $('p-drop'), chosenList = $('p-chosen'), unknown = $('p-unknown');
  var result = $('p-result'), errors = $('p-errors'), submit = $('p-submit');
  var maxBytes = Number(form.getAttribute('data-max-bytes')) || Infinity;
  var PACKAGE_FILES = ['module.json', 'weights.safetensors', 'README.md'];
  var chosen = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function showTokenState() {
    tokenState.textContent = window.modhubToken.get() ? 'A token is kept for this tab.' : 'No token kept.';
  }
  tokenIn.value = window.modhubToken.get();
  showTokenState();
  tokenIn.addEventListener('input', function () { window.modhubToken.set(tokenIn.value.trim()); showTokenState(); });
  forget.addEventListener('click', function () { window.modhubToken.set(''); tokenIn.value = ''; showTokenState(); tokenIn.focus(); });

  function setFiles(list) {
    chosen = Array.prototype.slice.call(list);
    chosenList.textContent = '';
    chosen.forEach(function (f) { chosenList.appendChild(el('li', '', f.name + ' (' + f.size + ' bytes)')); });
  }
  input.addEventListener('change', function () { setFiles(input.files); });
  ['dragenter', 'dragover'].forEach(function (t) {
    drop.addEventListener(t, function (ev) { ev.preventDefault(); drop.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (t) {
    drop.addEventListener(t, function () { drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (ev) {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) setFiles(ev.dataTransfer.files);
  });

  function showErrors(title, items) {
    errors.textContent = '';
    errors.appendChild(el('p', 'error-title', title));
    var ul = el('ul');
    items.forEach(function (m) { ul.appendChild(el('li', '', m)); });
    errors.appendChild(ul);
    errors.hidden = false;
  }

  /** The multipart form for the chosen files, or throws an Error that says what to fix. */
  function formData() {
    if (!chosen.length) throw new Error('Choose or drop an archive or the package files.');
    var total = chosen.reduce(function (a, f) { return a + f.size; }, 0);
    if (total > maxBytes) throw new Error('The files are ' + total + ' bytes, over this hub\'s ' + maxBytes + '-byte package limit.');
    var fd = new FormData();
    var isArchive = chosen.length === 1 && /\.(tar|tgz|tar\.gz|gz)$/i.test(chosen[0].name);
    if (isArchive) {
      fd.append('archive', chosen[0], chosen[0].name);
      return fd;
    }
    var bad = chosen.filter(function (f) { return PACKAGE_FILES.indexOf(f.name) < 0; }).map(function (f) { return f.name; });
    if (bad.length) throw new Error('Unexpected file(s) ' + bad.join(', ') + ': send one .tar / .tar.gz archive, or ' + PACKAGE_FILES.join(', ') + '.');
    chosen.forEach(function (f) { fd.append(f.name, f, f.name); });
    return fd;
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    errors.hidden = true;
    result.textContent = '';
    var token = tokenIn.value.trim();
    if (!token) { showErrors('Cannot publish yet', ['Type a token with write scope.']); tokenIn.focus(); return; }
    window.modhubToken.set(token);
    var fd;
    try { fd = formData(); } catch (e) { showErrors('Cannot publish yet', [e.message]); return; }
    submit.disabled = true;
    fetch('/v1/modules' + (unknown.checked ? '?allow_unknown_base=true' : ''), { method: 'POST', headers: window.modhubToken.headers(), body: fd, credentials: 'omit' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return { ok: r.ok, status: r.status, data: data }; });
      })
      .then(function (r) {
        if (!r.ok) {
          var e = (r.data && r.data.error) || {};
          var parts = String(e.message || 'HTTP ' + r.status).split(/;\s+/);
          showErrors('The hub refused the package (' + (e.code || 'HTTP ' + r.status) + ')', parts);
          return;
        }
        var d = r.data;
        var p = el('p', 'ok');
        p.appendChild(document.createTextNode('Published '));
        var ids = String(d.id).split('/');
        var a = el('a', '', d.id + '@' + d.version);
        a.href = '/modules/' + ids.map(encodeURIComponent).join('/') + '?version=' + encodeURIComponent(d.version);
        p.appendChild(a);
        p.appendChild(document.createTextNode(' (' + d.size + ' bytes, ' + d.digest + ').'));
        result.appendChild(p);
      })
      .catch(function (e) { showErrors('The server could not be reached', [e.message]); })
      .finally(function () { submit.disabled = false; });
  });
})();
