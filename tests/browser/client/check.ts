// The typed client check (run by tests/typescript.rs): a client generated from openapi.yaml
// (openapi-typescript + openapi-fetch) calls every read route and two writes against a real server,
// and checks each answer's shape at run time. The types are checked first, by `tsc --strict`: a field
// the spec names differently from what this program reads, or a schema too loose to give a type, fails
// the build. Environment: CINEVEC_URL (the server), CINEVEC_API_KEY (its key), CINEVEC_MOVIE (a
// catalog movie id).
import type { components, operations } from "./generated/api.js";
import { cinevec } from "./cinevec.js";

type Schemas = components["schemas"];

// ---- the types themselves: no `any`, and no answer typed as nothing ----

type IsAny<T> = 0 extends 1 & T ? true : false;
/** The path of the first `any` inside `T` (deep), or never. */
type AnyIn<T, Path extends string> =
  IsAny<T> extends true
    ? Path
    : T extends readonly (infer E)[]
      ? AnyIn<E, `${Path}[]`>
      : T extends object
        ? { [K in keyof T & string]-?: AnyIn<T[K], `${Path}.${K}`> }[keyof T & string]
        : never;
/** A type that says nothing about an answer: any, unknown, or an object with no required field. */
type Loose<T> = IsAny<T> extends true ? true : unknown extends T ? true : {} extends T ? true : false;
type Answers<Op> = Op extends { responses: infer R }
  ? { [S in keyof R]: R[S] extends { content: infer C } ? C[keyof C] : never }[keyof R]
  : never;
/** Every operation whose answer (any status, any media type) is loose: must be none. */
type LooseAnswers = {
  [Op in keyof operations]: true extends (Answers<operations[Op]> extends infer A ? (A extends unknown ? Loose<A> : never) : never)
    ? Op
    : never;
}[keyof operations];
const noLooseAnswer: [LooseAnswers] extends [never] ? true : LooseAnswers = true;
const noAnyInSchemas: [AnyIn<Schemas, "schemas">] extends [never] ? true : AnyIn<Schemas, "schemas"> = true;
const noAnyInOperations: [AnyIn<operations, "operations">] extends [never] ? true : AnyIn<operations, "operations"> =
  true;
void [noLooseAnswer, noAnyInSchemas, noAnyInOperations];

// ---- run-time checks ----

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`${name} is not set`);
  return value;
}

const base = env("CINEVEC_URL");
const key = env("CINEVEC_API_KEY");
const movieId = env("CINEVEC_MOVIE");
const api = cinevec(base);
const writer = cinevec(base, key);
let checked = 0;

function ok(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
}

/** The data of a successful answer, or a failure that says which route and what came back. */
function must<D, E>(route: string, answer: { data?: D; error?: E; response: Response }, status = 200): D {
  ok(answer.response.status === status, `${route}: status ${answer.response.status}, wanted ${status}: ${JSON.stringify(answer.error)}`);
  ok(answer.data !== undefined, `${route}: no data`);
  checked += 1;
  console.log(`ok ${route} ${answer.response.status}`);
  return answer.data;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const intOrNull = (v: unknown) => v === null || isInt(v);
const numOrNull = (v: unknown) => v === null || isNum(v);
const strings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === "string");

function summary(m: Schemas["MovieSummary"], what: string) {
  ok(typeof m.id === "string" && typeof m.title === "string", `${what}: id and title`);
  ok(intOrNull(m.year) && numOrNull(m.rating) && intOrNull(m.votes), `${what}: year, rating, votes`);
}

function neighbours(results: Schemas["Neighbour"][], what: string) {
  ok(results.length > 0, `${what}: no results`);
  for (const n of results) {
    ok(typeof n.id === "string" && typeof n.title === "string" && isNum(n.score), `${what}: a neighbour ${JSON.stringify(n)}`);
    ok(intOrNull(n.year) && numOrNull(n.rating), `${what}: year and rating`);
    ok(strings(n.why.shared_genres) && strings(n.why.shared_directors) && strings(n.why.shared_actors), `${what}: why`);
    ok(intOrNull(n.why.year_gap), `${what}: why.year_gap`);
  }
  ok(results.every((n, i) => i === 0 || (results[i - 1]?.score ?? 0) >= n.score), `${what}: best first`);
}

function movieView(m: Schemas["MovieView"], what: string) {
  summary(m, what);
  ok(typeof m.document.title === "string", `${what}: document.title`);
  ok(isNum(m.predicted.rating) && m.predicted.low <= m.predicted.rating && m.predicted.rating <= m.predicted.high, `${what}: predicted`);
  ok(typeof m.source === "string", `${what}: source`);
}

