#!/usr/bin/env bash
# The test command (README, .ci/run): build, fetch the default model and all-mpnet-base-v2 if they are
# missing, then run every test, including those that need the models and ../shared (marked #[ignore] so
# that a bare `cargo test` needs neither), then schemathesis against a running server (scripts/schemathesis.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# Formatting and clippy first (scripts/lint.sh): a failure shows in seconds, before the long build.
bash scripts/lint.sh --no-docker
# What a test needs from the system is installed here where it can be (Debian's packages, as root);
# where it cannot, everything else still runs and one line at the start and the end says which test
# was skipped and what to install.
skipped=()
can_install() { [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; }
apt_install() {  # quietly; refresh the package lists once if the first try fails
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; }
}
node_major() { node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
# The browser test (tests/browser.rs): Chromium, Node.js 20+ and its Node packages; the typed client
# check (tests/typescript.rs): the same Node.js and packages; the OpenAI clients' test (tests/clients.rs):
# python3 with venv support (the test makes its own venv from PyPI).
chromium="${CINEVEC_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" && -z "${CINEVEC_CHROMIUM:-}" ]] && can_install; then
  echo "installing chromium (Debian package) for the browser test..."
  apt_install chromium || true
fi
if ! command -v npm >/dev/null && can_install; then
  echo "installing nodejs and npm (Debian packages) for the browser test..."
  apt_install nodejs npm || true
fi
if ! python3 -c 'import ensurepip' 2>/dev/null && can_install; then
  echo "installing python3-venv (Debian package) for the OpenAI clients' test and schemathesis..."
  apt_install python3-venv || true
fi
node_packages_installed() {
  local p
  for p in playwright-core openapi-typescript openapi-fetch typescript @types/node; do
    [[ -f "tests/browser/node_modules/$p/package.json" ]] || return 1
  done
}
node_missing=""
if ! command -v npm >/dev/null || [[ "$(node_major)" -lt 20 ]]; then
  node_missing="Node.js 20 or newer with npm (found: $(node --version 2>/dev/null || echo none))"
elif ! node_packages_installed && ! npm ci --prefix tests/browser --no-audit --no-fund; then
  node_missing="its Node packages (\`npm ci --prefix tests/browser\` failed)"
fi
browser_missing="$node_missing"
if [[ ! -x "$chromium" ]]; then
  browser_missing="Chromium (\`apt-get install -y chromium\`, or set CINEVEC_CHROMIUM)"
fi
excluded=()
if [[ -n "$browser_missing" ]]; then
  excluded+=(tests/browser.rs)
  skipped+=("skipped: the browser test (tests/browser.rs); install $browser_missing to run it")
  echo "${skipped[-1]}" >&2
fi
if [[ -n "$node_missing" ]]; then
  excluded+=(tests/typescript.rs)
  skipped+=("skipped: the typed client check (tests/typescript.rs); install $node_missing to run it")
  echo "${skipped[-1]}" >&2
fi
cargo build --release --locked
./target/release/cinevec model fetch
./target/release/cinevec model fetch mpnet
if ((${#excluded[@]} == 0)); then
  cargo test --release --locked -- --include-ignored
else
  # Every target but the excluded tests' (cargo has no --exclude for test targets).
  targets=(--lib --bins)
  for t in tests/*.rs; do
    [[ " ${excluded[*]} " == *" $t "* ]] || targets+=(--test "$(basename "$t" .rs)")
  done
  cargo test --release --locked "${targets[@]}" -- --include-ignored
  cargo test --release --locked --doc
fi
# The API against its contract (schemathesis, ~1,300 generated requests) on the demo's artifacts, which
# `scripts/demo.sh` builds (CI runs it first).
# schemathesis comes from PyPI into a venv (Debian splits venv support into python3-venv, installed above).
if [[ ! -f artifacts/embeddings.manifest.json ]]; then
  skipped+=("skipped: schemathesis (scripts/schemathesis.sh); it needs the demo's artifacts/: run scripts/demo.sh --check first")
elif ! python3 -c 'import ensurepip' 2>/dev/null && [[ ! -x .bench/venv-schemathesis/bin/st ]]; then
  skipped+=("skipped: schemathesis (scripts/schemathesis.sh); install python3-venv to run it")
else
  bash scripts/schemathesis.sh artifacts
fi
for line in "${skipped[@]}"; do echo "$line" >&2; done
