#!/usr/bin/env bash
# Build the Rust example router as a component: examples/plugins/dist/rust-router.wasm
# (wasm32-wasip2, release; the target is added with rustup when missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dist="$(cd "$here/.." && pwd)/dist"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
(cd "$here" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked --target wasm32-wasip2)
mkdir -p "$dist"
cp "$target_dir/wasm32-wasip2/release/rust_router.wasm" "$dist/rust-router.wasm"
echo "rust-router: $dist/rust-router.wasm ($(wc -c <"$dist/rust-router.wasm") bytes)"
