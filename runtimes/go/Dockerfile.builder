# Fizz builder image for Go functions (fizz/builder-go): runtimes/builder/server.mjs (a Node
# program, so the image carries node next to the Go toolchain) runs runtimes/go/build.sh, which
# compiles the user's package main together with the runtime's fizz_*.go files into one static
# binary. The read-only build-cache seed (the standard library, compiled by prepare.mjs at image
# build time, as root) is baked in, so a build compiles only the function's own code.
# Build context: runtimes/. `docker build -f go/Dockerfile.builder -t fizz/builder-go runtimes`
FROM node:20-bookworm-slim AS node

# The same Go release as fizz/env-go's warm binary (not required: the exec handoff shares no
# code between the two binaries, unlike Fission's plugins, but it keeps behaviour identical).
FROM golang:1.26-bookworm
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fizz \
 && mkdir /work && chown fizz /work

COPY builder/server.mjs builder/build.mjs /builder/
COPY go/build.sh go/prepare.mjs /runtimes/go/
COPY go/runtime /runtimes/go/runtime
COPY go/tools /runtimes/go/tools
# The warm binary, the scanner, the cache tool and the seed: world-readable, owned by root, so no
# build (running as uid 10001) can change what another build reads from the cache.
RUN node /runtimes/go/prepare.mjs && rm -rf /root/.cache/go-build

# No tini: the server must be PID 1 of the pod's PID namespace (build.mjs killLeftovers).
ENV PORT=8888 FIZZ_WORKDIR=/work FIZZ_RUNTIMES_DIR=/runtimes GOPROXY=https://proxy.golang.org,direct
USER 10001
EXPOSE 8888
CMD ["node", "/builder/server.mjs"]
