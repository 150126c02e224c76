#!/usr/bin/env bash
# Build tools/k8s-lite (a real Kubernetes control plane: kube-apiserver,
# kube-controller-manager, kube-scheduler and embedded etcd, from
# k8s.io/kubernetes) once, cache it outside the repo, print its path.
#
#   bin="$(scripts/build-k8s-lite.sh)" && "$bin" up --dir /tmp/k8s
#   scripts/build-k8s-lite.sh --cached   # print the path only if already built, else exit 1
#
# Cache: ${FIZZ_CACHE_DIR:-$HOME/.cache/fizz}/k8s-lite/<kube version>-<hash>/k8s-lite
# where <hash> covers tools/k8s-lite's Go sources, go.mod, go.sum, the Go
# version and this script (it holds the ldflags). A cache hit exits 0 at once.
# A cold build compiles most of Kubernetes: ~8.5 min on 2 cores with an empty
# Go build cache (it runs at nice 19 so other work keeps going); a rebuild
# after editing only tools/k8s-lite takes seconds. Binary: ~126 MB, static.
# Needs Go >= 1.25 and the Go module proxy (GOWORK=off, GOFLAGS=-mod=mod).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$repo/tools/k8s-lite"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "build-k8s-lite: go not found" >&2; exit 1; }

kube="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$src/go.mod")"
[ -n "$kube" ] || { echo "build-k8s-lite: no k8s.io/kubernetes requirement in $src/go.mod" >&2; exit 1; }
hash="$(
  cd "$src"
  { go env GOVERSION
    cat "$repo/scripts/build-k8s-lite.sh"
    find . -path ./hack -prune -o -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print \
      | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done
  } | sha256sum | cut -c1-16
)"
out_dir="${FIZZ_CACHE_DIR:-$HOME/.cache/fizz}/k8s-lite/$kube-$hash"
bin="$out_dir/k8s-lite"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
# --cached: only report a binary that is already built (tests use it; they never build).
if [ "${1:-}" = "--cached" ]; then
  echo "build-k8s-lite: not built for this source ($bin)" >&2
  exit 1
fi

mkdir -p "$out_dir"
exec 9>"$out_dir/.lock"
if command -v flock >/dev/null; then flock 9; fi
if [ -x "$bin" ]; then # built by a concurrent run while we waited
  echo "$bin"
  exit 0
fi

echo "build-k8s-lite: building k8s-lite (k8s.io/kubernetes $kube) -> $bin" >&2
start=$(date +%s)
tmp="$out_dir/k8s-lite.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(
  cd "$src"
  export GOWORK=off GOFLAGS="${GOFLAGS:--mod=mod}" GOMAXPROCS="${GOMAXPROCS:-2}" CGO_ENABLED=0
  # Version stamping as Kubernetes' own hack/lib/version.sh does, so that
  # /version and `kubectl version` report the release instead of v0.0.0-master.
  # (The git commit is not known from the module proxy and stays unset.)
  minor="${kube#v1.}"; minor="${minor%%.*}"
  date="$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null || true)"
  ldflags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    [ -z "$date" ] || ldflags+=" -X $pkg.buildDate=$date"
  done
  nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmp" .
)
mv -f "$tmp" "$bin"
echo "build-k8s-lite: built in $(( $(date +%s) - start ))s, $(du -h "$bin" | cut -f1)" >&2
echo "$bin"