async function text(route: string, answer: Promise<{ data?: string; response: Response }>, contentType: string): Promise<string> {
  const a = await answer;
  const body = must(route, a);
  ok(body.length > 0, `${route}: empty`);
  ok((a.response.headers.get("content-type") ?? "").startsWith(contentType), `${route}: content-type ${a.response.headers.get("content-type")}`);
  return body;
}

// Plain pages and assets.
const page = await text("GET /", api.GET("/", { parseAs: "text" }), "text/html");
ok(page.includes("<html"), "GET /: not HTML");
await text("GET /widget.js", api.GET("/widget.js", { parseAs: "text" }), "text/javascript");
await text("GET /embed-demo", api.GET("/embed-demo", { parseAs: "text" }), "text/html");
await text("GET /docs", api.GET("/docs", { parseAs: "text" }), "text/html");
const metrics = await text("GET /metrics", api.GET("/metrics", { parseAs: "text" }), "text/plain");
ok(metrics.includes("# TYPE"), "GET /metrics: not Prometheus text");
const yaml = await text("GET /openapi.yaml", api.GET("/openapi.yaml", { parseAs: "text" }), "application/yaml");
ok(yaml.startsWith("openapi: "), "GET /openapi.yaml: not the spec");

// Health and the service's description.
const health = must("GET /healthz", await api.GET("/healthz"));
ok(health.status === "ok", "healthz");
const ready = must("GET /readyz", await api.GET("/readyz"));
ok(ready.status === "ready" && isInt(ready.movies) && ready.movies > 0, "readyz");
ok(ready.store.backend === "sqlite" || ready.store.backend === "postgres", "readyz: store.backend");
const info = must("GET /v1/info", await api.GET("/v1/info"));
ok(info.model.dim === 384 && info.model.pooling === "mean" && isInt(info.model.max_tokens), "info.model");
ok(info.counts.movies === ready.movies, "info.counts.movies equals readyz's movies");
ok(isInt(info.limits.max_documents_per_request) && isInt(info.limits.max_k), "info.limits");
ok(typeof info.writes_enabled === "boolean" && isNum(info.load_seconds), "info: writes_enabled and load_seconds");

// The map, compressed on the wire (fetch asks for gzip and br), and its revalidation.
const mapAnswer = await api.GET("/v1/map");
const map = must("GET /v1/map", mapAnswer);
ok(map.count === info.counts.movies, "map.count");
for (const column of [map.ids, map.titles, map.years, map.x, map.y, map.rating, map.predicted]) {
  ok(column.length === map.count, "map: a column's length is not count");
}
ok(map.x.every((x) => isNum(x) && x >= 0 && x <= map.grid), "map.x on the grid");
ok(map.ids.includes(movieId), "map.ids has the movie");
const encoding = mapAnswer.response.headers.get("content-encoding");
ok(encoding === "br" || encoding === "gzip", `GET /v1/map: sent ${encoding ?? "uncompressed"} to a client that asks for gzip and br`);
const etag = mapAnswer.response.headers.get("etag");
ok(etag !== null && etag.startsWith('W/"'), `GET /v1/map: etag ${etag}`);
const again = await api.GET("/v1/map", { headers: { "if-none-match": etag } });
ok(again.response.status === 304 && again.data === undefined, `GET /v1/map with its ETag: ${again.response.status}`);
checked += 1;
console.log("ok GET /v1/map 304");
const png = must("GET /v1/map.png", await api.GET("/v1/map.png", { params: { query: { size: 64 } }, parseAs: "arrayBuffer" }));
ok(new Uint8Array(png.slice(0, 4)).join(",") === "137,80,78,71", "GET /v1/map.png: not a PNG");

// Search, ask, one movie, more like this.
const found = must("GET /v1/search", await api.GET("/v1/search", { params: { query: { q: "avatar" } } }));
ok(found.query === "avatar" && found.results.length > 0, "search: results");
found.results.forEach((m) => summary(m, "search"));
const movie = must("GET /v1/movies/{id}", await api.GET("/v1/movies/{id}", { params: { path: { id: movieId } } }));
movieView(movie, "movie");
ok(movie.id === movieId, "movie.id");
const missing = await api.GET("/v1/movies/{id}", { params: { path: { id: "tt0000000" } } });
ok(missing.response.status === 404 && missing.error?.error.code === "not_found", "GET an unknown movie: 404 not_found");
checked += 1;
const similar = must(
  "GET /v1/movies/{id}/similar",
  await api.GET("/v1/movies/{id}/similar", { params: { path: { id: movieId }, query: { k: 5, min_year: 1990 } } }),
);
ok(similar.k === 5 && similar.results.length === 5 && similar.offset === 0, "similar: k results");
ok(similar.query.id === movieId && !similar.results.some((n) => n.id === movieId), "similar: never the movie itself");
neighbours(similar.results, "similar");
ok(similar.results.every((n) => n.year === null || n.year >= 1990), "similar: min_year applies");
const asked = must("GET /v1/query", await api.GET("/v1/query", { params: { query: { q: "action movies from the 2000s", k: 5 } } }));
ok(asked.results.length > 0 && asked.results.length <= 5, "query: results");
ok(asked.interpretation.genres.includes("Action"), `query: genres ${JSON.stringify(asked.interpretation.genres)}`);
ok(asked.results.every((r) => typeof r.title === "string" && isNum(r.score) && strings(r.why)), "query: a result");
const askedPost = must("POST /v1/query", await api.POST("/v1/query", { body: { q: "action movies", k: 3, min_rating: 6 } }));
ok(askedPost.results.every((r) => r.rating === null || r.rating >= 6), "POST query: min_rating applies");

