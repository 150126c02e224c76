import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { apiError, fizz } from "./support/cli.js";
import { closedUrl, FakeServer } from "./support/fake-server.js";

describe("fizz fn test", () => {
  let gateway: FakeServer;

  before(async () => {
    gateway = await FakeServer.start();
  });
  afterEach(() => gateway.reset());
  after(() => gateway.close());

  const cli = (...argv: string[]) => fizz(["fn", "test", ...argv], { gateway: gateway.url });

  it("GETs /function/<name> and prints the response body verbatim, without adding a newline", async () => {
    gateway.on("GET", "/function/hello", {
      body: '{"hello":"world"}',
      headers: { "content-type": "application/json" },
    });

    const result = await cli("--name", "hello");

    expect(result.code).to.equal(0);
    expect(gateway.calls()).to.deep.equal(["GET /function/hello"]);
    expect(result.stdout).to.equal('{"hello":"world"}');
    expect(result.stderr).to.equal("");
  });

  it("addresses /function/<name>.<namespace> outside the default namespace, with subpath and query", async () => {
    gateway.on("GET", "/function/hello.team-a/users/42?a=1&b=2", { body: "ok" });

    const result = await fizz(
      [
        "-n",
        "team-a",
        "fn",
        "test",
        "--name",
        "hello",
        "--subpath",
        "users/42",
        "--query",
        "?a=1&b=2",
      ],
      { gateway: gateway.url },
    );

    expect(result.code).to.equal(0);
    expect(gateway.calls()).to.deep.equal(["GET /function/hello.team-a/users/42?a=1&b=2"]);
  });

  it("POSTs --body by default, labels JSON as JSON and sends repeated --header values", async () => {
    gateway.on("POST", "/function/hello", { body: "created" });

    const result = await cli(
      "--name",
      "hello",
      "--body",
      '{"n":1}',
      "--header",
      "X-Trace: abc",
      "-H",
      "X-Tenant:  acme ",
    );

    expect(result.code).to.equal(0);
    const req = gateway.requests[0];
    expect(req?.method).to.equal("POST");
    expect(req?.body.toString()).to.equal('{"n":1}');
    expect(req?.headers["content-type"]).to.equal("application/json");
    expect(req?.headers["x-trace"]).to.equal("abc");
    expect(req?.headers["x-tenant"]).to.equal("acme");
  });

  it("sends the bytes of --body @file with the method given and an explicit content type", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fizz-cli-"));
    try {
      const file = join(dir, "payload.bin");
      const bytes = Buffer.from([0, 1, 2, 250, 255]);
      await writeFile(file, bytes);
      gateway.on("PUT", "/function/hello", { body: "stored" });

      const result = await cli(
        "--name",
        "hello",
        "--body",
        `@${file}`,
        "--method",
        "put",
        "-H",
        "Content-Type: image/png",
      );

      expect(result.code).to.equal(0);
      expect(result.stdout).to.equal("stored");
      expect(gateway.requests[0]?.body.equals(bytes)).to.equal(true);
      expect(gateway.requests[0]?.headers["content-type"]).to.equal("image/png");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("on a 500 prints 'Error: HTTP 500: <error.message>' to stderr and exits 1", async () => {
    gateway.on("GET", "/function/hello", {
      status: 500,
      json: apiError("FUNCTION_ERROR", "hello.mjs:3: TypeError: x is not a function"),
    });

    const result = await cli("--name", "hello");

    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal("");
    expect(result.stderr).to.equal(
      "Error: HTTP 500: hello.mjs:3: TypeError: x is not a function\n",
    );
  });

  it("on a non-2xx answer that is not the API's JSON prints the body text", async () => {
    gateway.on("GET", "/function/teapot", { status: 418, body: "I'm a teapot\n" });

    const result = await cli("--name", "teapot");

    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal("Error: HTTP 418: I'm a teapot\n");
  });

  it("refuses --body with --method GET as a usage error", async () => {
    const result = await cli("--name", "hello", "--method", "GET", "--body", "x");

    expect(result.code).to.equal(2);
    expect(gateway.requests).to.have.length(0);
  });

  it("rejects a --header without a colon as a usage error", async () => {
    const result = await cli("--name", "hello", "-H", "X-Trace abc");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("expected 'Name: value'");
  });

  it("-t/--timeout gives up on a gateway that does not answer, naming the limit", async () => {
    // A gateway that accepts the request and never answers.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const result = await fizz(["fn", "test", "--name", "hello", "-t", "200ms"], {
        gateway: url,
      });

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(`Error: the gateway at ${url} did not answer within 0.2s\n`);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it("--timeout with something that is not a duration is a usage error", async () => {
    const result = await cli("--name", "hello", "--timeout", "soon");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("must be a duration such as 30s");
    expect(gateway.calls()).to.deep.equal([]);
  });

  it("names the gateway when nothing listens there", async () => {
    const url = await closedUrl();

    const result = await fizz(["fn", "test", "--name", "hello"], { gateway: url });

    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal(
      `Error: cannot reach the gateway at ${url}: is "npm start" running?\n`,
    );
  });
});
