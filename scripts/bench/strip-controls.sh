#!/usr/bin/env bash
# Issue 31's measurements of the strip controls on imdb5000: diversity (mean pairwise cosine and
# own-series share of the 10 results at diversity 0, 0.3, 0.6) and the latency of a controlled by-id
# request against a plain one (scripts/bench/strip_controls.py says how).
#   scripts/bench/strip-controls.sh [ARTIFACTS_DIR] [PORT]
# Builds the imdb5000 artifacts into ARTIFACTS_DIR (default .bench/imdb5000-31) when missing, serves
# them on 127.0.0.1:PORT (default 18310), runs the measurements, stops the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.bench/imdb5000-31}
port=${2:-18310}
bin=${CINEVEC_BIN:-target/release/cinevec}
models=${CINEVEC_MODELS_DIR:-models}
catalog=${CATALOG:-../shared/data/imdb5000/catalog.jsonl}
[ -f "$catalog" ] || catalog=/work/shared/data/imdb5000/catalog.jsonl
if [ ! -f "$dir/embeddings.safetensors" ]; then
  "$bin" build --catalog "$catalog" --artifacts "$dir" --models-dir "$models" --cpu
fi
"$bin" serve --artifacts "$dir" --models-dir "$models" --cpu --bind "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work)"
python3 scripts/bench/strip_controls.py --base "http://127.0.0.1:$port" --artifacts "$dir" \
  --franchises scripts/franchises.tsv "${@:3}"
