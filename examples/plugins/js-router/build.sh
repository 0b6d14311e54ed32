#!/usr/bin/env bash
# Build the JavaScript example router as a component: examples/plugins/dist/js-router.wasm
#
# `npm ci` installs the pinned componentize-js and jco (package-lock.json) into this
# example's node_modules; needs node and npm, and access to the npm registry the first
# time. componentize-js embeds the script in StarlingMonkey (SpiderMonkey built for WASI).
#
# Every WASI feature is disabled (stdio, random, clocks, http, fetch-event), so the
# component imports only what the router world allows (log, config, types): console.*,
# Math.random, Date.now, timers and fetch must not be used at run time (log through the
# `log` import instead).
#
# componentize-js is called directly rather than through `jco componentize`: jco 1.35.0
# reads the WIT through its own WASI-shimmed wasm-tools, which is given no preopened
# directory and fails with "failed to get path metadata" on any path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
wit="$root/wit"
dist="$(cd "$here/.." && pwd)/dist"
out="$dist/js-router.wasm"

cd "$here"
# npm ci wipes node_modules and installs it anew: skip it while node_modules is newer than
# package.json and package-lock.json (npm writes node_modules/.package-lock.json last).
stamp=node_modules/.package-lock.json
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
    npm ci --include=dev --prefer-offline --no-audit --no-fund --loglevel=error
fi

mkdir -p "$dist"
node_modules/.bin/componentize-js "$here/router.js" \
    --wit "$wit" \
    --world-name router \
    --disable stdio random clocks http fetch-event \
    -o "$out"
echo "js-router: $out ($(wc -c <"$out" | tr -d ' ') bytes, componentize-js $(node -p 'require("./node_modules/@bytecodealliance/componentize-js/package.json").version'))"
