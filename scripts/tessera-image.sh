#!/usr/bin/env bash
# The tessera image: deploy/Dockerfile (FROM scratch with the static binary, which
# carries the built-in plugins) built with this machine's Docker. Prints the `export`
# line the tests read.
#
#   scripts/tessera-image.sh [TAG]     default tag: tessera.local/tessera:test
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
tag="${1:-tessera.local/tessera:test}"
triple=x86_64-unknown-linux-gnu
# Static glibc: the binary runs in any image (the executors' `tessera stage exec` is
# copied into theirs). With --target, build scripts and proc macros stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked -p tessera --target "$triple" >&2
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$CARGO_TARGET_DIR/$triple/debug/tessera" "$ctx/tessera"
# Without its debug information: half the size, copied into every wrapped pod.
strip "$ctx/tessera"
cp deploy/Dockerfile deploy/nsswitch.conf "$ctx/"
docker build -q -t "$tag" "$ctx" >&2
echo "export TESSERA_TEST_K8S_TESSERA_IMAGE=$tag"
