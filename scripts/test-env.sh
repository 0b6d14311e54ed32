#!/usr/bin/env bash
# Installs and starts what the tests need, when missing: Docker engine, PostgreSQL, the
# local test image, a Python venv with py-tes, Node.js with npm (for the JavaScript
# example plugin and oidc-provider, the OpenID tests' provider), Apache Airflow, and Garage. Idempotent;
# prints the environment for the tests as `export` lines on stdout (everything else to
# stderr).
set -euo pipefail
log() { echo "[test-env] $*" >&2; }

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v docker >/dev/null 2>&1 || need_apt+=(docker.io)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# Node.js and npm build the JavaScript example plugin (examples/plugins/js-router/build.sh).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The container tests: the task network's firewall (iptables), a network namespace of the
# test's own (ip), a certificate for the HTTPS test (openssl) and a TLS client (curl).
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

# The WebAssembly target the built-in plugins are built for (by host/tessera/build.rs).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  log "adding the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2 >&2
fi

# Docker engine.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/tmp/tessera-dockerd.log 2>&1 &)
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /tmp/tessera-dockerd.log"; exit 1; }
fi

# PostgreSQL.
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
  log "starting PostgreSQL $pg_version"
  pg_lsclusters -h | grep -q "^$pg_version main" || pg_createcluster "$pg_version" main >&2
  pg_ctlcluster "$pg_version" main start >&2
fi
for _ in $(seq 1 60); do su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break; sleep 0.5; done
su postgres -c "psql -qAtc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null

# The test image, built locally FROM scratch (no registry is reachable); the script
# installs busybox-static itself when it is missing.
bash "$(dirname "$0")/../tests/images/build.sh" >&2

# py-tes (a real TES client) and schemathesis (an OpenAPI fuzzer) in a venv kept outside
# the clone so reruns are fast.
venv="${TESSERA_CACHE:-$HOME/.cache/tessera}/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tes' >/dev/null 2>&1; then
  log "creating the py-tes venv at $venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "py-tes==1.1.4" >&2
fi
if ! "$venv/bin/python" -c 'import schemathesis' >/dev/null 2>&1; then
  log "installing schemathesis into $venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5" >&2
fi

# oidc-provider (an OpenID-certified provider, npm) for the OpenID tests: the tests start
# scripts/oidc-provider.mjs with it on loopback ports of their own.
oidc="${TESSERA_CACHE:-$HOME/.cache/tessera}/oidc"
if ! [ -f "$oidc/node_modules/oidc-provider/package.json" ]; then
  log "installing oidc-provider into $oidc"
  mkdir -p "$oidc"
  [ -f "$oidc/package.json" ] || echo '{"name":"tessera-oidc-test","private":true}' > "$oidc/package.json"
  (cd "$oidc" && npm install --no-audit --no-fund --silent oidc-provider@8.8.1 >&2)
fi
echo "export TESSERA_TEST_OIDC_NODE_MODULES=$oidc/node_modules"

# Apache Airflow 3 (PyPI) for the Airflow adapter's end-to-end test
# (host/tessera/tests/airflow.rs starts `airflow standalone` itself), in a venv of its own
# outside the clone (~2 minutes to install the first time). TESSERA_SKIP_AIRFLOW=1 leaves
# it out, and the test skips.
if [ "${TESSERA_SKIP_AIRFLOW:-0}" != 1 ]; then
  airflow_venv="${TESSERA_CACHE:-$HOME/.cache/tessera}/airflow-venv"
  if ! [ -x "$airflow_venv/bin/airflow" ] || ! "$airflow_venv/bin/python" -c 'import airflow.providers.standard' >/dev/null 2>&1; then
    log "installing Apache Airflow into $airflow_venv"
    python3 -m venv "$airflow_venv" >&2
    "$airflow_venv/bin/pip" install -q "apache-airflow==3.3.2" >&2
  fi
  echo "export TESSERA_TEST_AIRFLOW=$airflow_venv/bin/airflow"
fi

echo "export TESSERA_TEST_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres"
echo "export TESSERA_REQUIRE_POSTGRES=1"
echo "export TESSERA_TEST_PYTHON=$venv/bin/python"
echo "export TESSERA_REQUIRE_ALL=1"

# Garage, the S3 store the object-store tests (host/objstore) run against: installed once
# with cargo (~12+ minutes on 2 cores; cached under ${TESSERA_CACHE:-~/.cache/tessera}/garage),
# started single-node on 127.0.0.1:3900 with the bucket `tessera-test` and a key for it.
# Its TESSERA_TEST_S3_* export lines pass through.
bash "$(dirname "$0")/garage.sh"
