// README's "From a frontend", verbatim (tests/typescript.rs compiles and runs it).
import createClient from "openapi-fetch";
import type { paths } from "./generated/api.js"; // npx openapi-typescript http://localhost:8080/openapi.yaml --default-non-nullable false -o generated/api.d.ts

const api = createClient<paths>({ baseUrl: process.env.CINEVEC_URL ?? "http://localhost:8080" });
const { data, error } = await api.GET("/v1/movies/{id}/similar", {
  params: { path: { id: "tt0468569" }, query: { k: 5, min_year: 2000 } },
});
if (error) throw new Error(`${error.error.code}: ${error.error.message}`);
for (const m of data.results) console.log(m.score.toFixed(3), m.title, m.year, m.why.shared_genres.join(", "));
