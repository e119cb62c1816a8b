#!/usr/bin/env bash
# Rating head quality and speed (issue 4): mean baseline, ridge and the head on imdb5000.
#
#   [CINEVEC_DTYPE=auto|f32|bf16|int8] scripts/bench-head.sh [MODEL] [extra `cinevec train` flags...]
#
# MODEL: `minilm` (default) or `mpnet` (all-mpnet-base-v2, 768-d). Builds cinevec (release), fetches the
# model, embeds ../shared/data/imdb5000/catalog.jsonl in CINEVEC_DTYPE (auto) into
# .bench/imdb5000-DTYPE (MiniLM) or .bench/imdb5000-mpnet-DTYPE (only when no set made from this very catalog with this model is there: a few
# minutes on 2 cores with MiniLM, about 8 times as long with MPNet; an interrupted run resumes from the
# embedding cache), then runs `cinevec train` with the shipped defaults (same seeded split for every
# model) into .bench/head-imdb5000[-mpnet]-DTYPE and prints its table (train / validation / test MSE and MAE,
# ratios, interval coverage, samples/s) and the wall time of the training.
set -euo pipefail
cd "$(dirname "$0")/.."
model=minilm
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then model=$1; shift; fi
case "$model" in
  minilm) suffix= ;;
  mpnet) suffix=-mpnet ;;
  *) echo "unknown model '$model': minilm or mpnet" >&2; exit 2 ;;
esac
catalog=${CINEVEC_BENCH_CATALOG:-../shared/data/imdb5000/catalog.jsonl}
dtype=${CINEVEC_DTYPE:-auto}
set_dir=.bench/imdb5000$suffix-$dtype
out=.bench/head-imdb5000$suffix-$dtype

cargo build --release --locked -q
./target/release/cinevec model fetch "$model" >/dev/null
want=$(sha256sum "$catalog" | cut -d' ' -f1)
have=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["input_sha256"])' \
  "$set_dir/embeddings.manifest.json" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  ./target/release/cinevec embed --model "$model" --catalog "$catalog" --out "$set_dir" --dtype "$dtype"
fi

echo "model $model, dtype $dtype; cinevec train on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
start=$(date +%s.%N)
./target/release/cinevec train --embeddings "$set_dir" --artifacts "$out" --catalog "$catalog" "$@"
end=$(date +%s.%N)
python3 - "$start" "$end" "$out/train-report.json" <<'PY'
import json, sys
start, end, path = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
r = json.load(open(path))
m = {x["model"]: x for x in r["models"]}
print(f"wall time of `cinevec train`: {end - start:.1f}s")
print("test MSE: mean {:.4f}, ridge {:.4f}, head {:.4f}; head ÷ mean {:.3f} (target ≤ 0.70), ridge ÷ mean {:.3f}".format(
    m["mean"]["test"]["mse"], m["ridge"]["test"]["mse"], m["head"]["test"]["mse"],
    r["head_over_mean_test_mse"], r["ridge_over_mean_test_mse"]))
print("validation MSE: mean {:.4f}, ridge {:.4f}, head {:.4f}".format(
    m["mean"]["val"]["mse"], m["ridge"]["val"]["mse"], m["head"]["val"]["mse"]))
ok = m["head"]["test"]["mse"] < m["ridge"]["test"]["mse"] < m["mean"]["test"]["mse"]
print("MLP < ridge < mean on test:", "yes" if ok else "no")
PY
