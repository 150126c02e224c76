import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { FizzError, type Environment, type Instance, type SpecializeRequest } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { Agent } from "undici";
import { createMetrics } from "../src/metrics";
import { Pool } from "../src/pool";
import { createSpecializer } from "../src/specialize";
import { FakeBackend, env } from "./fake-backend";

const CODE = Buffer.from("module.exports = async () => 'hi'\n");
const DIGEST = createHash("sha256").update(CODE).digest("hex");

function req(over: Partial<SpecializeRequest> = {}): SpecializeRequest {
  return {
    environment: { namespace: "default", name: "node" },
    function: { namespace: "default", name: "hello", revision: 2 },
    code: { filename: "hello.js", digest: `sha256:${DIGEST}`, size: CODE.length },
    concurrency: 7,
    ...over,
  };
}

describe("specialize (fake backend, stand-in runtime over HTTP)", () => {
  let server: http.Server;
  let answer: { status: number; body: unknown };
  let posts: Array<Record<string, unknown>>;
  let backend: FakeBackend;
  let pool: Pool;
  let agent: Agent;
  let deferred: Array<() => void>;
  let specialized: Instance[];
  let registry: Map<string, Environment>;

  before(async () => {
    server = http.createServer((rq, rs) => {
      let body = "";
      rq.on("data", (c: Buffer) => (body += c.toString()));
      rq.on("end", () => {
        posts.push({
          ...(JSON.parse(body) as Record<string, unknown>),
          token: rq.headers["x-fizz-specialize-token"],
        });
        rs.writeHead(answer.status, { "content-type": "application/json" });
        rs.end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  beforeEach(() => {
    answer = { status: 200, body: { status: "specialized", loadMs: 1.5 } };
    posts = [];
    deferred = [];
    specialized = [];
    registry = new Map();
    backend = new FakeBackend();
    backend.address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    agent = new Agent();
    pool = new Pool({ backend, logger: silentLogger(), maxFailures: 3, cooldownMs: 60_000 });
  });
  afterEach(async () => {
    pool.stop();
    await agent.close();
  });

  function specializer(code: Buffer | null = CODE) {
    return createSpecializer({
      pool,
      readCode: (hex) => Promise.resolve(hex === DIGEST ? code : null),
      lookupEnvironment: (ref) => Promise.resolve(registry.get(ref.name)),
      agent,
      timeoutMs: 2000,
      backendKind: "process",
      metrics: createMetrics(() => pool.counts()),
      logger: silentLogger(),
      afterReply: (fn) => deferred.push(fn),
      onSpecialized: (i) => specialized.push(i),
    });
  }

  async function rejection(p: Promise<unknown>): Promise<FizzError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      return err as FizzError;
    }
    throw new Error("expected a rejection");
  }

  const warm = () => pool.status({ namespace: "default", name: "node" })?.warm;

  it("pushes the code into a warm instance, answers it specialized, and refills only after the reply", async () => {
    pool.upsert(env("node", { poolSize: 2 }));
    await waitFor(() => warm() === 2);
    const { instance } = await specializer()(req({ entrypoint: "handler" }));
    expect(instance).to.include({ state: "specialized", concurrency: 7, backend: "process" });
    expect(instance.function).to.deep.equal({ namespace: "default", name: "hello", revision: 2 });
    expect(posts).to.have.length(1);
    expect(posts[0]).to.deep.include({
      instanceId: instance.id,
      filename: "hello.js",
      code: CODE.toString("base64"),
      entrypoint: "handler",
      concurrency: 7,
      digest: `sha256:${DIGEST}`,
      token: backend.list().find((i) => i.id === instance.id)?.specializeToken,
    });
    expect(posts[0]!.token).to.be.a("string");
    expect(backend.spawnCalls).to.equal(2);
    expect(specialized).to.have.length(0);
    for (const fn of deferred) fn();
    expect(specialized.map((i) => i.id)).to.deep.equal([instance.id]);
    await waitFor(() => warm() === 2);
  });

  it("refuses a tampered blob (other bytes under the digest) with DIGEST_MISMATCH and sends nothing", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const tampered = Buffer.from("module.exports = async () => 'owned'\n");
    const err = await rejection(specializer(tampered)(req()));
    expect(err.code).to.equal("DIGEST_MISMATCH");
    expect(err.field).to.equal("code.digest");
    expect(err.message).to.match(/tampered or corrupt/);
    expect(posts).to.have.length(0);
    expect(warm()).to.equal(1);
  });

  it("answers NOT_FOUND naming code.digest when the blob is missing, and takes no instance", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const err = await rejection(specializer(null)(req()));
    expect(err.code).to.equal("NOT_FOUND");
    expect(err.field).to.equal("code.digest");
    expect(warm()).to.equal(1);
  });

  it("on a runtime 500 answers FUNCTION_LOAD_FAILED with the loader's message, kills the instance, no retry", async () => {
    pool.upsert(env("node", { poolSize: 2 }));
    await waitFor(() => warm() === 2);
    const message = "hello.js:1: SyntaxError: Unexpected token";
    answer = {
      status: 500,
      body: { error: { code: "FUNCTION_LOAD_FAILED", message, retryable: false } },
    };
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("FUNCTION_LOAD_FAILED");
    expect(err.message).to.equal(message);
    expect(posts).to.have.length(1);
    expect(backend.killed.map((k) => k.reason)).to.deep.equal(["function failed to load"]);
    for (const fn of deferred) fn();
    await waitFor(() => warm() === 2);
  });

  it("retries once with another instance when one fails, then answers INSTANCE_FAILED", async () => {
    pool.upsert(env("node", { poolSize: 3 }));
    await waitFor(() => warm() === 3);
    answer = { status: 409, body: { error: { code: "ALREADY_SPECIALIZED", message: "already" } } };
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("INSTANCE_FAILED");
    expect(err.message).to.match(/409/);
    expect(posts).to.have.length(2);
    expect(new Set(posts.map((p) => p.instanceId)).size).to.equal(2);
    expect(backend.killed).to.have.length(2);
  });

  it("spawns an instance when the pool is empty (cold start)", async () => {
    pool.upsert(env("node", { poolSize: 0 }));
    const { instance } = await specializer()(req());
    expect(instance.state).to.equal("specialized");
    expect(backend.spawnCalls).to.equal(1);
  });

  it("asks the registry about an environment it has not heard of, then serves it", async () => {
    registry.set("node", env("node", { poolSize: 0 }));
    const { instance } = await specializer()(req());
    expect(instance.environment).to.deep.equal({ namespace: "default", name: "node" });
  });

  it("answers UNKNOWN_ENVIRONMENT when the registry does not know it either", async () => {
    const err = await rejection(
      specializer()(req({ environment: { namespace: "default", name: "nope" } })),
    );
    expect(err.code).to.equal("UNKNOWN_ENVIRONMENT");
    expect(err.field).to.equal("environment");
  });

  it("answers UNKNOWN_IMAGE for an environment the backend cannot run", async () => {
    pool.upsert(env("node", { image: "unknown" }));
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("UNKNOWN_IMAGE");
    expect(backend.spawnCalls).to.equal(0);
  });
});
