import { expect } from "chai";
import { apiError, apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

describe("fizz env", () => {
  let registry: FakeServer;
  const base = "/v1/namespaces/default/environments";

  before(async () => {
    registry = await FakeServer.start();
  });
  afterEach(() => registry.reset());
  after(() => registry.close());

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });

  it("create POSTs the name and only the given spec fields, splitting --command into argv", async () => {
    const env = apiObject("environments", "custom", {
      image: "acme/env-ruby",
      command: ["ruby", "my server.rb"],
      poolSize: 2,
      concurrency: 20,
    });
    registry.on("POST", base, { status: 201, json: env });

    const result = await cli(
      "env",
      "create",
      "--name",
      "custom",
      "--image",
      "acme/env-ruby",
      "--command",
      `ruby "my server.rb"`,
      "--poolsize",
      "2",
      "--concurrency",
      "20",
    );

    expect(result.stderr).to.equal("");
    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal([`POST ${base}`]);
    expect(registry.requests[0]?.headers["content-type"]).to.equal("application/json");
    expect(registry.jsonBody(0)).to.deep.equal({
      name: "custom",
      spec: {
        image: "acme/env-ruby",
        command: ["ruby", "my server.rb"],
        poolSize: 2,
        concurrency: 20,
      },
    });
    expect(result.stdout).to.equal('environment "custom" created\n');
  });

  it("create leaves defaults to the registry by not sending unset fields", async () => {
    registry.on("POST", base, {
      status: 201,
      json: apiObject("environments", "python", { image: "fizz/env-python" }),
    });

    await cli("env", "create", "--name", "python", "--image", "fizz/env-python");

    expect(registry.jsonBody(0)).to.deep.equal({
      name: "python",
      spec: { image: "fizz/env-python" },
    });
  });

  it("create -o json prints the created object exactly as the registry returned it", async () => {
    const env = apiObject("environments", "python", {
      image: "fizz/env-python",
      poolSize: 3,
      concurrency: 10,
    });
    registry.on("POST", base, { status: 201, json: env });

    const result = await cli(
      "-o",
      "json",
      "env",
      "create",
      "--name",
      "python",
      "--image",
      "fizz/env-python",
    );

    expect(JSON.parse(result.stdout)).to.deep.equal(env);
  });

  it("list prints a table with NAME, IMAGE, POOLSIZE, CONCURRENCY, REVISION and AGE", async () => {
    registry.on("GET", `${base}?limit=500`, {
      json: {
        items: [
          apiObject("environments", "node", {
            image: "fizz/env-node",
            poolSize: 3,
            concurrency: 50,
          }),
          apiObject(
            "environments",
            "python",
            { image: "fizz/env-python", poolSize: 1, concurrency: 10 },
            { revision: 4 },
          ),
        ],
      },
    });

    const result = await cli("env", "list");

    expect(result.code).to.equal(0);
    expect(result.stdout.split("\n")).to.deep.equal([
      "NAME     IMAGE             POOLSIZE   CONCURRENCY   REVISION   AGE",
      "node     fizz/env-node     3          50            1          5m",
      "python   fizz/env-python   1          10            4          5m",
      "",
    ]);
  });

  it("list -o json prints the registry's {items} answer unchanged", async () => {
    const answer = { items: [apiObject("environments", "node", { image: "fizz/env-node" })] };
    registry.on("GET", `${base}?limit=500`, { json: answer });

    const result = await cli("env", "list", "-o", "json");

    expect(JSON.parse(result.stdout)).to.deep.equal(answer);
  });

  it("list with no environments says so on stderr and prints nothing on stdout", async () => {
    registry.on("GET", `${base}?limit=500`, { json: { items: [] } });

    const result = await cli("env", "list");

    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal("");
    expect(result.stderr).to.equal('No environments found in namespace "default".\n');
  });

  it("get shows one environment's fields in the namespace given by -n", async () => {
    registry.on("GET", "/v1/namespaces/team-a/environments/python", {
      json: apiObject(
        "environments",
        "python",
        { image: "fizz/env-python", poolSize: 3, concurrency: 10 },
        { namespace: "team-a", revision: 2 },
      ),
    });

    const result = await cli("env", "get", "--name", "python", "-n", "team-a");

    expect(result.code).to.equal(0);
    expect(result.stdout).to.match(/^Name: +python$/m);
    expect(result.stdout).to.match(/^Namespace: +team-a$/m);
    expect(result.stdout).to.match(/^Image: +fizz\/env-python$/m);
    expect(result.stdout).to.match(/^Pool size: +3$/m);
    expect(result.stdout).to.match(/^Revision: +2$/m);
    expect(result.stdout).to.match(/^Created: +2025-01-01T11:55:00.000Z \(5m ago\)$/m);
  });

  it("update PATCHes only the fields that were given", async () => {
    registry.on("PATCH", `${base}/python`, {
      json: apiObject(
        "environments",
        "python",
        { image: "fizz/env-python", poolSize: 5 },
        { revision: 2 },
      ),
    });

    const result = await cli("env", "update", "--name", "python", "--poolsize", "5");

    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal([`PATCH ${base}/python`]);
    expect(registry.jsonBody(0)).to.deep.equal({ spec: { poolSize: 5 } });
    expect(result.stdout).to.equal('environment "python" updated (revision 2)\n');
  });

  it("update without any field is a usage error (exit 2) and sends nothing", async () => {
    const result = await cli("env", "update", "--name", "python");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.match(/^error: nothing to update/);
    expect(registry.requests).to.have.length(0);
  });

  it("delete sends DELETE and confirms in one line", async () => {
    registry.on("DELETE", `${base}/python`, {
      json: apiObject("environments", "python", { image: "fizz/env-python" }),
    });

    const result = await cli("env", "delete", "--name", "python");

    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal([`DELETE ${base}/python`]);
    expect(result.stdout).to.equal('environment "python" deleted\n');
  });

  it("delete of an environment in use prints the API error and what to do about it", async () => {
    registry.on("DELETE", `${base}/python`, {
      status: 409,
      json: apiError("IN_USE", 'environment "python" is used by function "hello"'),
    });

    const result = await cli("env", "delete", "--name", "python");

    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal("");
    expect(result.stderr.split("\n")[0]).to.equal(
      'Error: environment "python" is used by function "hello" (IN_USE)',
    );
    expect(result.stderr).to.include("Delete its functions");
  });

  it("a non-integer --poolsize is a usage error (exit 2) and sends nothing", async () => {
    const result = await cli("env", "create", "--name", "x", "--image", "i", "--poolsize", "three");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("error: option '--poolsize <n>' argument 'three' is invalid");
    expect(registry.requests).to.have.length(0);
  });
});
