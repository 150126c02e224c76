import { expect } from "chai";
import { silentLogger } from "@fizz/kit";
import { freePort, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { loadConfig, start } from "../src/index";
import {
  Api,
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Stack,
} from "./helpers";

describe("registry lifecycle", () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.cleanup();
  });

  it("keeps every object and its code across a restart (the data lives in Redis)", async () => {
    const first = await startRegistry(registryEnv(stack));
    const env = (await first.api.ns().create("environments", envBody("py"))).body;
    const fn = (await first.api.ns().create("functions", fnBody("hello", "py"))).body;
    await first.svc.stop();

    const second = await startRegistry(registryEnv(stack));
    try {
      expect((await second.api.ns().get("environments", "py")).body).to.deep.equal(env);
      expect((await second.api.ns().get("functions", "hello")).body).to.deep.equal(fn);
      expect((await second.api.ns().code("hello")).bytes.toString()).to.equal(
        'def main():\n    return "hello"\n',
      );
      const next = await second.api.ns().patch("functions", "hello", { spec: { maxInstances: 2 } });
      expect(next.body.metadata.revision).to.equal(2);
    } finally {
      await second.svc.stop();
    }
  });

  it("answers /readyz 503 until Redis is reachable, then becomes ready and serves", async () => {
    let redis: TestServer | undefined = await startRedis();
    await redis.stop(); // the port is now free: nothing listens there
    const reg = await startRegistry(registryEnv({ nats: stack.nats, redis }), { ready: false });
    try {
      const notReady = await reg.api.call("GET", "/readyz");
      expect(notReady.status).to.equal(503);
      expect(notReady.body.checks).to.deep.equal({ nats: true, redis: false, startup: false });
      expect((await reg.api.call("GET", "/healthz")).status).to.equal(200);
      const refused = await reg.api.ns().create("environments", envBody("early"));
      expect(refused.status).to.equal(503);
      expect(refused.body.error).to.include({ code: "UNAVAILABLE", retryable: true });

      await redis.restart();
      await waitFor(async () => (await reg.api.call("GET", "/readyz")).status === 200, {
        timeoutMs: 20_000,
        what: "ready",
      });
      expect((await reg.api.ns().create("environments", envBody("late"))).status).to.equal(201);
      expect(
        (await reg.api.ns().list("environments")).body.items.map(
          (o: { metadata: { name: string } }) => o.metadata.name,
        ),
      ).to.deep.equal(["late"]);
    } finally {
      await reg.svc.stop();
      await redis.cleanup();
      redis = undefined;
    }
  });

  it("serves /healthz while waiting for NATS, and gives up cleanly when aborted", async () => {
    const port = await freePort();
    const deadNats = await freePort();
    const abort = new AbortController();
    const config = loadConfig(
      registryEnv(
        { nats: { url: `nats://127.0.0.1:${deadNats}` } as never, redis: stack.redis },
        { FIZZ_REGISTRY_PORT: String(port) },
      ),
    );
    const starting = start(config, { logger: silentLogger(), signal: abort.signal }).then(
      () => "started",
      (err: unknown) => err,
    );
    const api = new Api(`http://127.0.0.1:${port}`);
    await waitFor(async () => (await api.call("GET", "/healthz")).status === 200, {
      what: "healthz",
    });
    const ready = await api.call("GET", "/readyz");
    expect(ready.status).to.equal(503);
    expect(ready.body.checks.nats).to.equal(false);
    expect((await api.ns().list("environments")).body.error.code).to.equal("UNAVAILABLE");
    abort.abort();
    const outcome = await starting;
    expect(outcome).to.be.instanceOf(Error);
    // The HTTP port was released: nothing answers any more.
    const after = await api.call("GET", "/healthz").then(
      () => "answered",
      () => "refused",
    );
    expect(after).to.equal("refused");
  });
});
