/*
 * cinevec "more like this" widget, served by `cinevec serve` at /widget.js.
 *
 *   <script src="http://HOST:8080/widget.js" defer></script>
 *   <div data-movie-id="tt0468569"></div>
 *
 * Every element matching the selector gets a strip of similar films, drawn inside its own shadow root so
 * that neither the page's styles nor the widget's leak across. Elements added or changed later are
 * picked up too (the widget watches the DOM), so it works under frameworks that render on the client.
 *
 * On the element:
 *   data-movie-id   the film (required)
 *   data-k          how many films, 1 to 20 (default 6)
 *   data-api        the cinevec server (default: the origin this script was loaded from)
 *   data-title      heading (default "More like <title>")
 *   data-link       where a film links to, "{id}" replaced (default: the film on the cinevec page)
 *   data-exclude    films never shown, comma-separated ids (e.g. those already on the page)
 *   data-diversity  0 to 1: fewer near-copies of one another (maximal marginal relevance; default 0)
 * On the <script> tag:
 *   data-api        default server for every element
 *   data-selector   which elements to fill (default "[data-movie-id]")
 * Theming: set --cinevec-accent, --cinevec-bg, --cinevec-text, --cinevec-muted, --cinevec-line or
 * --cinevec-font on the element or any ancestor.
 *
 * The widget sets data-cinevec-state="loading" | "ready" | "error" on the element and dispatches
 * `cinevec:ready` / `cinevec:error` events from it. From another origin, the server must allow the
 * page's origin (`cinevec serve --cors-origins`, default `*`).
 */
