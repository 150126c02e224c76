import { expect } from "chai";
import { cases } from "./bad-input-cases";
import {
  envBody,
  fnBody,
  registryEnv,
  snapshot,
  startRegistry,
  startStack,
  triggerBody,
  type Running,
  type Stack,
} from "./helpers";

describe("registry refuses bad input and changes nothing", () => {
  let stack: Stack;
  let reg: Running;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    const d = reg.api.ns();
    const o = reg.api.ns("other");
    for (const res of [
      await d.create("environments", envBody("python")),
      await d.create("functions", fnBody("hello", "python")),
      await d.create(
        "httptriggers",
        triggerBody("users", "hello", { path: "/users/{id}", methods: ["GET"] }),
      ),
      await d.create("httptriggers", {
        name: "api",
        spec: { function: "hello", prefix: "/api", methods: ["PUT"] },
      }),
      await o.create("environments", envBody("py")),
      await o.create("functions", fnBody("hello", "py")),
    ]) {
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
    }
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  for (const c of cases) {
    it(c.does, async () => {
      const before = await snapshot(stack.client);
      const res = await reg.api.call(
        c.method,
        c.path,
        c.body,
        c.raw === undefined ? {} : { raw: c.raw },
      );
      expect(res.status, JSON.stringify(res.body)).to.equal(c.status);
      expect(res.body?.error?.code, JSON.stringify(res.body)).to.equal(c.code);
      if (c.field !== undefined) expect(res.body.error.field).to.equal(c.field);
      if (c.message) expect(res.body.error.message).to.match(c.message);
      expect(res.body.error.retryable).to.equal(false);
      expect(await snapshot(stack.client)).to.deep.equal(before);
    });
  }

  it("accepts what the refusals are next to: another method, another host, a nested prefix", async () => {
    const d = reg.api.ns();
    for (const spec of [
      { path: "/users/{id}", methods: ["POST"] },
      { path: "/users/{id}", host: "api.example.com" },
      { prefix: "/api/v2" },
      { prefix: "/users" },
    ]) {
      const res = await d.create("httptriggers", {
        name: `ok-${Math.random().toString(36).slice(2, 8)}`,
        spec: { function: "hello", ...spec },
      });
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
    }
  });

  it("accepts a command (and so any image) only where the operator set FIZZ_ALLOW_ENV_COMMAND, or on kubernetes where it stays in the pod", async () => {
    const body = envBody("custom", { image: "acme/custom:1", command: ["python3", "loader.py"] });
    const settings: Record<string, string>[] = [
      { FIZZ_ALLOW_ENV_COMMAND: "true" },
      { FIZZ_BACKEND: "kubernetes" },
    ];
    for (const extra of settings) {
      const other = await startRegistry(registryEnv(stack, extra));
      try {
        const res = await other.api.ns("cmd").create("environments", body);
        expect(res.status, JSON.stringify(res.body)).to.equal(201);
        expect(res.body.spec.command).to.deep.equal(["python3", "loader.py"]);
        await other.api.ns("cmd").delete("environments", "custom");
      } finally {
        await other.svc.stop();
      }
    }
  });

  it("accepts any image on the kubernetes backend", async () => {
    const k8s = await startRegistry(registryEnv(stack, { FIZZ_BACKEND: "kubernetes" }));
    try {
      const res = await k8s.api
        .ns()
        .create("environments", envBody("any-image", { image: "acme/custom:1" }));
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
    } finally {
      await k8s.svc.stop();
    }
  });
});
