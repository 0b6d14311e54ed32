#!/usr/bin/env bash
# Build the Python example router as a component: examples/plugins/dist/python-router.wasm
#
# Uses componentize-py (the version pinned in requirements.txt) from a venv under
# ${TESSERA_CACHE:-$HOME/.cache/tessera}/venv-componentize, created on first use and
# reused after (reinstalled when requirements.txt changes). Needs python3 with venv and
# access to PyPI the first time.
#
# --stub-wasi replaces every WASI import of the Python runtime with a trapping stub, so
# the component imports only what the router world allows (log, config, types). The
# stubs trap if called: the app must not touch files, clocks, randomness, stdio or the
# environment at run time (print() traps; log through the `log` import instead).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
wit="$root/wit"
dist="$(cd "$here/.." && pwd)/dist"
out="$dist/python-router.wasm"
venv="${TESSERA_CACHE:-$HOME/.cache/tessera}/venv-componentize"
stamp="$venv/.tessera-requirements.txt"

if [[ ! -x "$venv/bin/componentize-py" ]] || ! cmp -s "$here/requirements.txt" "$stamp"; then
    echo "python-router: installing componentize-py into $venv" >&2
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv" || {
            echo "python-router: could not create a venv (on Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi
cpy="$venv/bin/componentize-py"

# Bindings for editors and type checkers (componentize-py generates its own copy when it
# builds): regenerated when missing or older than the WIT or the tool.
if [[ ! -f "$here/bindings/wit_world/__init__.py" || "$wit/plugin.wit" -nt "$here/bindings/wit_world/__init__.py" ||
    "$stamp" -nt "$here/bindings/wit_world/__init__.py" ]]; then
    rm -rf "$here/bindings"
    "$cpy" -q -d "$wit" -w router bindings "$here/bindings"
fi

mkdir -p "$dist"
cd "$here"
"$cpy" -q -d "$wit" -w router componentize --stub-wasi -p "$here" app -o "$out"
rm -rf "$here/__pycache__"
echo "python-router: $out ($(wc -c <"$out" | tr -d ' ') bytes, componentize-py $("$cpy" --version | awk '{print $2}'))"
