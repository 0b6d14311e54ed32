#!/usr/bin/env bash
# The tessera image the Kubernetes tests run (scripts/tessera-image.sh), loaded into the
# test cluster's containerd (scripts/k8s-cluster.sh). Prints the `export` line.
#
#   scripts/k8s-image.sh [TAG]     default tag: tessera.local/tessera:test
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-tessera.local/tessera:test}"
line=$(bash scripts/tessera-image.sh "$tag")
archive=$(mktemp)
trap 'rm -f "$archive"' EXIT
docker save -o "$archive" "$tag"
bash scripts/k8s-cluster.sh load "$archive"
echo "$line"
