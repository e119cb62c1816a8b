"""More-like-this as a user judges it: how often films of one series find each other among their nearest
neighbours.

    franchise-neighbours.py CATALOG FRANCHISES_TSV SET_DIR [SET_DIR...] [--k 10]

For every film of a series in scripts/franchises.tsv (series with at least two films in the catalog),
its k nearest neighbours by cosine in each embedding set (exact, itself excluded) are compared with the
other films of its series. Printed per set: hit@k (share of series films with at least one sibling among
their k neighbours) and recall@k (share of siblings found, out of min(k, siblings)), averaged over
films; and per series, the same numbers side by side.
"""
import argparse
import json
import re

import numpy as np
from safetensors.numpy import load_file

parser = argparse.ArgumentParser()
parser.add_argument("catalog")
parser.add_argument("franchises")
parser.add_argument("sets", nargs="+")
parser.add_argument("--k", type=int, default=10)
args = parser.parse_args()

titles = {}
for line in open(args.catalog):
    row = json.loads(line)
    titles[row["id"]] = row["movie"]["title"]
series = []
for line in open(args.franchises):
    if line.startswith("#") or not line.strip():
        continue
    name, pattern = line.rstrip("\n").split("\t")
    series.append((name, re.compile(pattern)))

results = {}
for set_dir in args.sets:
    ids = json.load(open(f"{set_dir}/embeddings.ids.json"))["ids"]
    manifest = json.load(open(f"{set_dir}/embeddings.manifest.json"))
    x = load_file(f"{set_dir}/embeddings.safetensors")["embeddings"].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    row_of = {movie: r for r, movie in enumerate(ids)}
    per_series = {}
    for name, pattern in series:
        members = [row_of[m] for m, t in titles.items() if pattern.search(t) and m in row_of]
        if len(members) < 2:
            continue
        member_set = set(members)
        hits, recalls = [], []
        for r in members:
            scores = x @ x[r]
            scores[r] = -np.inf
            top = np.argpartition(-scores, args.k)[: args.k]
            found = sum(1 for t in top if t in member_set)
            hits.append(found > 0)
            recalls.append(found / min(args.k, len(members) - 1))
        per_series[name] = (len(members), float(np.mean(hits)), float(np.mean(recalls)), hits, recalls)
    films = sum(v[0] for v in per_series.values())
    hit = np.mean([h for v in per_series.values() for h in v[3]])
    recall = np.mean([r for v in per_series.values() for r in v[4]])
    label = f"{set_dir} ({manifest['model']['source']}, dim {manifest['dim']})"
    results[set_dir] = per_series
    print(f"{label}: {len(per_series)} series, {films} films: hit@{args.k} {hit:.3f}, recall@{args.k} {recall:.3f}")

print()
print("| series | films | " + " | ".join(f"{s} hit / recall" for s in args.sets) + " |")
print("|---|---|" + "---|" * len(args.sets))
for name, _ in series:
    rows = [results[s].get(name) for s in args.sets]
    if rows[0] is None:
        continue
    print(f"| {name} | {rows[0][0]} | " + " | ".join(f"{r[1]:.2f} / {r[2]:.2f}" for r in rows) + " |")
