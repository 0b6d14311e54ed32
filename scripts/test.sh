#!/usr/bin/env bash
# The whole test suite: installs what it needs, then format, lints, and every test
# (unit, store on SQLite and PostgreSQL, Docker, end-to-end, py-tes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse a build cache outside the clone when there is one (CI and repeated runs).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
# Incremental data only grows in a cache every run reuses (tens of GB after a while),
# and a run from a fresh clone gains little from it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Each script's exports are taken only when it succeeded (`eval "$(…)"` would hide a failure).
env_lines=$(bash scripts/test-env.sh) && eval "$env_lines"

cargo fmt --all -- --check
bash scripts/check-links.sh
bash scripts/check-deploy.sh
# The plugin runtime's modules are layered: no module imports one that imports it back.
bash scripts/check-module-cycles.sh host/plugin-runtime/src
# The runner knows executors only through their trait: no Docker client in its tree.
if cargo tree --locked -p tessera-runner -e normal | grep bollard >/dev/null; then
  echo "tessera-runner depends on bollard; it must use tessera-executor only" >&2
  exit 1
fi
cargo clippy --workspace --all-targets --locked -- -D warnings
# The guest workspaces: the SDK and the built-in plugins (their logic runs natively in
# `cargo test`; build.sh makes the components that the plugin runtime's tests load).
# Their target directory is the one host/tessera/build.rs builds the built-ins in.
guest_target="$CARGO_TARGET_DIR/wasm-plugins"
for ws in sdk-guest builtin-plugins; do
  (cd "$ws" && CARGO_TARGET_DIR="$guest_target" cargo fmt --all -- --check &&
    CARGO_TARGET_DIR="$guest_target" cargo clippy --all-targets --locked -- -D warnings)
done
# The components' glue exists only on wasm32: linted there too.
(cd builtin-plugins && CARGO_TARGET_DIR="$guest_target" cargo clippy --locked --target wasm32-wasip2 -- -D warnings)
(cd builtin-plugins && CARGO_TARGET_DIR="$guest_target" cargo test --locked)
CARGO_TARGET_DIR="$guest_target" bash builtin-plugins/build.sh
# The example plugins in Python and JavaScript (host/tessera/tests/plugin_languages.rs installs them).
# componentize-py is kept in a venv under ~/.cache/tessera; componentize-js is installed
# into js-router/node_modules from npm's cache (~/.npm), so reruns need no registry.
bash examples/plugins/python-router/build.sh
bash examples/plugins/js-router/build.sh
# The Rust example plugins (each its own workspace; components only, so linted for
# wasm32-wasip2): the engine adapter of tessera:plugin@0.1.0 and the router of 0.2.0.
# host/plugin-runtime/tests/engine.rs and calls.rs load them.
for example in rust-engine rust-router; do
  (cd "examples/plugins/$example" && CARGO_TARGET_DIR="$guest_target" cargo fmt --all -- --check &&
    CARGO_TARGET_DIR="$guest_target" cargo clippy --locked --target wasm32-wasip2 -- -D warnings)
  CARGO_TARGET_DIR="$guest_target" bash "examples/plugins/$example/build.sh"
done
# The deployment suites (TESSERA_SKIP_DEPLOY=1 leaves them out): deploy/compose with
# PostgreSQL and Garage images built here (host/tessera/tests/compose.rs), and a real
# Kubernetes v1.20.2 (built once, cached) with the tessera image loaded into it
# (host/tessera/tests/kubernetes.rs).
if [ "${TESSERA_SKIP_DEPLOY:-0}" != 1 ]; then
  env_lines=$(bash scripts/compose-images.sh) && eval "$env_lines"
  env_lines=$(bash scripts/k8s-cluster.sh up) && eval "$env_lines"
  env_lines=$(bash scripts/k8s-image.sh) && eval "$env_lines"
  export TESSERA_REQUIRE_K8S=1 TESSERA_REQUIRE_COMPOSE=1
fi
export TESSERA_EXAMPLE_PLUGINS="$PWD/examples/plugins/dist"
export TESSERA_REQUIRE_GUEST_PLUGINS=1
# The end-to-end tests are integration tests of the `tessera` package: Cargo builds the
# binary they drive (CARGO_BIN_EXE_tessera) before running them.
cargo test --workspace --locked -- --test-threads="${TESSERA_TEST_THREADS:-4}"
