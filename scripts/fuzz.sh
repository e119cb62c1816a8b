#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer) of the parsers that take input from outside: the
# movie-document canonicaliser (movie_doc), the catalog JSONL reader (catalog_jsonl), the IMDb TSV
# readers (imdb_tsv) and the HTTP request bodies (request_bodies). The targets are in fuzz/ (their own
# workspace: the main build never compiles them).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 600 s each, every target
#
# Needs the nightly toolchain (cargo-fuzz's instrumentation flags); installs cargo-fuzz from crates.io
# if it is missing. The first build compiles every dependency again with coverage instrumentation
# (about ten minutes on 2 cores). Seeds the corpus from ../shared/data on the first run (fuzz/corpus/,
# not committed). JOBS=N runs N targets at once. No sanitizer (`-s none`): the parsers are safe Rust,
# and a panic or a failed round-trip assertion is what is looked for. A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes this script exit non-zero; the last line per target is libFuzzer's
# "Done N runs in S second(s)".
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(movie_doc catalog_jsonl imdb_tsv request_bodies)
rustup toolchain list 2>/dev/null | grep -q '^nightly' ||
  { echo "cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
shared=../shared/data
python3 - "$shared" <<'PY'
import json, os, sys
shared = sys.argv[1]
def put(target, name, data):
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, name)
    if not os.path.exists(p):
        open(p, "wb").write(data)
lines = []
try:
    lines = open(os.path.join(shared, "imdb5000/catalog.jsonl"), "rb").read().splitlines()[:300]
except OSError:
    pass
for i, line in enumerate(lines):
    put("movie_doc", f"seed-{i}", json.dumps(json.loads(line)["movie"]).encode())
    if i % 10 == 0:
        put("catalog_jsonl", f"seed-{i}", b"\n".join(lines[i:i + 3]) + b"\n")
for pick, name in enumerate(["title.basics", "title.ratings", "title.principals", "name.basics"]):
    try:
        rows = open(os.path.join(shared, f"imdb-official-samples/{name}.tsv"), "rb").read().splitlines()
    except OSError:
        continue
    for j in range(0, min(len(rows), 200), 20):
        put("imdb_tsv", f"seed-{pick}-{j}", bytes([pick]) + b"\n".join(rows[:1] + rows[1 + j:1 + j + 5]))
for i, body in enumerate([
    {"k": 5, "movie": {"title": "Alien", "genres": ["Horror"], "release_year": 1979}},
    {"positive": ["tt0078748"], "negative": [], "k": 10, "min_year": 1970, "max_year": 1990, "min_votes": 1000},
    {"movies": [{"title": "Heat", "directors": ["Michael Mann"], "actors": ["Al Pacino"]}]},
    {"id": "tt0113277", "rating": 8.3, "votes": 700000, "movie": {"title": "Heat"}},
    {"k": "5", "genres": "Drama,Comedy", "exact": "true", "min_rating": "7.5"},
]):
    put("request_bodies", f"seed-{i}", json.dumps(body).encode())
PY
cd fuzz
cargo +nightly fuzz build --sanitizer none
run_one() {
  local t=$1
  if cargo +nightly fuzz run --sanitizer none "$t" -- -max_total_time="$secs" -rss_limit_mb=4096 \
      -print_final_stats=1 >"target/fuzz-$t.log" 2>&1; then
    echo "$t: $(grep -E '^Done [0-9]+ runs' "target/fuzz-$t.log" | tail -n 1), 0 crashes"
  else
    echo "$t: FAILED (see fuzz/target/fuzz-$t.log and fuzz/artifacts/$t/)"
    grep -E 'panicked|ERROR|SUMMARY' "target/fuzz-$t.log" | head -n 5
    touch "target/fuzz-$t.failed"
  fi
}
rm -f target/fuzz-*.failed
for t in "${targets[@]}"; do
  run_one "$t" &
  while (( $(jobs -rp | wc -l) >= ${JOBS:-1} )); do sleep 1; done
done
wait
failed=0
for t in "${targets[@]}"; do [[ ! -e "target/fuzz-$t.failed" ]] || failed=1; done
exit $failed
