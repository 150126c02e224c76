#!/usr/bin/env bash
# Regenerate tools/k8s-lite/go.mod for one k8s.io/kubernetes release:
#   hack/update-deps.sh v1.35.4
# Generates the staging-module replace list from that release's own go.mod
# (hack/genreplace), then resolves the rest of the graph with go mod tidy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
kube="${1:-$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$root/go.mod")}"
[ -n "$kube" ] || { echo "usage: $0 vX.Y.Z" >&2; exit 2; }
(cd "$here/genreplace" && GOWORK=off GOFLAGS= go run . -kube "$kube" -gomod "$root/go.mod")
cd "$root"
GOWORK=off GOFLAGS=-mod=mod go mod tidy
echo "k8s-lite: go.mod pinned to k8s.io/kubernetes $kube" >&2
