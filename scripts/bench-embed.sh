#!/usr/bin/env bash
# Embedding speed, cinevec vs PyTorch sentence-transformers, on the same documents and the same cores.
#
#   scripts/bench-embed.sh [MODEL] [DOCS] [THREADS]
#
# MODEL: `minilm` (default) or `mpnet` (all-mpnet-base-v2). Builds cinevec (release), fetches the model,
# sets up a Python venv with sentence-transformers
# in .bench/venv (first run only; several GB, since PyPI's torch wheel brings CUDA libraries), embeds
# the first DOCS (1000) movies of ../shared/data/imdb5000/catalog.jsonl rendered canonically, at batch 32
# (docs/s) and batch 1 (docs/s, p50/p99 latency), and prints both sides and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
model=minilm
case "${1:-}" in
  minilm|mpnet) model=$1; shift ;;
  ''|[0-9]*) ;;
  *) echo "unknown model '$1': minilm or mpnet" >&2; exit 2 ;;
esac
model_dir=models/all-MiniLM-L6-v2
[ "$model" = mpnet ] && model_dir=models/all-mpnet-base-v2
docs=${1:-1000}
threads=${2:-$(nproc)}
catalog=${CINEVEC_BENCH_CATALOG:-../shared/data/imdb5000/catalog.jsonl}
out=.bench
mkdir -p "$out"

cargo build --release --locked -q
./target/release/cinevec model fetch "$model" >/dev/null
if [ ! -x "$out/venv/bin/python" ] || ! "$out/venv/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
  echo "setting up $out/venv with sentence-transformers (first run only)..."
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q --disable-pip-version-check 'sentence-transformers==6.2.0'
fi

export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
echo "model $model ($model_dir), $docs documents, $threads threads"
./target/release/cinevec bench-embed --model "$model" --catalog "$catalog" --docs "$docs" --batch-sizes 32,1 --json "$out/cinevec.json"
"$out/venv/bin/python" scripts/bench_embed_torch.py "$model_dir" "$out/cinevec.json" "$threads" "$out/pytorch.json"

python3 - "$out/cinevec.json" "$out/pytorch.json" <<'PY'
import json, sys
c = {r["batch"]: r for r in json.load(open(sys.argv[1]))["results"]}
p = {r["batch"]: r for r in json.load(open(sys.argv[2]))["results"]}
print()
print("| batch | cinevec docs/s | PyTorch docs/s | ratio | cinevec p50 ms | PyTorch p50 ms |")
print("|---|---|---|---|---|---|")
for bs in sorted(c, reverse=True):
    cp50 = f"{c[bs]['p50_ms']:.2f}" if "p50_ms" in c[bs] else "-"
    pp50 = f"{p[bs]['p50_ms']:.2f}" if "p50_ms" in p[bs] else "-"
    print(f"| {bs} | {c[bs]['docs_per_s']:.1f} | {p[bs]['docs_per_s']:.1f} | {c[bs]['docs_per_s'] / p[bs]['docs_per_s']:.2f} | {cp50} | {pp50} |")
PY
