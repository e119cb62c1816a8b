"""The strip controls measured on a running server (issue 31): how diverse a more-like-this list is at
diversity 0, 0.3 and 0.6, and what the controls cost next to a plain request.

    strip_controls.py --base http://127.0.0.1:18310 --artifacts .bench/imdb5000-31 \
        --franchises scripts/franchises.tsv [--latency-queries 300]
    strip_controls.py --base http://127.0.0.1:18311 --artifacts .bench/service/d384 --latency-only

Diversity: for every film of a series in scripts/franchises.tsv (series with at least two films in the
catalog; the list is hand-checked title patterns, independent of the server's own series rule), its
10 most similar films by id with exact=true, at each diversity. Printed: the mean pairwise cosine of the
10 results (from the embedding matrix of the artifacts), and the share of the results that belong to
the query's own series, averaged over the queries.

Cost: the same random films asked for one at a time over one keep-alive connection, each first plain
(`k=10`), then with `diversity=0.5`, 100 excluded ids (random other films) and `max_per=director`; the
two latencies are taken in turns, so a loaded moment of the shared host hits both. Printed: p50 and
mean of each and their ratio. Standard library only.
"""
import argparse
import http.client
import json
import random
import re
import statistics
import struct
import time
import urllib.parse
from array import array

parser = argparse.ArgumentParser()
parser.add_argument("--base", required=True)
parser.add_argument("--artifacts", required=True)
parser.add_argument("--franchises", help="the series patterns (the diversity measure; required without --latency-only)")
parser.add_argument("--latency-only", action="store_true",
                    help="only the cost measure (e.g. at 242,552 generated movies, whose titles have no series)")
parser.add_argument("--latency-queries", type=int, default=300)
parser.add_argument("--seed", type=int, default=31)
args = parser.parse_args()

url = urllib.parse.urlparse(args.base)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)


def get(path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return json.loads(body)


def load_matrix(folder):
    """The embedding set: ids and rows, from its safetensors file (read by hand: no numpy needed)."""
    ids = json.load(open(f"{folder}/embeddings.ids.json"))["ids"]
    raw = open(f"{folder}/embeddings.safetensors", "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    tensors = {k: v for k, v in json.loads(raw[8:8 + n]).items() if k != "__metadata__"}
    (t,) = tensors.values()
    assert t["dtype"] == "F32", t["dtype"]
    dim = t["shape"][1]
    flat = array("f", raw[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]])
    return {id_: flat[r * dim:(r + 1) * dim] for r, id_ in enumerate(ids)}


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def diversity():
    titles = {json.loads(line)["id"]: json.loads(line)["movie"]["title"] for line in open(f"{args.artifacts}/catalog.jsonl")}
    patterns = [line.rstrip("\n").split("\t") for line in open(args.franchises) if line.strip() and not line.startswith("#")]
    series = [(name, {i for i, t in titles.items() if re.search(p, t)}) for name, p in patterns]
    series = [(name, members) for name, members in series if len(members) >= 2]
    queries = [(film, members) for _, members in series for film in sorted(members)]
    print(f"{len(series)} series with 2+ films in the catalog, {len(queries)} query films; {len(vectors)} movies")

    print("| diversity | mean pairwise cosine of the 10 results | share of results from the query's own series | first result unchanged |")
    print("|---|---|---|---|")
    first = {}
    for d in (0, 0.3, 0.6):
        cosines, shares, same_first = [], [], 0
        for film, members in queries:
            results = get(f"/v1/movies/{film}/similar?k=10&exact=true&diversity={d}")["results"]
            ids = [r["id"] for r in results]
            if d == 0:
                first[film] = ids[0]
            same_first += ids[0] == first[film]
            vs = [vectors[i] for i in ids]
            pairs = [dot(vs[i], vs[j]) for i in range(len(vs)) for j in range(i + 1, len(vs))]
            cosines.append(sum(pairs) / len(pairs))
            shares.append(sum(i in members for i in ids) / len(ids))
        print(f"| {d} | {statistics.mean(cosines):.4f} | {statistics.mean(shares):.4f} | {same_first}/{len(queries)} |")



if args.latency_only:
    all_ids = sorted(json.load(open(f"{args.artifacts}/embeddings.ids.json"))["ids"])
    print(f"{len(all_ids)} movies")
else:
    if not args.franchises:
        raise SystemExit("--franchises is required without --latency-only")
    vectors = load_matrix(args.artifacts)
    all_ids = sorted(vectors)
    diversity()

rng = random.Random(args.seed)
sample = rng.sample(all_ids, args.latency_queries)
plain_ms, controlled_ms = [], []
for i, film in enumerate(sample):
    others = [x for x in rng.sample(all_ids, 101) if x != film][:100]
    exclude = urllib.parse.quote(",".join(others), safe=",")
    plain = f"/v1/movies/{film}/similar?k=10"
    controlled = f"{plain}&diversity=0.5&exclude={exclude}&max_per=director"
    for path, into in ((plain, plain_ms), (controlled, controlled_ms)):
        started = time.perf_counter()
        body = get(path)
        took = (time.perf_counter() - started) * 1e3
        if i >= 20:  # the first 20 warm up
            into.append(took)
        if path is controlled:
            assert not set(r["id"] for r in body["results"]) & set(others), "an excluded film came back"
p50 = lambda xs: statistics.median(xs)
print(f"latency, {len(plain_ms)} by-id requests each, one at a time (client included):")
print(f"  plain k=10:                                   p50 {p50(plain_ms):.3f} ms, mean {statistics.mean(plain_ms):.3f} ms")
print(f"  diversity=0.5 + exclude 100 + max_per=director: p50 {p50(controlled_ms):.3f} ms, mean {statistics.mean(controlled_ms):.3f} ms")
print(f"  ratio controlled / plain: p50 {p50(controlled_ms) / p50(plain_ms):.2f} x, mean {statistics.mean(controlled_ms) / statistics.mean(plain_ms):.2f} x")
