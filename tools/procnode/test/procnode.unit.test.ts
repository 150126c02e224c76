import { existsSync } from "node:fs";
import { expect } from "chai";
import { defaultImageMap, parseImage } from "../src/images";
import { IpPool } from "../src/ip-pool";
import { microTime } from "../src/kube";
import { expand, mapMountPaths, quantity } from "../src/pod-env";

describe("procnode image map", () => {
  it("maps the Fizz runtimes under any registry prefix or tag", () => {
    expect(defaultImageMap("fizz/env-node")?.command.at(-1)).to.match(
      /runtimes\/node\/server\.mjs$/,
    );
    expect(defaultImageMap("ghcr.io/acme/fizz/env-python:3.12")?.command).to.deep.include(
      "python3",
    );
  });

  it("maps fizz/env-go, -php, -ruby and -dotnet to the process backend's commands", () => {
    expect(defaultImageMap("fizz/env-go")?.command).to.have.length(1);
    expect(defaultImageMap("fizz/env-go")?.command[0]).to.match(
      /runtimes\/go\/\.build\/fizz-go-warm$/,
    );
    const php = defaultImageMap("ghcr.io/acme/fizz/env-php:8.2")?.command;
    expect(php?.[0]).to.match(/php$/);
    expect(php?.[1]).to.match(/runtimes\/php\/server\.php$/);
    const ruby = defaultImageMap("fizz/env-ruby")?.command;
    expect(ruby?.[0]).to.match(/ruby$/);
    expect(ruby?.[1]).to.match(/runtimes\/ruby\/server\.rb$/);
    const dotnet = defaultImageMap("fizz/env-dotnet@sha256:abc")?.command;
    expect(dotnet?.[0]).to.match(/mono$/);
    expect(dotnet?.slice(1, 3)).to.deep.equal(["--debug", "-O=-inline"]);
    expect(dotnet?.[3]).to.match(/runtimes\/dotnet\/\.build\/fizz-dotnet\.exe$/);
    for (const image of ["fizz/env-go", "fizz/env-php", "fizz/env-ruby", "fizz/env-dotnet"])
      expect(defaultImageMap(image)?.allowCommand, image).to.equal(undefined);
  });

  it("runs every fizz/builder-<runtime> image as the builder program with this repo's runtimes/ and Go on PATH", () => {
    for (const image of [
      "fizz/builder-node",
      "fizz/builder-python",
      "fizz/builder-go",
      "reg:5000/fizz/builder-dotnet:1",
    ]) {
      const run = defaultImageMap(image);
      expect(run?.command.at(-1), image).to.match(/runtimes\/builder\/server\.mjs$/);
      expect(run?.env?.FIZZ_RUNTIMES_DIR, image).to.match(/\/runtimes$/);
    }
    const go = defaultImageMap("fizz/builder-go");
    if (existsSync("/usr/local/go/bin/go") && !process.env.FIZZ_GO)
      expect(go?.env?.PATH?.split(":")).to.include("/usr/local/go/bin");
    expect(defaultImageMap("fizz/builder-rust")).to.equal(undefined);
  });

  it("runs fizz/<service> images through tsx from an absolute loader path", () => {
    const run = defaultImageMap("registry.local:5000/fizz/gateway:latest");
    expect(run?.command.at(-1)).to.match(/services\/gateway\/src\/main\.ts$/);
    expect(run?.command[2]).to.match(/^file:\/\/.*tsx/);
    expect(defaultImageMap("acme/gateway:1")).to.equal(undefined);
  });

  it("binds nats-server and redis-server to the pod IP unless the args already do", () => {
    const nats = defaultImageMap("nats:2.10-alpine");
    expect(nats?.args?.(["-js"], { podIP: "127.0.0.5" })).to.deep.equal(["-js", "-a", "127.0.0.5"]);
    expect(nats?.args?.(["--addr=127.0.0.9"], { podIP: "127.0.0.5" })).to.deep.equal([
      "--addr=127.0.0.9",
    ]);
    const redis = defaultImageMap("redis:7-alpine");
    expect(
      redis?.args?.(["redis-server", "--appendonly", "yes"], { podIP: "127.0.0.6" }),
    ).to.deep.equal(["--appendonly", "yes", "--bind", "127.0.0.6"]);
  });

  it("maps nothing it does not know, and only official images by short name", () => {
    expect(defaultImageMap("postgres:16")).to.equal(undefined);
    expect(defaultImageMap("acme/nats:1")).to.equal(undefined);
    expect(defaultImageMap("busybox")?.allowCommand).to.equal(true);
    expect(defaultImageMap("fizz/env-node")?.allowCommand).to.equal(undefined);
  });

  it("parses registry, repository, tag and digest", () => {
    expect(parseImage("host:5000/a/b:1.0@sha256:abc")).to.deep.equal({
      segments: ["host:5000", "a", "b"],
      repo: "b",
      tag: "1.0",
    });
  });
});

describe("procnode pod env", () => {
  it("expands $(VAR) like Kubernetes, leaving unknown references and unescaping $$", () => {
    expect(expand("$(A)-$(B)-$$(A)", { A: "x" })).to.equal("x-$(B)-$(A)");
  });

  it("rewrites mount paths in args and env values, longest mount first", () => {
    const mounts = [
      { mountPath: "/data", hostPath: "/tmp/p/volumes/data" },
      { mountPath: "/data/sub", hostPath: "/tmp/p/volumes/sub" },
    ];
    expect(mapMountPaths("/data", mounts)).to.equal("/tmp/p/volumes/data");
    expect(mapMountPaths("/data/x.db", mounts)).to.equal("/tmp/p/volumes/data/x.db");
    expect(mapMountPaths("--dir=/data/sub/y", mounts)).to.equal("--dir=/tmp/p/volumes/sub/y");
    expect(mapMountPaths("/database", mounts)).to.equal("/database");
  });

  it("parses resource quantities", () => {
    expect(quantity("250m")).to.equal(0.25);
    expect(quantity("128Mi")).to.equal(128 * 1024 * 1024);
    expect(() => quantity("lots")).to.throw(/bad quantity/);
  });

  it("formats MicroTime with six fractional digits", () => {
    expect(microTime(new Date("2026-01-02T03:04:05.678Z"))).to.equal("2026-01-02T03:04:05.678000Z");
  });
});

describe("procnode pod IPs", () => {
  it("hands out the lowest free 127.0.0.N from 2, reuses released ones, and keeps a preferred free IP", () => {
    const pool = new IpPool("127.0.0");
    expect([pool.allocate(), pool.allocate()]).to.deep.equal(["127.0.0.2", "127.0.0.3"]);
    pool.release("127.0.0.2");
    expect(pool.allocate()).to.equal("127.0.0.2");
    expect(pool.allocate("127.0.0.40")).to.equal("127.0.0.40");
    expect(pool.allocate("127.0.0.40")).to.equal("127.0.0.4");
    expect(pool.allocate("10.0.0.1")).to.equal("127.0.0.5");
  });

  it("refuses a base that is not three octets", () => {
    expect(() => new IpPool("127.0")).to.throw(/three octets/);
  });
});
