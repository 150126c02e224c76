import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { loadConfig } from "../src/config";
import { buildNotes, buildSteps, findGo, goEnvOf, type BuildTools } from "../src/build/steps";
import { launchProblem, runtimeLaunch, type Interpreters } from "../src/runtime-commands";

const I: Interpreters = {
  python: "/usr/bin/python3",
  php: "/usr/bin/php",
  ruby: "/usr/bin/ruby",
  mono: "/usr/bin/mono",
};

describe("process backend runtime commands", () => {
  it("starts go's prepared warm binary, php and ruby loaders with their interpreters, and C# on mono", () => {
    const argv = (r: Parameters<typeof runtimeLaunch>[0]) => runtimeLaunch(r, "/rt", I).argv;
    expect(argv("go")).to.deep.equal(["/rt/go/.build/fizz-go-warm"]);
    expect(argv("php")).to.deep.equal(["/usr/bin/php", "/rt/php/server.php"]);
    expect(argv("ruby")).to.deep.equal(["/usr/bin/ruby", "/rt/ruby/server.rb"]);
    expect(argv("dotnet")).to.deep.equal([
      "/usr/bin/mono",
      "--debug",
      "-O=-inline",
      "/rt/dotnet/.build/fizz-dotnet.exe",
    ]);
    expect(argv("python")).to.deep.equal(["/usr/bin/python3", "/rt/python/server.py"]);
    expect(argv("node")).to.deep.equal([process.execPath, "/rt/node/server.mjs"]);
  });

  describe("what makes a runtime unavailable", () => {
    let rt: string;
    beforeEach(() => {
      rt = mkdtempSync(path.join(tmpdir(), "fizz-rt-"));
      chmodSync(rt, 0o755);
    });
    afterEach(() => rmSync(rt, { recursive: true, force: true }));
    const file = (rel: string, mode: number) => {
      const p = path.join(rt, rel);
      mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
      writeFileSync(p, "x");
      chmodSync(p, mode);
      return p;
    };

    it("names a missing interpreter with its variable and Debian package", () => {
      file("php/server.php", 0o644);
      const l = runtimeLaunch("php", rt, { ...I, php: path.join(rt, "nope/php") });
      expect(launchProblem(l, false)).to.equal(
        `interpreter ${path.join(rt, "nope/php")} not found (FIZZ_PHP; Debian: apt-get install php-cli)`,
      );
      const bare = runtimeLaunch("ruby", rt, { ...I, ruby: "no-such-ruby-here" });
      expect(launchProblem(bare, false)).to.match(
        /interpreter no-such-ruby-here not found \(FIZZ_RUBY/,
      );
      const mono = runtimeLaunch("dotnet", rt, { ...I, mono: "/nonexistent/mono" });
      expect(launchProblem(mono, false)).to.match(
        /FIZZ_MONO; Debian: apt-get install mono-runtime/,
      );
    });

    it("names an artifact that was not prepared, with the command that prepares it", () => {
      expect(launchProblem(runtimeLaunch("go", rt, I), false)).to.equal(
        `${rt}/go/.build/fizz-go-warm not found: not prepared (run: node ${rt}/go/prepare.mjs)`,
      );
      file("ruby/server.rb", 0o644);
      expect(
        launchProblem(runtimeLaunch("ruby", rt, { ...I, ruby: process.execPath }), false),
      ).to.equal(undefined);
    });

    it("refuses artifacts instance uids could not use: a 0700 binary, a 0700 .build directory", () => {
      const warm = file("go/.build/fizz-go-warm", 0o700);
      const go = runtimeLaunch("go", rt, I);
      expect(launchProblem(go, false)).to.equal(undefined);
      expect(launchProblem(go, true)).to.equal(
        `${warm} is not executable by instance uids (mode 700)`,
      );
      chmodSync(warm, 0o755);
      expect(launchProblem(go, true)).to.equal(undefined);
      chmodSync(path.join(rt, "go/.build"), 0o700);
      expect(launchProblem(go, true)).to.match(
        /go\/\.build is not traversable by instance uids \(mode 700/,
      );
      chmodSync(path.join(rt, "go/.build"), 0o755);
      file("dotnet/.build/fizz-dotnet.exe", 0o600);
      const dn = runtimeLaunch("dotnet", rt, { ...I, mono: process.execPath });
      expect(launchProblem(dn, true)).to.match(/fizz-dotnet\.exe is not readable by instance uids/);
    });
  });

  it("config: as root the interpreters are Debian's, FIZZ_PHP/FIZZ_RUBY/FIZZ_MONO win, else bare names", () => {
    const root = { isRoot: true, exists: () => true };
    expect(loadConfig({}, "/srv", root).interpreters).to.deep.equal({
      php: "/usr/bin/php",
      ruby: "/usr/bin/ruby",
      mono: "/usr/bin/mono",
    });
    const set = loadConfig(
      { FIZZ_PHP: "/opt/php", FIZZ_RUBY: "/opt/ruby", FIZZ_MONO: "/opt/mono" },
      "/srv",
      root,
    );
    expect(set.interpreters).to.deep.equal({
      php: "/opt/php",
      ruby: "/opt/ruby",
      mono: "/opt/mono",
    });
    const user = loadConfig({}, "/srv", { isRoot: false, exists: () => true });
    expect(user.interpreters).to.deep.equal({ php: "php", ruby: "ruby", mono: "mono" });
    expect(user.python).to.equal("python3");
  });
});

describe("build steps of the compiled and interpreted runtimes", () => {
  const tools: BuildTools = {
    node: "/usr/bin/node",
    npmCli: undefined,
    python: "/usr/bin/python3",
    runtimesDir: "/repo/runtimes",
    go: "/usr/local/go/bin/go",
  };
  const steps = (
    runtime: Parameters<typeof buildSteps>[0]["runtime"],
    files: string[] = [],
    buildCommand?: string,
  ) =>
    buildSteps({
      runtime,
      buildCommand,
      srcDir: "/b/x/src",
      outDir: "/b/x/out",
      tools,
      has: (f) => files.includes(f),
    });

  it("runs runtimes/go/build.sh with SRC_PKG, DEPLOY_PKG, FIZZ_RUNTIMES_DIR, a private GOPATH and Go on PATH", () => {
    expect(steps("go")).to.deep.equal([
      {
        label: "runtimes/go/build.sh",
        argv: ["/repo/runtimes/go/build.sh"],
        env: {
          SRC_PKG: "/b/x/src",
          DEPLOY_PKG: "/b/x/out",
          FIZZ_RUNTIMES_DIR: "/repo/runtimes",
          GOPATH: "/b/x/go",
          GOMODCACHE: "/b/x/go/pkg/mod",
          GOCACHE: "/b/x/.cache/go-build",
        },
        pathDirs: ["/usr/local/go/bin"],
      },
    ]);
  });

  it("runs runtimes/dotnet/build.sh for C#, and a custom build command instead of either", () => {
    expect(steps("dotnet")).to.deep.equal([
      {
        label: "runtimes/dotnet/build.sh",
        argv: ["/repo/runtimes/dotnet/build.sh"],
        env: { SRC_PKG: "/b/x/src", DEPLOY_PKG: "/b/x/out", FIZZ_RUNTIMES_DIR: "/repo/runtimes" },
      },
    ]);
    expect(steps("go", [], "make")).to.deep.equal([
      {
        label: "make",
        argv: ["/bin/sh", "-c", "make"],
        env: { SRC_PKG: "/b/x/src", DEPLOY_PKG: "/b/x/out" },
      },
    ]);
  });

  it("builds nothing for PHP and Ruby, and says vendored dependencies are needed when composer.json or a Gemfile is there", () => {
    expect(steps("php", ["composer.json"])).to.deep.equal([]);
    expect(steps("ruby", ["Gemfile"])).to.deep.equal([]);
    const notes = (runtime: "php" | "ruby", files: string[], buildCommand?: string) =>
      buildNotes({ runtime, buildCommand, has: (f) => files.includes(f) });
    expect(notes("php", ["composer.json"]).join()).to.match(/composer is not run.*vendored/);
    expect(notes("ruby", ["Gemfile"]).join()).to.match(/bundle install is not run.*vendored/);
    expect(notes("php", [])).to.deep.equal([]);
    expect(notes("ruby", ["Gemfile"], "bundle install --local")).to.deep.equal([]);
  });

  it("finds Go from FIZZ_GO, /usr/local/go or Debian, and passes only the module proxy variables", () => {
    expect(findGo({ FIZZ_GO: "/opt/go/bin/go" }, () => false)).to.equal("/opt/go/bin/go");
    expect(findGo({}, (f) => f === "/usr/local/go/bin/go")).to.equal("/usr/local/go/bin/go");
    expect(findGo({}, (f) => f === "/usr/bin/go")).to.equal("/usr/bin/go");
    expect(findGo({}, () => false)).to.equal(undefined);
    expect(
      goEnvOf({
        GOPROXY: "https://proxy.example",
        GOPRIVATE: "x",
        FIZZ_NATS_PASSWORD: "pw",
        HOME: "/root",
      }),
    ).to.deep.equal({ GOPROXY: "https://proxy.example", GOPRIVATE: "x" });
  });
});
