import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { apiError, apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const FUNCTIONS = "/v1/namespaces/default/functions";
const TRIGGERS = "/v1/namespaces/default/httptriggers";
const SOURCE = 'export default async () => ({ hello: "wörld" });\n';

describe("fizz fn", () => {
  let registry: FakeServer;
  let dir: string;
  let codeFile: string;

  before(async () => {
    registry = await FakeServer.start();
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-"));
    codeFile = join(dir, "hello.mjs");
    await writeFile(codeFile, SOURCE);
  });
  afterEach(() => registry.reset());
  after(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });
  const fnObject = (revision = 1) =>
    apiObject(
      "functions",
      "hello",
      {
        environment: "node",
        code: { filename: "hello.mjs", digest: "sha256:ab12", size: 51 },
        concurrency: 50,
        minInstances: 0,
        maxInstances: 10,
        timeoutSeconds: 60,
        idleTimeoutSeconds: 120,
      },
      { revision },
    );

  describe("create", () => {
    it("sends the file's base name and base64 content, and maps limit flags to spec fields", async () => {
      registry.on("POST", FUNCTIONS, { status: 201, json: fnObject() });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        codeFile,
        "--entrypoint",
        "handler",
        "--concurrency",
        "5",
        "--min-instances",
        "1",
        "--max-instances",
        "4",
        "--timeout",
        "2.5",
        "--idle-timeout",
        "30",
      );

      expect(result.stderr).to.equal("");
      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([`POST ${FUNCTIONS}`]);
      expect(registry.jsonBody(0)).to.deep.equal({
        name: "hello",
        spec: {
          environment: "node",
          code: { filename: "hello.mjs", content: Buffer.from(SOURCE).toString("base64") },
          entrypoint: "handler",
          concurrency: 5,
          minInstances: 1,
          maxInstances: 4,
          timeoutSeconds: 2.5,
          idleTimeoutSeconds: 30,
        },
      });
      expect(result.stdout).to.equal('function "hello" created\n');
    });

    it("fails naming the path when the code file does not exist, before sending anything", async () => {
      const missing = join(dir, "nope.py");

      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        missing,
      );

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(`Error: cannot read --code "${missing}": no such file\n`);
      expect(registry.requests).to.have.length(0);
    });

    it("fails clearly when --code is a directory, before sending anything", async () => {
      const result = await cli("fn", "create", "--name", "hello", "--env", "node", "--code", dir);

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(`Error: --code "${dir}" is a directory, not a regular file\n`);
      expect(registry.requests).to.have.length(0);
    });

    it("with --route also creates an HTTP trigger named after the function", async () => {
      registry.on("POST", FUNCTIONS, { status: 201, json: fnObject() });
      const trigger = apiObject("httptriggers", "hello", {
        function: "hello",
        path: "/hello",
        methods: ["GET", "POST"],
      });
      registry.on("POST", TRIGGERS, { status: 201, json: trigger });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        codeFile,
        "--route",
        "/hello",
        "--method",
        "get",
        "--method",
        "POST",
      );

      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([`POST ${FUNCTIONS}`, `POST ${TRIGGERS}`]);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "hello",
        spec: { function: "hello", path: "/hello", methods: ["GET", "POST"] },
      });
      expect(result.stdout).to.equal(
        'function "hello" created\nroute "hello" created: GET,POST /hello -> hello\n',
      );
    });

    it("takes Fission's --url as --route, and refuses both with different paths", async () => {
      registry.on("POST", FUNCTIONS, { status: 201, json: fnObject() });
      const trigger = apiObject("httptriggers", "hello", {
        function: "hello",
        path: "/p",
        methods: ["GET"],
      });
      registry.on("POST", TRIGGERS, { status: 201, json: trigger });
      const base = ["fn", "create", "--name", "hello", "--env", "node", "--code", codeFile];

      const result = await cli(...base, "--url", "/p", "--method", "GET");

      expect(result.code, result.stderr).to.equal(0);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "hello",
        spec: { function: "hello", path: "/p", methods: ["GET"] },
      });
      const both = await cli(...base, "--url", "/p", "--route", "/q");
      expect(both.code).to.equal(2);
      expect(both.stderr).to.include("--url is another name for --route");
      expect(registry.calls()).to.have.length(2);
    });

    it("--prefix creates a prefix route (Fission's fn create --prefix); --route with it is a usage error", async () => {
      registry.on("POST", FUNCTIONS, { status: 201, json: fnObject() });
      const trigger = apiObject("httptriggers", "hello", { function: "hello", prefix: "/api" });
      registry.on("POST", TRIGGERS, { status: 201, json: trigger });
      const base = ["fn", "create", "--name", "hello", "--env", "node", "--code", codeFile];

      const result = await cli(...base, "--prefix", "/api", "--method", "GET");

      expect(result.code, result.stderr).to.equal(0);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "hello",
        spec: { function: "hello", prefix: "/api", methods: ["GET"] },
      });
      expect(result.stdout).to.equal(
        'function "hello" created\nroute "hello" created: * /api/* -> hello\n',
      );
      const both = await cli(...base, "--prefix", "/api", "--route", "/q");
      expect(both.code).to.equal(2);
      expect(both.stderr).to.include("cannot be used with option '--route <path>'");
      // Fission's --url is --route: the same refusal, not a silently dropped --prefix.
      const fission = await cli(...base, "--url", "/q", "--prefix", "/api");
      expect(fission.code).to.equal(2);
      expect(fission.stderr).to.include("cannot be used with option '--route <path>'");
      expect(registry.calls()).to.have.length(2);
    });

    it("with --route -o json prints both created objects as {items}", async () => {
      const fn = fnObject();
      const trigger = apiObject("httptriggers", "hello", { function: "hello", path: "/hello" });
      registry.on("POST", FUNCTIONS, { status: 201, json: fn });
      registry.on("POST", TRIGGERS, { status: 201, json: trigger });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        codeFile,
        "--route",
        "/hello",
        "-o",
        "json",
      );

      expect(JSON.parse(result.stdout)).to.deep.equal({ items: [fn, trigger] });
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "hello",
        spec: { function: "hello", path: "/hello" },
      });
    });

    it("deletes the function again and reports the trigger's error when the trigger is refused", async () => {
      registry.on("POST", FUNCTIONS, { status: 201, json: fnObject() });
      registry.on("POST", TRIGGERS, {
        status: 409,
        json: apiError("ROUTE_CONFLICT", 'route GET /hello conflicts with httptrigger "old"'),
      });
      registry.on("DELETE", `${FUNCTIONS}/hello`, { json: fnObject() });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        codeFile,
        "--route",
        "/hello",
      );

      expect(result.code).to.equal(1);
      expect(registry.calls()).to.deep.equal([
        `POST ${FUNCTIONS}`,
        `POST ${TRIGGERS}`,
        `DELETE ${FUNCTIONS}/hello`,
      ]);
      expect(result.stdout).to.equal("");
      expect(result.stderr).to.equal(
        'Error: route GET /hello conflicts with httptrigger "old" (ROUTE_CONFLICT)\n' +
          'The route was not created, so function "hello" was removed again.\n',
      );
    });

    it("says how to clean up when removing the function after a refused trigger fails too", async () => {
      const ns = "/v1/namespaces/team-a";
      registry.on("POST", `${ns}/functions`, { status: 201, json: fnObject() });
      registry.on("POST", `${ns}/httptriggers`, {
        status: 400,
        json: apiError("VALIDATION_FAILED", "spec.path: must start with /"),
      });
      registry.on("DELETE", `${ns}/functions/hello`, {
        status: 503,
        json: apiError("UNAVAILABLE", "store unavailable"),
      });

      const result = await cli(
        "-n",
        "team-a",
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        codeFile,
        "--route",
        "hello",
      );

      expect(result.code).to.equal(1);
      const lines = result.stderr.split("\n");
      expect(lines[0]).to.equal("Error: spec.path: must start with / (VALIDATION_FAILED)");
      expect(lines[1]).to.include("could not be removed again: store unavailable (UNAVAILABLE)");
      expect(lines[2]).to.equal("Remove it with: fizz fn delete --name hello -n team-a");
    });

    it("does not try to create a trigger when the function itself is refused", async () => {
      registry.on("POST", FUNCTIONS, {
        status: 400,
        json: apiError(
          "UNKNOWN_ENVIRONMENT",
          'environment "nope" does not exist',
          "spec.environment",
        ),
      });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "nope",
        "--code",
        codeFile,
        "--route",
        "/hello",
      );

      expect(result.code).to.equal(1);
      expect(registry.calls()).to.deep.equal([`POST ${FUNCTIONS}`]);
      expect(result.stderr).to.equal(
        'Error: environment "nope" does not exist (UNKNOWN_ENVIRONMENT)\n',
      );
    });

    it("rejects --method without --route as a usage error", async () => {
      const result = await cli(
        "fn",
        "create",
        "--name",
        "hello",
        "--env",
        "node",
        "--code",
        codeFile,
        "--method",
        "GET",
      );

      expect(result.code).to.equal(2);
      expect(registry.requests).to.have.length(0);
    });

    it("exits 2 with commander's message when a required option is missing", async () => {
      const result = await cli("fn", "create", "--name", "hello", "--code", codeFile);

      expect(result.code).to.equal(2);
      expect(result.stderr).to.include(
        "error: required option '--env <environment>' not specified",
      );
      expect(registry.requests).to.have.length(0);
    });
  });

  describe("get", () => {
    it("--code prints the stored code bytes verbatim from GET .../code", async () => {
      const bytes = Buffer.from([0x23, 0x21, 0xff, 0x00, 0x0a]);
      registry.on("GET", `${FUNCTIONS}/hello/code`, {
        body: bytes,
        headers: { "content-type": "application/octet-stream" },
      });

      const result = await cli("fn", "get", "--name", "hello", "--code");

      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([`GET ${FUNCTIONS}/hello/code`]);
      expect(result.stdoutBytes.equals(bytes)).to.equal(true);
    });

    it("describes the function with its code digest, limits and invoke URL", async () => {
      registry.on("GET", `${FUNCTIONS}/hello`, { json: fnObject(3) });

      const result = await cli("fn", "get", "--name", "hello");

      expect(result.code).to.equal(0);
      expect(result.stdout).to.match(/^Environment: +node$/m);
      expect(result.stdout).to.match(/^Code: +hello\.mjs \(51 bytes, sha256:ab12\)$/m);
      expect(result.stdout).to.match(/^Instances: +min 0, max 10$/m);
      expect(result.stdout).to.match(/^Timeout: +60s$/m);
      expect(result.stdout).to.match(/^Invoke: +http:\/\/127\.0\.0\.1:8080\/function\/hello$/m);
      expect(result.stdout).to.match(/^Revision: +3$/m);
    });

    it("-o json prints the object as returned", async () => {
      registry.on("GET", `${FUNCTIONS}/hello`, { json: fnObject() });

      const result = await cli("fn", "get", "--name", "hello", "-o", "json");

      expect(JSON.parse(result.stdout)).to.deep.equal(fnObject());
    });

    it("prints a 404 as the API's message and code, exit 1", async () => {
      registry.on("GET", `${FUNCTIONS}/ghost`, {
        status: 404,
        json: apiError("NOT_FOUND", 'function "ghost" not found'),
      });

      const result = await cli("fn", "get", "--name", "ghost");

      expect(result.code).to.equal(1);
      expect(result.stdout).to.equal("");
      expect(result.stderr).to.equal('Error: function "ghost" not found (NOT_FOUND)\n');
    });
  });

  it("list prints NAME, ENV, CODE, limits, REVISION and AGE", async () => {
    registry.on("GET", `${FUNCTIONS}?limit=500`, { json: { items: [fnObject(2)] } });

    const result = await cli("fn", "list");

    expect(result.stdout.split("\n")).to.deep.equal([
      "NAME    ENV    CODE        CONCURRENCY   MIN   MAX   TIMEOUT   REVISION   AGE",
      "hello   node   hello.mjs   50            0     10    60s       2          5m",
      "",
    ]);
  });

  it("list follows continue tokens page by page and prints every page's objects", async () => {
    const second = { ...fnObject(3), metadata: { ...fnObject(3).metadata, name: "world" } };
    registry.on("GET", `${FUNCTIONS}?limit=500`, {
      json: { items: [fnObject(2)], continue: "t1" },
    });
    registry.on("GET", `${FUNCTIONS}?limit=500&continue=t1`, { json: { items: [second] } });

    const result = await cli("fn", "list");

    expect(registry.calls()).to.deep.equal([
      `GET ${FUNCTIONS}?limit=500`,
      `GET ${FUNCTIONS}?limit=500&continue=t1`,
    ]);
    expect(result.stdout.split("\n").map((l) => l.split(" ")[0])).to.deep.equal([
      "NAME",
      "hello",
      "world",
      "",
    ]);
  });

  it("list stops with an error when the registry answers the continue token it was given", async () => {
    registry.on("GET", `${FUNCTIONS}?limit=500`, {
      json: { items: [fnObject(2)], continue: "t1" },
    });
    registry.on("GET", `${FUNCTIONS}?limit=500&continue=t1`, {
      json: { items: [fnObject(2)], continue: "t1" },
    });

    const result = await cli("fn", "list");

    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal("");
    expect(result.stderr).to.include("continue token it was given");
    expect(registry.calls()).to.have.length(2);
  });

  describe("update", () => {
    it("PATCHes only the given fields, with new code as base64 (and no package any more)", async () => {
      registry.on("PATCH", `${FUNCTIONS}/hello`, { json: fnObject(2) });

      const result = await cli(
        "fn",
        "update",
        "--name",
        "hello",
        "--code",
        codeFile,
        "--max-instances",
        "20",
      );

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({
        spec: {
          code: { filename: "hello.mjs", content: Buffer.from(SOURCE).toString("base64") },
          package: null,
          maxInstances: 20,
        },
      });
      expect(result.stdout).to.equal('function "hello" updated (revision 2)\n');
    });

    it("can move a function to another environment without resending its code", async () => {
      registry.on("PATCH", `${FUNCTIONS}/hello`, { json: fnObject(2) });

      await cli("fn", "update", "--name", "hello", "--env", "node-big");

      expect(registry.jsonBody(0)).to.deep.equal({ spec: { environment: "node-big" } });
    });

    it("without any field is a usage error", async () => {
      const result = await cli("fn", "update", "--name", "hello");

      expect(result.code).to.equal(2);
      expect(registry.requests).to.have.length(0);
    });
  });

  it("delete sends DELETE in the chosen namespace and confirms", async () => {
    registry.on("DELETE", "/v1/namespaces/team-a/functions/hello", { json: fnObject() });

    const result = await cli("fn", "delete", "--name", "hello", "--namespace", "team-a");

    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal(["DELETE /v1/namespaces/team-a/functions/hello"]);
    expect(result.stdout).to.equal('function "hello" deleted\n');
  });
});
