#!/usr/bin/env bash
# A start after run-time writes (issue 19): from the catalog snapshot and its journal, against reading
# the store, on a set made by scripts/bench-service.sh.
#
#   scripts/bench-restart-after-writes.sh [SET_ROOT]    # default .bench/service (ROWS=40000: .bench/service-40000)
#
# Starts the real server (the snapshot made current), adds 20 movies with POST /v1/movies, kills it
# with SIGKILL, times the next start to /readyz (snapshot + journal), then deletes the snapshot and
# times a start that reads the store. Prints each ready time and /v1/info's catalog_loaded_from.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-.bench/service}
set_dir=$root/d384; db=$root/catalog.db; port=${PORT:-18556}
bin=./target/release/cinevec
start() {  # prints the ready time and where the catalog came from; leaves the server's PID in $pid
  local t0; t0=$(date +%s.%N)
  CINEVEC_API_KEY=bench "$bin" serve --bind 127.0.0.1:$port --artifacts "$set_dir" --db "$db" \
    --model models/all-MiniLM-L6-v2 >> "$root/restart-server.log" 2>&1 &
  pid=$!
  until curl -sf localhost:$port/readyz >/dev/null; do sleep 0.01; done
  local t1; t1=$(date +%s.%N)
  echo "ready $(echo "$t1 - $t0" | bc) s, catalog from $(curl -s localhost:$port/v1/info |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["catalog_loaded_from"])')"
}
stop9() { kill -9 "$pid"; wait "$pid" 2>/dev/null || true; }
start; sleep 3  # a start that read the store saves the snapshot (and a new journal) after ready
tag=$(date +%s)
for i in $(seq 1 20); do
  curl -sf -o /dev/null -H 'authorization: Bearer bench' -H 'content-type: application/json' localhost:$port/v1/movies \
    -d "{\"id\": \"rt-$tag-$i\", \"votes\": 50, \"movie\": {\"title\": \"Run-time $i\", \"genres\": [\"Drama\"]}}"
done
echo "20 movies added, then kill -9"; stop9
echo -n "start after writes (snapshot + journal): "; start; stop9
rm "$set_dir/catalog.snapshot"
echo -n "start after writes, snapshot deleted (reads the store): "; start; sleep 3; stop9
