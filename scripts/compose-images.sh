#!/usr/bin/env bash
# The images deploy/compose/compose.yaml runs, built here without a registry, each
# FROM scratch: tessera (scripts/tessera-image.sh), PostgreSQL from this machine's
# Debian packages (installed when missing) and Garage from the binary scripts/garage.sh
# builds, each with the shared libraries it loads and a static busybox for its
# entrypoint. Skips an image that exists unless --force. Installs Debian's docker-compose
# when missing. Prints the `export` lines.
#
#   eval "$(bash scripts/compose-images.sh [--force])"
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[compose-images] $*" >&2; }
force=0
[ "${1:-}" = --force ] && force=1
cache="${TESSERA_CACHE:-$HOME/.cache/tessera}"
garage_version=$(sed -n 's/^version=//p' scripts/garage.sh)

need=()
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq >&2
  # Not the recommended packages: docker-compose would bring Debian's docker.io.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
# Tagged with a digest of how they are made, so a changed recipe makes a new image.
recipe() { cat "deploy/compose/$1"/* scripts/compose-images.sh | sha256sum | cut -c1-12; }
postgres_image=tessera.local/postgres:$pg_version-$(recipe postgres)
garage_image=tessera.local/garage:$garage_version-$(recipe garage)

# Copies into ROOT, at their paths, the shared libraries FILE... load.
libraries() {
  local root=$1
  shift
  local f lib
  for f in "$@"; do
    ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}' | while read -r lib; do
      [ -e "$root$lib" ] || cp -L --parents "$lib" "$root/"
    done
  done
}

# A root with a static busybox, /tmp, and an unprivileged user 999 whose home (its
# volume) the Dockerfile copies from home/ as the user's.
base_root() {
  local root=$1 name=$2 home=$3
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/../home"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for a in sh cat test sleep rm echo grep sed cut head touch mkdir kill; do ln -sf busybox "$root/bin/$a"; done
  printf 'root:x:0:0:root:/:/bin/sh\n%s:x:999:999::%s:/bin/sh\n' "$name" "$home" > "$root/etc/passwd"
  printf 'root:x:0:\n%s:x:999:\n' "$name" > "$root/etc/group"
  { printf 'passwd: files\ngroup: files\n'; cat deploy/nsswitch.conf; } > "$root/etc/nsswitch.conf"
}

exists() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
ctx=""
trap '[ -z "$ctx" ] || rm -rf "$ctx"' EXIT

if ! exists "$postgres_image"; then
  log "building $postgres_image"
  ctx=$(mktemp -d)
  root="$ctx/root"
  base_root "$root" postgres /var/lib/postgresql
  mkdir -m 700 "$ctx/home/data"
  bindir=/usr/lib/postgresql/$pg_version/bin
  # Not the JIT (LLVM alone is ~100 MB): the entrypoint turns it off.
  tar --exclude='*/bitcode' --exclude='llvmjit*' -cf - "$bindir/postgres" "$bindir/initdb" "$bindir/pg_isready" \
    /usr/lib/postgresql/"$pg_version"/lib /usr/share/postgresql/"$pg_version" /usr/share/zoneinfo 2>/dev/null |
    tar -xf - -C "$root"
  libraries "$root" "$bindir/postgres" "$bindir/initdb" "$bindir/pg_isready" \
    "$root"/usr/lib/postgresql/"$pg_version"/lib/*.so
  cp deploy/compose/postgres/Dockerfile "$ctx/"
  cp deploy/compose/postgres/entrypoint.sh "$root/entrypoint.sh"
  docker build -q -t "$postgres_image" "$ctx" >&2
  rm -rf "$ctx" && ctx=""
fi

if ! exists "$garage_image"; then
  log "building $garage_image"
  bash scripts/garage.sh install >&2
  ctx=$(mktemp -d)
  root="$ctx/root"
  base_root "$root" garage /var/lib/garage
  mkdir -p "$root/usr/local/bin"
  cp "$cache/garage/bin/garage" "$root/usr/local/bin/garage"
  ln -sf /usr/local/bin/garage "$root/bin/garage"
  libraries "$root" "$cache/garage/bin/garage"
  cp deploy/compose/garage/Dockerfile "$ctx/"
  cp deploy/compose/garage/entrypoint.sh "$root/entrypoint.sh"
  docker build -q -t "$garage_image" "$ctx" >&2
  rm -rf "$ctx" && ctx=""
fi

# Images of earlier recipes go (unless a container still uses them).
for image in "$postgres_image" "$garage_image"; do
  docker images --format '{{.Repository}}:{{.Tag}}' "${image%:*}" | grep -vxF "$image" |
    xargs -r docker rmi >/dev/null 2>&1 || true
done
bash scripts/tessera-image.sh >/dev/null
# The names compose.yaml reads.
echo "export TESSERA_POSTGRES_IMAGE=$postgres_image"
echo "export TESSERA_GARAGE_IMAGE=$garage_image"
echo "export TESSERA_IMAGE=tessera.local/tessera:test"
