#!/usr/bin/env bash
# MiniLM (384-d) and all-mpnet-base-v2 (768-d) as served, side by side, on imdb5000 (issue 16).
#
#   scripts/bench-models.sh [MODEL...]      (default: minilm mpnet)
#
# For each model: `cinevec build --catalog ../shared/data/imdb5000/catalog.jsonl --model MODEL` into
# .bench/build-imdb5000-MODEL (the embedding cache of scripts/bench-head.sh's set is copied in first when
# there is one, so that the 4,890 documents are not embedded again), then `cinevec serve` on it; measures
# the one-movie POST /v1/predict latency (sequential client, the first 300 imdb5000 movies, the first 10
# not counted), the server's RSS when ready and its peak RSS (VmHWM) after the requests, and the size of
# the model's weights and of the embedding matrix. The servers run one after the other on the same
# cores; a shared host makes single numbers noisy, the table's ratio is the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
catalog=${CINEVEC_BENCH_CATALOG:-../shared/data/imdb5000/catalog.jsonl}
bin=./target/release/cinevec
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(minilm mpnet)
cargo build --release --locked -q
for model in "${models[@]}"; do
  set_dir=.bench/imdb5000; [ "$model" = minilm ] || set_dir=.bench/imdb5000-$model
  out=.bench/build-imdb5000-$model
  mkdir -p "$out/.cache"
  for f in "$set_dir"/.cache/embed-cache-*.bin; do
    [ -f "$f" ] && [ ! -f "$out/.cache/$(basename "$f")" ] && cp "$f" "$out/.cache/"
  done
  "$bin" model fetch "$model" >/dev/null
  echo "== cinevec build --model $model"
  /usr/bin/time -f "build wall %e s, peak RSS %M KB" \
    "$bin" build --catalog "$catalog" --model "$model" --artifacts "$out" --db "$out/catalog.db" 2>&1 | tail -n 12
done
python3 - "$bin" "$catalog" "${models[@]}" <<'PY'
import http.client, json, os, signal, socket, subprocess, sys, time
bin_, catalog, models = sys.argv[1], sys.argv[2], sys.argv[3:]
docs = [json.loads(l)["movie"] for _, l in zip(range(300), open(catalog))]

def kb(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

rows = []
for model in models:
    out = f".bench/build-imdb5000-{model}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    log = open(f"{out}/serve.log", "wb")
    proc = subprocess.Popen([bin_, "serve", "--bind", f"127.0.0.1:{port}", "--artifacts", out,
                             "--db", f"{out}/catalog.db", "--model", model], stdout=log, stderr=log)
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            sys.exit(f"the {model} server exited: see {out}/serve.log")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1); c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.02)
    ready_s, ready_rss = time.monotonic() - start, kb(proc.pid, "VmRSS")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for i, doc in enumerate(docs):
        t = time.perf_counter()
        conn.request("POST", "/v1/predict", json.dumps({"movies": [doc]}), {"content-type": "application/json"})
        r = conn.getresponse(); body = r.read()
        if r.status != 200:
            sys.exit(f"{model}: POST /v1/predict {r.status} {body[:200]!r}")
        if i >= 10:
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    hwm = kb(proc.pid, "VmHWM")
    proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); log.close()
    manifest = json.load(open(f"{out}/embeddings.manifest.json"))
    folder = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}[model]
    weights = os.path.getsize(f"models/{folder}/model.safetensors")
    matrix = os.path.getsize(f"{out}/embeddings.safetensors")
    rows.append((model, manifest["dim"], times[len(times) // 2], times[len(times) * 99 // 100], ready_s,
                 ready_rss / 1024, hwm / 1024, weights / 2**20, matrix / 2**20))

print()
print("| model | dim | predict p50 ms | p99 ms | ready s | RSS at ready MiB | peak RSS MiB | weights MiB | matrix MiB |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| {} | {} | {:.1f} | {:.1f} | {:.2f} | {:.0f} | {:.0f} | {:.0f} | {:.1f} |".format(*r))
if len(rows) == 2:
    a, b = rows
    print(f"\n{b[0]} ÷ {a[0]}: predict p50 {b[2] / a[2]:.2f} ×; peak RSS +{b[6] - a[6]:.0f} MiB "
          f"(weights +{b[7] - a[7]:.0f} MiB, matrix +{b[8] - a[8]:.1f} MiB)")
PY
