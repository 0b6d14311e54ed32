#!/usr/bin/env bash
# The plugin benchmarks in one run, each with its baseline measured in the same run:
#   1. router calls: native Rust, plugin with a fresh instance, plugin with a warm one;
#   2. routing decisions/s through dispatch (16 targets) and activation of a compiled
#      version;
#   3. stage-in of 1 GiB through filer-http next to plain copies from the same server;
#   4. stage-in of 1 GiB through filer-s3 next to plain copies from the same S3 store
#      (a local Garage, started by scripts/garage.sh).
#
#   bash scripts/bench-plugins.sh [MIB]      (default 1024)
#
# Set FILER_BENCH_DIR (e.g. /dev/shm) to write the staged files outside the disk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
mib="${1:-1024}"

CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-plugins" bash builtin-plugins/build.sh >/dev/null
eval "$(bash scripts/garage.sh)"
cargo build --release --locked -p tessera-plugin-runtime --example router_bench --example filer_bench
cargo build --release --locked -p tessera-bench
cargo build --release --locked -p tessera-s3 --example filer_s3_bench
bin="$CARGO_TARGET_DIR/release"

echo "# Plugin benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/^Mem/{print $2}') GiB"
echo
echo "## 1. Router calls; 2. dispatch and activation"
"$bin/examples/router_bench"
"$bin/tessera-bench" --only dispatch
echo
echo "## 3. filer-http"
"$bin/examples/filer_bench" "$mib"
echo
echo "## 4. filer-s3"
"$bin/examples/filer_s3_bench" "$mib"
