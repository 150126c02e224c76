#!/bin/sh
# Builds a Go function (runtimes/go/README.md): the user's package main plus the runtime's
# fizz_*.go files, compiled into one static binary the warm instance execs at specialize.
#
# Run by the builder with the source package as cwd and SRC_PKG (writable source dir), DEPLOY_PKG
# (empty output dir), FIZZ_RUNTIMES_DIR (absolute path of runtimes/), HOME and TMPDIR (private) and
# PATH. Output in DEPLOY_PKG: fizz-function (the binary), fizz-function.entries (its handlers, for
# the warm instance's entrypoint check) and the package's other files (templates, data).
set -eu

: "${SRC_PKG:?}" "${DEPLOY_PKG:?}" "${FIZZ_RUNTIMES_DIR:?}"
RT="$FIZZ_RUNTIMES_DIR/go"
TOOLS="$RT/.build"

GO=go
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; else
    echo "build.sh: no Go toolchain (go on PATH or /usr/local/go/bin/go)" >&2
    exit 1
  fi
fi
for tool in fizz-go-scan fizz-go-cacheprog; do
  if [ ! -x "$TOOLS/$tool" ]; then
    echo "build.sh: $TOOLS/$tool is missing: run node runtimes/go/prepare.mjs" >&2
    exit 1
  fi
done

cd "$SRC_PKG"
# File names with control characters (a newline makes one name read as two: "./a<LF>/etc/passwd")
# are refused, and the copy below never splits names on anything.
bad=$(find . -name '*[[:cntrl:]]*' -print | wc -l)
if [ "$bad" -gt 0 ]; then
  echo "build.sh: $bad file or directory name(s) in the package contain control characters (such as a newline); rename them" >&2
  exit 1
fi
# The build's own outputs: a package file of either name would replace the compiled binary or
# its handler list in the deployment.
for reserved in fizz-function fizz-function.entries; do
  if [ -e "$reserved" ] || [ -L "$reserved" ]; then
    echo "build.sh: $reserved: this name is reserved for the build's output; rename the file" >&2
    exit 1
  fi
done
# The same settings as prepare.mjs's seed build, or no cached package would match.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-modcacherw
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
export GOPATH="${GOPATH:-$HOME/go}"
# No Go telemetry: its background child would keep writing to the private HOME after the build.
telemetry="${XDG_CONFIG_HOME:-$HOME/.config}/go/telemetry"
mkdir -p "$telemetry" && echo off > "$telemetry/mode"
# Per-build cache: reads the read-only seed, writes only here (see tools/cacheprog).
export GOCACHEPROG="$TOOLS/fizz-go-cacheprog"
export FIZZ_GOCACHE_DIR="$TMPDIR/fizz-gocache"
# The seed is a symlink prepare.mjs swaps atomically to a new seed directory: resolved once here,
# so this build keeps reading the same seed however long it runs. prepare.mjs's own seed build
# (FIZZ_GO_SEEDING=1) reads none, so that everything it compiles lands in the new seed.
if [ -z "${FIZZ_GO_SEEDING:-}" ] && [ -d "$TOOLS/gocache-seed" ]; then
  FIZZ_GOCACHE_SEED=$(cd "$TOOLS/gocache-seed" && pwd -P)
  export FIZZ_GOCACHE_SEED
fi

if [ ! -f go.mod ]; then
  version=$("$GO" env GOVERSION | sed 's/^go//; s/[^0-9.].*$//')
  printf 'module fizzfn\n\ngo %s\n' "$version" > go.mod
  echo "no go.mod: using module fizzfn (go $version)"
fi

# Finds the handlers (and refuses func main, fizz_ names, another package) before the runtime's
# own files join the package.
"$TOOLS/fizz-go-scan" . fizz_entry.go "$DEPLOY_PKG/fizz-function.entries"
cp "$RT"/runtime/fizz_*.go "$RT"/runtime/0fizz_*.go .

mod=-mod=mod
if [ -d vendor ]; then mod=-mod=vendor; fi
# -s -w: no symbol table or DWARF (a smaller archive to ship); panics keep file:line.
"$GO" build "$mod" -trimpath -ldflags="-s -w" -o "$DEPLOY_PKG/fizz-function" .

# The package's other files (templates, data) beside the binary: the function's cwd is that dir.
# Regular files only (a symlink is not followed out of the package); names passed as arguments,
# never as lines of text.
find . -type f ! -name '*.go' ! -name go.mod ! -name go.sum ! -path './vendor/*' ! -path './.git/*' \
  -exec sh -c 'for f do mkdir -p "$0/${f%/*}" && cp "$f" "$0/$f" || exit 1; done' "$DEPLOY_PKG" {} +
echo "built $(du -k "$DEPLOY_PKG/fizz-function" | cut -f1) KiB fizz-function"
