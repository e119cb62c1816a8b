#!/usr/bin/env bash
# Embedding speed, cinevec vs PyTorch sentence-transformers (f32), on the same documents and the same
# cores, in alternating rounds.
#
#   scripts/bench-embed.sh [MODEL] [DOCS] [THREADS] [DTYPE] [ROUNDS]
#
# MODEL: `minilm` (default) or `mpnet` (all-mpnet-base-v2);
# DOCS (300): the first DOCS movies of ../shared/data/imdb5000/catalog.jsonl, rendered canonically;
# THREADS (nproc); DTYPE (auto): cinevec's --dtype (PyTorch stays f32, the reference); ROUNDS (5).
#
# A shared host's load changes from one minute to the next, so one long run per side compares two
# different machines. Instead each round runs cinevec, then PyTorch (the next round PyTorch first),
# on the same documents, each measuring batch 32 (docs/s) and batch 1 (docs/s, p50/p99 latency); the
# ratio is taken within the round, and the script prints the median ratio over the rounds with its
# spread (min-max), besides the totals (all documents over all seconds, per side).
#
# Builds cinevec (release), fetches the model, and sets up a Python venv with
# sentence-transformers in .bench/venv on the first run (several GB: PyPI's torch wheel brings CUDA
# libraries). Results: .bench/rounds/{cinevec,pytorch}-N.json and .bench/embed-summary.json.
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
docs=${1:-300}
threads=${2:-$(nproc)}
dtype=${3:-auto}
rounds=${4:-5}
catalog=${CINEVEC_BENCH_CATALOG:-../shared/data/imdb5000/catalog.jsonl}
out=.bench
mkdir -p "$out"
rm -rf "$out/rounds" && mkdir -p "$out/rounds"

cargo build --release --locked -q
./target/release/cinevec model fetch "$model" >/dev/null
if [ ! -x "$out/venv/bin/python" ] || ! "$out/venv/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
  echo "setting up $out/venv with sentence-transformers (first run only)..."
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q --disable-pip-version-check 'sentence-transformers==6.2.0'
fi

export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
echo "model $model ($model_dir), $docs documents, $threads threads, cinevec --dtype $dtype"
run_cinevec() {
  ./target/release/cinevec bench-embed --model "$model" --catalog "$catalog" --docs "$docs" --batch-sizes 32,1 --dtype "$dtype" \
    --json "$out/rounds/cinevec-$1.json"
}
run_pytorch() {
  # The documents and batch sizes cinevec measured (round 1 runs cinevec first).
  "$out/venv/bin/python" scripts/bench_embed_torch.py "$model_dir" "$out/rounds/cinevec-1.json" "$threads" \
    "$out/rounds/pytorch-$1.json"
}
for r in $(seq 1 "$rounds"); do
  echo "--- round $r of $rounds"
  if [ $((r % 2)) -eq 1 ]; then run_cinevec "$r"; run_pytorch "$r"; else run_pytorch "$r"; run_cinevec "$r"; fi
done

python3 - "$out/rounds" "$rounds" "$out/embed-summary.json" <<'PY'
import json, statistics, sys
folder, rounds, summary_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
load = lambda side, r: {x["batch"]: x for x in json.load(open(f"{folder}/{side}-{r}.json"))["results"]}
c = [load("cinevec", r) for r in range(1, rounds + 1)]
p = [load("pytorch", r) for r in range(1, rounds + 1)]
dtype = json.load(open(f"{folder}/cinevec-1.json"))["dtype"]
docs = json.load(open(f"{folder}/cinevec-1.json"))["docs"]
spread = lambda v: f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
summary = {"dtype": dtype, "docs": docs, "rounds": rounds, "batches": {}}
print()
print(f"cinevec in {dtype} vs PyTorch f32, {docs} docs, {rounds} alternating rounds: median (min-max) over rounds")
print()
print("| batch | cinevec docs/s | PyTorch docs/s | ratio | cinevec p50 ms | PyTorch p50 ms | p50 ratio | total cinevec docs/s | total PyTorch docs/s |")
print("|---|---|---|---|---|---|---|---|---|")
for bs in sorted(c[0], reverse=True):
    cr = [x[bs]["docs_per_s"] for x in c]
    pr = [x[bs]["docs_per_s"] for x in p]
    ratio = [a / b for a, b in zip(cr, pr)]
    ct = docs * rounds / sum(x[bs]["seconds"] for x in c)
    pt = docs * rounds / sum(x[bs]["seconds"] for x in p)
    row = {"cinevec_docs_per_s": cr, "pytorch_docs_per_s": pr, "ratio": ratio,
           "median_ratio": statistics.median(ratio), "total_cinevec_docs_per_s": ct, "total_pytorch_docs_per_s": pt}
    p50 = ["-", "-", "-"]
    if "p50_ms" in c[0][bs]:
        cp, pp = [x[bs]["p50_ms"] for x in c], [x[bs]["p50_ms"] for x in p]
        pratio = [b / a for a, b in zip(cp, pp)]
        p50 = [spread(cp), spread(pp), spread(pratio)]
        row.update({"cinevec_p50_ms": cp, "pytorch_p50_ms": pp, "median_cinevec_p50_ms": statistics.median(cp)})
    summary["batches"][str(bs)] = row
    print(f"| {bs} | {spread(cr)} | {spread(pr)} | **{spread(ratio)}** | {p50[0]} | {p50[1]} | {p50[2]} | {ct:.1f} | {pt:.1f} |")
print()
print("ratio: cinevec docs/s over PyTorch docs/s within each round; p50 ratio: PyTorch p50 over cinevec p50.")
json.dump(summary, open(summary_path, "w"), indent=1)
PY
