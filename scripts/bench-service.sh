#!/usr/bin/env bash
# The service at the reference scale (issue 5): 242,552 movies, more-like-this, start-up, memory, predict.
#
#   scripts/bench-service.sh
#
# Builds cinevec (release), installs wrk (Debian package) if missing, generates a synthetic artifact set
# once into .bench/service/ (`cinevec gen-service`: catalog store + JSONL, 384-d vectors with the local
# all-MiniLM-L6-v2's record and a rating head trained on them, 768-d vectors with a synthetic record;
# a few minutes), then (scripts/bench_service.py):
#   - the real `cinevec serve` on the 384-d set: ready time after deleting the saved graph, after deleting
#     the catalog snapshot (the catalog read from the store) and with both, recall@10 of more-like-this
#     against exact=true over 1,000 movies, wrk throughput and latency of GET /v1/movies/{id}/similar?k=10
#     rotating over all ids (shuffled; answered from the neighbour table) and of k=20 (more than the
#     table holds: the graph walk, with its own recall), one-movie POST /v1/predict latency
#     (sequential client; real movies from ../shared/data/imdb5000, and the synthetic catalog's
#     longer documents), peak RSS (VmHWM) against matrix + graph and neighbour table + model bytes;
#   - filtered more-like-this by id (issue 19): a mix of 12 filters (one genre from common to the
#     rarest, decades, min_votes, combinations) in turn over all ids: wrk throughput and latency, and
#     per filter recall@10 against exact=true with the same filter and the sequential latency; with
#     BASELINE_BIN (another build, e.g. main's before planned filtered search) the same filtered and
#     unfiltered measurements of its server on the same set in the same run, and the ratios;
#   - offline, for the 768-d set (no 768-d model here to serve it): `cinevec bench-index` builds and
#     saves its graph (first run), loads it, and measures recall@10 against brute force per ef and memory.
# Prints one table with each measurement beside its target. Environment: WRK_THREADS (1),
# WRK_CONNECTIONS (32), WRK_SECONDS (20), RECALL_QUERIES (1000), MEASURE_REBUILD (1; 0 skips the
# start with a deleted graph when one is saved), OFFLINE_SETS (the 768-d set), OFFLINE_HNSW_M and
# OFFLINE_HNSW_EF_CONSTRUCTION (the server's defaults), FILTERED_ONLY (1: only the saved-graph start,
# unfiltered and filtered more-like-this), BASELINE_BIN, FILTER_RECALL_QUERIES (40 per filter), ROWS
# (the reference 242,552; another count generates its own set into .bench/service-ROWS/), GEN_DIMS
# (384,768); CINEVEC_* reach the server (e.g. CINEVEC_HNSW_EF_SEARCH). Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-242552}
out=.bench/service
[ "$rows" = 242552 ] || out=.bench/service-$rows
bin=./target/release/cinevec

cargo build --release --locked -q
"$bin" model fetch >/dev/null
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..."
  apt-get install -y -q wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk >/dev/null; }
fi
if [ ! -f "$out/generated.json" ]; then  # written last: its presence means a complete set
  echo "generating the artifact set into $out (first run only)..."
  "$bin" gen-service --out "$out" --rows "$rows" --dims "${GEN_DIMS:-384,768}" \
    --width 128 --depth 1 --members 2 --epochs 10 --batch-size 1024 --patience 3 --lr 1e-3
fi

uptime
# OFFLINE_SETS="" skips the offline sets (the 768-d graph build takes long on 2 cores).
python3 scripts/bench_service.py "$bin" "$out/d384" "$out/catalog.db" models/all-MiniLM-L6-v2 "$out/run" \
  ${OFFLINE_SETS-"$out/d768"}
uptime
