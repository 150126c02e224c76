import { expect } from "chai";
import { get, startPlatform, type Platform } from "./helpers";

/**
 * The walking skeleton's user flow, verbatim: environments and functions created with the CLI,
 * served through the gateway by real runtime processes, over real NATS and Redis.
 */
describe("hello world, end to end on the embedded default", function () {
  this.timeout(120_000);
  let p: Platform;

  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") console.error(p.logs.slice(-60).join("\n"));
  });

  async function ok(...args: string[]) {
    const r = await p.fizz(...args);
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  it("serves the Python hello world at its route", async () => {
    await p.file("hello.py", 'def main(context):\n    print("Hello, world!")\n');
    await ok("env", "create", "--name", "python", "--image", "fizz/env-python");
    await ok(
      "fn",
      "create",
      "--name",
      "hello",
      "--env",
      "python",
      "--code",
      "hello.py",
      "--route",
      "/hello",
    );
    const cold = await get(`${p.gatewayUrl}/hello`);
    expect(cold.status, cold.text).to.equal(200);
    expect(cold.text).to.equal("Hello, world!\n");
    const warm = await get(`${p.gatewayUrl}/hello`);
    expect(warm.text).to.equal("Hello, world!\n");
    console.log(`      python hello: cold ${cold.ms.toFixed(1)} ms, warm ${warm.ms.toFixed(1)} ms`);
  });

  it("serves the Node hello world at its route", async () => {
    await p.file(
      "hello.js",
      'module.exports = async (context) => ({ status: 200, body: "Hello, world!\\n" })\n',
    );
    await ok("env", "create", "--name", "nodejs", "--image", "fizz/env-node");
    await ok(
      "fn",
      "create",
      "--name",
      "hello-node",
      "--env",
      "nodejs",
      "--code",
      "hello.js",
      "--route",
      "/hello-node",
    );
    const cold = await get(`${p.gatewayUrl}/hello-node`);
    expect(cold.status, cold.text).to.equal(200);
    expect(cold.text).to.equal("Hello, world!\n");
    const warm = await get(`${p.gatewayUrl}/hello-node`);
    expect(warm.text).to.equal("Hello, world!\n");
    console.log(`      node hello: cold ${cold.ms.toFixed(1)} ms, warm ${warm.ms.toFixed(1)} ms`);
  });

  it("answers every function at /function/<name> and through fizz fn test", async () => {
    const viaPath = await get(`${p.gatewayUrl}/function/hello`);
    expect(viaPath.text).to.equal("Hello, world!\n");
    const r = await ok("fn", "test", "--name", "hello-node");
    expect(r.stdout).to.equal("Hello, world!\n");
  });

  it("lists what was created, as a table and as JSON", async () => {
    const table = await ok("fn", "list");
    expect(table.stdout)
      .to.match(/hello-node/)
      .and.to.match(/hello/);
    const json = JSON.parse((await ok("fn", "list", "-o", "json")).stdout) as {
      items: { metadata: { name: string } }[];
    };
    expect(json.items.map((i) => i.metadata.name)).to.have.members(["hello", "hello-node"]);
  });

  it("answers 404 with a JSON error for a path no route serves", async () => {
    const r = await get(`${p.gatewayUrl}/nothing-here`);
    expect(r.status).to.equal(404);
    expect(JSON.parse(r.text)).to.have.nested.property("error.code", "NO_ROUTE");
  });
});