// The reads that take a body.
const doc: Schemas["MovieDocument"] = { title: "Laser Sharks 3", genres: ["Action", "Horror"], release_year: 2019 };
const byDoc = must("POST /v1/similar", await api.POST("/v1/similar", { body: { movie: doc, k: 4 } }));
ok(byDoc.results.length === 4 && byDoc.truncated === false && isInt(byDoc.tokens), "similar by document");
neighbours(byDoc.results, "similar by document");
const rec = must("POST /v1/recommend", await api.POST("/v1/recommend", { body: { positive: [movieId, doc], k: 3 } }));
ok(rec.strategy === "average" && rec.results.length === 3 && !rec.results.some((n) => n.id === movieId), "recommend");
neighbours(rec.results, "recommend");
const pred = must("POST /v1/predict", await api.POST("/v1/predict", { body: { movies: [doc] } }));
const p = pred.predictions[0];
ok(p !== undefined && p.title === doc.title && p.low <= p.rating && p.rating <= p.high && isNum(pred.interval), "predict");
const emb = must("POST /v1/embed", await api.POST("/v1/embed", { body: { movies: [doc] } }));
ok(emb.dim === 384 && emb.embeddings[0]?.vector.length === 384, "embed: one 384-d vector");

// The OpenAI-compatible routes.
const models = must("GET /v1/models", await api.GET("/v1/models"));
const served = models.data[0];
ok(models.object === "list" && served !== undefined && served.object === "model", "models");
const model = must("GET /v1/models/{model}", await api.GET("/v1/models/{model}", { params: { path: { model: served.id } } }));
ok(model.id === served.id && isInt(model.created), "model");
const texts = must(
  "POST /v1/embeddings",
  await api.POST("/v1/embeddings", { body: { model: served.id, input: ["hello world", "a second text"] } }),
);
ok(texts.data.length === 2 && texts.data.every((d, i) => d.index === i && Array.isArray(d.embedding) && d.embedding.length === 384), "embeddings");
ok(texts.usage.prompt_tokens === texts.usage.total_tokens && texts.usage.prompt_tokens > 4, "embeddings: usage");
const wrongModel = await api.POST("/v1/embeddings", { body: { model: "text-embedding-3-small", input: "x" } });
ok(wrongModel.response.status === 404 && wrongModel.error?.error.type === "invalid_request_error", "embeddings: another model is a 404 in OpenAI's shape");
checked += 1;

// Writes: without the key refused, with it added, read back, then deleted.
const id = `tt9${String(Date.now()).slice(-7)}`;
const added = { id, rating: 7.5, votes: 1200, movie: { title: "A Typed Client", genres: ["Documentary"], release_year: 2024 } };
const refused = await api.POST("/v1/movies", { body: added });
ok(refused.response.status === 401 && refused.error?.error.code === "unauthorized", `POST /v1/movies without the key: ${refused.response.status}`);
checked += 1;
const created = must("POST /v1/movies", await writer.POST("/v1/movies", { body: added }), 201);
ok(created.created && created.movie.id === id && isInt(created.tokens), "add: created");
movieView(created.movie, "added movie");
const back = must("GET /v1/movies/{id} (added)", await api.GET("/v1/movies/{id}", { params: { path: { id } } }));
ok(back.title === "A Typed Client" && back.rating === 7.5 && back.votes === 1200, "the added movie reads back");
const mapAfter = await api.GET("/v1/map", { headers: { "if-none-match": etag } });
ok(mapAfter.response.status === 200 && mapAfter.data?.count === map.count + 1, "the map after an add: a new answer, not a stale 304");
checked += 1;
const deleted = must("DELETE /v1/movies/{id}", await writer.DELETE("/v1/movies/{id}", { params: { path: { id } } }));
ok(deleted.deleted && deleted.id === id, "delete");

console.log(`the typed client: ${checked} answers checked`);
