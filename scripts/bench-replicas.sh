#!/usr/bin/env bash
# Replicas on one PostgreSQL: add → visible-on-the-other-replica latency (p50/p99).
#
#   scripts/bench-replicas.sh [ADDS]      # default 1000
#
# Starts a throwaway PostgreSQL cluster (as the `postgres` user, on a free port, in a temporary
# folder), builds a 1,000-movie slice of ../shared/data/imdb5000 into it with the default model, starts
# two `cinevec serve` replicas on it, and runs scripts/bench_replicas.py: ADDS adds through replica A,
# each timed from its acknowledgement until replica B serves it. Everything is stopped and removed at
# the end. Needs PostgreSQL (`apt-get install -y postgresql`) and the default model (`cinevec model fetch`).
set -euo pipefail
cd "$(dirname "$0")/.."
adds=${1:-1000}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2; exit 1; }
cargo build --release --locked -q
cinevec=$PWD/target/release/cinevec

work=$(mktemp -d /tmp/cinevec-bench-replicas-XXXXXX)
chown postgres "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  runuser -u postgres -- "$bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pg_port=$(free_port)
runuser -u postgres -- "$bin/initdb" -D "$work/pg" -U postgres -A trust --no-sync >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" \
  -l "$work/pg.log" -w start >/dev/null
export CINEVEC_DB=postgres://postgres@127.0.0.1:$pg_port/postgres
"$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -Atc "select version()"

head -n 1000 ../shared/data/imdb5000/catalog.jsonl > "$work/slice.jsonl"
"$cinevec" build --catalog "$work/slice.jsonl" --artifacts "$work/artifacts" >/dev/null

key=bench-key
start_replica() {
  local port=$1
  "$cinevec" serve --bind "127.0.0.1:$port" --artifacts "$work/artifacts" --api-key "$key" --cpu \
    >"$work/replica-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "replica on $port did not become ready: $(tail -3 "$work/replica-$port.log")" >&2
  return 1
}
a=$(free_port); start_replica "$a"
b=$(free_port); start_replica "$b"
for port in "$a" "$b"; do
  echo "replica :$port: $(ps -o rss= -p "$(pgrep -f "bind 127.0.0.1:$port")" | awk '{printf "%.0f MiB RSS", $1 / 1024}')"
done
python3 scripts/bench_replicas.py "http://127.0.0.1:$a" "http://127.0.0.1:$b" "$key" "$adds"
