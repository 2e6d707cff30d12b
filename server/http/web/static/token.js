// The API token for this browser tab: kept in sessionStorage (gone when the tab closes), never in a URL or a cookie.
'use strict';
(function () {
  var KEY = 'modhub.token';
  function get() {
    try { return sessionStorage.getItem(KEY) || ''; } catch (e) { return ''; }
  }
  function set(v) {
    try { if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY); } catch (e) { /* storage disabled: the field still works for this page */ }
  }
  /** Headers for a fetch to the API, with the Authorization header when a token is kept. */
  function headers(extra) {
    var h = Object.assign({}, extra || {});
    var t = get();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  }
  window.modhubToken = { get: get, set: set, headers: headers };
})();
