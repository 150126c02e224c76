import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { BuildHarness } from "./build-harness";
import { DEFAULT_RUNTIMES_DIR } from "../src/config";

const GO_HELLO =
  'package main\n\nimport "net/http"\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tw.Write([]byte("hi"))\n}\n';
const GO_BROKEN =
  'package main\n\nimport "net/http"\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tw.Write(undefinedThing)\n}\n';
const CS_HELLO =
  'using Fission.DotNetCore.Api;\n\npublic class FissionFunction\n{\n    public string Execute(FissionContext context)\n    {\n        return "hi";\n    }\n}\n';
const CS_BROKEN = "public class FissionFunction\n{\n    public string Execute() { return 1 }\n}\n";

/** Whether runtimes/<lang>/prepare.mjs has run here (its artifacts are what build.sh needs). */
const prepared = (file: string) => existsSync(path.join(DEFAULT_RUNTIMES_DIR, file));

/**
 * Go and C# packages built as the poolkeeper does (the build's own uid when root, only the
 * documented variables): runtimes/<lang>/build.sh's output is the deployment, a compile error
 * fails the build with the file and line in the log; PHP and Ruby say their dependencies must be
 * vendored and keep the source.
 */
describe("builder (process backend): compiled runtimes and vendored dependencies", function () {
  this.timeout(300_000);
  const h = new BuildHarness();

  before(async () => {
    await h.setUp();
    h.addEnvironment("go", "fizz/env-go");
    h.addEnvironment("dotnet", "fizz/env-dotnet");
    h.addEnvironment("php", "fizz/env-php");
    h.addEnvironment("ruby", "fizz/env-ruby");
    h.answerReports();
    await h.startBuilder();
  });
  after(() => h.tearDown());

  it("builds a Go hello with runtimes/go/build.sh: the deployment is the compiled function, not the source", async function () {
    if (!prepared("go/.build/fizz-go-scan")) this.skip();
    const source = await h.upload({ "hello.go": GO_HELLO });
    await h.requestBuild("go-hello", "go", source);
    const r = await h.finalReport("go-hello");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.log).to.include("$ runtimes/go/build.sh");
    const dir = await h.deployment(r.deployment!);
    expect(statSync(path.join(dir, "fizz-function")).mode & 0o111).to.not.equal(0);
    expect(existsSync(path.join(dir, "hello.go"))).to.equal(false);
    // The build's private Go directories stay in its workspace, out of the deployment.
    expect(existsSync(path.join(dir, "go"))).to.equal(false);
  });

  it("fails a Go build whose code does not compile, with hello.go:<line> in the log and the message", async function () {
    if (!prepared("go/.build/fizz-go-scan")) this.skip();
    const source = await h.upload({ "hello.go": GO_BROKEN });
    await h.requestBuild("go-broken", "go", source);
    const r = await h.finalReport("go-broken");
    expect(r.state).to.equal("failed");
    expect(r.log).to.match(/hello\.go:6:\d+: undefined: undefinedThing/);
    expect(r.message).to.match(/build\.sh exited with code/);
  });

  it("builds a Go package whose go.mod needs a module, fetched through the Go module proxy by the build's uid into its private GOPATH", async function () {
    if (!prepared("go/.build/fizz-go-scan")) this.skip();
    const source = await h.upload({
      "go.mod": "module example.com/uses\n\ngo 1.22\n\nrequire github.com/google/uuid v1.6.0\n",
      "hello.go":
        'package main\n\nimport (\n\t"net/http"\n\n\t"github.com/google/uuid"\n)\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tw.Write([]byte(uuid.NewString()))\n}\n',
    });
    await h.requestBuild("go-module", "go", source);
    const r = await h.finalReport("go-module");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    const dir = await h.deployment(r.deployment!);
    expect(existsSync(path.join(dir, "fizz-function"))).to.equal(true);
    expect(existsSync(path.join(dir, "go"))).to.equal(false);
  });

  it("builds a C# hello with runtimes/dotnet/build.sh into function.dll, and fails one that does not compile naming hello.cs(line,col)", async function () {
    if (!prepared("dotnet/.build/Fission.DotNetCore.Api.dll")) this.skip();
    const ok = await h.upload({ "hello.cs": CS_HELLO });
    await h.requestBuild("cs-hello", "dotnet", ok);
    const r = await h.finalReport("cs-hello");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    const dir = await h.deployment(r.deployment!);
    expect(existsSync(path.join(dir, "function.dll"))).to.equal(true);

    const bad = await h.upload({ "hello.cs": CS_BROKEN });
    await h.requestBuild("cs-broken", "dotnet", bad);
    const f = await h.finalReport("cs-broken");
    expect(f.state).to.equal("failed");
    expect(f.log).to.match(/hello\.cs\(3,\d+\): error CS\d+/);
  });

  it("keeps a PHP package with composer.json as it is, saying dependencies must be vendored", async () => {
    const source = await h.upload({
      "composer.json": '{"require": {"monolog/monolog": "^3"}}',
      "index.php": "<?php\nreturn function () { return 'hi'; };\n",
    });
    await h.requestBuild("php-composer", "php", source);
    const r = await h.finalReport("php-composer");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.log).to.match(
      /composer is not run here \(no Packagist\); dependencies must be vendored/,
    );
    const dir = await h.deployment(r.deployment!);
    expect(await readFile(path.join(dir, "index.php"), "utf8")).to.include("return 'hi'");
  });

  it("keeps a Ruby package with a Gemfile as it is, saying gems must be vendored", async () => {
    const source = await h.upload({
      Gemfile: "source 'https://rubygems.org'\ngem 'json'\n",
      "hello.rb": "def handler\n  'hi'\nend\n",
    });
    await h.requestBuild("ruby-gemfile", "ruby", source);
    const r = await h.finalReport("ruby-gemfile");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.log).to.match(
      /bundle install is not run here \(no rubygems\.org\); gems must be vendored/,
    );
    expect(r.log).to.include("nothing to build: the source is the deployment");
  });
});
