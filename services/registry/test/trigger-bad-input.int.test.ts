import { expect } from "chai";
import { triggerCases } from "./trigger-bad-input-cases";
import {
  envBody,
  fnBody,
  mqtBody,
  registryEnv,
  snapshot,
  startRegistry,
  startStack,
  timerBody,
  type Running,
  type Stack,
} from "./helpers";

describe("registry refuses bad bus triggers and changes nothing", () => {
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
        "mqtriggers",
        mqtBody("orders", "hello", { subject: "orders.*", queueGroup: "workers" }),
      ),
      await d.create("timetriggers", timerBody("tick", "hello")),
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

  for (const c of triggerCases) {
    it(c.does, async () => {
      const before = await snapshot(stack.client);
      const res = await reg.api.call(c.method, c.path, c.body);
      expect(res.status, JSON.stringify(res.body)).to.equal(c.status);
      expect(res.body?.error?.code, JSON.stringify(res.body)).to.equal(c.code);
      if (c.field !== undefined) expect(res.body.error.field).to.equal(c.field);
      if (c.message) expect(res.body.error.message).to.match(c.message);
      expect(await snapshot(stack.client)).to.deep.equal(before);
    });
  }

  it("accepts what the refusals are next to: a user subject with a leading wildcard, another queue group", async () => {
    const d = reg.api.ns();
    for (const spec of [
      { subject: "*.orders.created" },
      { subject: "orders.created", queueGroup: "auditors" },
      { subject: "fizzbuzz.>" },
      { subject: "jobs.>", responseSubject: "results.jobs", errorSubject: "errors.jobs" },
    ]) {
      const res = await d.create(
        "mqtriggers",
        mqtBody(`ok-${Math.random().toString(36).slice(2, 8)}`, "hello", spec),
      );
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
    }
  });
});
