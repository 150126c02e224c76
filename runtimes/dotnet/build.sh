#!/bin/sh
# Builds a C# function package (runtimes/dotnet/README.md): compiles every .cs file under the
# source directory (the cwd, $SRC_PKG) into $DEPLOY_PKG/function.dll against Fission's API
# (Fission.DotNetCore.Api.dll) and any .dll the package ships, with debug info whose paths are
# relative to the package (so a function's errors name `lib/db.cs:12`), and copies every other
# file (data, templates, shipped .dll files) as it is. Compile errors name file(line,col).
# Environment (docs: the builder's recipe interface): SRC_PKG, DEPLOY_PKG, FIZZ_RUNTIMES_DIR.
set -eu

src="${SRC_PKG:-$(pwd)}"
out="${DEPLOY_PKG:?DEPLOY_PKG must name the output directory}"
runtimes="${FIZZ_RUNTIMES_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
api="${FIZZ_DOTNET_API_DLL:-$runtimes/dotnet/.build/Fission.DotNetCore.Api.dll}"

if ! command -v mcs >/dev/null 2>&1; then
  echo "build.sh: mcs (Debian package mono-mcs) is not installed" >&2
  exit 1
fi
if [ ! -f "$api" ]; then
  echo "build.sh: $api is missing; run: node runtimes/dotnet/prepare.mjs" >&2
  exit 1
fi

cd "$src"
src="$(pwd -P)"
list="${TMPDIR:-/tmp}/fizz-dotnet-sources.$$"
refs="${TMPDIR:-/tmp}/fizz-dotnet-refs.$$"
trap 'rm -f "$list" "$refs"' EXIT
# Names are read a line at a time below, so a name holding a newline (or any control character)
# could forge a line such as /etc/shadow: such packages are refused before anything is read.
bad="$(LC_ALL=C find . -path '*[[:cntrl:]]*' -print0 | head -z -n 3 | LC_ALL=C tr '\001-\037\177' '?' | tr '\0' '\n')"
if [ -n "$bad" ]; then
  echo "build.sh: refusing file names with control characters (newline, tab, ...): rename them:" >&2
  echo "$bad" >&2
  exit 1
fi
# Relative paths keeping their ./ prefix (a file named -out:x.cs must stay a file to mcs), sorted:
# the build is the same wherever the package sits.
find . -type f -name '*.cs' ! -path './bin/*' ! -path './obj/*' | LC_ALL=C sort > "$list"
find . -type f -name '*.dll' ! -name 'function.dll' ! -name 'Fission.DotNetCore.Api.dll' | LC_ALL=C sort > "$refs"
# mcs splits -r: on commas and semicolons: a library so named would reference something else.
if grep -q '[,;]' "$refs"; then
  echo "build.sh: refusing .dll names with ',' or ';' (mcs would split them): $(grep '[,;]' "$refs" | head -n 1)" >&2
  exit 1
fi
if [ ! -s "$list" ]; then
  if [ -f function.dll ]; then
    # Built elsewhere (mcs or csc): deployed as it is.
    echo "build.sh: no .cs file; deploying the package's own function.dll"
    cp -R . "$out/"
    exit 0
  fi
  echo "build.sh: no .cs file in the package (and no function.dll)" >&2
  exit 1
fi
echo "build.sh: compiling $(wc -l < "$list" | tr -d ' ') C# file(s) with $(mcs --version 2>/dev/null | head -n 1)"

set -- -target:library -debug -optimize+ -nologo \
  "-r:$api" -r:System.dll -r:System.Core.dll -r:Microsoft.CSharp.dll -r:System.Numerics.dll -r:System.Xml.dll \
  "-pathmap:$src/=./" "-out:$out/function.dll"
# Class libraries of the Mono profile referenced when installed (Debian splits them into
# libmono-*-cil packages): e.g. System.Runtime.Serialization for DataContractJsonSerializer.
profile="$(dirname "$(command -v mono || echo /usr/bin/mono)")/../lib/mono/4.5"
for lib in System.Runtime.Serialization System.Xml.Linq System.Data System.Net.Http System.Web System.ServiceModel.Web; do
  if [ -f "$profile/$lib.dll" ]; then set -- "$@" "-r:$lib.dll"; fi
done
while IFS= read -r ref; do set -- "$@" "-r:$src/${ref#./}"; done < "$refs"
while IFS= read -r file; do set -- "$@" "$file"; done < "$list"
mcs "$@"

# Everything else the package holds (data files, templates, the libraries it ships).
# Only regular files (find -type f lists no symlink), each under ./ so no name is an option to cp.
find . -type f ! -name '*.cs' ! -path './bin/*' ! -path './obj/*' | while IFS= read -r file; do
  case "$file" in ./function.dll|./function.dll.mdb|./function.pdb) continue ;; esac
  mkdir -p "$out/$(dirname "$file")"
  cp "$file" "$out/$file"
done
echo "build.sh: wrote $out/function.dll"
