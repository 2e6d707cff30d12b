// Copy buttons: <button class="copy" data-copy="ELEMENT_ID"> copies that element's text to the clipboard.
'use strict';
(function () {
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain-http hubs have no async clipboard: select a hidden textarea and use the legacy command.
    return new Promise(function (resolve, reject) {
      var ta = document.createElement('textarea');
      ta.value = text;
      ta.setAttribute('readonly', '');
      ta.className = 'offscreen';
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      if (ok) resolve(); else reject(new Error('copy refused'));
    });
  }
  document.addEventListener('click', function (ev) {
    var btn = ev.target instanceof Element ? ev.target.closest('button.copy[data-copy]') : null;
    if (!btn) return;
    var el = document.getElementById(btn.getAttribute('data-copy'));
    if (!el) return;
    copyText(el.textContent).then(function () {
      btn.textContent = 'Copied';
    }, function () {
      btn.textContent = 'Select and copy by hand';
    });
    setTimeout(function () { btn.textContent = 'Copy'; }, 2000);
  });
})();
