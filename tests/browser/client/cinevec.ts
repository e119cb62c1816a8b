// A typed cinevec client: the types come from the server's own openapi.yaml (openapi-typescript),
// the calls go through openapi-fetch. This is the client README's "From a frontend" shows.
import createClient from "openapi-fetch";
import type { paths } from "./generated/api.js";

/** A client for the server at `baseUrl`; `apiKey` is sent as a bearer token (only writes need it). */
export function cinevec(baseUrl: string, apiKey?: string) {
  const headers: Record<string, string> = apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` };
  return createClient<paths>({ baseUrl, headers });
}

export type Client = ReturnType<typeof cinevec>;
