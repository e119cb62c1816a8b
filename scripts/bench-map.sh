#!/usr/bin/env bash
# The catalog map's layout time (issue 18) at imdb5000's, ggplot2movies' and the reference catalog's
# sizes, on synthetic clustered 384-d vectors with a neighbour table found exactly within each cluster
# (`cinevec bench-map`, src/bench/map.rs): seconds, passes, the share of each row's 10 table neighbours
# among its 10 nearest points on the map (beside chance), and the GET /v1/map body's size and write time.
#
#   scripts/bench-map.sh [--rows 4890,27118,242552] [--map-epochs N]
#
# The layout of a real catalog is timed by `cinevec build` itself (its `map` line). Run it on a quiet
# machine: the layout's descent is one thread, its graph construction all cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
uptime
RUST_LOG=warn ./target/release/cinevec bench-map "$@"
uptime
