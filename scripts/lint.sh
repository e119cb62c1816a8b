#!/usr/bin/env bash
# The lints CI runs first, so a failure shows in seconds rather than after the tests:
#   rustfmt (rustfmt.toml) over the crate and the fuzz targets, clippy on every target with warnings as
#   errors (a lint is allowed only in the code, with a comment saying why), and hadolint over the
#   Dockerfiles (scripts/lint-docker.sh).
#   scripts/lint.sh            all three
#   scripts/lint.sh --no-docker  without hadolint (scripts/test.sh runs it so; .ci/run runs hadolint too)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "lint: cargo fmt --check" >&2
cargo fmt --check
# The fuzz targets are their own workspace (fuzz/Cargo.toml, never built by CI): rustfmt reads them
# directly, with the same rustfmt.toml.
rustfmt --check --edition 2021 fuzz/fuzz_targets/*.rs
echo "lint: cargo clippy --release --all-targets --locked -- -D warnings" >&2
cargo clippy --release --all-targets --locked -- -D warnings
if [[ "${1:-}" != --no-docker ]]; then
  bash scripts/lint-docker.sh
fi
