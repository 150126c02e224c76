# Fizz builder image for C# packages (fizz/builder-dotnet): runtimes/builder/server.mjs (Node),
# started once per build by the poolkeeper on the kubernetes backend, runs runtimes/dotnet/build.sh,
# which compiles the package's .cs files with Mono's mcs into function.dll.
# Build context: runtimes/. `docker build -f runtimes/dotnet/Dockerfile.builder -t fizz/builder-dotnet runtimes`
FROM node:20-bookworm-slim AS node

FROM debian:bookworm-slim
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN apt-get update \
 && apt-get install -y --no-install-recommends mono-mcs libmono-system-runtime-serialization4.0-cil \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fizz \
 && mkdir /work && chown fizz /work

# The recipe and the API library functions compile against, where build.sh looks for them.
COPY dotnet/build.sh /runtimes/dotnet/build.sh
COPY dotnet/api /runtimes/dotnet/api
RUN mkdir -p /runtimes/dotnet/.build \
 && mcs -target:library -debug -optimize+ -nologo \
      -out:/runtimes/dotnet/.build/Fission.DotNetCore.Api.dll /runtimes/dotnet/api/*.cs \
 && chmod -R a+rX /runtimes

WORKDIR /builder
COPY builder/server.mjs builder/build.mjs ./

# No tini: the server must be PID 1 of the pod's PID namespace (build.mjs killLeftovers).
ENV PORT=8888 FIZZ_WORKDIR=/work FIZZ_RUNTIMES_DIR=/runtimes
USER 10001
EXPOSE 8888
CMD ["node", "/builder/server.mjs"]
