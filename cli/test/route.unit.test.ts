import { expect } from "chai";
import { apiError, apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const TRIGGERS = "/v1/namespaces/default/httptriggers";

describe("fizz route", () => {
  let registry: FakeServer;

  before(async () => {
    registry = await FakeServer.start();
  });
  afterEach(() => registry.reset());
  after(() => registry.close());

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });

  it("create names the route after the function by default and sends path, methods and host", async () => {
    const spec = {
      function: "hello",
      path: "/hello/{id}",
      methods: ["GET", "DELETE"],
      host: "api.example.com",
    };
    registry.on("POST", TRIGGERS, { status: 201, json: apiObject("httptriggers", "hello", spec) });

    const result = await cli(
      "route",
      "create",
      "--function",
      "hello",
      "--url",
      "/hello/{id}",
      "--method",
      "GET,delete",
      "--host",
      "api.example.com",
    );

    expect(result.code).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({ name: "hello", spec });
    expect(result.stdout).to.equal(
      'route "hello" created: GET,DELETE api.example.com/hello/{id} -> hello\n',
    );
  });

  it("create with --prefix and an explicit --name works under the httptrigger and ht aliases", async () => {
    const spec = { function: "files", prefix: "/static" };
    registry.on("POST", TRIGGERS, { status: 201, json: apiObject("httptriggers", "static", spec) });

    for (const alias of ["httptrigger", "ht"]) {
      registry.requests.length = 0;
      const result = await cli(
        alias,
        "create",
        "--name",
        "static",
        "--function",
        "files",
        "--prefix",
        "/static",
      );

      expect(result.code, alias).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({ name: "static", spec });
      expect(result.stdout).to.equal('route "static" created: * /static/* -> files\n');
    }
  });

  it("create needs exactly one of --url and --prefix (usage error otherwise)", async () => {
    const both = await cli("route", "create", "--function", "f", "--url", "/a", "--prefix", "/b");
    const neither = await cli("route", "create", "--function", "f");

    expect(both.code).to.equal(2);
    expect(both.stderr).to.include("cannot be used with option");
    expect(neither.code).to.equal(2);
    expect(neither.stderr).to.include("--url");
    expect(registry.requests).to.have.length(0);
  });

  it("create reports a route conflict as the API's message and code", async () => {
    registry.on("POST", TRIGGERS, {
      status: 409,
      json: apiError("ROUTE_CONFLICT", 'GET /hello is already routed by "old"'),
    });

    const result = await cli("route", "create", "--function", "hello", "--url", "/hello");

    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal(
      'Error: GET /hello is already routed by "old" (ROUTE_CONFLICT)\n',
    );
  });

  it("list shows NAME, FUNCTION, METHODS, HOST, PATH, PREFIX, REVISION and AGE", async () => {
    registry.on("GET", `${TRIGGERS}?limit=500`, {
      json: {
        items: [
          apiObject("httptriggers", "hello", {
            function: "hello",
            path: "/hello",
            methods: ["GET"],
          }),
          apiObject(
            "httptriggers",
            "static",
            { function: "files", prefix: "/static", host: "cdn.example.com" },
            { revision: 3 },
          ),
        ],
      },
    });

    const result = await cli("ht", "list");

    expect(result.stdout.split("\n")).to.deep.equal([
      "NAME     FUNCTION   METHODS   HOST              PATH     PREFIX    REVISION   AGE",
      "hello    hello      GET       *                 /hello   -         1          5m",
      "static   files      *         cdn.example.com   -        /static   3          5m",
      "",
    ]);
  });

  it("list --function shows only the routes to that function (Fission's ht list --function)", async () => {
    const hello = apiObject("httptriggers", "hello", { function: "hello", path: "/hello" });
    const other = apiObject("httptriggers", "other", { function: "other", path: "/other" });
    registry.on("GET", `${TRIGGERS}?limit=500`, { json: { items: [hello, other] } });

    const table = await cli("route", "list", "--function", "hello");
    const json = await cli("route", "list", "--function", "hello", "-o", "json");

    expect(table.stdout).to.include("/hello").and.not.include("/other");
    expect(JSON.parse(json.stdout)).to.deep.equal({ items: [hello] });
  });

  it("get -o json prints the trigger as returned", async () => {
    const trigger = apiObject("httptriggers", "hello", { function: "hello", path: "/hello" });
    registry.on("GET", `${TRIGGERS}/hello`, { json: trigger });

    const result = await cli("route", "get", "--name", "hello", "-o", "json");

    expect(JSON.parse(result.stdout)).to.deep.equal(trigger);
  });

  it("update of methods only PATCHes the methods, without reading first", async () => {
    registry.on("PATCH", `${TRIGGERS}/hello`, {
      json: apiObject(
        "httptriggers",
        "hello",
        { function: "hello", path: "/hello", methods: ["POST"] },
        { revision: 2 },
      ),
    });

    const result = await cli("route", "update", "--name", "hello", "--method", "POST");

    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal([`PATCH ${TRIGGERS}/hello`]);
    expect(registry.jsonBody(0)).to.deep.equal({ spec: { methods: ["POST"] } });
    expect(result.stdout).to.equal('route "hello" updated (revision 2)\n');
  });

  it("update from a path to a prefix clears the path and pins the revision it read", async () => {
    registry.on("GET", `${TRIGGERS}/hello`, {
      json: apiObject(
        "httptriggers",
        "hello",
        { function: "hello", path: "/hello" },
        { revision: 4 },
      ),
    });
    registry.on("PATCH", `${TRIGGERS}/hello`, {
      json: apiObject(
        "httptriggers",
        "hello",
        { function: "hello", prefix: "/hello" },
        { revision: 5 },
      ),
    });

    const result = await cli("route", "update", "--name", "hello", "--prefix", "/hello");

    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal([`GET ${TRIGGERS}/hello`, `PATCH ${TRIGGERS}/hello`]);
    expect(registry.jsonBody(1)).to.deep.equal({
      spec: { prefix: "/hello", path: null },
      revision: 4,
    });
  });

  it("delete sends DELETE and confirms", async () => {
    registry.on("DELETE", `${TRIGGERS}/hello`, {
      json: apiObject("httptriggers", "hello", { function: "hello", path: "/hello" }),
    });

    const result = await cli("route", "delete", "--name", "hello");

    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal('route "hello" deleted\n');
  });
});
