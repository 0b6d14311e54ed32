#!/usr/bin/env bash
# Builds the local test image tessera-test/busybox:latest: FROM scratch plus a static
# busybox (Debian's busybox-static, at /bin/busybox), so tests never need a registry.
#
# Installs busybox-static with apt-get when no static busybox is there (Debian).
# Idempotent: does nothing when the image already exists, unless --force is given.
#   tests/images/build.sh [--force]
# Environment: BUSYBOX (default /bin/busybox), IMAGE (default tessera-test/busybox:latest).
set -euo pipefail

IMAGE="${IMAGE:-tessera-test/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if [[ "$FORCE" == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

static_busybox() { [[ -x "$BUSYBOX" ]] && ! ldd "$BUSYBOX" >/dev/null 2>&1; }
# Debian's busybox-static puts a static busybox at /bin/busybox (replacing the dynamic
# `busybox` package if that is installed).
if ! static_busybox && [[ "$BUSYBOX" == /bin/busybox ]] && command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: installing Debian's busybox-static" >&2
    as_root=()
    [[ "$(id -u)" == 0 ]] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq busybox-static >&2
fi
if [[ ! -x "$BUSYBOX" ]]; then
    echo "build.sh: $BUSYBOX not found; install Debian's busybox-static" >&2
    exit 1
fi
if ! static_busybox; then
    echo "build.sh: $BUSYBOX is dynamically linked; a FROM scratch image needs busybox-static" >&2
    exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$BUSYBOX" "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-p", "-m", "1777", "/tmp"]
ENV PATH=/bin
DOCKERFILE

# The classic builder works with every engine (no buildx plugin needed) and keeps the
# output quiet; the image is tiny either way.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$ctx" >/dev/null 2>"$ctx/build.err" || {
    cat "$ctx/build.err" >&2
    exit 1
}
echo "built $IMAGE"
