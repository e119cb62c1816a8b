#!/usr/bin/env python3
"""Relevance of GET /v1/query on a running server against the relevance set
(tests/data/query_relevance.json, over imdb5000), beside the baseline of embedding the raw sentence
(POST /v1/similar with the sentence as a movie title). Prints recall@10, hit@10 (requests with films
that must appear) and constraint precision (the share of results meeting every constraint of their
request, checked against the catalog file). Exits 1 below --min-recall/--min-hit/--min-precision.

  scripts/bench/query_relevance.py --url http://127.0.0.1:18280 --catalog ../shared/data/imdb5000/catalog.jsonl
"""
import argparse, json, sys, urllib.parse, urllib.request

def call(url, path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)

def meets(movie, c):
    m = movie["movie"]
    y, rt = m.get("release_year"), m.get("runtime_minutes")
    if "years" in c:
        lo, hi = c["years"]
        if y is None or (lo is not None and y < lo) or (hi is not None and y > hi):
            return False
    if any(g not in (m.get("genres") or []) for g in c.get("genres", [])):
        return False
    if "runtime_max" in c and (rt is None or rt > c["runtime_max"]):
        return False
    if "runtime_min" in c and (rt is None or rt < c["runtime_min"]):
        return False
    if "min_rating" in c and (movie.get("rating") is None or movie["rating"] < c["min_rating"]):
        return False
    if "director" in c and c["director"] not in (m.get("directors") or []):
        return False
    if "actor" in c and c["actor"] not in (m.get("actors") or []):
        return False
    return True

def score(cases, catalog, answer, show=False):
    recalls, hits, met, results = [], [], 0, 0
    for case in cases:
        got = answer(case["q"])
        titles = [catalog[i]["movie"]["title"] for i in got]
        missed, unmet = [], []
        if case["must"]:
            found = sum(t in titles for t in case["must"])
            recalls.append(found / len(case["must"]))
            hits.append(found > 0)
            missed = [t for t in case["must"] if t not in titles]
        if case["constraints"]:
            results += len(got)
            ok = [meets(catalog[i], case["constraints"]) for i in got]
            met += sum(ok)
            unmet = [t for t, o in zip(titles, ok) if not o]
        if show and (missed or unmet):
            print(f"{case['q']!r}: missed {missed}, constraints unmet by {unmet}; top 10: {titles}", file=sys.stderr)
    return sum(recalls) / len(recalls), sum(hits) / len(hits), met / max(results, 1)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:18280")
    ap.add_argument("--catalog", default="../shared/data/imdb5000/catalog.jsonl")
    ap.add_argument("--cases", default="tests/data/query_relevance.json")
    ap.add_argument("--min-recall", type=float, default=0.0)
    ap.add_argument("--min-hit", type=float, default=0.0)
    ap.add_argument("--min-precision", type=float, default=0.0)
    ap.add_argument("--show", action="store_true", help="print the misses of /v1/query: films that must appear and do not, results that break a constraint, relaxations")
    a = ap.parse_args()
    catalog = {}
    for line in open(a.catalog):
        r = json.loads(line)
        catalog[r["id"]] = r
    cases = json.load(open(a.cases))
    def query(q):
        body = call(a.url, "/v1/query?" + urllib.parse.urlencode({"q": q, "k": 10}))
        ids = [r["id"] for r in body["results"]]
        if a.show and body["interpretation"]["relaxed"]:
            print(f"{q!r}: relaxed {body['interpretation']['relaxed']}", file=sys.stderr)
        return ids
    def baseline(q):
        return [r["id"] for r in call(a.url, "/v1/similar", {"movie": {"title": q}, "k": 10})["results"]]
    n_must = sum(bool(c["must"]) for c in cases)
    n_cons = sum(bool(c["constraints"]) for c in cases)
    print(f"{len(cases)} requests ({n_must} with films that must appear, {n_cons} with constraints)")
    rows = [("raw sentence embedded (/v1/similar)", score(cases, catalog, baseline)),
            ("/v1/query", score(cases, catalog, query, a.show))]
    print(f"{'':38} recall@10  hit@10  constraint precision")
    for name, (r, h, p) in rows:
        print(f"{name:38} {r:9.3f} {h:7.3f} {p:21.3f}")
    r, h, p = rows[1][1]
    if r < a.min_recall or h < a.min_hit or p < a.min_precision:
        print("below the thresholds", file=sys.stderr)
        sys.exit(1)

if __name__ == "__main__":
    main()
