#!/usr/bin/env bash
# Ingest at the real IMDb scale: 11.6 M titles, ~1.5 M ratings, ~90 M principal rows, 14 M names.
#
#   scripts/bench-ingest.sh [SCALE]      # SCALE: fraction of the real size, default 1.0
#
# Builds cinevec (release), generates gzipped official-format dumps once into .bench/imdb-scale-SCALE/
# (`cinevec gen-imdb`; ~1.3 GB at scale 1.0, a few minutes), ingests them into a fresh store under
# /usr/bin/time -v, and prints the ingest's own report (rows/s per file, time per pass), wall time and
# peak RSS, and whether the result matches what the generator says a correct ingest finds.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-1.0}
data=.bench/imdb-scale-$scale
db=.bench/ingest-scale-$scale.db
mkdir -p .bench

cargo build --release --locked -q
if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time (Debian package \`time\`) for peak RSS..."
  apt-get install -y -q time >/dev/null || { apt-get update -q && apt-get install -y -q time >/dev/null; }
fi
if [ ! -f "$data/expected.json" ]; then  # written last: its presence means a complete set
  echo "generating dumps at scale $scale into $data (first run only)..."
  ./target/release/cinevec gen-imdb --out "$data" --scale "$scale"
fi
du -sh "$data"/*.gz

rm -f "$db" "$db-wal" "$db-shm"
/usr/bin/time -v -o .bench/ingest-time.txt ./target/release/cinevec ingest --imdb "$data" --db "$db" \
  | tee .bench/ingest-report.txt

wall=$(grep 'Elapsed (wall clock)' .bench/ingest-time.txt | awk '{print $NF}')
rss_kb=$(grep 'Maximum resident set size' .bench/ingest-time.txt | awk '{print $NF}')
cpu=$(grep 'Percent of CPU' .bench/ingest-time.txt | awk '{print $NF}')
echo
echo "wall time ${wall} (m:ss), peak RSS $((rss_kb / 1024)) MiB, CPU ${cpu} of one core; store $(du -h "$db" | cut -f1)"

python3 - "$data/expected.json" .bench/ingest-report.txt <<'PY'
import json, re, sys
expected = json.load(open(sys.argv[1]))
report = open(sys.argv[2]).read()
kept = int(re.search(r"^movies +read \d+, kept (\d+)", report, re.M).group(1))
used = int(re.search(r"^credits +(\d+) principal rows", report, re.M).group(1))
ok = kept == expected["kept_movies"] and used == expected["kept_credits"]
print(f"expected {expected['kept_movies']} movies and {expected['kept_credits']} credits: "
      f"got {kept} and {used}: {'OK' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY
