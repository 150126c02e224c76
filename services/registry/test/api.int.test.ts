import { createHash } from "node:crypto";
import { expect } from "chai";
import { API_VERSION } from "@fizz/events";
import {
  b64,
  envBody,
  fnBody,
  openBlobs,
  registryEnv,
  startRegistry,
  startStack,
  triggerBody,
  type Running,
  type Stack,
} from "./helpers";

describe("registry REST API", () => {
  let stack: Stack;
  let reg: Running;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const api = () => reg.api.ns();

  it("creates an environment with defaults, revision 1 and timestamps", async () => {
    const res = await api().create("environments", {
      name: "python",
      labels: { team: "a" },
      spec: { image: "fizz/env-python" },
    });
    expect(res.status).to.equal(201);
    expect(res.body.apiVersion).to.equal(API_VERSION);
    expect(res.body.kind).to.equal("Environment");
    expect(res.body.metadata).to.include({ namespace: "default", name: "python", revision: 1 });
    expect(res.body.metadata.labels).to.deep.equal({ team: "a" });
    expect(res.body.metadata.uid).to.be.a("string").with.length.greaterThan(8);
    expect(res.body.metadata.createdAt).to.equal(res.body.metadata.updatedAt);
    expect(res.body.spec).to.deep.equal({ image: "fizz/env-python", poolSize: 3 });
  });

  it("gets an object and answers 404 for one that does not exist", async () => {
    const got = await api().get("environments", "python");
    expect(got.status).to.equal(200);
    expect(got.body.metadata.name).to.equal("python");
    const missing = await api().get("environments", "nope");
    expect(missing.status).to.equal(404);
    expect(missing.body.error).to.include({ code: "NOT_FOUND", retryable: false });
  });

  it("stores a function's code content-addressed and answers the digest and size", async () => {
    const code = "def main():\n    return 'hi'\n";
    const res = await api().create("functions", {
      name: "hello",
      spec: {
        environment: "python",
        code: { filename: "hello.py", content: b64(code) },
        timeoutSeconds: 5,
      },
    });
    expect(res.status).to.equal(201);
    const digest = createHash("sha256").update(code).digest("hex");
    expect(res.body.spec.code).to.deep.equal({
      filename: "hello.py",
      digest: `sha256:${digest}`,
      size: Buffer.byteLength(code),
    });
    expect(res.body.spec).to.include({
      environment: "python",
      minInstances: 0,
      maxInstances: 10,
      timeoutSeconds: 5,
      idleTimeoutSeconds: 120,
    });
    // In the Object Store, no longer in Redis.
    const blobs = await openBlobs(stack);
    try {
      expect((await blobs.store.getBuffer(`sha256:${digest}`, 1024))?.toString()).to.equal(code);
    } finally {
      await blobs.close();
    }
    expect(await stack.client.exists(`fizz:v1:code:${digest}`)).to.equal(0);
  });

  it("answers the code bytes as an octet-stream attachment", async () => {
    const res = await api().code("hello");
    expect(res.status).to.equal(200);
    expect(res.headers.get("content-type")).to.equal("application/octet-stream");
    expect(res.headers.get("content-disposition")).to.match(/^attachment; filename="?hello\.py"?$/);
    expect(res.bytes.toString()).to.equal("def main():\n    return 'hi'\n");
    expect((await api().code("nope")).status).to.equal(404);
  });

  it("creates an http trigger with upper-cased methods", async () => {
    const res = await api().create("httptriggers", {
      name: "hello-route",
      spec: { function: "hello", path: "/hello/{id}", methods: ["get", "post"] },
    });
    expect(res.status).to.equal(201);
    expect(res.body.kind).to.equal("HttpTrigger");
    expect(res.body.spec).to.deep.equal({
      function: "hello",
      path: "/hello/{id}",
      methods: ["GET", "POST"],
    });
  });

  it("lists a namespace sorted by name and keeps namespaces apart", async () => {
    await api().create("environments", envBody("node", { image: "fizz/env-node" }));
    await api().create("environments", envBody("aardvark"));
    await reg.api.ns("other").create("environments", envBody("zeta"));
    const res = await api().list("environments");
    expect(res.status).to.equal(200);
    expect(
      res.body.items.map((o: { metadata: { name: string } }) => o.metadata.name),
    ).to.deep.equal(["aardvark", "node", "python"]);
    const other = await reg.api.ns("other").list("environments");
    expect(
      other.body.items.map((o: { metadata: { name: string } }) => o.metadata.name),
    ).to.deep.equal(["zeta"]);
    expect((await reg.api.ns("empty").list("functions")).body).to.deep.equal({ items: [] });
  });

  it("patches labels and spec fields, keeping the rest and bumping the revision", async () => {
    const before = (await api().get("environments", "python")).body;
    const res = await api().patch("environments", "python", {
      labels: { team: "b" },
      spec: { poolSize: 5 },
    });
    expect(res.status).to.equal(200);
    expect(res.body.metadata).to.include({
      revision: 2,
      uid: before.metadata.uid,
      createdAt: before.metadata.createdAt,
    });
    expect(res.body.metadata.labels).to.deep.equal({ team: "b" });
    expect(res.body.spec).to.deep.equal({ image: "fizz/env-python", poolSize: 5 });
    const again = await api().patch("environments", "python", {
      spec: { concurrency: 20 },
      revision: 2,
    });
    expect(again.body.metadata.revision).to.equal(3);
    expect(again.body.metadata.labels).to.deep.equal({ team: "b" });
    expect(again.body.spec).to.deep.equal({
      image: "fizz/env-python",
      poolSize: 5,
      concurrency: 20,
    });
  });

  it("unsets a spec field patched to null so its default applies again", async () => {
    const res = await api().patch("environments", "python", {
      spec: { poolSize: null, concurrency: null },
    });
    expect(res.status).to.equal(200);
    expect(res.body.spec).to.deep.equal({ image: "fizz/env-python", poolSize: 3 });
  });

  it("replaces a function's code on patch and recomputes digest and size", async () => {
    const code = "def main():\n    return 'v2'\n";
    const res = await api().patch("functions", "hello", {
      spec: { code: { filename: "v2.py", content: b64(code) } },
    });
    expect(res.status).to.equal(200);
    const digest = createHash("sha256").update(code).digest("hex");
    expect(res.body.spec.code).to.deep.equal({
      filename: "v2.py",
      digest: `sha256:${digest}`,
      size: Buffer.byteLength(code),
    });
    expect(res.body.spec.timeoutSeconds).to.equal(5);
    expect(res.body.metadata.revision).to.equal(2);
    const got = await api().code("hello");
    expect(got.bytes.toString()).to.equal(code);
    expect(got.headers.get("content-disposition")).to.match(/^attachment; filename="?v2\.py"?$/);
  });

  it("moves a trigger from path to prefix in one patch", async () => {
    const res = await api().patch("httptriggers", "hello-route", {
      spec: { path: null, prefix: "/hello" },
    });
    expect(res.status).to.equal(200);
    expect(res.body.spec).to.deep.equal({
      function: "hello",
      prefix: "/hello",
      methods: ["GET", "POST"],
    });
  });

  it("deletes objects in dependency order and answers the deleted object", async () => {
    await api().create("environments", envBody("tmp-env"));
    await api().create("functions", fnBody("tmp-fn", "tmp-env"));
    await api().create("httptriggers", triggerBody("tmp-route", "tmp-fn"));
    for (const [kind, name] of [
      ["httptriggers", "tmp-route"],
      ["functions", "tmp-fn"],
      ["environments", "tmp-env"],
    ] as const) {
      const res = await api().delete(kind, name);
      expect(res.status, `${kind}/${name}`).to.equal(200);
      expect(res.body.metadata.name).to.equal(name);
      expect((await api().get(kind, name)).status).to.equal(404);
    }
    expect((await api().delete("environments", "tmp-env")).status).to.equal(404);
    expect(await stack.client.sismember("fizz:v1:idx:environments:default", "tmp-env")).to.equal(0);
    expect(await stack.client.sismember("fizz:v1:idx:environments", "default/tmp-env")).to.equal(0);
  });

  it("keeps objects under obj:<kind>:<ns>:<name> with per-namespace and global indexes", async () => {
    const raw = await stack.client.get("fizz:v1:obj:environments:default:python");
    const stored = JSON.parse(raw ?? "{}") as { metadata?: { name?: string } };
    expect(stored.metadata?.name).to.equal("python");
    expect(await stack.client.smembers("fizz:v1:idx:environments:default")).to.have.members([
      "python",
      "node",
      "aardvark",
    ]);
    expect(await stack.client.smembers("fizz:v1:idx:environments")).to.have.members([
      "default/python",
      "default/node",
      "default/aardvark",
      "other/zeta",
    ]);
  });

  it("answers /healthz, /readyz with every check, and /metrics by route and status", async () => {
    expect((await reg.api.call("GET", "/healthz")).status).to.equal(200);
    const ready = await reg.api.call("GET", "/readyz");
    expect(ready.status).to.equal(200);
    expect(ready.body.checks).to.deep.equal({ nats: true, redis: true, startup: true });
    const metrics = (await reg.api.call("GET", "/metrics")).bytes.toString();
    expect(metrics).to.match(
      /fizz_registry_http_requests_total\{[^}]*route="\/v1\/namespaces\/:ns\/environments"[^}]*status="201"/,
    );
    expect(metrics).to.match(
      /fizz_registry_http_requests_total\{[^}]*route="\/v1\/namespaces\/:ns\/environments\/:name"[^}]*status="404"/,
    );
    expect(metrics).to.include("fizz_registry_http_request_duration_seconds_bucket");
  });
});
