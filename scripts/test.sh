#!/usr/bin/env bash
# The test command (README, .ci/run): build, fetch the default model if it is missing, then run every
# test, including those that need the model and ../shared (marked #[ignore] so that a bare `cargo test`
# needs neither).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
./target/release/cinevec model fetch
cargo test --release --locked -- --include-ignored
