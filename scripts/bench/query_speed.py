#!/usr/bin/env python3
"""Speed of GET /v1/query on a running server, beside the reference measured in the same run:
POST /v1/similar with the same sentence as a movie title (one embedding and one search, no reading).

    scripts/bench/query_speed.py --url http://127.0.0.1:18311 --catalog .bench/service/catalog.jsonl
    scripts/bench/query_speed.py --url http://127.0.0.1:18310 --catalog ../shared/data/imdb5000/catalog.jsonl --wrk

Requests: --requests of them (seeded), made from the catalog's own genres, decades, directors, actors
and title words in the shapes people type ("<genre> from the <decade>s", "<surname> <genre>",
"<genre> with <actor>", "<title word> <genre> under 100 minutes", ...) plus the relevance set's
sentences (tests/data/query_relevance.json). Sequential: each request once per round, three rounds,
the query and the reference in turns over one keep-alive connection each (a loaded moment of the shared
host hits both); p50, p99 and their ratios. With --wrk: `wrk -t2 -c8 -d10s` over the same requests
(a Lua script rotating through them), requests per second and latency percentiles from wrk itself.
Standard library only (and Debian's wrk for --wrk).
"""
import argparse
import http.client
import json
import os
import random
import subprocess
import tempfile
import time
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:18311")
ap.add_argument("--catalog", required=True, help="the catalog JSONL the server was built from")
ap.add_argument("--requests", type=int, default=200)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--wrk", action="store_true", help="also wrk -t2 -c8 -d10s over the same requests")
args = ap.parse_args()

rng = random.Random(args.seed)
genres, directors, actors, words = set(), [], [], []
with open(args.catalog) as f:
    for line in f:
        m = json.loads(line)["movie"]
        genres.update(m.get("genres") or [])
        directors.extend(m.get("directors") or [])
        actors.extend(m.get("actors") or [])
        words.extend(w for w in m["title"].lower().split() if w.isalpha() and len(w) > 3)
genres = sorted(genres)
plural = lambda g: {"Comedy": "comedies", "Biography": "biopics"}.get(g, g.lower() + ("s" if not g.endswith("s") else ""))
surname = lambda name: name.split()[-1].lower()
shapes = [
    lambda: f"{plural(rng.choice(genres))} from the {rng.choice(range(1930, 2020, 10))}s",
    lambda: f"{surname(rng.choice(directors))} {plural(rng.choice(genres))}",
    lambda: f"{plural(rng.choice(genres))} with {rng.choice(actors).lower()}",
    lambda: f"{rng.choice(words)} {plural(rng.choice(genres))} under 100 minutes",
    lambda: f"best {plural(rng.choice(genres))} since {rng.choice(range(1970, 2016))}",
    lambda: f"films by {rng.choice(directors).lower()}",
    lambda: f"{rng.choice(words)} {rng.choice(words)}",
]
requests = [rng.choice(shapes)() for _ in range(args.requests)]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "../../tests/data/query_relevance.json")) as f:
    requests += [c["q"] for c in json.load(f)]

u = urllib.parse.urlsplit(args.url)
conns = {name: http.client.HTTPConnection(u.hostname, u.port, timeout=60) for name in ("query", "similar")}


def call(name, q):
    c = conns[name]
    if name == "query":
        c.request("GET", "/v1/query?" + urllib.parse.urlencode({"q": q, "k": 10}))
    else:
        body = json.dumps({"movie": {"title": q}, "k": 10})
        c.request("POST", "/v1/similar", body=body, headers={"content-type": "application/json"})
    r = c.getresponse()
    r.read()
    return r.status


times = {"query": [], "similar": []}
statuses = {"query": {}, "similar": {}}
for _ in range(args.rounds):
    for q in requests:
        for name in ("query", "similar"):
            t = time.perf_counter()
            s = call(name, q)
            times[name].append((time.perf_counter() - t) * 1e3)
            statuses[name][s] = statuses[name].get(s, 0) + 1


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


print(f"{len(requests)} requests x {args.rounds} rounds, one at a time; answers {statuses}")
for name, label in (("similar", "POST /v1/similar (the sentence as a title)"), ("query", "GET /v1/query")):
    print(f"{label:45s} p50 {pct(times[name], 0.5):6.2f} ms  p99 {pct(times[name], 0.99):6.2f} ms")
print(f"ratio query / similar: p50 {pct(times['query'], 0.5) / pct(times['similar'], 0.5):.2f} x, "
      f"p99 {pct(times['query'], 0.99) / pct(times['similar'], 0.99):.2f} x")

if args.wrk:
    paths = ["/v1/query?" + urllib.parse.urlencode({"q": q, "k": 10}) for q in requests]
    lua = "paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n" + (
        "i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(["wrk", "-t2", "-c8", "-d10s", "--latency", "-s", f.name, args.url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    print("wrk -t2 -c8 -d10s --latency over the same requests (GET /v1/query):")
    for line in out.splitlines():
        if line.strip().startswith(("Requests/sec", "50%", "90%", "99%", "Non-2xx", "Socket errors")) or "requests in" in line:
            print("  " + line.strip())
