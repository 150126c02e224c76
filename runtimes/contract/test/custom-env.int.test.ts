// Custom environments: the example Perl environment (examples/custom-env) passes the core
// contract, and `npm run test:runtime -- --env <dir>` checks a custom environment from its
// fizz-runtime.json: exit 0 when it conforms, non-zero when it does not, a usage error naming
// --env for anything else.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { packageArchive } from "../archive.js";
import { describeCoreContract } from "../contract-core.js";
import { ME, push } from "../contract-lifecycle.js";
import { type Runtime, postJson, request, specializeArchive, specializeBody } from "../harness.js";
import { loadCustomEnv } from "../custom-env.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLE = path.join(ROOT, "examples/custom-env");

const perl = loadCustomEnv(EXAMPLE);
describeCoreContract(perl);

describe("perl runtime (examples/custom-env): Perl only", function () {
  this.timeout(20_000);
  let rt: Runtime | undefined;
  afterEach(() => rt?.kill());

  it("refuses a package with 500 FUNCTION_LOAD_FAILED saying to deploy a single file", async () => {
    rt = await perl.start();
    const archive = await packageArchive({ "hello.pl": perl.fixtures.hello.source });
    const res = await specializeArchive(rt, archive);
    expect(res.status).to.equal(500);
    expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
    expect(res.error().message).to.include("fizz fn create --code");
    expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal("failed");
  });

  it("answers hashes and arrays as JSON, a hash with status/headers/body as a response, and a PSGI triple", async () => {
    rt = await perl.start();
    const source = [
      "sub handler {",
      "    my ($c) = @_;",
      "    my $kind = $c->{query}{kind};",
      "    return { status => 201, headers => { 'X-Custom' => 'yes' }, body => { created => 1 } } if $kind eq 'created';",
      "    return [200, ['Content-Type' => 'text/html'], ['<p>', 'psgi</p>']] if $kind eq 'psgi';",
      "    return [1, 'two'] if $kind eq 'list';",
      "    return { method => $c->{method}, path => $c->{path}, params => $c->{params}, id => $c->{request_id} };",
      "}",
    ].join("\n");
    expect((await push(rt, { filename: "kinds.pl", source })).status).to.equal(200);
    const call = (query: string, headers: Record<string, string> = {}) =>
      request(rt!.url, { path: `/users/42?${query}`, headers: { ...ME, ...headers } });
    const created = await call("kind=created");
    expect(created.status).to.equal(201);
    expect(created.headers["x-custom"]).to.equal("yes");
    expect(created.json).to.deep.equal({ created: 1 });
    const psgi = await call("kind=psgi");
    expect(psgi.headers["content-type"]).to.equal("text/html");
    expect(psgi.text).to.equal("<p>psgi</p>");
    expect((await call("kind=list")).json).to.deep.equal([1, "two"]);
    const echo = await call("kind=echo", { "x-request-id": "req-1", "X-Fizz-Params-userId": "42" });
    expect(echo.json).to.deep.equal({
      method: "GET",
      path: "/users/42",
      params: { userId: "42" },
      id: "req-1",
    });
  });

  it("answers exit and a header name that would split the response as FUNCTION_ERROR, and keeps serving", async () => {
    rt = await perl.start();
    const source = [
      "sub handler {",
      "    my ($c) = @_;",
      "    exit 3 if $c->{query}{kind} eq 'exit';",
      "    return { status => 200, headers => { \"X-A: 1\\r\\nSet-Cookie\" => 'x' }, body => 'no' } if $c->{query}{kind} eq 'split';",
      "    return 'still here';",
      "}",
    ].join("\n");
    expect((await push(rt, { filename: "edge.pl", source })).status).to.equal(200);
    for (const kind of ["exit", "split"]) {
      const res = await request(rt.url, { path: `/?kind=${kind}`, headers: ME });
      expect(res.status, kind).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
      expect(res.headers["set-cookie"]).to.equal(undefined);
    }
    expect((await request(rt.url, { headers: ME })).text).to.equal("still here");
  });

  it("writes secrets as 0400 files and gives the function its env, never the specialize token", async () => {
    rt = await perl.start({ FIZZ_SPECIALIZE_TOKEN: "tok-0123456789" });
    const source = [
      "sub handler {",
      "    open my $fh, '<', \"$ENV{FIZZ_SECRETS_DIR}/default/db/password\" or die $!;",
      "    my $password = <$fh>;",
      "    my $mode = sprintf '%o', (stat \"$ENV{FIZZ_SECRETS_DIR}/default/db/password\")[2] & 0777;",
      "    return join ',', $password, $mode, $ENV{GREETING}, $ENV{FIZZ_SPECIALIZE_TOKEN} // 'absent';",
      "}",
    ].join("\n");
    expect((await push(rt, { filename: "secret.pl", source })).status).to.equal(401);
    const body = {
      ...specializeBody("secret.pl", source),
      env: { GREETING: "hi" },
      secrets: { db: { password: Buffer.from("pa55").toString("base64") } },
    };
    const ok = await postJson(rt.url, "/v2/specialize", body, {
      "x-fizz-specialize-token": "tok-0123456789",
    });
    expect(ok.status, ok.text).to.equal(200);
    expect((await request(rt.url, { headers: ME })).text).to.equal("pa55,400,hi,absent");
    expect(rt.stderr() + rt.stdout()).to.not.include("pa55");
  });
});

