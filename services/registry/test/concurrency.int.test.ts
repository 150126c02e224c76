import { expect } from "chai";
import { Redis } from "ioredis";
import { API_VERSION, type Environment } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { RedisStore } from "../src/store";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  triggerBody,
  type Running,
  type Stack,
} from "./helpers";

describe("registry under concurrent writers", () => {
  let stack: Stack;
  let a: Running;
  let b: Running;

  before(async () => {
    stack = await startStack();
    // Two replicas on one Redis: their writes race for real, guarded only by WATCH/MULTI/EXEC.
    [a, b] = await Promise.all([
      startRegistry(registryEnv(stack)),
      startRegistry(registryEnv(stack)),
    ]);
  });
  after(async () => {
    await Promise.all([a?.svc.stop(), b?.svc.stop()]);
    await stack?.cleanup();
  });

  it("lets exactly one of two concurrent creates of one name succeed", async () => {
    for (let i = 0; i < 8; i++) {
      const name = `same-${i}`;
      const [x, y] = await Promise.all([
        a.api.ns().create("environments", envBody(name)),
        b.api.ns().create("environments", envBody(name)),
      ]);
      expect([x.status, y.status].sort(), `round ${i}`).to.deep.equal([201, 409]);
      expect([x, y].find((r) => r.status === 409)?.body.error.code).to.equal("ALREADY_EXISTS");
    }
    expect(await stack.client.scard("fizz:v1:idx:environments:default")).to.equal(8);
  });

  it("lets exactly one of two concurrent creates succeed within one replica", async () => {
    const results = await Promise.all(
      [1, 2, 3].map(() => a.api.ns().create("environments", envBody("one-replica"))),
    );
    expect(results.map((r) => r.status).sort()).to.deep.equal([201, 409, 409]);
  });

  it("never leaves a function whose environment was deleted concurrently", async () => {
    for (let i = 0; i < 6; i++) {
      const env = `env-${i}`;
      expect((await a.api.ns().create("environments", envBody(env))).status).to.equal(201);
      const [fn, del] = await Promise.all([
        a.api.ns().create("functions", fnBody(`fn-${i}`, env)),
        b.api.ns().delete("environments", env),
      ]);
      const fnExists = (await a.api.ns().get("functions", `fn-${i}`)).status === 200;
      const envExists = (await a.api.ns().get("environments", env)).status === 200;
      expect(fnExists ? envExists : true, `round ${i}: dangling function`).to.equal(true);
      expect(
        fn.status === 201
          ? del.status === 409 && del.body.error.code === "IN_USE"
          : fn.body.error.code === "UNKNOWN_ENVIRONMENT",
        `round ${i}`,
      ).to.equal(true);
    }
  });

  it("lets exactly one of two concurrent triggers claim one route", async () => {
    await a.api.ns().create("environments", envBody("rt-env"));
    await a.api.ns().create("functions", fnBody("rt-fn", "rt-env"));
    for (let i = 0; i < 6; i++) {
      const [x, y] = await Promise.all([
        a.api
          .ns()
          .create("httptriggers", triggerBody(`rt-a${i}`, "rt-fn", { path: `/race/${i}/{id}` })),
        b.api
          .ns("default")
          .create(
            "httptriggers",
            triggerBody(`rt-b${i}`, "rt-fn", { path: `/race/${i}/{other}`, methods: ["GET"] }),
          ),
      ]);
      expect([x.status, y.status].sort(), `round ${i}`).to.deep.equal([201, 409]);
    }
  });

  it("refuses the second of two patches made from the same revision", async () => {
    await a.api.ns().create("environments", envBody("rev"));
    const [x, y] = await Promise.all([
      a.api.ns().patch("environments", "rev", { spec: { poolSize: 1 }, revision: 1 }),
      b.api.ns().patch("environments", "rev", { spec: { poolSize: 2 }, revision: 1 }),
    ]);
    expect([x.status, y.status].sort()).to.deep.equal([200, 409]);
    expect([x, y].find((r) => r.status === 409)?.body.error).to.include({
      code: "REVISION_CONFLICT",
      field: "revision",
    });
    const winner = [x, y].find((r) => r.status === 200)?.body;
    expect(winner, "one of the two patches succeeds").to.not.equal(undefined);
    const stored = (await a.api.ns().get("environments", "rev")).body;
    expect(stored.metadata.revision).to.equal(2);
    expect(stored.spec.poolSize).to.equal(winner?.spec.poolSize);
  });

  it("counts every unconditional patch: two concurrent patches make revision 3", async () => {
    await a.api.ns().create("environments", envBody("rev2"));
    const res = await Promise.all([
      a.api.ns().patch("environments", "rev2", { labels: { by: "a" } }),
      b.api.ns().patch("environments", "rev2", { labels: { by: "b" } }),
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([200, 200]);
    expect((await a.api.ns().get("environments", "rev2")).body.metadata.revision).to.equal(3);
  });

  it("runs a transaction again when a watched key changes between its read and its commit", async () => {
    const client = new Redis(stack.redis.url);
    const other = new Redis(stack.redis.url);
    const store = new RedisStore({
      url: stack.redis.url,
      prefix: "tx-test:",
      client,
      name: "tx-test",
      logger: silentLogger(),
    });
    try {
      await waitFor(() => store.ready(), { what: "store ready" });
      const env = (name: string, poolSize: number): Environment => ({
        apiVersion: API_VERSION,
        kind: "Environment",
        metadata: {
          namespace: "default",
          name,
          uid: "u",
          revision: poolSize,
          labels: {},
          createdAt: "",
          updatedAt: "",
        },
        spec: { image: "fizz/env-node", poolSize },
      });
      let runs = 0;
      const seen = await store.transact(async (r) => {
        runs++;
        const current = await r.get("environments", "default", "x");
        // Another writer commits after our read: our EXEC must abort and the body run again.
        if (runs === 1)
          await other.set("tx-test:obj:environments:default:x", JSON.stringify(env("x", 7)));
        return { writes: { put: [env("y", 1)] }, result: current?.spec.poolSize };
      });
      expect(runs).to.equal(2);
      expect(seen).to.equal(7);
      expect(await client.sismember("tx-test:idx:environments:default", "y")).to.equal(1);
    } finally {
      await store.close();
      client.disconnect();
      other.disconnect();
    }
  });
});
