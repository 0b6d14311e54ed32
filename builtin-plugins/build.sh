#!/usr/bin/env bash
# Build every plugin of this workspace as a WebAssembly component and put it in
# dist/<name>.wasm.
#
#   builtin-plugins/build.sh            build all plugins
#   builtin-plugins/build.sh NAME...    build only these
#
# Each plugin names its world in Cargo.toml ([package.metadata.tessera] world = "…").
# When wasm-tools is on PATH (cargo install wasm-tools --locked), every component is
# validated and its imports and exports are checked against that world: a component that
# imports more than its world grants would fail to load in the host, so that fails here.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
target=wasm32-wasip2
out="$here/dist"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "installing the $target target" >&2
    rustup target add "$target"
fi

# name<TAB>world for every member (a directory with a Cargo.toml that names its world).
plugins=()
for manifest in "$here"/*/Cargo.toml; do
    dir="$(dirname "$manifest")"
    name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
    world="$(sed -n '/^\[package\.metadata\.tessera\]/,/^\[/s/^world *= *"\(.*\)"/\1/p' "$manifest")"
    contract="$(sed -n '/^\[package\.metadata\.tessera\]/,/^\[/s/^contract *= *"\(.*\)"/\1/p' "$manifest")"
    if [[ -z "$world" ]]; then
        echo "skipping $(basename "$dir"): no [package.metadata.tessera] world" >&2
        continue
    fi
    if (($# > 0)) && [[ ! " $* " == *" $name "* ]]; then
        continue
    fi
    plugins+=("$name"$'\t'"$world"$'\t'"${contract:-0.1.0}")
done
if ((${#plugins[@]} == 0)); then
    echo "no plugins to build" >&2
    exit 1
fi

pkgs=()
for p in "${plugins[@]}"; do pkgs+=(-p "${p%%$'\t'*}"); done
cargo build --release --locked --target "$target" "${pkgs[@]}"

# What each world exports, and the imports it may have (anything else is refused by the
# host). `types` carries only types; `wasi:*` interfaces come with outgoing HTTP.
# A world's export, at the contract version the plugin's Cargo.toml names
# ([package.metadata.tessera] contract = "0.2.0"; 0.1.0 when unset). `notify` is the
# same interface in both.
export_of() { # world contract
    case "$1" in
        router) echo "tessera:plugin/routing@$2" ;;
        notifier) echo "tessera:plugin/notify@0.1.0" ;;
        filer) echo "tessera:plugin/filing@$2" ;;
        engine-adapter) echo "tessera:plugin/engine@$2" ;;
        *) return 1 ;;
    esac
}
import_allowed() { # world import
    case "$2" in
        tessera:plugin/log@0.1.0 | tessera:plugin/config@0.1.0 | tessera:plugin/types@0.1.0) return 0 ;;
    esac
    case "$1:$2" in
        notifier:wasi:io/* | notifier:wasi:clocks/monotonic-clock@* | notifier:wasi:http/types@* | notifier:wasi:http/outgoing-handler@*) return 0 ;;
        engine-adapter:wasi:io/* | engine-adapter:wasi:clocks/monotonic-clock@* | engine-adapter:wasi:http/types@* | engine-adapter:wasi:http/outgoing-handler@*) return 0 ;;
        filer:wasi:io/* | filer:wasi:clocks/monotonic-clock@* | filer:wasi:http/types@* | filer:wasi:http/outgoing-handler@*) return 0 ;;
        filer:tessera:plugin/workspace@0.1.0 | filer:tessera:plugin/object-store@0.1.0) return 0 ;;
    esac
    return 1
}

have_wasm_tools=1
command -v wasm-tools >/dev/null 2>&1 || have_wasm_tools=0
mkdir -p "$out"
failed=0
printf '\n%-24s %-16s %10s\n' plugin world bytes
for p in "${plugins[@]}"; do
    IFS=$'\t' read -r name world contract <<<"$p"
    src="${CARGO_TARGET_DIR:-$here/target}/$target/release/${name//-/_}.wasm"
    dst="$out/$name.wasm"
    cp "$src" "$dst"
    printf '%-24s %-16s %10s\n' "$name" "$world" "$(wc -c <"$dst" | tr -d ' ')"

    if ((have_wasm_tools)); then
        if ! wasm-tools validate "$dst"; then
            echo "  $name: not a valid component" >&2
            failed=1
            continue
        fi
        wit="$(wasm-tools component wit "$dst" | sed -n '/^world root {/,/^}/p')"
        imports="$(sed -n 's/^ *import \(.*\);$/\1/p' <<<"$wit")"
        exports="$(sed -n 's/^ *export \(.*\);$/\1/p' <<<"$wit")"
        want="$(export_of "$world" "$contract")" || {
            echo "  $name: unknown world $world" >&2
            failed=1
            continue
        }
        if [[ "$exports" != "$want" ]]; then
            echo "  $name: exports [$(echo $exports)], the $world world needs exactly $want" >&2
            failed=1
        fi
        for i in $imports; do
            if ! import_allowed "$world" "$i"; then
                echo "  $name: imports $i, which the $world world does not grant" >&2
                failed=1
            fi
        done
        echo "    exports: $(echo $exports)"
        echo "    imports: $(echo $imports)"
    fi
done
if ((!have_wasm_tools)); then
    echo "(wasm-tools not found: components were not checked; cargo install wasm-tools --locked)" >&2
fi
if ((failed)); then
    echo "build.sh: some components do not match their world" >&2
    exit 1
fi
echo "components in $out"
