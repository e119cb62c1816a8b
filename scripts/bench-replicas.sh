#!/usr/bin/env bash
# Replicas on one PostgreSQL: add → visible-on-the-other-replica latency (p50/p99), and more-like-this
# throughput through a load balancer with one and with two replicas.
#
#   scripts/bench-replicas.sh [ADDS] [ROUNDS] [SECONDS]   # defaults 1000, 2, 15; ADDS=0 or ROUNDS=0 skips
#
# Starts a throwaway PostgreSQL cluster (as the `postgres` user, on a free port, in a temporary
# folder), builds a 1,000-movie slice of ../shared/data/imdb5000 into it with the default model, starts
# two `cinevec serve` replicas on it, and runs scripts/bench_replicas.py: ADDS adds through replica A,
# each timed from its acknowledgement until replica B serves it. Everything is stopped and removed at
# the end. Needs PostgreSQL (`apt-get install -y postgresql`) and the default model (`cinevec model fetch`).
#
# Then scripts/bench_replicas_lb.py: nginx (the Debian package, installed if missing, as wrk is) with
# configurations like docker/nginx.conf's, over replica A and over A and B; ROUNDS rounds of wrk
# (-t1 -c32, SECONDS each after a 5 s warm-up) straight to A (the reference), through nginx over A,
# through nginx over A and B; req/s, p99, the ratios against the reference of the same round, and the
# RSS of each replica. All of it shares this machine's cores (wrk and nginx too): say the load.
set -euo pipefail
cd "$(dirname "$0")/.."
adds=${1:-1000}
rounds=${2:-2}
seconds=${3:-15}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2; exit 1; }
cargo build --release --locked -q
if [ "$rounds" != 0 ]; then
  for tool in nginx wrk; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null || {
      echo "installing $tool (Debian package)..."
      apt-get install -y -q "$tool" >/dev/null || { apt-get update -q && apt-get install -y -q "$tool" >/dev/null; }
    }
  done
  export PATH=$PATH:/usr/sbin
fi
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
echo "uptime: $(uptime)"
if [ "$adds" != 0 ]; then
  python3 scripts/bench_replicas.py "http://127.0.0.1:$a" "http://127.0.0.1:$b" "$key" "$adds"
fi
if [ "$rounds" != 0 ]; then
  python3 scripts/bench_replicas_lb.py "$work" "$work/slice.jsonl" "$a" "$b" "$rounds" "$seconds"
fi
echo "uptime: $(uptime)"
