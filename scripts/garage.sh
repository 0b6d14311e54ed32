#!/usr/bin/env bash
# A local S3 store for the tests: Garage 2.5.0, single node, on loopback.
#
# Installs Garage with `cargo install` when it is missing (once: ~12+ minutes on 2 cores;
# the binary is cached under ${TESSERA_CACHE:-~/.cache/tessera}/garage, outside the
# clone), writes its configuration under ${TESSERA_CACHE}/garage-state, starts the server
# if it is not running (S3 API on 127.0.0.1:3900, RPC on 127.0.0.1:3901, admin API on
# 127.0.0.1:3903), applies a one-node layout, and makes the bucket `tessera-test` and a
# key that may read and write it. Idempotent: a rerun reuses the running server, the
# bucket and the key (kept in garage-state/s3-key.env, mode 0600).
#
# Prints the tests' environment as `export` lines on stdout, everything else on stderr:
#   eval "$(bash scripts/garage.sh)"
# `bash scripts/garage.sh stop` stops the server started here; `install` only builds the
# binary.
set -euo pipefail
log() { echo "[garage] $*" >&2; }

version=2.5.0
cache="${TESSERA_CACHE:-$HOME/.cache/tessera}"
root="$cache/garage"
bin="$root/bin/garage"
state="$cache/garage-state"
config="$state/garage.toml"
pidfile="$state/garage.pid"
keyfile="$state/s3-key.env"
s3_addr=127.0.0.1:3900
bucket=tessera-test
key_name=tessera-test

# The server started from here is running: its pid file names a live Garage process (not
# a stranger that got the pid since).
running() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$bin")"* ]]
}

# One run at a time (concurrent test environments share the server and the cache).
mkdir -p "$state"
chmod 700 "$state"
exec 9>"$state/.lock"
flock 9

if [ "${1:-}" = stop ]; then
  if running; then
    log "stopping the server (pid $(cat "$pidfile"))"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 50); do running || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  exit 0
fi

# The binary, built once and cached outside the clone. Its own target directory (not the
# project's) so that an interrupted build resumes; removed once the install succeeded.
if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "cargo:$version "; then
  log "installing Garage $version with cargo into $root (once; ~12+ minutes on 2 cores)"
  started=$SECONDS
  CARGO_TARGET_DIR="$cache/garage-build" \
    cargo install --locked --root "$root" garage --version "$version" >&2
  rm -rf "$cache/garage-build"
  log "installed in $((SECONDS - started)) s"
fi
[ "${1:-}" = install ] && exit 0
garage() { "$bin" -c "$config" "$@"; }

# Configuration: written once (the RPC secret and the node's identity in meta/ must stay
# the same across restarts).
mkdir -p "$state/meta" "$state/data"
if [ ! -f "$config" ]; then
  log "writing $config"
  hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
  umask 077
  cat >"$config" <<EOF
metadata_dir = "$state/meta"
data_dir = "$state/data"
db_engine = "sqlite"
replication_factor = 1
# Test data: no compression (less CPU on a small machine), no fsync.
compression_level = "none"

rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(hex)"

[s3_api]
s3_region = "garage"
api_bind_addr = "$s3_addr"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "$(hex)"
metrics_token = "$(hex)"
EOF
  umask 022
fi

# The server.
if ! running; then
  if (exec 3<>"/dev/tcp/${s3_addr%:*}/${s3_addr#*:}") 2>/dev/null; then
    log "something else already listens on $s3_addr (not the server started from $state)"
    exit 1
  fi
  log "starting the server (log: $state/garage.log)"
  # Its own session, so that the caller's Ctrl-C does not reach it; the pid is the one
  # `exec` keeps.
  rm -f "$pidfile"
  setsid bash -c 'echo $$ >"$1"; exec "$2" -c "$3" server' _ "$pidfile" "$bin" "$config" \
    >>"$state/garage.log" 2>&1 </dev/null 9>&- &
fi
for _ in $(seq 1 100); do
  [ -s "$pidfile" ] && garage status >/dev/null 2>&1 && break
  sleep 0.2
done
if ! running || ! garage status >/dev/null 2>&1; then
  log "the server (pid file $pidfile) does not answer; the end of $state/garage.log:"
  tail -20 "$state/garage.log" >&2
  exit 1
fi

# A one-node layout, applied once.
if garage status 2>/dev/null | grep -q "NO ROLE ASSIGNED"; then
  node=$(garage node id -q 2>/dev/null | cut -d@ -f1)
  log "assigning the layout to node ${node:0:16}…"
  garage layout assign -z dc1 -c 10G "$node" >&2
  current=$(garage layout show 2>/dev/null | sed -n 's/.*[Cc]urrent cluster layout version: *\([0-9]*\).*/\1/p' | head -1)
  garage layout apply --version "$((${current:-0} + 1))" >&2
fi

# The bucket, the key, and the key's rights on the bucket.
for _ in $(seq 1 50); do garage bucket list >/dev/null 2>&1 && break; sleep 0.2; done
if ! garage bucket info "$bucket" >/dev/null 2>&1; then
  log "creating bucket $bucket"
  garage bucket create "$bucket" >&2
fi
key_id="" secret=""
if [ -f "$keyfile" ]; then
  # shellcheck disable=SC1090
  . "$keyfile"
  if [ -z "$key_id" ] || ! garage key info "$key_id" >/dev/null 2>&1; then
    key_id="" secret=""
  fi
fi
if [ -z "$key_id" ]; then
  log "creating key $key_name"
  out=$(garage key create "$key_name")
  key_id=$(sed -n 's/^Key ID: *//p' <<<"$out" | head -1)
  secret=$(sed -n 's/^Secret key: *//p' <<<"$out" | head -1)
  if [ -z "$key_id" ] || [ -z "$secret" ]; then
    log "could not read the new key from garage's output"
    exit 1
  fi
  (umask 077 && printf 'key_id=%s\nsecret=%s\n' "$key_id" "$secret" >"$keyfile")
fi
garage bucket allow --read --write --owner "$bucket" --key "$key_id" >/dev/null

echo "export TESSERA_TEST_S3_ENDPOINT=http://$s3_addr"
echo "export TESSERA_TEST_S3_REGION=garage"
echo "export TESSERA_TEST_S3_ACCESS_KEY=$key_id"
echo "export TESSERA_TEST_S3_SECRET_KEY=$secret"
echo "export TESSERA_TEST_S3_BUCKET=$bucket"
