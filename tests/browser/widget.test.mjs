// Drives cinevec's web page (/) and embeddable widget (/widget.js) in headless Chromium against a real
// server. Started by tests/browser.rs, which runs the server (real model, imdb5000 slice) and two host
// pages on other origins, and passes everything in the environment:
//   CINEVEC_URL     the server, e.g. http://127.0.0.1:40123
//   HOST_ALLOWED    a host page whose origin the server's --cors-origins allows
//   HOST_BLOCKED    a host page whose origin it does not
//   CHROMIUM        the browser binary
//   SCREENSHOT_DIR  where to save the screenshots
// Every check compares what the page rendered with what the API answers for the same request.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`widget.test.mjs: ${name} is not set (run it through \`cargo test --release --test browser -- --include-ignored\`)`);
    process.exit(2);
  }
  return value;
}
const BASE = need('CINEVEC_URL').replace(/\/$/, '');
const ALLOWED = need('HOST_ALLOWED');
const BLOCKED = need('HOST_BLOCKED');
const CHROMIUM = need('CHROMIUM');
const SHOTS = need('SCREENSHOT_DIR');

const DARK_KNIGHT = 'tt0468569';
const DARK_KNIGHT_RISES = 'tt1345836';
const AVATAR = 'tt0499549';

async function api(p, body) {
  const response = await fetch(BASE + p, body === undefined ? {} : {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

let failures = 0;
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}\n     ${String(e && e.stack || e).split('\n').join('\n     ')}`);
  }
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinevec-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(20_000);

// Nothing may be fetched from anywhere but the server and the host pages (no CDN, no fonts), and no
// page may throw.
const allowedOrigins = [BASE, new URL(ALLOWED).origin, new URL(BLOCKED).origin];
const strayRequests = [];
const pageErrors = [];
context.on('request', (r) => {
  const url = r.url();
  if (!url.startsWith('data:') && !allowedOrigins.some((o) => url.startsWith(o))) strayRequests.push(url);
});
const page = await context.newPage();
page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));

/** The rendered more-like-this list: [{id, title, score, why}] in order. */
function neighbours(scope) {
  return page.locator(`${scope} li.neighbour`).evaluateAll((items) => items.map((li) => ({
    id: li.dataset.id,
    title: li.querySelector('.nb-title').textContent,
    score: li.querySelector('.score-value').textContent,
    why: [...li.querySelectorAll('.why .chip')].map((c) => c.textContent),
  })));
}
function checkList(rendered, expected, what) {
  assert.equal(rendered.length, expected.length, `${what}: ${rendered.length} rows rendered, the API returned ${expected.length}`);
  rendered.forEach((r, i) => {
    const e = expected[i];
    assert.equal(r.id, e.id, `${what}: row ${i + 1} is ${r.id}, the API ranks ${e.id} there`);
    assert.equal(r.title, e.title, `${what}: row ${i + 1} title`);
    assert.equal(r.score, e.score.toFixed(3), `${what}: row ${i + 1} score`);
    assert.ok(r.why.length > 0, `${what}: row ${i + 1} (${r.title}) shows no "why"`);
  });
}
/** Wait until the widget in #strip is done (ready or error); its state. */
async function settled() {
  await page.locator('#strip:is([data-cinevec-state=ready], [data-cinevec-state=error])').waitFor({ state: 'attached' });
  return page.locator('#strip').getAttribute('data-cinevec-state');
}
/** The predicted-rating box of a scope: {value, level, low, high}. */
async function predicted(scope) {
  const value = Number(await page.locator(`${scope} .stat.predicted .value`).evaluate((n) => n.firstChild.textContent));
  const interval = await page.locator(`${scope} .stat.predicted .interval`).textContent();
  const m = interval.match(/^(\d+)% interval: (\d+\.\d) – (\d+\.\d)$/);
  assert.ok(m, `the interval reads "${interval}"`);
  return { value, level: Number(m[1]), low: Number(m[2]), high: Number(m[3]) };
}

try {
  await step('the page loads, with service info and nothing from outside', async () => {
    const response = await page.goto(`${BASE}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-type'], /^text\/html/);
    await page.locator('#about').filter({ hasText: '300 movies' }).waitFor();
  });

  await step('typing a title shows matches as you type; Enter picks the first', async () => {
    await page.keyboard.press('/'); // focuses the search box
    assert.equal(await page.evaluate(() => document.activeElement.id), 'q', '"/" should focus the search box');
    await page.keyboard.type('the dark knight', { delay: 25 });
    const options = page.locator('#suggestions li[role=option]');
    await options.first().waitFor();
    const titles = await options.locator('.t').allTextContents();
    const search = await api('/v1/search?q=the%20dark%20knight&limit=8');
    assert.deepEqual(titles, search.body.results.map((m) => m.title), 'suggestions should be the API search results');
    assert.equal(titles[0], 'The Dark Knight');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/#${DARK_KNIGHT}`);
    await page.locator('#film h2').filter({ hasText: 'The Dark Knight (2008)' }).waitFor();
    assert.ok(await page.locator('#suggestions').isHidden(), 'the suggestions should close after picking');
  });

  await step('the film shows its actual and predicted rating with interval', async () => {
    const movie = (await api(`/v1/movies/${DARK_KNIGHT}`)).body;
    const info = (await api('/v1/info')).body;
    assert.equal(await page.locator('#film .stat.actual .value').evaluate((n) => n.firstChild.textContent), '9.0');
    assert.equal(await page.locator('#film .stat.actual .sub').textContent(), '1,676,169 votes');
    const p = await predicted('#film');
    assert.equal(p.value.toFixed(1), movie.predicted.rating.toFixed(1));
    assert.equal(p.low.toFixed(1), movie.predicted.low.toFixed(1));
    assert.equal(p.high.toFixed(1), movie.predicted.high.toFixed(1));
    assert.equal(p.level, Math.round(info.head.interval_level * 100));
    assert.ok(p.low <= p.value && p.value <= p.high && p.low >= 1 && p.high <= 10, JSON.stringify(p));
    assert.equal(await page.title(), 'The Dark Knight (2008) · cinevec');
  });

  await step('more like this lists real neighbours with scores and why', async () => {
    await page.locator('#similar li.neighbour').first().waitFor();
    const expected = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=10`)).body.results;
    const rendered = await neighbours('#similar');
    checkList(rendered, expected, 'more like The Dark Knight');
    assert.ok(!rendered.some((r) => r.id === DARK_KNIGHT), 'a film must not be listed as like itself');
    const rises = rendered.find((r) => r.id === DARK_KNIGHT_RISES);
    assert.ok(rises, `The Dark Knight Rises should be more like The Dark Knight: got ${rendered.map((r) => r.title).join(', ')}`);
    assert.ok(rises.why.includes('dir. Christopher Nolan') && rises.why.includes('Christian Bale'), `why: ${rises.why}`);
    const scores = rendered.map((r) => Number(r.score));
    assert.ok(scores.every((s, i) => s > 0 && s <= 1 && (i === 0 || scores[i - 1] >= s)), `scores: ${scores}`);
    assert.equal(await page.locator('#similar-title').textContent(), 'More like The Dark Knight');
  });

  await step('changing "Show" reloads the list with that many films', async () => {
    await page.selectOption('#k', '5');
    await page.waitForFunction(() => document.querySelectorAll('#similar li.neighbour').length === 5);
    await page.selectOption('#k', '10');
    await page.waitForFunction(() => document.querySelectorAll('#similar li.neighbour').length === 10);
  });

  await step('"Show more" appends the next page (offset), never a film twice; "Mix it up" asks for diversity', async () => {
    await page.selectOption('#k', '5');
    await page.waitForFunction(() => document.querySelectorAll('#similar li.neighbour').length === 5);
    const more = page.locator('#more');
    assert.equal(await more.isVisible(), true, 'a full page offers "Show more"');
    await more.click();
    await page.waitForFunction(() => document.querySelectorAll('#similar li.neighbour').length === 10);
    const first = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=5&offset=0`)).body.results;
    const second = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=5&offset=5`)).body.results;
    const paged = await neighbours('#similar');
    checkList(paged, first.concat(second), 'two pages of more like The Dark Knight');
    assert.equal(new Set(paged.map((r) => r.id)).size, 10, 'a film shown twice across pages');
    await page.screenshot({ path: path.join(SHOTS, 'page-show-more.png'), fullPage: true });
    await page.check('#diverse');
    const diverse = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=5&offset=0&diversity=0.5`)).body.results;
    await page.waitForFunction((ids) => {
      const shown = [...document.querySelectorAll('#similar li.neighbour')].map((li) => li.dataset.id);
      return shown.length === ids.length && shown.every((id, i) => id === ids[i]);
    }, diverse.map((r) => r.id));
    checkList(await neighbours('#similar'), diverse, 'mixed more like The Dark Knight');
    assert.equal(diverse[0].id, first[0].id, 'the first film is the same with diversity');
    await more.click();
    const diverseNext = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=5&offset=5&diversity=0.5`)).body.results;
    await page.waitForFunction(() => document.querySelectorAll('#similar li.neighbour').length === 10);
    checkList(await neighbours('#similar'), diverse.concat(diverseNext), 'two mixed pages');
    await page.screenshot({ path: path.join(SHOTS, 'page-diverse.png'), fullPage: true });
    await page.uncheck('#diverse');
    await page.selectOption('#k', '10');
    await page.waitForFunction(() => document.querySelectorAll('#similar li.neighbour').length === 10);
  });

  await step('a request in own words: Enter asks /v1/query, the reading shows as chips, removing one asks again without it', async () => {
    const q = 'dramas from the 1990s';
    await page.fill('#q', '');
    await page.focus('#q');
    await page.keyboard.type(q, { delay: 15 });
    await page.keyboard.press('Enter');
    const expected = (await api(`/v1/query?q=${encodeURIComponent(q)}&k=10`)).body;
    assert.ok(expected.results.length > 0, 'the slice has dramas from the 1990s');
    const shownIds = (ids) => page.waitForFunction((want) => {
      const panel = document.getElementById('ask');
      const shown = [...panel.querySelectorAll('li.neighbour')].map((li) => li.dataset.id);
      return panel.getAttribute('aria-busy') === 'false' && shown.length === want.length && shown.every((id, i) => id === want[i]);
    }, ids);
    await shownIds(expected.results.map((r) => r.id));
    assert.equal(await page.locator('#ask-title').textContent(), `Results for “${q}”`);
    const rows = await neighbours('#ask');
    rows.forEach((r, i) => {
      assert.equal(r.title, expected.results[i].title, `row ${i + 1} title`);
      assert.deepEqual(r.why, expected.results[i].why, `row ${i + 1} (${r.title}) says why as the API does`);
    });
    const chips = () => page.locator('#ask-chips li').evaluateAll((items) => items.map((li) => ({
      kind: li.dataset.kind, label: li.querySelector('.label').textContent })));
    const wanted = expected.interpretation.chips.map((c) => ({ kind: c.kind, label: c.label }));
    if (expected.interpretation.text) wanted.push({ kind: 'text', label: `about “${expected.interpretation.text}”` });
    assert.deepEqual(await chips(), wanted, 'the chips are the reading the API made');
    assert.ok(wanted.some((c) => c.kind === 'years') && wanted.some((c) => c.kind === 'genre'),
      `"${q}" is read as years and a genre: ${JSON.stringify(wanted)}`);
    await page.screenshot({ path: path.join(SHOTS, 'page-query.png'), fullPage: true });
    // Removing the years chip asks again without those words.
    const years = expected.interpretation.chips.find((c) => c.kind === 'years');
    await page.locator('#ask-chips li[data-kind=years] .chip-x').click();
    const without = (await api(`/v1/query?q=${encodeURIComponent(years.without)}&k=10`)).body;
    await page.locator('#ask-title').filter({ hasText: `Results for “${years.without}”` }).waitFor();
    await shownIds(without.results.map((r) => r.id));
    assert.equal(await page.inputValue('#q'), years.without, 'the search box holds the request without the chip');
    const after = await chips();
    assert.ok(!after.some((c) => c.kind === 'years'), `no years chip after removing it: ${JSON.stringify(after)}`);
    assert.ok(without.results.some((r) => r.year < 1990 || r.year > 1999),
      'without the years the answer is no longer held to the 1990s');
    await page.screenshot({ path: path.join(SHOTS, 'page-query-without-years.png'), fullPage: true });
  });

  await step('arrow keys move through the matches; Enter picks the highlighted one', async () => {
    await page.fill('#q', '');
    await page.focus('#q');
    await page.keyboard.type('dark knight', { delay: 25 });
    await page.locator('#suggestions li[role=option]').nth(1).waitFor();
    const second = await page.locator('#suggestions li[role=option]').nth(1).getAttribute('data-id');
    await page.keyboard.press('ArrowDown');
    assert.equal(await page.locator('#suggestions li[aria-selected=true]').getAttribute('data-id'), second);
    assert.equal(await page.locator('#q').getAttribute('aria-activedescendant'), 'opt-1');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/#${second}`);
    await page.locator(`#film .film-view[data-id="${second}"]`).waitFor();
  });

  await step('clicking a neighbour opens it, and Back returns', async () => {
    const first = page.locator('#similar li.neighbour').first();
    await first.waitFor();
    const id = await first.getAttribute('data-id');
    await first.locator('.nb-title').click();
    await page.locator(`#film .film-view[data-id="${id}"]`).waitFor();
    await page.goBack();
    await page.locator(`#film .film-view:not([data-id="${id}"])`).waitFor();
  });

  await step('deep links: /#id and /?id= open the film; an unknown id shows the API error', async () => {
    await page.goto(`${BASE}/#${AVATAR}`);
    await page.locator('#film h2').filter({ hasText: 'Avatar (2009)' }).waitFor();
    await page.locator('#similar li.neighbour').first().waitFor();
    await page.goto(`${BASE}/?id=${AVATAR}`);
    await page.locator('#film h2').filter({ hasText: 'Avatar (2009)' }).waitFor();
    await page.goto(`${BASE}/#tt0000000`);
    const error = page.locator('#film .error');
    await error.waitFor();
    const expected = (await api('/v1/movies/tt0000000')).body.error.message;
    assert.equal(await error.locator('.message').textContent(), expected);
    assert.match(await error.locator('strong').textContent(), /404 not_found/);
  });

  const movie = {
    title: 'Gotham After Midnight',
    genres: ['Action', 'Crime', 'Thriller'],
    release_year: 2024,
    directors: ['Christopher Nolan'],
    actors: ['Christian Bale', 'Michael Caine', 'Gary Oldman'],
  };
  await step('a pasted movie JSON gets its neighbours and a predicted rating', async () => {
    await page.goto(`${BASE}/#${DARK_KNIGHT}`);
    await page.locator('#film .film-view').waitFor();
    await page.fill('#doc', JSON.stringify(movie, null, 2));
    await page.click('#try-submit');
    await page.locator('#try-result li.neighbour').first().waitFor();
    const similar = (await api('/v1/similar', { movie, k: 10 })).body.results;
    const prediction = (await api('/v1/predict', { movies: [movie] })).body;
    checkList(await neighbours('#try-result'), similar, 'neighbours of the pasted movie');
    const p = await predicted('#try-result');
    assert.equal(p.value.toFixed(1), prediction.predictions[0].rating.toFixed(1));
    assert.equal(p.level, Math.round(prediction.interval * 100));
    assert.ok(p.low <= p.value && p.value <= p.high, JSON.stringify(p));
    assert.equal(await page.locator('#try-result h3').first().textContent(), 'Predicted rating for “Gotham After Midnight”');
  });

  await step('screenshot of the page', async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, 'widget.png'), fullPage: true });
  });

  await step('malformed JSON shows a clear error and sends nothing', async () => {
    let posted = 0;
    const count = (r) => { if (r.method() === 'POST') posted += 1; };
    page.on('request', count);
    await page.fill('#doc', '{"title": "Broken", "genres": ["Drama"');
    await page.locator('#doc').press('Control+Enter');
    const error = page.locator('#try-result .error[data-code=invalid_json]');
    await error.waitFor();
    assert.match(await error.textContent(), /not valid JSON/);
    page.off('request', count);
    assert.equal(posted, 0, 'malformed JSON must not be posted');
  });

  await step('a movie the API refuses shows the API\'s message and field', async () => {
    await page.fill('#doc', '{"title": 42, "genres": ["Drama"]}');
    await page.click('#try-submit');
    const error = page.locator('#try-result .error[data-code=invalid_request]');
    await error.waitFor();
    const expected = (await api('/v1/similar', { movie: { title: 42, genres: ['Drama'] }, k: 10 })).body.error;
    assert.equal(await error.locator('.message').textContent(), expected.message);
    assert.equal(await error.locator('code').textContent(), expected.field);
    assert.match(await error.locator('strong').textContent(), /422 invalid_request/);
  });

  await step('a narrow screen lays out in one column without sideways scrolling', async () => {
    await page.setViewportSize({ width: 380, height: 800 });
    await page.goto(`${BASE}/#${DARK_KNIGHT}`);
    await page.locator('#similar li.neighbour').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 380px screen`);
    const [film, form] = await Promise.all([page.locator('#film').boundingBox(), page.locator('#try').boundingBox()]);
    assert.ok(form.y > film.y, 'on a narrow screen the form should come below the film');
    await page.screenshot({ path: path.join(SHOTS, 'widget-narrow.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('the widget on a host page of another, allowed origin renders the strip', async () => {
    const response = await page.goto(ALLOWED);
    assert.equal(response.status(), 200);
    const host = page.locator('#strip');
    assert.equal(await settled(), 'ready', `the widget failed: ${await host.locator('.err').allTextContents()}`);
    const expected = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=5`)).body.results;
    const cards = await host.locator('li[data-id]').evaluateAll((items) => items.map((li) => ({
      id: li.dataset.id, title: li.querySelector('a.t').textContent, href: li.querySelector('a.t').href,
      score: li.querySelector('.score .v').textContent, why: li.querySelector('.why').textContent,
    })));
    assert.equal(cards.length, 5, 'data-k="5" should show five films');
    cards.forEach((c, i) => {
      assert.equal(c.id, expected[i].id, `card ${i + 1}`);
      assert.equal(c.title, expected[i].title, `card ${i + 1}`);
      assert.equal(c.score, expected[i].score.toFixed(2), `card ${i + 1}`);
      assert.ok(c.why.length > 0, `card ${i + 1} has no why`);
      assert.equal(c.href, `${BASE}/#${expected[i].id}`, `card ${i + 1} links to the film on the cinevec page`);
    });
    assert.equal(await host.locator('h2').textContent(), 'More like The Dark Knight');
    // Styles stay on their side of the shadow root: the host's red serif list items do not restyle the
    // cards, and the cards' borders do not reach the host's own list.
    const card = await host.locator('li[data-id]').first().evaluate((li) => getComputedStyle(li).color);
    const hostItem = await page.locator('#host-list li').first().evaluate((li) => {
      const s = getComputedStyle(li);
      return { color: s.color, border: s.borderTopWidth };
    });
    assert.equal(hostItem.color, 'rgb(255, 0, 0)', 'the host page keeps its own list style');
    assert.equal(hostItem.border, '0px', 'the widget\'s card border leaked into the host page');
    assert.notEqual(card, 'rgb(255, 0, 0)', 'the host page\'s list colour leaked into the widget');
    assert.equal(await page.locator('#host-list').evaluate((n) => n.getRootNode() === document), true);
    await page.screenshot({ path: path.join(SHOTS, 'embed.png'), fullPage: true });
  });

  await step('the widget takes data-exclude and data-diversity', async () => {
    await page.goto(ALLOWED);
    const host = page.locator('#strip-controls');
    await page.locator('#strip-controls:is([data-cinevec-state=ready], [data-cinevec-state=error])').waitFor({ state: 'attached' });
    assert.equal(await host.getAttribute('data-cinevec-state'), 'ready');
    const exclude = await host.getAttribute('data-exclude');
    const expected = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=5&exclude=${encodeURIComponent(exclude)}&diversity=0.6`)).body.results;
    const ids = await host.locator('li[data-id]').evaluateAll((items) => items.map((li) => li.dataset.id));
    assert.deepEqual(ids, expected.map((r) => r.id));
    assert.equal(ids.length, 5, 'still five films with two excluded');
    for (const id of exclude.split(',')) assert.ok(!ids.includes(id.trim()), `${id} was excluded`);
    await host.screenshot({ path: path.join(SHOTS, 'widget-exclude-diversity.png') });
  });

  await step('a host page on an origin the server does not allow gets a clear error', async () => {
    await page.goto(BLOCKED);
    assert.equal(await settled(), 'error', 'the widget should not get an answer from an origin the server does not allow');
    const text = await page.locator('#strip .err').textContent();
    assert.match(text, /could not reach cinevec at/);
    assert.match(text, /--cors-origins/);
  });

  await step('the demo page /embed-demo shows the widget, and redraws it when the film changes', async () => {
    // The demo sets data-movie-id after a title search: the widget must notice elements that change.
    await page.goto(`${BASE}/embed-demo`);
    await page.locator('#demo-default[data-cinevec-state=ready] h2', { hasText: 'More like The Dark Knight' }).waitFor();
    await page.locator('#demo-themed[data-cinevec-state=ready]').waitFor();
    assert.equal(await page.locator('#demo-themed li[data-id]').count(), 4);
    assert.equal(await page.locator('#demo-default li[data-id]').count(), 6);
    await page.fill('#film', 'avatar');
    await page.press('#film', 'Enter');
    await page.locator('#demo-default h2', { hasText: 'More like Avatar' }).waitFor();
    await page.locator('#demo-themed h2', { hasText: 'More like Avatar' }).waitFor();
    const expected = (await api(`/v1/movies/${AVATAR}/similar?k=4`)).body.results.map((r) => r.id);
    await page.locator('#demo-themed[data-cinevec-state=ready]').waitFor();
    assert.deepEqual(await page.locator('#demo-themed li[data-id]').evaluateAll((l) => l.map((li) => li.dataset.id)), expected);
  });

  await step('the map view draws every film, rings the open one and its neighbours; hover names a film, click opens it', async () => {
    await page.goto(`${BASE}/#${DARK_KNIGHT}`);
    await page.locator('#film h2').filter({ hasText: 'The Dark Knight (2008)' }).waitFor();
    const map = (await api('/v1/map')).body;
    await page.locator('#map-panel').scrollIntoViewIfNeeded();
    await page.waitForFunction((n) => window.cinevecMap && window.cinevecMap.count() === n, map.count);
    const similar = (await api(`/v1/movies/${DARK_KNIGHT}/similar?k=10`)).body.results.map((r) => r.id);
    await page.waitForFunction((id) => window.cinevecMap.highlighted().current === id && window.cinevecMap.highlighted().neighbours.length === 10, DARK_KNIGHT);
    assert.deepEqual(await page.evaluate(() => window.cinevecMap.highlighted().neighbours), similar, 'the ringed films are the API\'s neighbours');
    // Every film is at least one lit pixel (dots may overlap, so at least half as many as films).
    const lit = await page.evaluate(() => {
      const c = document.getElementById('map'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] !== 17 || d[i + 1] !== 17 || d[i + 2] !== 24) n++;
      return n;
    });
    assert.ok(lit >= map.count / 2, `only ${lit} pixels drawn for ${map.count} films`);
    // Hover over Avatar's dot: the tip names the film whose dot is under the pointer.
    const at = await page.evaluate((id) => window.cinevecMap.screenPosition(id), AVATAR);
    await page.mouse.move(at.x, at.y);
    await page.locator('#map-tip').waitFor({ state: 'visible' });
    const tipId = await page.locator('#map-tip').getAttribute('data-id');
    const i = map.ids.indexOf(tipId);
    assert.ok(i >= 0, `the tip names ${tipId}, which is not on the map`);
    assert.ok((await page.locator('#map-tip').textContent()).startsWith(map.titles[i]), 'the tip shows the title');
    const near = await page.evaluate((id) => window.cinevecMap.screenPosition(id), tipId);
    assert.ok(Math.hypot(near.x - at.x, near.y - at.y) <= 8, 'the named film is the dot under the pointer');
    // A click opens that film (the page's own route).
    await page.mouse.click(at.x, at.y);
    await page.waitForURL(`${BASE}/#${encodeURIComponent(tipId)}`);
    await page.locator('#film h2').filter({ hasText: map.titles[i] }).waitFor();
    await page.waitForFunction((id) => window.cinevecMap.highlighted().current === id, tipId);
    // Scrolling zooms around the pointer: a film away from it moves away.
    const before = await page.evaluate((id) => window.cinevecMap.screenPosition(id), DARK_KNIGHT);
    await page.mouse.wheel(0, -400);
    await page.waitForFunction(([id, b]) => { const p = window.cinevecMap.screenPosition(id); return Math.abs(p.x - b.x) + Math.abs(p.y - b.y) > 1; }, [DARK_KNIGHT, before]);
    await page.click('#map-reset');
    await page.mouse.move(at.x, at.y);
    const shot = path.join(SHOTS, 'map.png');
    await page.locator('#map-panel').screenshot({ path: shot });
    console.log(`     map screenshot: ${shot}`);
  });

  await step('the map view at 242,552 films (synthetic positions): frame times while panning and zooming', async () => {
    const times = await page.evaluate(async () => {
      const n = 242552, grid = 65535;
      let seed = 7;
      const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
      const d = { count: n, grid, ids: [], titles: [], years: [], x: [], y: [], rating: [], predicted: [] };
      for (let i = 0; i < n; i++) {
        const c = i % 40, cx = 0.1 + 0.8 * ((c * 0.618) % 1), cy = 0.1 + 0.8 * ((c * 0.381) % 1);
        const r = 0.08 * Math.sqrt(rand()), a = 2 * Math.PI * rand();
        d.ids.push(`s${i}`); d.titles.push(`Film ${i}`); d.years.push(1950 + (i % 70));
        d.x.push(Math.round(Math.min(1, Math.max(0, cx + r * Math.cos(a))) * grid));
        d.y.push(Math.round(Math.min(1, Math.max(0, cy + r * Math.sin(a))) * grid));
        const rating = Math.round((1 + 9 * rand()) * 10) / 10;
        d.rating.push(rating); d.predicted.push(rating + rand() - 0.5);
      }
      window.cinevecMap.setData(d);
      const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      await frame();
      window.cinevecMap.clearFrameTimes();
      for (let i = 0; i < 60; i++) {
        if (i % 3 === 0) window.cinevecMap.zoom(i < 30 ? 1.05 : 1 / 1.05); else window.cinevecMap.pan(4, -3);
        await frame();
      }
      return window.cinevecMap.frameTimes();
    });
    assert.ok(times.length >= 50, `only ${times.length} frames drawn`);
    const sorted = [...times].sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))].toFixed(1);
    console.log(`     242,552 dots: ${times.length} frames, draw time p50 ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`);
    const shot = path.join(SHOTS, 'map-242k.png');
    await page.locator('#map-panel').screenshot({ path: shot });
    console.log(`     map screenshot (242,552 synthetic dots): ${shot}`);
  });

  await step('no request left the test origins and no page threw', async () => {
    assert.deepEqual(strayRequests, [], 'requests to outside origins');
    assert.deepEqual(pageErrors, [], 'uncaught errors in the pages');
  });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

if (failures) {
  console.log(`${failures} browser check(s) failed; screenshots in ${SHOTS}`);
  process.exit(1);
}
console.log(`all browser checks passed; screenshots in ${SHOTS}`);
