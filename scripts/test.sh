#!/usr/bin/env bash
# The test command (README, .ci/run): build, fetch the default model and all-mpnet-base-v2 if they are
# missing, then run every test, including those that need the models and ../shared (marked #[ignore] so
# that a bare `cargo test` needs neither), then schemathesis against a running server (scripts/schemathesis.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser test (tests/browser.rs) needs Chromium, Node.js 20+ and its Node packages: say so before
# building rather than after.
chromium="${CINEVEC_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || { echo "Chromium not found at $chromium: install it with \`apt-get install -y chromium\` (or set CINEVEC_CHROMIUM)." >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or newer (with npm) for the browser test." >&2; exit 1; }
[ -f tests/browser/node_modules/playwright-core/package.json ] || npm ci --prefix tests/browser --no-audit --no-fund
cargo build --release --locked
./target/release/cinevec model fetch
./target/release/cinevec model fetch mpnet
cargo test --release --locked -- --include-ignored
# The API against its contract (schemathesis, ~1,300 generated requests) on the demo's artifacts, which
# `scripts/demo.sh` builds (CI runs it first).
if [[ -f artifacts/embeddings.manifest.json ]]; then
  bash scripts/schemathesis.sh artifacts
else
  echo "schemathesis skipped: no artifacts/ (run scripts/demo.sh --check first)" >&2
fi