function testRuntime(env: string) {
  return spawnSync(process.execPath, ["scripts/test-runtime.mjs", "--env", env], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 300_000,
  });
}

describe("npm run test:runtime -- --env <custom environment>", function () {
  this.timeout(300_000);
  let scratch: string;
  before(() => (scratch = mkdtempSync(path.join(tmpdir(), "fizz-custom-env-"))));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("exits 0 for the example Perl environment, having run the core suite", () => {
    const run = testRuntime("examples/custom-env");
    expect(run.status, run.stdout + run.stderr).to.equal(0);
    expect(run.stdout).to.include("perl runtime: the core runtime contract");
    // The example names a twicePrinter, so the abandoned-call check watches the function itself.
    expect(run.stdout).to.include("keeps the call's slot until its function returns");
    expect(run.stdout).to.match(/\d+ passing/);
    expect(run.stdout).to.not.match(/failing/);
  });

  it("exits non-zero for an environment whose runtime does not keep the contract", () => {
    const dir = path.join(scratch, "broken");
    cpSync(EXAMPLE, dir, { recursive: true });
    // The runtime never comes up: every check fails, none is skipped.
    const example = JSON.parse(
      readFileSync(path.join(EXAMPLE, "fizz-runtime.json"), "utf8"),
    ) as object;
    const config = { ...example, command: ["perl", "-e", "exit 3"] };
    writeFileSync(path.join(dir, "fizz-runtime.json"), JSON.stringify(config));
    const run = testRuntime(dir);
    expect(run.status).to.not.equal(0);
    expect(run.stdout).to.match(/\d+ failing/);
  });

  it("fails with a usage error naming --env for an unknown environment", () => {
    for (const args of [["--env", "nope"], []]) {
      const run = spawnSync(process.execPath, ["scripts/test-runtime.mjs", ...args], {
        cwd: ROOT,
        encoding: "utf8",
      });
      expect(run.status).to.equal(2);
      expect(run.stderr).to.include("usage: npm run test:runtime -- --env <name>");
      if (args.length) expect(run.stderr).to.include('--env "nope"');
    }
  });

  it("names what is wrong in a fizz-runtime.json", () => {
    const dir = path.join(scratch, "bad-config");
    mkdirSync(dir);
    const write = (value: unknown) =>
      writeFileSync(path.join(dir, "fizz-runtime.json"), JSON.stringify(value));
    write({ name: "x", command: ["perl"], fixtures: { hello: "hello.pl" } });
    expect(() => loadCustomEnv(dir)).to.throw(
      /fixtures lacks echo, slow, throws, tokenLeak, loadFailure/,
    );
    write({ name: "x", command: "perl server.pl", fixtures: {} });
    expect(() => loadCustomEnv(dir)).to.throw(/"command" must be a non-empty argv array/);
    const fixtures = {
      ...{ hello: "h", echo: "e", slow: "s", throws: "t", tokenLeak: "l" },
      loadFailure: { file: "b" },
    };
    write({ name: "x", command: ["perl"], fixtures });
    expect(() => loadCustomEnv(dir)).to.throw(/loadFailure must be \{"file": \.\.\., "line"/);
    write({
      name: "x",
      command: ["perl"],
      fixtures: { ...fixtures, loadFailure: { file: "b", line: 3 } },
    });
    expect(() => loadCustomEnv(dir)).to.throw(/fixtures\.hello: no file/);
    write({ name: "x", command: ["perl"], packages: "yes", fixtures });
    expect(() => loadCustomEnv(dir)).to.throw(/"packages" must be true or false/);
  });

  it("reads callMarkers' fixture and flags, and names what is wrong in them", () => {
    const dir = path.join(scratch, "markers");
    cpSync(EXAMPLE, dir, { recursive: true });
    const example = JSON.parse(
      readFileSync(path.join(EXAMPLE, "fizz-runtime.json"), "utf8"),
    ) as object;
    const write = (callMarkers: unknown) =>
      writeFileSync(
        path.join(dir, "fizz-runtime.json"),
        JSON.stringify({ ...example, callMarkers }),
      );
    writeFileSync(path.join(dir, "logs.pl"), "sub handler { 'quiet' }\n");
    write({ fixture: "logs.pl", later: false });
    expect(loadCustomEnv(dir).callMarkers).to.deep.equal({
      logs: { filename: "logs.pl", source: "sub handler { 'quiet' }\n" },
      later: false,
      concurrent: true,
    });
    expect(loadCustomEnv(EXAMPLE).callMarkers).to.equal(undefined);
    write(true);
    expect(() => loadCustomEnv(dir)).to.throw(/"callMarkers" must be \{"fixture": <file>/);
    write({ fixture: "logs.pl", concurrent: "no" });
    expect(() => loadCustomEnv(dir)).to.throw(/"callMarkers" must be/);
    write({ fixture: "logs.pl", late: false });
    expect(() => loadCustomEnv(dir)).to.throw(/unknown: late/);
    write({ fixture: "nope.pl" });
    expect(() => loadCustomEnv(dir)).to.throw(/callMarkers\.fixture: no file/);
  });

  it("reads the twicePrinter fixture, and names what is wrong in it", () => {
    const dir = path.join(scratch, "twice");
    cpSync(EXAMPLE, dir, { recursive: true });
    const example = JSON.parse(
      readFileSync(path.join(EXAMPLE, "fizz-runtime.json"), "utf8"),
    ) as Record<string, unknown>;
    const write = (twicePrinter: unknown) =>
      writeFileSync(
        path.join(dir, "fizz-runtime.json"),
        JSON.stringify({ ...example, twicePrinter }),
      );
    expect(loadCustomEnv(EXAMPLE).twicePrinter?.filename).to.equal("twice.pl");
    writeFileSync(path.join(dir, "t.pl"), "sub run { 'twice' }\n");
    write({ file: "t.pl", entrypoint: "run" });
    expect(loadCustomEnv(dir).twicePrinter).to.deep.equal({
      filename: "t.pl",
      source: "sub run { 'twice' }\n",
      entrypoint: "run",
    });
    write("nope.pl");
    expect(() => loadCustomEnv(dir)).to.throw(/fizz-runtime\.json: twicePrinter: no file/);
    write(7);
    expect(() => loadCustomEnv(dir)).to.throw(/twicePrinter must be a file path/);
    const { twicePrinter: _left, ...without } = example;
    writeFileSync(path.join(dir, "fizz-runtime.json"), JSON.stringify(without));
    expect(loadCustomEnv(dir).twicePrinter).to.equal(undefined);
  });
});
