#!/usr/bin/env bash
# The kustomize manifests in deploy/kubernetes render (kubectl's built-in kustomize) and
# keep their promises: the server's rights are a namespaced Role only, SQLite runs one
# replica replaced on update, PostgreSQL several, and every overlay runs the one image.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "deploy/kubernetes: $*" >&2; exit 1; }
for overlay in sqlite postgres s3; do
  out=$(kubectl kustomize "deploy/kubernetes/overlays/$overlay")
  for kind in CustomResourceDefinition Namespace ServiceAccount Role RoleBinding ConfigMap Deployment Service; do
    grep -qx "kind: $kind" <<<"$out" || fail "$overlay has no $kind"
  done
  ! grep -qx "kind: ClusterRole\(Binding\)\?" <<<"$out" || fail "$overlay grants cluster-wide rights"
  grep -q "image: tessera.local/tessera:test" <<<"$out" || fail "$overlay runs another image"
  [ "$(grep -c "app.kubernetes.io/component: operator" <<<"$out")" -ge 2 ] || fail "$overlay: the operator's pods need a selector of their own"
  grep -q "allowPrivilegeEscalation: false" <<<"$out" || fail "$overlay lets the server gain privileges"
  case "$overlay" in
    sqlite|s3)
      grep -q "replicas: 1" <<<"$out" || fail "$overlay: SQLite needs one replica"
      grep -q "type: Recreate" <<<"$out" || fail "$overlay: SQLite must not roll two servers at once" ;;
    postgres)
      grep -q "replicas: 3" <<<"$out" || fail "postgres: several replicas"
      grep -q "TESSERA_DATABASE_URL" <<<"$out" || fail "postgres: no database URL"
      grep -q "TESSERA_SIGNING_KEY" <<<"$out" || fail "postgres: replicas must share a signing key" ;;
  esac
done
echo "deploy/kubernetes: 3 overlays render"
