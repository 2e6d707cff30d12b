// "Try it": sends the form as POST /v1/infer, shows the exact request and renders the predictions.
// Every value from the server or the user is inserted with textContent, never as HTML.
'use strict';
(function () {
  var form = document.getElementById('try-form');
  if (!form) return;
  var $ = function (id) { return document.getElementById(id); };
  var texts = $('t-texts'), preset = $('t-preset'), comp = $('t-comp'), task = $('t-task'), topk = $('t-topk');
  var out = $('t-out'), err = $('t-error'), reqEl = $('t-request'), curlEl = $('t-curl'), run = $('t-run');

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x) { return Number(x).toFixed(4); }
  function shq(s) { return "'" + s.replace(/'/g, "'\\''") + "'"; }

  preset.addEventListener('change', function () { comp.value = preset.value; });

  /** The request body from the form, or throws an Error that says what to fix. */
  function body() {
    var lines = texts.value.split('\n').map(function (s) { return s.trim(); }).filter(Boolean);
    if (!lines.length) throw new Error('Type at least one text (one per line).');
    var b = { inputs: lines.map(function (t) { return { text: t }; }) };
    var c = comp.value.trim();
    if (c) {
      try { b.composition = JSON.parse(c); } catch (e) { throw new Error('The composition is not valid JSON: ' + e.message); }
    }
    if (task.value !== 'auto') b.task = task.value;
    var k = Number(topk.value);
    if (!Number.isInteger(k) || k < 1 || k > 50) throw new Error('Top k must be a whole number from 1 to 50.');
    b.top_k = k;
    return b;
  }

  function renderClassification(p) {
    var box = el('div', 'pred pred-classification');
    var top = el('p', 'top');
    top.appendChild(el('span', 'pred-label', p.label));
    top.appendChild(document.createTextNode(' '));
    top.appendChild(el('span', 'pred-score', fmt(p.score)));
    box.appendChild(top);
    var ul = el('ul', 'scores');
    (p.scores || []).forEach(function (s) {
      var li = el('li');
      var name = el('span', 'score-label', s.label);
      var m = el('meter');
      m.min = 0; m.max = 1; m.value = s.score;
      m.setAttribute('aria-label', s.label);
      li.appendChild(name); li.appendChild(m); li.appendChild(el('span', 'score-value', fmt(s.score)));
      ul.appendChild(li);
    });
    box.appendChild(ul);
    return box;
  }

  function renderTokens(p, text) {
    var box = el('div', 'pred pred-tokens');
    var para = el('p', 'entities');
    var at = 0;
    p.tokens.forEach(function (t) {
      if (t.label === 'O' || t.start < at) return;
      para.appendChild(document.createTextNode(text.slice(at, t.start)));
      var mark = el('mark', 'entity', text.slice(t.start, t.end));
      mark.title = t.label + ' ' + fmt(t.score);
      mark.appendChild(el('span', 'entity-label', t.label));
      para.appendChild(mark);
      at = t.end;
    });
    para.appendChild(document.createTextNode(text.slice(at)));
    box.appendChild(para);
    var table = el('table', 'tokens');
    var head = el('tr');
    ['token', 'label', 'score', 'span'].forEach(function (h) { var th = el('th', '', h); th.scope = 'col'; head.appendChild(th); });
    table.appendChild(head);
    p.tokens.forEach(function (t) {
      var tr = el('tr', t.label === 'O' ? '' : 'is-entity');
      [t.token, t.label, fmt(t.score), t.start + '–' + t.end].forEach(function (v) { tr.appendChild(el('td', '', v)); });
      table.appendChild(tr);
    });
    box.appendChild(table);
    return box;
  }

  function renderFillMask(p) {
    var box = el('div', 'pred pred-fill');
    if (!p.masks.length) box.appendChild(el('p', 'hint', 'The text has no mask token.'));
    p.masks.forEach(function (m) {
      box.appendChild(el('p', '', 'Mask at token ' + m.position + ':'));
      var ol = el('ol', 'candidates');
      m.candidates.forEach(function (c) {
        var li = el('li');
        li.appendChild(el('code', 'cand-token', c.token));
        li.appendChild(document.createTextNode(' '));
        li.appendChild(el('span', 'cand-score', fmt(c.score)));
        ol.appendChild(li);
      });
      box.appendChild(ol);
    });
    return box;
  }

  function renderEmbedding(p) {
    var e = p.embedding;
    var box = el('div', 'pred pred-embedding');
    box.appendChild(el('p', '', e.length + ' dimensions; first values: ' + e.slice(0, 8).map(fmt).join(', ') + (e.length > 8 ? ', …' : '')));
    return box;
  }

  function render(res, b) {
    out.textContent = '';
    res.results.forEach(function (r, i) {
      var sec = el('section', 'result');
      sec.appendChild(el('h3', 'result-text', b.inputs[i].text));
      r.branches.forEach(function (p, j) {
        if (r.branches.length > 1 || (res.modules[j] && res.modules[j].length)) {
          sec.appendChild(el('p', 'branch', (r.branches.length > 1 ? 'Branch ' + (j + 1) + ': ' : 'Modules: ') + ((res.modules[j] || []).join(' + ') || 'bare base')));
        }
        if (p.type === 'classification') sec.appendChild(renderClassification(p));
        else if (p.type === 'token_classification') sec.appendChild(renderTokens(p, b.inputs[i].text));
        else if (p.type === 'fill_mask') sec.appendChild(renderFillMask(p));
        else if (p.type === 'embedding') sec.appendChild(renderEmbedding(p));
      });
      out.appendChild(sec);
    });
    if (typeof res.took_ms === 'number') out.appendChild(el('p', 'hint', 'took ' + res.took_ms.toFixed(1) + ' ms on the server'));
  }

  function showError(msg) {
    err.textContent = msg;
    err.hidden = false;
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    err.hidden = true;
    var b;
    try { b = body(); } catch (e) { showError(e.message); return; }
    var json = JSON.stringify(b);
    reqEl.textContent = JSON.stringify(b, null, 2);
    curlEl.textContent = 'curl -s ' + shq(location.origin + '/v1/infer') + " -H 'Content-Type: application/json' \\\n  -d " + shq(json);
    run.disabled = true;
    out.setAttribute('aria-busy', 'true');
    fetch('/v1/infer', { method: 'POST', headers: window.modhubToken.headers({ 'Content-Type': 'application/json' }), body: json, credentials: 'omit' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return { ok: r.ok, status: r.status, data: data }; });
      })
      .then(function (r) {
        if (!r.ok) {
          var e = r.data && r.data.error;
          showError((e && e.code ? e.code + ': ' : 'HTTP ' + r.status + ': ') + (e && e.message ? e.message : 'the request failed'));
          return;
        }
        render(r.data, b);
      })
      .catch(function (e) { showError('The server could not be reached: ' + e.message); })
      .finally(function () { run.disabled = false; out.removeAttribute('aria-busy'); });
  });
})();
