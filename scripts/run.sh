#!/usr/bin/env bash
# Build and start `tessera serve` with an embedded SQLite store in ./tessera-data.
# Installs and starts the Docker engine first if this Debian machine lacks one.
# Extra arguments go to `tessera serve` (see `tessera serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dockerd >/dev/null 2>&1; then
  echo "[run] installing the Docker engine (docker.io)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
fi
if ! docker info >/dev/null 2>&1; then
  echo "[run] starting dockerd (log: /tmp/tessera-dockerd.log)" >&2
  (dockerd >/tmp/tessera-dockerd.log 2>&1 &)
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
# The built-in plugins are WebAssembly components built with the binary.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "[run] adding the wasm32-wasip2 Rust target" >&2
  rustup target add wasm32-wasip2 >&2
fi
cargo build --release -p tessera
exec target/release/tessera serve "$@"