(function () {
  'use strict';
  if (window.cinevecWidget) return; // included twice: the first copy already watches the page

  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  var defaultApi = (script && script.getAttribute('data-api')) || scriptOrigin;
  var selector = (script && script.getAttribute('data-selector')) || '[data-movie-id]';
  var WATCHED = ['data-movie-id', 'data-k', 'data-api', 'data-title', 'data-link'];

  var CSS = [
    ':host { all: initial; display: block; contain: content;',
    '  --a: var(--cinevec-accent, #3c5ccf); --bg: var(--cinevec-bg, #fff); --fg: var(--cinevec-text, #1c1c21);',
    '  --mu: var(--cinevec-muted, #62626d); --ln: var(--cinevec-line, #e3e3e9);',
    '  font: 14px/1.4 var(--cinevec-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif); color: var(--fg); }',
    ':host([hidden]) { display: none; }',
    '* { box-sizing: border-box; }',
    '.box { background: var(--bg); border: 1px solid var(--ln); border-radius: 10px; padding: 12px 12px 8px; }',
    '.head { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; margin: 0 2px 8px; }',
    'h2 { font-size: 15px; margin: 0; font-weight: 650; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }',
    '.by { font-size: 11px; color: var(--mu); white-space: nowrap; }',
    '.by a { color: inherit; }',
    'ol { list-style: none; margin: 0; padding: 0 0 6px; display: grid; grid-auto-flow: column; grid-auto-columns: minmax(150px, 1fr);',
    '  gap: 8px; overflow-x: auto; scroll-snap-type: x proximity; }',
    'li { scroll-snap-align: start; border: 1px solid var(--ln); border-radius: 8px; padding: 8px 10px; min-width: 0; display: flex; flex-direction: column; gap: 4px; }',
    'a.t { color: var(--fg); font-weight: 600; text-decoration: none; overflow-wrap: anywhere; }',
    'a.t:hover, a.t:focus-visible { color: var(--a); text-decoration: underline; }',
    'a:focus-visible { outline: 2px solid var(--a); outline-offset: 2px; border-radius: 2px; }',
    '.meta { color: var(--mu); font-size: 12px; }',
    '.score { display: flex; align-items: center; gap: 6px; font-size: 12px; color: var(--mu); font-variant-numeric: tabular-nums; }',
    '.bar { flex: 1; height: 4px; background: var(--ln); border-radius: 2px; overflow: hidden; }',
    '.bar span { display: block; height: 100%; background: var(--a); }',
    '.why { font-size: 12px; color: var(--mu); margin-top: auto; overflow-wrap: anywhere; }',
    '.skel { height: 84px; background: linear-gradient(90deg, var(--ln), transparent, var(--ln)); background-size: 200% 100%;',
    '  animation: pulse 1.2s ease-in-out infinite; border-color: transparent; }',
    '@keyframes pulse { from { background-position: 100% 0; } to { background-position: -100% 0; } }',
    '@media (prefers-reduced-motion: reduce) { .skel { animation: none; } }',
    '.err { color: #b3261e; font-size: 13px; margin: 0 2px 6px; overflow-wrap: anywhere; }'
  ].join('\n');

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = String(text); // API strings only ever become text
    return node;
  }

  function settings(host) {
    var k = parseInt(host.getAttribute('data-k') || '6', 10);
    return {
      id: (host.getAttribute('data-movie-id') || '').trim(),
      k: isFinite(k) ? Math.max(1, Math.min(20, k)) : 6,
      api: (host.getAttribute('data-api') || defaultApi).replace(/\/+$/, ''),
      title: host.getAttribute('data-title'),
      link: host.getAttribute('data-link'),
      // Films never shown (comma-separated ids, e.g. those already on the page) and diversity (0-1).
      exclude: (host.getAttribute('data-exclude') || '').split(',').map(function (id) { return id.trim(); })
        .filter(function (id) { return id; }).join(','),
      diversity: host.getAttribute('data-diversity')
    };
  }

  function fail(status, message) {
    var e = new Error(message);
    e.status = status;
    return e;
  }

  function load(s) {
    var url = s.api + '/v1/movies/' + encodeURIComponent(s.id) + '/similar?k=' + s.k;
    if (s.exclude) url += '&exclude=' + encodeURIComponent(s.exclude);
    var d = parseFloat(s.diversity);
    if (s.diversity != null && isFinite(d)) url += '&diversity=' + Math.max(0, Math.min(1, d));
    return fetch(url, { mode: 'cors', credentials: 'omit', headers: { accept: 'application/json' } }).then(
      function (response) {
        return response.text().then(function (text) {
          var body = null;
          try { body = JSON.parse(text); } catch (_) { /* reported below */ }
          if (!response.ok) {
            var message = body && body.error && body.error.message;
            throw fail(response.status, message || 'the server answered ' + response.status);
          }
          if (!body || !Array.isArray(body.results)) throw fail(response.status, 'the server answered with something unexpected');
          return body;
        });
      },
      function () {
        throw fail(0, 'could not reach cinevec at ' + s.api + '. If this page is on another origin, the server must allow it (cinevec serve --cors-origins).');
      }
    );
  }

  function reasons(why) {
    var parts = [];
    (why.shared_directors || []).forEach(function (d) { parts.push('dir. ' + d); });
    (why.shared_actors || []).slice(0, 2).forEach(function (a) { parts.push(a); });
    (why.shared_genres || []).slice(0, 3).forEach(function (g) { parts.push(g); });
    return parts.length ? parts.join(' · ') : 'similar in text';
  }

  function linkFor(s, id) {
    return s.link ? s.link.split('{id}').join(encodeURIComponent(id)) : s.api + '/#' + encodeURIComponent(id);
  }

  function card(s, r) {
    var li = el('li');
    li.setAttribute('data-id', r.id);
    var a = el('a', 't', r.title);
    a.href = linkFor(s, r.id);
    if (!s.link) { a.target = '_blank'; a.rel = 'noopener'; }
    var meta = [];
    if (r.year != null) meta.push(r.year);
    if (r.rating != null) meta.push('\u2605 ' + Number(r.rating).toFixed(1));
    var score = el('div', 'score');
    score.title = 'cosine similarity';
    var bar = el('span', 'bar');
    var fill = el('span');
    fill.style.width = (Math.max(0, Math.min(1, r.score)) * 100).toFixed(1) + '%';
    bar.appendChild(fill);
    score.appendChild(bar);
    score.appendChild(el('span', 'v', Number(r.score).toFixed(2)));
    li.appendChild(a);
    li.appendChild(el('div', 'meta', meta.join(' \u00b7 ')));
    li.appendChild(score);
    li.appendChild(el('div', 'why', reasons(r.why || {})));
    return li;
  }

  function frame(host, s, heading) {
    var root = host.shadowRoot || host.attachShadow({ mode: 'open' });
    var style = el('style', null, CSS);
    var box = el('section', 'box');
    box.setAttribute('aria-label', heading);
    var head = el('div', 'head');
    head.appendChild(el('h2', null, heading));
    var by = el('span', 'by', 'by ');
    var home = el('a', null, 'cinevec');
    home.href = s.api + '/';
    home.target = '_blank';
    home.rel = 'noopener';
    by.appendChild(home);
    head.appendChild(by);
    box.appendChild(head);
    root.replaceChildren(style, box);
    return box;
  }

  var generation = new WeakMap(); // drops answers to superseded renders of an element

  function render(host) {
    var s = settings(host);
    var n = (generation.get(host) || 0) + 1;
    generation.set(host, n);
    var box;
    try {
      box = frame(host, s, s.title || 'More like this');
    } catch (e) {
      console.warn('cinevec widget: cannot draw inside', host, '(use a <div> or <section>):', e);
      return Promise.resolve();
    }
    var done = function (state, detail) {
      host.setAttribute('data-cinevec-state', state);
      host.dispatchEvent(new CustomEvent('cinevec:' + state, { detail: detail }));
    };
    if (!s.id) {
      box.appendChild(el('p', 'err', 'No film: set data-movie-id.'));
      done('error', { message: 'no data-movie-id' });
      return Promise.resolve();
    }
    host.setAttribute('data-cinevec-state', 'loading');
    box.setAttribute('aria-busy', 'true');
    var skeleton = el('ol');
    for (var i = 0; i < Math.min(s.k, 6); i++) skeleton.appendChild(el('li', 'skel'));
    box.appendChild(skeleton);
    return load(s).then(
      function (body) {
        if (generation.get(host) !== n) return;
        box.setAttribute('aria-busy', 'false');
        var title = body.query && body.query.title;
        if (title && !s.title) box.querySelector('h2').textContent = 'More like ' + title;
        box.setAttribute('aria-label', box.querySelector('h2').textContent);
        var list = el('ol');
        body.results.forEach(function (r) { list.appendChild(card(s, r)); });
        if (!body.results.length) list = el('p', 'meta', 'No similar films found.');
        skeleton.replaceWith(list);
        done('ready', body);
      },
      function (e) {
        if (generation.get(host) !== n) return;
        box.setAttribute('aria-busy', 'false');
        skeleton.replaceWith(el('p', 'err', 'Could not load similar films: ' + e.message));
        done('error', { status: e.status, message: e.message });
      }
    );
  }

  function scan(root) {
    if (root.nodeType !== 1) return;
    if (root.matches(selector)) render(root);
    root.querySelectorAll(selector).forEach(render);
  }

  function start() {
    scan(document.documentElement);
    new MutationObserver(function (records) {
      records.forEach(function (rec) {
        if (rec.type === 'attributes') {
          if (rec.target.matches(selector)) render(rec.target);
        } else {
          rec.addedNodes.forEach(scan);
        }
      });
    }).observe(document.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: WATCHED });
  }

  window.cinevecWidget = {
    /** Draw (or redraw) one element now; resolves when its list (or error) is shown. */
    render: render,
    /** Redraw every matching element. */
    refresh: function () { document.querySelectorAll(selector).forEach(render); }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
