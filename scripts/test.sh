#!/usr/bin/env bash
# The whole test suite: installs what it needs, then format, lints, and every test
# (unit, store on SQLite and PostgreSQL, Docker, end-to-end, py-tes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse a build cache outside the clone when there is one (CI and repeated runs).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
eval "$(bash scripts/test-env.sh)"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --locked -p tessera
export TESSERA_BIN="$CARGO_TARGET_DIR/debug/tessera"
cargo test --workspace --locked -- --test-threads="${TESSERA_TEST_THREADS:-4}"
